package sniff

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve serves, on a new loopback port through a Listener with timeout, a
// handler that answers whether the request came over TLS. It returns the
// listener, its address and a client pinned to the test CA.
func serve(t *testing.T, timeout time.Duration) (*Listener, string, *http.Client) {
	t.Helper()
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
	ln := New(raw, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, timeout)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS != nil)
	})} // no timeouts: the listener must bound the abuse by itself
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		ln.Close()
		<-served
	})
	pinned := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedClientConfig(ca.Fingerprint(), nil)}}
	t.Cleanup(pinned.CloseIdleConnections)
	return ln, raw.Addr().String(), pinned
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// One port serves plain HTTP and HTTPS, and a client that connects and
// says nothing does not hold up the others.
func TestPlainAndTLSOnOnePort(t *testing.T) {
	_, addr, pinned := serve(t, DefaultTimeout)
	silent, err := net.Dial("tcp", addr) // says nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	plain := &http.Client{Timeout: 5 * time.Second}
	defer plain.CloseIdleConnections()
	if got := get(t, plain, "http://"+addr+"/"); got != "false" {
		t.Errorf("plain request saw TLS = %s", got)
	}
	if got := get(t, pinned, "https://"+addr+"/"); got != "true" {
		t.Errorf("TLS request saw TLS = %s", got)
	}
}

// A silent client, a stalled TLS handshake and a failed one are each
// closed within the listener's timeout and counted, whatever net/http's
// own timeouts, while plain and TLS requests are served.
func TestAbuseBoundedAndCounted(t *testing.T) {
	const (
		timeout = time.Second
		margin  = 5 * time.Second
		n       = 10 // connections of each kind
	)
	ln, addr, pinned := serve(t, timeout)
	kinds := []struct {
		name   string
		send   []byte
		reason string
	}{
		{"silent", nil, "silent"},
		{"TLS record header, stalled", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, "tls_timeout"},
		{"TLS record of garbage", append([]byte{0x16, 0x03, 0x01, 0x00, 0x04}, "junk"...), "tls_failed"},
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
	plain := &http.Client{Timeout: 5 * time.Second}
	defer plain.CloseIdleConnections()
	if got := get(t, plain, "http://"+addr+"/"); got != "false" {
		t.Errorf("plain request saw TLS = %s", got)
	}
	if got := get(t, pinned, "https://"+addr+"/"); got != "true" {
		t.Errorf("TLS request saw TLS = %s", got)
	}
	for range n * len(kinds) {
		if err := <-closed; err != nil {
			t.Error(err)
		}
	}
	c := ln.Counts()
	got := map[string]uint64{"silent": c.Silent, "tls_timeout": c.TLSTimeout, "tls_failed": c.TLSFailed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// Close returns promptly with silent clients connected, having ended every
// goroutine the listener started (goleak checks), and counts none of them.
func TestCloseWithSilentClients(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := New(raw, &tls.Config{}, time.Hour)
	accepted := make(chan error, 1)
	go func() { _, err := ln.Accept(); accepted <- err }()
	for range 5 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	start := time.Now()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s with silent clients (the sniff timeout is an hour)", took)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if c := ln.Counts(); c != (Counts{}) {
		t.Errorf("counts %+v after Close, want none (closing is not abuse)", c)
	}
}
