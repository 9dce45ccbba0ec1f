package broker_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/protocol"
)

// tlsBroker is a running Broker with a plain and a TLS listener, the TLS
// one set up as the hub sets up 8883 (client certificates from the CA
// verified if given).
type tlsBroker struct {
	*testBroker
	tlsAddr string
	ca      *pki.CA
}

func startTLS(t *testing.T, cfg broker.Config) *tlsBroker {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var tlsAddr string
	b := startWith(t, cfg, func(b *broker.Broker) {
		pool := x509Pool(ca)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pool,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Serve("test-tls", ln); err != nil {
			t.Fatal(err)
		}
		tlsAddr = ln.Addr().String()
	})
	return &tlsBroker{testBroker: b, tlsAddr: tlsAddr, ca: ca}
}

// clientTLS returns a client TLS configuration that pins the broker's CA and
// presents a certificate issued for certFor ("" for none).
func (b *tlsBroker) clientTLS(t *testing.T, certFor string) *tls.Config {
	t.Helper()
	var certs []tls.Certificate
	if certFor != "" {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		c, err := b.ca.IssueClient(certFor, pub, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		certs = []tls.Certificate{{Certificate: [][]byte{c.Raw}, PrivateKey: priv}}
	}
	return pki.PinnedClientConfig(b.ca.Fingerprint(), certs)
}

// connectTLS connects over TLS as username, presenting a certificate for
// certFor, and returns CONNECT's error.
func (b *tlsBroker) connectTLS(t *testing.T, username, certFor string) (*client, error) {
	t.Helper()
	o := b.clientOpts(username, username, b.auth.password(username))
	o.Servers = nil
	o.AddBroker("ssl://" + b.tlsAddr).SetTLSConfig(b.clientTLS(t, certFor))
	return dial(t, o)
}

// TestTLSClientCertificateChecks: the guard's wrapper around each
// connection keeps the TLS checks of authentication working. A device must
// present its own certificate; the hub need not.
func TestTLSClientCertificateChecks(t *testing.T) {
	b := startTLS(t, broker.Config{})
	for _, c := range []struct {
		user, certFor string
		ok            bool
	}{
		{"dev-a", "dev-a", true},
		{"dev-a", "", false},
		{"dev-a", "dev-b", false},
		{"hub-1", "", true},
	} {
		t.Run(fmt.Sprintf("%s with certificate for %q", c.user, c.certFor), func(t *testing.T) {
			cl, err := b.connectTLS(t, c.user, c.certFor)
			if (err == nil) != c.ok {
				t.Fatalf("CONNECT error %v, want success %v", err, c.ok)
			}
			if err == nil {
				cl.Disconnect(100)
			}
		})
	}
}

// abuse is a way of opening a connection and then stalling it.
type abuse struct {
	name string
	tls  bool                          // completes a TLS handshake first (on the TLS listener)
	send func(net.Conn) error          // what it sends before it stalls
	want func(*broker.Dropped) *uint64 // the counter it must move
}

// connectHeader is a CONNECT's fixed header announcing n more bytes.
func connectHeader(n int) []byte {
	b := []byte{0x10}
	for {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// announced is what the black-box probe's stalled CONNECTs announced: under
// the 256 KiB packet limit, so mochi alone would allocate it all and wait.
const announced = 262_000

func writeBytes(b []byte) func(net.Conn) error {
	return func(c net.Conn) error { _, err := c.Write(b); return err }
}

var (
	silent          = abuse{name: "silent", send: func(net.Conn) error { return nil }, want: func(d *broker.Dropped) *uint64 { return &d.ConnectTimeout }}
	stalledLarge    = abuse{name: "CONNECT announcing 262 kB, stalled", send: writeBytes(connectHeader(announced)), want: func(d *broker.Dropped) *uint64 { return &d.ConnectTooLarge }}
	stalledSmall    = abuse{name: "CONNECT announcing 1000 bytes, 10 sent, stalled", send: writeBytes(append(connectHeader(1000), make([]byte, 10)...)), want: func(d *broker.Dropped) *uint64 { return &d.ConnectTimeout }}
	notConnect      = abuse{name: "PUBLISH first", send: writeBytes([]byte{0x30, 0x02, 0, 0}), want: func(d *broker.Dropped) *uint64 { return &d.ConnectMalformed }}
	tlsSilent       = abuse{name: "TLS, silent", tls: true, send: func(net.Conn) error { return nil }, want: func(d *broker.Dropped) *uint64 { return &d.ConnectTimeout }}
	tlsStalledLarge = abuse{name: "TLS, CONNECT announcing 262 kB, stalled", tls: true, send: writeBytes(connectHeader(announced)), want: func(d *broker.Dropped) *uint64 { return &d.ConnectTooLarge }}
	tcpOnTLS        = abuse{name: "TCP to the TLS port, silent", send: func(net.Conn) error { return nil }, want: func(d *broker.Dropped) *uint64 { return &d.TLSHandshakeTimeout }}
	partialHello    = abuse{name: "TLS record header, stalled", send: writeBytes([]byte{0x16, 0x03, 0x01, 0x02, 0x00}), want: func(d *broker.Dropped) *uint64 { return &d.TLSHandshakeTimeout }}
	notTLS          = abuse{name: "plain CONNECT to the TLS port", send: writeBytes(connectPacketBytes), want: func(d *broker.Dropped) *uint64 { return &d.TLSHandshakeFailed }}
)

// TestPreAuthAbuseBounded opens connections that never complete their
// CONNECT — the black-box probe's silent and stalled sockets, on both
// listeners — and checks that the broker closes each within its
// ConnectTimeout (plus a margin for a loaded machine), counts each, and
// keeps serving legitimate clients meanwhile.
func TestPreAuthAbuseBounded(t *testing.T) {
	const (
		timeout = 2 * time.Second
		margin  = 5 * time.Second
		n       = 20 // connections of each kind
	)
	b := startTLS(t, broker.Config{ConnectTimeout: timeout})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.Root + "/#")
	dev := b.connect(t, "dev-a")

	kinds := []struct {
		abuse
		addr string
	}{
		{silent, b.addr}, {stalledLarge, b.addr}, {stalledSmall, b.addr}, {notConnect, b.addr},
		{tlsSilent, b.tlsAddr}, {tlsStalledLarge, b.tlsAddr}, {tcpOnTLS, b.tlsAddr}, {partialHello, b.tlsAddr}, {notTLS, b.tlsAddr},
	}
	var want broker.Dropped
	closed := make(chan error, n*len(kinds))
	start := time.Now()
	for _, k := range kinds {
		for range n {
			c := openAbuse(t, k.addr, b.clientTLS(t, ""), k.abuse)
			*k.want(&want)++
			go func() { closed <- waitClosed(c, timeout+margin, k.name) }()
		}
	}

	// Meanwhile an authenticated device's telemetry flows, and new clients
	// connect, on both listeners.
	topic := statusTopic("dev-a")
	dev.publish(topic, 1, false, "during")
	hub.expect(msg{Topic: topic, Payload: "during"})
	devB, err := b.connectTLS(t, "dev-b", "dev-b")
	if err != nil {
		t.Fatalf("device over TLS during the abuse: %v", err)
	}
	devB.publish(statusTopic("dev-b"), 1, false, "new")
	hub.expect(msg{Topic: statusTopic("dev-b"), Payload: "new"})

	for range n * len(kinds) {
		if err := <-closed; err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d abusive connections closed within %s (ConnectTimeout %s)", n*len(kinds), time.Since(start).Round(time.Millisecond), timeout)
	eventually(t, "no connection pending", func() bool { return b.Stats().Pending == 0 })
	if diff := cmp.Diff(want, b.Stats().Dropped); diff != "" {
		t.Errorf("Stats.Dropped (-want +got):\n%s", diff)
	}
	dev.publish(topic, 1, false, "after")
	hub.expect(msg{Topic: topic, Payload: "after"})
}

// openAbuse connects to addr (over TLS with tc if a.tls) and does what a
// sends.
func openAbuse(t *testing.T, addr string, tc *tls.Config, a abuse) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("%s: %v", a.name, err)
	}
	t.Cleanup(func() { c.Close() })
	if a.tls {
		tlsc := tls.Client(c, tc)
		if err := tlsc.HandshakeContext(t.Context()); err != nil {
			t.Fatalf("%s: TLS handshake: %v", a.name, err)
		}
		c = tlsc
	}
	if err := a.send(c); err != nil {
		t.Fatalf("%s: %v", a.name, err)
	}
	return c
}

// waitClosed returns nil once the peer closes c (or resets it), or an
// error if it has not within limit.
func waitClosed(c net.Conn, limit time.Duration, what string) error {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c) // a TLS alert, at most
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: still open after %s", what, limit)
	}
	return nil
}

