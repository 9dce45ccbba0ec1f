package agentd_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func parseCertPEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatalf("not PEM: %q", s)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// renewal is an enrolled agent's state and a fake hub that renews its
// certificate.
type renewal struct {
	dir, id  string
	renewals atomic.Int32
	old      *x509.Certificate
}

// setupRenewal enrols a device whose certificate was issued at issued, with
// a fake hub whose clock says hubTime.
func setupRenewal(t *testing.T, issued, hubTime time.Time) *renewal {
	t.Helper()
	const password = "broker-secret"
	ca := newCA(t)
	mqttURL := "mqtt://" + closedAddr(t)
	rn := &renewal{}
	var pub atomic.Pointer[ed25519.PublicKey]
	hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/bootstrap":
			writeJSON(w, http.StatusOK, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{mqttURL}, "time": hubTime})
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/device/certificate":
			user, pw, ok := r.BasicAuth()
			if !ok || user != rn.id || pw != password {
				t.Errorf("renewal with credentials %q/%q, want the device's", user, pw)
				writeProblem(w, http.StatusUnauthorized, "wrong device credentials")
				return
			}
			rn.renewals.Add(1)
			c, err := ca.IssueClient(rn.id, *pub.Load(), hubTime)
			if err != nil {
				t.Error(err)
				writeProblem(w, http.StatusInternalServerError, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"certificate": certPEM(c), "not_after": c.NotAfter})
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			writeProblem(w, http.StatusNotFound, "no route")
		}
	})
	rn.dir, rn.id = enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{mqttURL}, Password: password, CAFingerprint: ca.Fingerprint()})
	key, _, err := identity.LoadOrCreate(filepath.Join(rn.dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	p := key.Public().(ed25519.PublicKey)
	pub.Store(&p)
	rn.old, err = ca.IssueClient(rn.id, p, issued)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(rn.dir, "credentials.json")
	c := readCreds(t, path)
	c.Certificate = certPEM(rn.old)
	writeCreds(t, path, c)
	return rn
}

// waitRenewed runs the agent until credentials.json holds a new
// certificate, and returns it.
func (rn *renewal) waitRenewed(t *testing.T) *x509.Certificate {
	t.Helper()
	path := filepath.Join(rn.dir, "credentials.json")
	s := start(t, agentd.Config{StateDir: rn.dir})
	s.waitFor(t, "a renewed certificate in credentials.json", func() bool {
		return readCreds(t, path).Certificate != certPEM(rn.old)
	})
	if err := s.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c := parseCertPEM(t, readCreds(t, path).Certificate)
	if !c.NotAfter.After(rn.old.NotAfter) || c.Subject.CommonName != rn.id {
		t.Errorf("renewed certificate: CN %q, NotAfter %s; old NotAfter %s", c.Subject.CommonName, c.NotAfter, rn.old.NotAfter)
	}
	if n := rn.renewals.Load(); n != 1 {
		t.Errorf("%d renewals, want 1", n)
	}
	return c
}

// TestRenewsAnAgeingCertificate: with less than a third of its validity
// left, the agent renews its certificate and keeps the new one.
func TestRenewsAnAgeingCertificate(t *testing.T) {
	now := time.Now()
	rn := setupRenewal(t, now.Add(-pki.ClientValidity*2/3-time.Hour), now)
	rn.waitRenewed(t)
}

// TestRenewsAnExpiredCertificate: a device that was off past its
// certificate's end still renews (with its password).
func TestRenewsAnExpiredCertificate(t *testing.T) {
	now := time.Now()
	rn := setupRenewal(t, now.Add(-pki.ClientValidity-30*24*time.Hour), now)
	rn.waitRenewed(t)
}

// TestRenewsByTheHubsClock: a board whose clock is far behind (no RTC)
// judges its certificate by the hub's clock from the bootstrap answer.
func TestRenewsByTheHubsClock(t *testing.T) {
	now := time.Now()
	rn := setupRenewal(t, now, now.Add(pki.ClientValidity*3/4))
	rn.waitRenewed(t)
}
