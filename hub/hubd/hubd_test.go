package hubd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/pki"
)

func TestParseBrokerURL(t *testing.T) {
	b, err := parseBrokerURL("mqtt://hub:s3cret@10.0.0.5:1883")
	if err != nil {
		t.Fatal(err)
	}
	if b.url != "mqtt://10.0.0.5:1883" || b.username != "hub" || b.password != "s3cret" {
		t.Errorf("parsed %+v", b)
	}
	for _, bad := range []string{
		"mqtt://hub:s3cret@10.0.0.5:18x3", // url.Parse error: must not echo the password
		"http://hub:s3cret@10.0.0.5:1883",
		"mqtt://hub:s3cret@10.0.0.5",
		"mqtt://hub:s3cret@10.0.0.5:1883/path",
	} {
		_, err := parseBrokerURL(bad)
		if err == nil {
			t.Errorf("parseBrokerURL(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("parseBrokerURL(%q) error leaks the password: %v", bad, err)
		}
	}
}

// TestSniffListener: one port serves plain HTTP and HTTPS, and a client
// that connects and says nothing does not hold up the others.
func TestSniffListener(t *testing.T) {
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS != nil)
	})}
	go srv.Serve(newSniffListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, sniffTimeout))
	t.Cleanup(func() { srv.Close() })
	addr := raw.Addr().String()

	silent, err := net.Dial("tcp", addr) // says nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	get := func(c *http.Client, url string) string {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	pinned := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(ca.Fingerprint(), nil)}}
	if got := get(plain, "http://"+addr+"/"); got != "false" {
		t.Errorf("plain request saw TLS = %s", got)
	}
	if got := get(pinned, "https://"+addr+"/"); got != "true" {
		t.Errorf("TLS request saw TLS = %s", got)
	}
}

// TestSniffListenerBoundsAbuse: on the HTTP port, a silent client, a
// stalled TLS handshake and a failed one are each closed within the
// listener's timeout and counted, whatever net/http's own timeouts, while
// plain and TLS requests are served.
func TestSniffListenerBoundsAbuse(t *testing.T) {
	const (
		timeout = time.Second
		margin  = 5 * time.Second
		n       = 10 // connections of each kind
	)
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newSniffListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, timeout)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS != nil)
	})} // no timeouts: the listener must bound the abuse by itself
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := raw.Addr().String()

	kinds := []struct {
		name   string
		send   []byte
		reason string
	}{
		{"silent", nil, "first_byte_timeout"},
		{"TLS record header, stalled", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, "tls_handshake_timeout"},
		{"TLS record of garbage", append([]byte{0x16, 0x03, 0x01, 0x00, 0x04}, "junk"...), "tls_handshake_failed"},
	}
	want := map[string]uint64{}
	closed := make(chan error, n*len(kinds))
	for _, k := range kinds {
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := c.Write(k.send); err != nil {
				t.Fatal(err)
			}
			want[k.reason]++
			go func() {
				_ = c.SetReadDeadline(time.Now().Add(timeout + margin))
				_, err := io.Copy(io.Discard, c) // a TLS alert, at most
				if errors.Is(err, os.ErrDeadlineExceeded) {
					err = fmt.Errorf("%s: still open after %s", k.name, timeout+margin)
				} else {
					err = nil
				}
				closed <- err
			}()
		}
	}

	get := func(c *http.Client, url string) string {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s during the abuse: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	pinned := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(ca.Fingerprint(), nil)}}
	if got := get(plain, "http://"+addr+"/"); got != "false" {
		t.Errorf("plain request saw TLS = %s", got)
	}
	if got := get(pinned, "https://"+addr+"/"); got != "true" {
		t.Errorf("TLS request saw TLS = %s", got)
	}

	for range n * len(kinds) {
		if err := <-closed; err != nil {
			t.Error(err)
		}
	}
	got := map[string]uint64{}
	for _, d := range ln.dropped() {
		if d.Listener != "http" {
			t.Errorf("dropped %+v: listener is not http", d)
		}
		got[d.Reason] += d.Count
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
}

func TestValidateDiscoverTypes(t *testing.T) {
	for typ, ok := range map[string]bool{"_http._tcp": true, "_googlecast._tcp": true, "_x._udp": true, "http": false, "_http._sctp": false, "_a b._tcp": false, "": false} {
		cfg := Config{DataDir: "/x", DiscoverTypes: []string{typ}}
		cfg.setDefaults()
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("Validate(discover type %q) = %v, want ok=%v", typ, err, ok)
		}
	}
}
