package pki

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// RenewBefore is how long before its expiry a ServerCerts replaces the
// hub's server certificate: a third of ServerValidity, so that a hub whose
// renewal keeps failing has months of warning before agents are locked out.
const RenewBefore = ServerValidity / 3

// ServerCerts is the hub's TLS server certificate, re-issued by the CA
// before it expires, so that a hub that runs for longer than ServerValidity
// without a restart keeps its agents. Use GetCertificate as
// tls.Config.GetCertificate. It is safe for concurrent use.
type ServerCerts struct {
	now   func() time.Time
	issue func(now time.Time) (tls.Certificate, error)

	cur atomic.Pointer[tls.Certificate] // never modified once stored
	mu  sync.Mutex                      // serialises renewals
}

// NewServerCerts issues the first certificate for hubID, names and ips at
// now() (as IssueServer), and later ones the same way. A nil now means
// time.Now.
func NewServerCerts(ca *CA, hubID string, names []string, ips []net.IP, now func() time.Time) (*ServerCerts, error) {
	if now == nil {
		now = time.Now
	}
	return newServerCerts(now, func(t time.Time) (tls.Certificate, error) {
		return ca.IssueServer(hubID, names, ips, t)
	})
}

func newServerCerts(now func() time.Time, issue func(time.Time) (tls.Certificate, error)) (*ServerCerts, error) {
	s := &ServerCerts{now: now, issue: issue}
	cert, err := issue(now())
	if err != nil {
		return nil, err
	}
	s.cur.Store(&cert)
	return s, nil
}

// renewalDue reports whether cert must be replaced at t: less than
// RenewBefore of its validity is left, or it is not valid yet (the clock
// was set back since it was issued, and clients that check the time
// against their own clock would refuse it).
func renewalDue(cert *tls.Certificate, t time.Time) bool {
	return !t.Before(cert.Leaf.NotAfter.Add(-RenewBefore)) || t.Before(cert.Leaf.NotBefore)
}

// GetCertificate returns the current certificate, issuing a new one first
// when less than RenewBefore of its validity is left (or the clock has gone
// back before its start). The chain is the leaf and the CA certificate, as
// from IssueServer. If re-issuing fails it keeps serving the old
// certificate, and tries again on the next call; it returns an error only
// if the old certificate has already expired.
func (s *ServerCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := s.cur.Load(); !renewalDue(cert, s.now()) {
		return cert, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Another handshake may have renewed it while this one waited.
	cert := s.cur.Load()
	t := s.now()
	if !renewalDue(cert, t) {
		return cert, nil
	}
	next, err := s.issue(t)
	if err != nil {
		if t.After(cert.Leaf.NotAfter) {
			return nil, fmt.Errorf("pki: renew the hub's server certificate, which expired %s: %w", cert.Leaf.NotAfter.Format(time.RFC3339), err)
		}
		return cert, nil
	}
	s.cur.Store(&next)
	return &next, nil
}

// Current returns the certificate served now, without renewing it.
func (s *ServerCerts) Current() *tls.Certificate { return s.cur.Load() }
