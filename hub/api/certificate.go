package api

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// CertificateResponse answers POST /api/v1/device/certificate.
type CertificateResponse struct {
	// Certificate is the device's new client certificate (PEM), for the
	// public key it enrolled with.
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
}

// renewCertificate issues the calling device a new client certificate for
// its enrolled key. The device authenticates with its broker credentials
// (HTTP Basic, over TLS), not with the certificate: a device that was off
// until its certificate expired can still renew.
func (s *server) renewCertificate(w http.ResponseWriter, r *http.Request) {
	if !secure(r) {
		writeProblem(w, http.StatusForbidden, insecureDetail)
		return
	}
	id, password, ok := r.BasicAuth()
	if !ok || protocol.ValidateID(id) != nil || !s.devAuth.Authenticate(id, []byte(password)) {
		w.Header().Set("WWW-Authenticate", `Basic realm="alicia-device"`)
		writeProblem(w, http.StatusUnauthorized, "authenticate as the device: HTTP Basic with its device ID and broker password")
		return
	}
	if s.cfg.IssueCertificate == nil {
		writeProblem(w, http.StatusServiceUnavailable, noCADetail)
		return
	}
	d, err := s.devices.Get(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	der, err := s.cfg.IssueCertificate(id, d.PublicKey)
	if err == nil {
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(der); err == nil {
			s.log.Info("device certificate renewed", "device", id, "not_after", c.NotAfter)
			writeJSON(w, http.StatusOK, CertificateResponse{
				Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), NotAfter: c.NotAfter.UTC()})
			return
		}
	}
	s.internalError(w, r, fmt.Errorf("renew the client certificate of %s: %w", id, err))
}