// TestPreAuthMemory holds 400 stalled connections of each kind the probe
// used and checks that the broker allocated little for them: it must not
// allocate a packet's announced length before receiving it.
func TestPreAuthMemory(t *testing.T) {
	const n = 400
	b := start(t, broker.Config{ConnectTimeout: time.Minute})
	before := heapInuse()
	for range n {
		openAbuse(t, b.addr, nil, stalledLarge)
		openAbuse(t, b.addr, nil, abuse{name: "CONNECT announcing 60 KiB, 1 KiB sent, stalled",
			send: writeBytes(append(connectHeader(60<<10), make([]byte, 1<<10)...))})
		openAbuse(t, b.addr, nil, silent)
	}
	// Each held connection costs its socket, a goroutine (stack not
	// counted here) and the bytes it sent; 8 KiB each is generous.
	limit := int64(2 * n * (8 << 10))
	// Wait until the broker has read what each sent (or has already
	// allocated too much: mochi alone allocates 64 KiB for each connection,
	// and the announced length for each stalled CONNECT).
	eventually(t, "all stalled connections read", func() bool {
		s := b.Stats()
		return s.Pending == 2*n && s.Dropped.ConnectTooLarge == n || int64(heapInuse())-int64(before) > limit
	})
	during := heapInuse()
	var rss string
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				rss = strings.Join(strings.Fields(l)[1:], " ")
			}
		}
	}
	delta := int64(during) - int64(before)
	t.Logf("%d silent + %d stalled 60 KiB + %d oversize CONNECTs: heap in use %d → %d bytes (%+d; %d per held connection), process RSS %s",
		n, n, n, before, during, delta, delta/(2*n), rss)
	if delta > limit {
		t.Errorf("heap in use grew by %d bytes for %d held connections, limit %d", delta, 2*n, limit)
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestPreAuthAbuseClosesOnStop: connections awaiting their CONNECT do not
// delay the broker's stop by their ConnectTimeout. (mochi closes only the
// clients that authenticated: without the guard, a silent connection held
// Run's return for ever.)
func TestPreAuthAbuseClosesOnStop(t *testing.T) {
	b, err := broker.New(broker.Config{ConnectTimeout: time.Hour}, newAuth())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve("test", ln); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The broker accepts in order: once a later client has its CONNACK,
	// the silent connection was accepted before it.
	o := (&testBroker{auth: newAuth(), addr: ln.Addr().String()}).clientOpts("dev-a", "dev-a", "secret-a")
	if _, err := dial(t, o); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatalf("Run did not return within %s with a connection awaiting its CONNECT", wait)
	}
	if err := waitClosed(c, wait, "pending connection at stop"); err != nil {
		t.Error(err)
	}
	if d := b.Stats().Dropped; d != (broker.Dropped{}) {
		t.Errorf("Stats.Dropped = %+v after a stop, want none counted", d)
	}
}

