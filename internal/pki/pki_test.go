package pki

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestLoadOrCreateCA(t *testing.T) {
	dir := t.TempDir()
	ca, created, err := LoadOrCreateCA(dir, "hub-1", now)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateCA(dir, "hub-1", now.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("load: %v, created %v", err, created)
	}
	if again.Fingerprint() != ca.Fingerprint() || len(ca.Fingerprint()) != 64 {
		t.Errorf("fingerprint changed or malformed: %s vs %s", ca.Fingerprint(), again.Fingerprint())
	}
	if !strings.Contains(string(ca.CertPEM()), "BEGIN CERTIFICATE") {
		t.Error("CertPEM is not PEM")
	}
}

func TestLoadOrCreateCARefusesHalfACA(t *testing.T) {
	for _, remove := range []string{"ca.key", "ca.crt"} {
		t.Run("without "+remove, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := LoadOrCreateCA(dir, "hub-1", now); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, remove)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadOrCreateCA(dir, "hub-1", now); err == nil || !strings.Contains(err.Error(), "backup") {
				t.Fatalf("error = %v, want a refusal that mentions restoring a backup", err)
			}
		})
	}
	t.Run("mismatched pair", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		for _, d := range []string{a, b} {
			if _, _, err := LoadOrCreateCA(d, "hub-1", now); err != nil {
				t.Fatal(err)
			}
		}
		crt, _ := os.ReadFile(filepath.Join(b, "ca.crt"))
		if err := os.WriteFile(filepath.Join(a, "ca.crt"), crt, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateCA(a, "hub-1", now); err == nil || !strings.Contains(err.Error(), "do not belong together") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("readable key", func(t *testing.T) {
		dir := t.TempDir()
		if _, _, err := LoadOrCreateCA(dir, "hub-1", now); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadOrCreateCA(dir, "hub-1", now); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("error = %v", err)
		}
	})
}

// handshake runs a real TLS handshake over loopback and returns the
// client's and the server's errors.
func handshake(t *testing.T, server, client *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			// TLS 1.3 client certificates are checked after the client's
			// handshake returns: read to surface the server's verdict.
			_, _ = c.Write([]byte("ok"))
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 2))
		c.Close()
	}
	return err, <-done
}

func serverConfig(t *testing.T, ca *CA, hubID string) *tls.Config {
	t.Helper()
	cert, err := ca.IssueServer(hubID, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
}

func TestPinnedHandshake(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogue, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A device certificate of the right CA is not a server certificate.
	devPub, devKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	devCert, err := ca.IssueClient("dabc", devPub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	devAsServer := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{devCert.Raw, ca.Cert.Raw}, PrivateKey: devKey}}}
	for _, tc := range []struct {
		name    string
		server  *tls.Config
		pin     string
		wantErr bool
	}{
		{"the pinned hub", serverConfig(t, ca, "hub-1"), ca.Fingerprint(), false},
		{"a rogue CA with the same hub id", serverConfig(t, rogue, "hub-1"), ca.Fingerprint(), true},
		{"a device certificate of the pinned CA", devAsServer, ca.Fingerprint(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cerr, _ := handshake(t, tc.server, PinnedClientConfig(tc.pin, nil))
			if tc.wantErr {
				if cerr == nil {
					t.Fatal("handshake succeeded, want a refusal")
				}
				if !errors.Is(cerr, ErrWrongHub) {
					t.Errorf("error %v does not wrap ErrWrongHub", cerr)
				}
				return
			}
			if cerr != nil {
				t.Fatalf("handshake: %v", cerr)
			}
		})
	}
}

func TestClientCertificate(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueClient("dabc", pub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "dabc" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	server := serverConfig(t, ca, "hub-1")
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = pool
	clientCert := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: priv, Leaf: cert}

	if cerr, serr := handshake(t, server, PinnedClientConfig(ca.Fingerprint(), []tls.Certificate{clientCert})); cerr != nil || serr != nil {
		t.Fatalf("mutual TLS: client %v, server %v", cerr, serr)
	}
	// A certificate from another CA is refused by the hub.
	other, _, err := LoadOrCreateCA(t.TempDir(), "hub-x", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueClient("dabc", pub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, serr := handshake(t, server, PinnedClientConfig(ca.Fingerprint(),
		[]tls.Certificate{{Certificate: [][]byte{foreign.Raw}, PrivateKey: priv, Leaf: foreign}}))
	if serr == nil {
		t.Fatal("the hub accepted a client certificate from another CA")
	}
}

func TestVerifyPinnedEmpty(t *testing.T) {
	if err := VerifyPinned(nil, "ab", "x"); !errors.Is(err, ErrWrongHub) {
		t.Fatalf("VerifyPinned(nil) = %v", err)
	}
}

// TestVerifyPinnedClock: a device whose clock is behind (no RTC, before NTP)
// still accepts the pinned hub; an expired certificate is reported as
// expired, not as another hub.
func TestVerifyPinnedClock(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	future, err := ca.IssueServer("hub-1", nil, nil, time.Now().Add(48*time.Hour)) // as seen by a device stuck in the past
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPinned([]*x509.Certificate{future.Leaf, ca.Cert}, ca.Fingerprint(), ServerName); err != nil {
		t.Errorf("a certificate from the pinned CA, valid from the future: %v", err)
	}
	expired, err := ca.IssueServer("hub-1", nil, nil, time.Now().Add(-2*ServerValidity))
	if err != nil {
		t.Fatal(err)
	}
	err = VerifyPinned([]*x509.Certificate{expired.Leaf, ca.Cert}, ca.Fingerprint(), ServerName)
	if err == nil || errors.Is(err, ErrWrongHub) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired certificate: %v, want an expiry error that is not ErrWrongHub", err)
	}
}

func TestRenewalDue(t *testing.T) {
	ca, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert, err := ca.IssueClient("dabc", pub, issued)
	if err != nil {
		t.Fatal(err)
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	due := cert.NotAfter.Add(-life / 3)
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{issued, false},
		{due.Add(-time.Second), false},
		{due, true},
		{cert.NotAfter, true},
		{cert.NotAfter.Add(365 * 24 * time.Hour), true}, // long expired: still renewable
	} {
		if got := RenewalDue(cert, tt.at); got != tt.want {
			t.Errorf("RenewalDue at %s = %v, want %v (NotAfter %s)", tt.at, got, tt.want, cert.NotAfter)
		}
	}
}
