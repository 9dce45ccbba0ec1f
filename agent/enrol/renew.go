package enrol

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/internal/pki"
)

// Certificate renewal. The device's client certificate (pki.ClientValidity)
// is renewed once a third of its validity is left, judged by the hub's clock
// when the agent has heard it (a board without a real-time clock may think
// it is 1970). The agent authenticates with its broker credentials over
// pinned HTTPS, so even an expired certificate is renewed. The new
// certificate is used from the next broker connection on.

// hubNow is the current time by the hub's clock, as far as the agent knows
// it (its own clock until it has fetched the bootstrap answer).
func (e *Enroller) hubNow() time.Time {
	return time.Now().Add(time.Duration(e.hubOffset.Load()))
}

// noteHubTime records the hub's clock from a bootstrap answer.
func (e *Enroller) noteHubTime(hub time.Time) {
	if !hub.IsZero() {
		e.hubOffset.Store(int64(time.Until(hub)))
	}
}

type certificateResponse struct {
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
}

// Renew keeps the device's client certificate fresh until ctx is done: it
// checks every check interval, and retries a failed renewal sooner. It
// returns at once if the device has no certificate.
func (e *Enroller) Renew(ctx context.Context, check time.Duration) {
	if e.cert.Load() == nil {
		return
	}
	retryIn := time.Minute
	for {
		wait := check
		if c := e.cert.Load(); c.Leaf != nil && pki.RenewalDue(c.Leaf, e.hubNow()) {
			if err := e.renew(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				e.log.Warn("could not renew the device certificate; retrying", "not_after", c.Leaf.NotAfter, "err", err, "retry_in", retryIn)
				wait = min(retryIn, wait)
				retryIn = min(retryIn*2, time.Hour)
			} else {
				retryIn = time.Minute
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// renewHub asks the hub for a new certificate, then uses and saves it.
func (e *Enroller) renewHub(ctx context.Context) error {
	creds, _ := e.store.Get()
	base, client, err := hubClient(creds.Hub, creds.CAFingerprint)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	var resp certificateResponse
	basic := func(r *http.Request) { r.SetBasicAuth(creds.DeviceID, creds.Password) }
	if _, err := do(ctx, client, http.MethodPost, base+"/api/v1/device/certificate", nil, &resp, basic); err != nil {
		return err
	}
	c, err := clientCertificate(resp.Certificate, e.cfg.Key)
	if err != nil {
		return fmt.Errorf("the hub answered with an unusable certificate: %w", err)
	}
	e.cert.Store(&c)
	if _, err := e.store.Update(func(cur *Credentials) { cur.Certificate = resp.Certificate }); err != nil {
		// In use already; the next start renews again.
		e.log.Error("save the renewed certificate", "err", err)
	}
	e.log.Info("renewed the device certificate", "not_after", c.Leaf.NotAfter)
	return nil
}

// ClientCertificate is the tls.Config.GetClientCertificate of the broker
// connection: the certificate in use, read at each handshake, so that a
// renewed one is used from the next connection on.
func (e *Enroller) ClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := e.cert.Load(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil // none: the broker decides
}