// TestConfigValidates: ConnectTimeout and MaxConnectSize are checked.
func TestConnectConfigValidates(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  broker.Config
		ok   bool
	}{
		{"zero", broker.Config{}, true},
		{"small packets", broker.Config{MaxPacketSize: 1024}, true},
		{"connect larger than packets", broker.Config{MaxPacketSize: 1024, MaxConnectSize: 2048}, false},
		{"negative timeout", broker.Config{ConnectTimeout: -time.Second}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := broker.New(c.cfg, newAuth()); (err == nil) != c.ok {
				t.Errorf("New: %v, want success %v", err, c.ok)
			}
		})
	}
}

// TestMaxConnectSize: a CONNECT at the limit is read and answered; one byte
// over, the connection is closed without a CONNACK.
func TestMaxConnectSize(t *testing.T) {
	const limit = 512
	b := start(t, broker.Config{MaxConnectSize: limit})
	for _, c := range []struct {
		size   int
		answer bool
	}{{limit, true}, {limit + 1, false}} {
		t.Run(fmt.Sprint(c.size), func(t *testing.T) {
			conn, err := net.Dial("tcp", b.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(connectPacket(t, c.size)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			head := make([]byte, 1)
			_, err = io.ReadFull(conn, head)
			if got := err == nil && head[0] == 0x20; got != c.answer {
				t.Errorf("CONNECT of remaining length %d: CONNACK %v (read %x, %v), want %v", c.size, got, head, err, c.answer)
			}
		})
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT from dev-a with a wrong password
// padded so that its remaining length is size.
func connectPacket(t *testing.T, size int) []byte {
	t.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	vh := append(str("MQTT"), 4, 0xc2, 0, 30) // level 4, username+password+clean, keepalive 30
	body := append(vh, str("dev-a")...)
	body = append(body, str("dev-a")...)
	pw := size - len(body) - 2
	if pw < 0 {
		t.Fatalf("CONNECT of %d bytes too small", size)
	}
	body = append(body, str(strings.Repeat("p", pw))...)
	return append(connectHeader(len(body)), body...)
}

func x509Pool(ca *pki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// connectPacketBytes is a whole plain MQTT CONNECT.
var connectPacketBytes = append(connectHeader(12), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0)
