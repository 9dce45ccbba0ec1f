package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// probeServer serves one TLS connection on loopback with config and
// reports how many bytes of application data the client sent after the
// handshake, or the server's handshake error.
func probeServer(t *testing.T, config *tls.Config) (addr string, appData <-chan probeResult) {
	t.Helper()
	config = config.Clone()
	// Without session tickets the server sends nothing after the
	// handshake, so the client's close is a clean end of stream.
	config.SessionTicketsDisabled = true
	ln, err := tls.Listen("tcp", "127.0.0.1:0", config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan probeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- probeResult{err: err}
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			ch <- probeResult{err: err}
			return
		}
		n, err := io.Copy(io.Discard, c)
		ch <- probeResult{n: n, err: err}
	}()
	return ln.Addr().String(), ch
}

type probeResult struct {
	n   int64
	err error
}

// signLeaf issues a certificate from tmpl with a new key, signed by ca (or
// self-signed if ca is nil), and returns it with the given chain after it.
func signLeaf(t *testing.T, ca *CA, tmpl *x509.Certificate, chain ...*x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial()
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.Cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// hubTemplate is what IssueServer signs, for variations on it.
func hubTemplate(names ...string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: "test"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(ServerValidity),
		DNSNames:    names,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

func TestProbeCA(t *testing.T) {
	ca, rogue := testCA(t), testCA(t)
	issue := func(ca *CA, ips []net.IP, at time.Time) tls.Certificate {
		t.Helper()
		c, err := ca.IssueServer("hub-1", []string{"hub.local"}, ips, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// withChain replaces the chain after cert's leaf.
	withChain := func(cert tls.Certificate, chain ...*x509.Certificate) tls.Certificate {
		cert.Certificate = cert.Certificate[:1:1]
		for _, c := range chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		return cert
	}
	devPub, devKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	devCert, err := ca.IssueClient("dabc", devPub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := signLeaf(t, nil, hubTemplate(ServerName))
	selfSignedCA := hubTemplate(ServerName)
	selfSignedCA.IsCA, selfSignedCA.BasicConstraintsValid = true, true
	selfSignedCA.KeyUsage |= x509.KeyUsageCertSign
	selfCA := signLeaf(t, nil, selfSignedCA)

	for _, tc := range []struct {
		name    string
		cert    tls.Certificate
		maxTLS  uint16
		want    string // fingerprint; "" for an error
		wantErr string // in the error
	}{
		{name: "a hub certificate", cert: issue(ca, nil, time.Now()), want: ca.Fingerprint()},
		{name: "a hub certificate with an address", cert: issue(ca, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now()), want: ca.Fingerprint()},
		{name: "another CA before the hub's", cert: withChain(issue(ca, nil, time.Now()), rogue.Cert, ca.Cert), want: ca.Fingerprint()},
		{name: "a hub certificate from the future (clock behind)", cert: issue(ca, nil, time.Now().Add(48*time.Hour)), want: ca.Fingerprint()},
		{name: "a rogue hub", cert: issue(rogue, nil, time.Now()), want: rogue.Fingerprint()},
		{name: "a self-signed leaf", cert: selfSigned, wantErr: "no CA certificate"},
		{name: "a self-signed leaf sent as its own issuer", cert: withChain(selfSigned, selfSigned.Leaf), wantErr: "no CA certificate"},
		{name: "a self-signed CA as leaf", cert: selfCA, wantErr: "no CA certificate"},
		{name: "the leaf without its CA", cert: withChain(issue(ca, nil, time.Now())), wantErr: "no CA certificate"},
		{name: "a CA the leaf does not chain to", cert: withChain(issue(ca, nil, time.Now()), rogue.Cert), wantErr: "not a hub certificate"},
		{name: "a leaf for another name", cert: signLeaf(t, ca, hubTemplate("example.com"), ca.Cert), wantErr: "not a hub certificate"},
		{name: "a leaf for client authentication", cert: tls.Certificate{Certificate: [][]byte{devCert.Raw, ca.Cert.Raw}, PrivateKey: devKey}, wantErr: "not a hub certificate"},
		{name: "an expired hub certificate", cert: issue(ca, nil, time.Now().Add(-2*ServerValidity)), wantErr: "expired"},
		{name: "TLS 1.2 only", cert: issue(ca, nil, time.Now()), maxTLS: tls.VersionTLS12, wantErr: "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, served := probeServer(t, &tls.Config{Certificates: []tls.Certificate{tc.cert}, MaxVersion: tc.maxTLS})
			fp, err := ProbeCA(t.Context(), addr)
			if tc.wantErr != "" {
				if err == nil || fp != "" {
					t.Fatalf("ProbeCA = %q, %v; want an error", fp, err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q does not mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || fp != tc.want {
				t.Fatalf("ProbeCA = %q, %v; want %s", fp, err, tc.want)
			}
			// The probe sends nothing after the handshake and closes.
			if r := <-served; r.err != nil || r.n != 0 {
				t.Errorf("server: %d bytes of application data, %v; want a clean close with none", r.n, r.err)
			}
			// What the probe learned pins the hub.
			if cerr, _ := handshake(t, &tls.Config{Certificates: []tls.Certificate{tc.cert}}, PinnedClientConfig(fp, nil)); cerr != nil {
				t.Errorf("pinned handshake with the probed fingerprint: %v", cerr)
			}
		})
	}
}

func TestProbeCAUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if fp, err := ProbeCA(t.Context(), addr); err == nil || fp != "" || !strings.Contains(err.Error(), addr) {
		t.Fatalf("ProbeCA(closed %s) = %q, %v; want an error naming the address", addr, fp, err)
	}
}

func TestProbeCACancelled(t *testing.T) {
	ca := testCA(t)
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("before dialling", func(t *testing.T) {
		addr, _ := probeServer(t, &tls.Config{Certificates: []tls.Certificate{cert}})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if fp, err := ProbeCA(ctx, addr); !errors.Is(err, context.Canceled) || fp != "" {
			t.Fatalf("ProbeCA = %q, %v; want context.Canceled", fp, err)
		}
	})
	t.Run("during the handshake", func(t *testing.T) {
		// A server that accepts the connection and never answers.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- c
			}
		}()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		type result struct {
			fp  string
			err error
		}
		done := make(chan result, 1)
		go func() {
			fp, err := ProbeCA(ctx, ln.Addr().String())
			done <- result{fp, err}
		}()
		c := <-accepted
		defer c.Close()
		select {
		case r := <-done:
			t.Fatalf("ProbeCA returned %q, %v before the server answered", r.fp, r.err)
		default:
		}
		cancel()
		if r := <-done; !errors.Is(r.err, context.Canceled) || r.fp != "" {
			t.Fatalf("ProbeCA = %q, %v; want context.Canceled", r.fp, r.err)
		}
	})
}
