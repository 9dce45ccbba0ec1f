package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/mosquittotest"
)

// Users known to every test broker.
var users = map[string]string{"dev": "dev-secret", "obs": "obs-secret"}

func startBroker(t *testing.T) *mosquittotest.Broker {
	t.Helper()
	b := mosquittotest.New(t, mosquittotest.Options{Users: users})
	b.Start()
	return b
}

// testConfig returns a config for user ("dev" or "obs") with short intervals.
func testConfig(t *testing.T, url, id, user string) bus.Config {
	return bus.Config{
		URL:                  url,
		ClientID:             id,
		Username:             user,
		Password:             users[user],
		ConnectTimeout:       5 * time.Second,
		MaxReconnectInterval: 200 * time.Millisecond,
		Logger:               newLogRecorder(t, id).logger(),
	}
}

// runner is a Client whose Run is running in a goroutine.
type runner struct {
	*bus.Client
	cancel context.CancelFunc
	errc   chan error

	once sync.Once
	err  error
}

// run starts c.Run; t.Cleanup stops it and waits for it.
func run(t *testing.T, c *bus.Client) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{Client: c, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func newRunning(t *testing.T, cfg bus.Config) *runner {
	t.Helper()
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return run(t, c)
}

// stop cancels Run and returns its result.
func (r *runner) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.wait(t, 10*time.Second)
}

// wait waits for Run to return by itself, at most d.
func (r *runner) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	r.once.Do(func() {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case r.err = <-r.errc:
		case <-timer.C:
			r.err = errors.New("test: Run did not return")
			t.Errorf("Run did not return within %s", d)
		}
	})
	return r.err
}

func waitConnected(t *testing.T, r *runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
}

// eventually polls cond until it holds or d elapses.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// collector is a Handler that forwards messages to a channel.
type collector chan bus.Message

func newCollector() collector { return make(chan bus.Message, 1000) }

func (c collector) handle(_ context.Context, m bus.Message) { c <- m }

// next returns the next message, failing after d.
func (c collector) next(t *testing.T, d time.Duration) bus.Message {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m := <-c:
		return m
	case <-timer.C:
		t.Fatalf("no message within %s", d)
		return bus.Message{}
	}
}

// nextPayload waits for a message with the given payload, returning the ones
// skipped on the way.
func (c collector) nextPayload(t *testing.T, d time.Duration, payload string) (skipped []bus.Message) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.next(t, time.Until(deadline))
		if string(m.Payload) == payload {
			return skipped
		}
		skipped = append(skipped, m)
	}
}

func publish(t *testing.T, c *runner, m bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Publish(ctx, m); err != nil {
		t.Fatalf("Publish %s: %v", m.Topic, err)
	}
}

// logRecorder is an slog destination that keeps every line and copies it to
// the test log.
type logRecorder struct {
	t    testing.TB
	name string

	mu    sync.Mutex
	lines []string
}

func newLogRecorder(t testing.TB, name string) *logRecorder {
	return &logRecorder{t: t, name: name}
}

func (l *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logRecorder) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Logf("%s: %s", l.name, line)
	return len(p), nil
}

// count returns how many lines contain every one of subs.
func (l *logRecorder) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// withRecorder gives cfg a new recorder as its Logger and returns it.
func withRecorder(t *testing.T, cfg *bus.Config, name string) *logRecorder {
	l := newLogRecorder(t, name)
	cfg.Logger = l.logger()
	return l
}

// writeCerts generates a CA and a server certificate for 127.0.0.1 signed by
// it, writes them as PEM in a temp dir and returns the files and the CA.
func writeCerts(t *testing.T) (mosquittotest.TLSFiles, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "alicia test CA")
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	f := mosquittotest.TLSFiles{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	writePEM(t, f.CAFile, "CERTIFICATE", ca.Raw)
	writePEM(t, f.CertFile, "CERTIFICATE", srvDER)
	writePEM(t, f.KeyFile, "PRIVATE KEY", keyDER)
	return f, ca
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeBroker is a minimal MQTT 3.1.1 server for behaviour Mosquitto will not
// show on demand: it accepts any CONNECT and answers a SUBSCRIBE with 0x80
// (failure) for filters under "denied/" and the requested QoS otherwise.
type fakeBroker struct {
	l  net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startFakeBroker(t *testing.T) *fakeBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{l: l, conns: make(map[net.Conn]bool)}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeBroker) url() string { return "tcp://" + f.l.Addr().String() }

func (f *fakeBroker) accept() {
	defer f.wg.Done()
	for {
		conn, err := f.l.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[conn] = true
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(conn)
	}
}

func (f *fakeBroker) serve(conn net.Conn) {
	defer f.wg.Done()
	defer conn.Close()
	for {
		p, err := packets.ReadPacket(conn)
		if err != nil {
			return
		}
		var reply packets.ControlPacket
		switch p := p.(type) {
		case *packets.ConnectPacket:
			reply = packets.NewControlPacket(packets.Connack)
		case *packets.SubscribePacket:
			ack := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
			ack.MessageID = p.MessageID
			for i, topic := range p.Topics {
				code := p.Qoss[i]
				if strings.HasPrefix(topic, "denied/") {
					code = 0x80
				}
				ack.ReturnCodes = append(ack.ReturnCodes, code)
			}
			reply = ack
		case *packets.PingreqPacket:
			reply = packets.NewControlPacket(packets.Pingresp)
		case *packets.DisconnectPacket:
			return
		default:
			continue
		}
		if err := reply.Write(conn); err != nil {
			return
		}
	}
}

func (f *fakeBroker) close() {
	_ = f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

var _ io.Writer = (*logRecorder)(nil)
