package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/testkit"
)

// start is the fake clock's first reading: whole seconds (certificates
// store no fractions) and near the real time, which VerifyPinned uses.
func start() time.Time { return time.Now().Truncate(time.Second) }

func testCA(t *testing.T) *CA {
	t.Helper()
	ca, _, err := LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// checkHubCert checks that cert is a hub server certificate of ca issued at
// issuedAt, with the chain IssueServer produces.
func checkHubCert(t *testing.T, ca *CA, cert *tls.Certificate, issuedAt time.Time) {
	t.Helper()
	if len(cert.Certificate) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and CA", len(cert.Certificate))
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || !leaf.Equal(cert.Leaf) {
		t.Fatal("Leaf is not the first certificate of the chain")
	}
	caCert, err := x509.ParseCertificate(cert.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if !caCert.Equal(ca.Cert) || Fingerprint(caCert) != ca.Fingerprint() {
		t.Fatalf("second certificate of the chain is not the CA (fingerprint %s, want %s)", Fingerprint(caCert), ca.Fingerprint())
	}
	if want := issuedAt.Add(ServerValidity); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, want)
	}
	if leaf.NotBefore.After(issuedAt) {
		t.Errorf("NotBefore %v is after the issue time %v", leaf.NotBefore, issuedAt)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok || !publicKeysEqual(leaf.PublicKey, signer.Public()) {
		t.Error("the private key does not belong to the leaf")
	}
	for _, name := range []string{ServerName, hubName("hub-1")} {
		if err := VerifyPinned([]*x509.Certificate{leaf, caCert}, ca.Fingerprint(), name); err != nil {
			t.Errorf("VerifyPinned(%s): %v", name, err)
		}
	}
}

func TestServerCertsRenewal(t *testing.T) {
	ca := testCA(t)
	for _, tc := range []struct {
		name  string
		after time.Duration // clock moves from the first issue
		renew bool
	}{
		{"at issue", 0, false},
		{"a day later", 24 * time.Hour, false},
		{"a second before the renewal point", ServerValidity - RenewBefore - time.Second, false},
		{"at the renewal point", ServerValidity - RenewBefore, true},
		{"a day before expiry", ServerValidity - 24*time.Hour, true},
		{"after expiry", ServerValidity + 24*time.Hour, true},
		{"years after expiry", 3 * ServerValidity, true},
		{"clock set back within the start margin", -30 * time.Minute, false},
		{"clock set back before the start", -2 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := start()
			clock := testkit.NewClock(t0)
			sc, err := NewServerCerts(ca, "hub-1", nil, nil, clock.Now)
			if err != nil {
				t.Fatal(err)
			}
			first := sc.Current()
			checkHubCert(t, ca, first, t0)
			if got, err := sc.GetCertificate(nil); err != nil || got != first {
				t.Fatalf("GetCertificate at issue = %p, %v; want the first certificate %p", got, err, first)
			}

			at := t0.Add(tc.after)
			clock.Set(at)
			got, err := sc.GetCertificate(&tls.ClientHelloInfo{ServerName: ServerName})
			if err != nil {
				t.Fatal(err)
			}
			if sc.Current() != got {
				t.Error("Current is not the certificate GetCertificate returned")
			}
			if !tc.renew {
				if got != first {
					t.Fatalf("renewed at %v after issue, want the first certificate until %v", tc.after, ServerValidity-RenewBefore)
				}
				return
			}
			if got == first || got.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
				t.Fatal("not renewed")
			}
			checkHubCert(t, ca, got, at)
			if tc.after > 0 && !got.Leaf.NotAfter.After(first.Leaf.NotAfter) {
				t.Errorf("renewed NotAfter %v is not after the first's %v", got.Leaf.NotAfter, first.Leaf.NotAfter)
			}
			if again, err := sc.GetCertificate(nil); err != nil || again != got {
				t.Errorf("a second call at the same time = %p, %v; want the renewed certificate %p again", again, err, got)
			}
		})
	}
}

