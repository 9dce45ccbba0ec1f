package api

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/pki"
)

// checkCert checks that certPEM is a client certificate of the harness CA
// for device id's key, and returns it.
func (h *harness) checkCert(t *testing.T, certPEM, id string, pub ed25519.PublicKey) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(certPEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("certificate %q: not PEM", certPEM)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != id {
		t.Errorf("certificate CN = %q, want the device ID %q", c.Subject.CommonName, id)
	}
	if k, ok := c.PublicKey.(ed25519.PublicKey); !ok || !k.Equal(pub) {
		t.Errorf("certificate is not for the device's key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.Cert)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: h.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not verify as a client certificate of the hub CA: %v", err)
	}
	return c
}

func (h *harness) renew(t *testing.T, user, password string, tls bool) response {
	t.Helper()
	r := request{method: "POST", target: "/api/v1/device/certificate", tls: tls, remote: "198.18.0.11:50000"}
	if user != "" || password != "" {
		req, _ := http.NewRequest("POST", "/", nil)
		req.SetBasicAuth(user, password)
		r.auth = req.Header.Get("Authorization")
	}
	return h.send(t, r)
}

// TestRenewCertificate: a device renews its certificate with its own
// credentials, also after the old one expired; nobody else can.
func TestRenewCertificate(t *testing.T) {
	h := newHarness(t)
	key := newKey(t)
	resp := h.enrollWith(t, enrolment(key, h.joinToken(t, ""), "pi"))
	resp.mustStatus(t, http.StatusCreated)
	enr := decode[EnrollResponse](t, resp)
	old := h.checkCert(t, enr.MQTT.Certificate, enr.DeviceID, pubKey(key))

	// Long after the first certificate expired (a device that was off).
	h.clock.Advance(pki.ClientValidity + 30*24*time.Hour)
	resp = h.renew(t, enr.DeviceID, enr.MQTT.Password, true)
	resp.mustStatus(t, http.StatusOK)
	got := decode[CertificateResponse](t, resp)
	c := h.checkCert(t, got.Certificate, enr.DeviceID, pubKey(key))
	if !c.NotAfter.Equal(got.NotAfter) || !c.NotAfter.After(old.NotAfter) || !c.NotAfter.Equal(h.clock.Now().Add(pki.ClientValidity).Truncate(time.Second)) {
		t.Errorf("renewed NotAfter %s (answer says %s), old %s, want now+ClientValidity", c.NotAfter, got.NotAfter, old.NotAfter)
	}
	if c.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("the renewed certificate has the old serial number")
	}

	other := h.enroll(t, "other")
	for _, tt := range []struct {
		name, user, password string
	}{
		{"no credentials", "", ""},
		{"wrong password", enr.DeviceID, "wrong"},
		{"another device's password", enr.DeviceID, other.MQTT.Password},
		{"unknown device", "dunknown", enr.MQTT.Password},
		{"invalid id", "a+b", enr.MQTT.Password},
		{"admin token", "admin", h.admin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.renew(t, tt.user, tt.password, true)
			resp.mustProblem(t, http.StatusUnauthorized)
			if got := resp.header.Get("WWW-Authenticate"); got != `Basic realm="alicia-device"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
	// Plain HTTP from the network: the password must not travel in clear.
	h.renew(t, enr.DeviceID, enr.MQTT.Password, false).mustProblem(t, http.StatusForbidden)
	// A revoked device cannot renew.
	h.adminDo(t, "POST", "/api/v1/devices/"+enr.DeviceID+"/revoke", nil).mustStatus(t, http.StatusOK)
	h.renew(t, enr.DeviceID, enr.MQTT.Password, true).mustProblem(t, http.StatusUnauthorized)
}