// TestServerCertsRenewsAgain: a hub that runs for years renews each
// certificate in turn, never serving one with less than RenewBefore left.
func TestServerCertsRenewsAgain(t *testing.T) {
	ca := testCA(t)
	t0 := start()
	clock := testkit.NewClock(t0)
	sc, err := NewServerCerts(ca, "hub-1", nil, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for at := t0; at.Before(t0.Add(5 * ServerValidity)); at = at.Add(7 * 24 * time.Hour) {
		clock.Set(at)
		got, err := sc.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if left := got.Leaf.NotAfter.Sub(at); left <= RenewBefore {
			t.Fatalf("at %v: serving a certificate with only %v left", at, left)
		}
		serials[got.Leaf.SerialNumber.String()] = true
	}
	// 5 validities renewed every 2/3 validity: the first and 7 renewals.
	if len(serials) != 8 {
		t.Errorf("%d certificates served over 5 validity periods, want 8", len(serials))
	}
}

func TestServerCertsNilClock(t *testing.T) {
	ca := testCA(t)
	before := time.Now()
	sc, err := NewServerCerts(ca, "hub-1", []string{"hubhost.local"}, []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if nb := sc.Current().Leaf.NotBefore; nb.Before(before.Add(-time.Hour-time.Second)) || nb.After(time.Now()) {
		t.Errorf("NotBefore %v: the certificate was not issued at time.Now (%v)", nb, before)
	}
	if got, err := sc.GetCertificate(nil); err != nil || got != sc.Current() {
		t.Errorf("GetCertificate = %p, %v", got, err)
	}
	leaf := sc.Current().Leaf
	if err := leaf.VerifyHostname("hubhost.local"); err != nil {
		t.Errorf("the extra name: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("the extra address: %v", err)
	}
}

// failingIssuer issues with ca unless told to fail, and counts the calls.
type failingIssuer struct {
	ca    *CA
	fail  atomic.Bool
	calls atomic.Int32
}

var errIssue = errors.New("signer unavailable")

func (f *failingIssuer) issue(t time.Time) (tls.Certificate, error) {
	f.calls.Add(1)
	if f.fail.Load() {
		return tls.Certificate{}, errIssue
	}
	return f.ca.IssueServer("hub-1", nil, nil, t)
}

func TestServerCertsRenewalFailure(t *testing.T) {
	ca := testCA(t)
	t0 := start()
	clock := testkit.NewClock(t0)
	iss := &failingIssuer{ca: ca}
	sc, err := newServerCerts(clock.Now, iss.issue)
	if err != nil {
		t.Fatal(err)
	}
	first := sc.Current()
	expiry := first.Leaf.NotAfter

	for i, step := range []struct {
		name      string
		at        time.Time
		fail      bool
		wantFirst bool // the first certificate is served
		wantErr   bool
		wantCalls int32 // issue calls so far, including the first
	}{
		{"before the renewal point", t0.Add(ServerValidity - RenewBefore - time.Second), true, true, false, 1},
		{"renewal fails: keep serving", t0.Add(ServerValidity - RenewBefore), true, true, false, 2},
		{"and tries again on the next call", t0.Add(ServerValidity - RenewBefore), true, true, false, 3},
		{"at the last valid second", expiry, true, true, false, 4},
		{"renewal fails after expiry", expiry.Add(time.Second), true, false, true, 5},
		{"the signer is back", expiry.Add(time.Second), false, false, false, 6},
	} {
		clock.Set(step.at)
		iss.fail.Store(step.fail)
		got, err := sc.GetCertificate(nil)
		switch {
		case step.wantErr:
			if err == nil || got != nil {
				t.Fatalf("step %d (%s): %p, %v; want no certificate and an error", i, step.name, got, err)
			}
			if !errors.Is(err, errIssue) || !strings.Contains(err.Error(), "expired") {
				t.Errorf("step %d (%s): error %q should wrap the issue error and say the certificate expired", i, step.name, err)
			}
			if sc.Current() != first {
				t.Errorf("step %d (%s): Current changed after a failed renewal", i, step.name)
			}
		case err != nil:
			t.Fatalf("step %d (%s): %v", i, step.name, err)
		case step.wantFirst && got != first:
			t.Fatalf("step %d (%s): not the first certificate", i, step.name)
		case !step.wantFirst:
			if got == first {
				t.Fatalf("step %d (%s): still the first certificate", i, step.name)
			}
			checkHubCert(t, ca, got, step.at)
		}
		if n := iss.calls.Load(); n != step.wantCalls {
			t.Fatalf("step %d (%s): %d issue calls, want %d", i, step.name, n, step.wantCalls)
		}
	}
}

func TestServerCertsFirstIssueFails(t *testing.T) {
	iss := &failingIssuer{ca: testCA(t)}
	iss.fail.Store(true)
	if sc, err := newServerCerts(time.Now, iss.issue); !errors.Is(err, errIssue) || sc != nil {
		t.Fatalf("newServerCerts = %v, %v; want the issue error", sc, err)
	}
}

// TestServerCertsConcurrent: many handshakes at once share one certificate,
// and crossing the renewal point issues exactly one new certificate.
func TestServerCertsConcurrent(t *testing.T) {
	ca := testCA(t)
	t0 := start()
	clock := testkit.NewClock(t0)
	const goroutines, calls = 32, 50
	// The renewal waits until every goroutine has read the clock, so that
	// all of them have seen the expiring certificate and queue up behind it.
	var nowCalls atomic.Int32
	var gate atomic.Bool
	now := func() time.Time {
		nowCalls.Add(1)
		return clock.Now()
	}
	iss := &failingIssuer{ca: ca}
	issue := func(at time.Time) (tls.Certificate, error) {
		if gate.CompareAndSwap(true, false) {
			deadline := time.Now().Add(10 * time.Second)
			for nowCalls.Load() < goroutines {
				if time.Now().After(deadline) {
					t.Errorf("only %d of %d goroutines read the clock", nowCalls.Load(), goroutines)
					break
				}
				runtime.Gosched()
			}
		}
		return iss.issue(at)
	}
	sc, err := newServerCerts(now, issue)
	if err != nil {
		t.Fatal(err)
	}
	run := func() map[*tls.Certificate]int {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			seen  = map[*tls.Certificate]int{}
			begin = make(chan struct{})
		)
		for range goroutines {
			wg.Go(func() {
				<-begin
				for range calls {
					c, err := sc.GetCertificate(nil)
					if err != nil {
						t.Error(err)
						return
					}
					_ = sc.Current()
					mu.Lock()
					seen[c]++
					mu.Unlock()
				}
			})
		}
		close(begin)
		wg.Wait()
		return seen
	}
	first := sc.Current()
	if seen := run(); len(seen) != 1 || seen[first] != goroutines*calls {
		t.Fatalf("before the renewal point: %d distinct certificates, want only the first", len(seen))
	}
	nowCalls.Store(0)
	gate.Store(true)
	clock.Set(t0.Add(ServerValidity - RenewBefore))
	seen := run()
	if len(seen) != 1 || seen[first] != 0 {
		t.Errorf("after the renewal point: %d distinct certificates (first served %d times), want only the renewed one", len(seen), seen[first])
	}
	if n := iss.calls.Load(); n != 2 {
		t.Errorf("%d certificates issued, want 2 (the first and one renewal)", n)
	}
	checkHubCert(t, ca, sc.Current(), t0.Add(ServerValidity-RenewBefore))
}

// TestServerCertsHandshake: a real listener serving GetCertificate, a
// pinning agent before and after renewal, and a pairing probe.
func TestServerCertsHandshake(t *testing.T) {
	ca := testCA(t)
	t0 := start()
	clock := testkit.NewClock(t0)
	sc, err := NewServerCerts(ca, "hub-1", nil, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	server := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: sc.GetCertificate}

	// served runs a pinned handshake and returns the leaf the hub sent.
	served := func() *x509.Certificate {
		t.Helper()
		var leaf *x509.Certificate
		client := PinnedClientConfig(ca.Fingerprint(), nil)
		verify := client.VerifyConnection
		client.VerifyConnection = func(cs tls.ConnectionState) error {
			leaf = cs.PeerCertificates[0]
			return verify(cs)
		}
		if cerr, serr := handshake(t, server, client); cerr != nil || serr != nil {
			t.Fatalf("handshake: client %v, server %v", cerr, serr)
		}
		return leaf
	}
	first := sc.Current()
	if leaf := served(); !leaf.Equal(first.Leaf) {
		t.Fatal("the hub did not serve its first certificate")
	}
	clock.Set(t0.Add(ServerValidity - RenewBefore + time.Hour))
	leaf := served()
	if leaf.Equal(first.Leaf) || !leaf.Equal(sc.Current().Leaf) {
		t.Fatal("the hub did not serve the renewed certificate")
	}
	if !leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Errorf("renewed NotAfter %v is not after %v", leaf.NotAfter, first.Leaf.NotAfter)
	}

	// Pairing without a token learns the same CA from the renewed hub.
	addr, _ := probeServer(t, server)
	fp, err := ProbeCA(t.Context(), addr)
	if err != nil || fp != ca.Fingerprint() {
		t.Fatalf("ProbeCA = %q, %v; want %s", fp, err, ca.Fingerprint())
	}

	// A hub whose certificate expired and cannot be renewed refuses the
	// handshake instead of serving it.
	iss := &failingIssuer{ca: ca}
	stale, err := newServerCerts(func() time.Time { return t0.Add(-2 * ServerValidity) }, iss.issue)
	if err != nil {
		t.Fatal(err)
	}
	iss.fail.Store(true)
	stale.now = time.Now
	_, serr := handshake(t, &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: stale.GetCertificate}, PinnedClientConfig(ca.Fingerprint(), nil))
	if !errors.Is(serr, errIssue) {
		t.Errorf("server error %v, want the renewal error", serr)
	}
}
