package agentd

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
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
func (a *Agent) hubNow() time.Time {
	return time.Now().Add(time.Duration(a.hubOffset.Load()))
}

// noteHubTime records the hub's clock from a bootstrap answer.
func (a *Agent) noteHubTime(hub time.Time) {
	if !hub.IsZero() {
		a.hubOffset.Store(int64(time.Until(hub)))
	}
}

type certificateResponse struct {
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"not_after"`
}

// renewLoop keeps the certificate in cur fresh until ctx is done: it checks
// every RenewCheck, and retries a failed renewal sooner.
func (a *Agent) renewLoop(ctx context.Context, key ed25519.PrivateKey, creds *credentials, cur func() *tls.Certificate, set func(*tls.Certificate)) {
	retryIn := time.Minute
	for {
		wait := a.cfg.RenewCheck
		if c := cur(); c != nil && c.Leaf != nil && pki.RenewalDue(c.Leaf, a.hubNow()) {
			if err := a.renew(ctx, key, creds, set); err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Warn("could not renew the device certificate; retrying", "not_after", c.Leaf.NotAfter, "err", err, "retry_in", retryIn)
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

// renew asks the hub for a new certificate, then uses and saves it.
func (a *Agent) renew(ctx context.Context, key ed25519.PrivateKey, creds *credentials, set func(*tls.Certificate)) error {
	a.credsMu.Lock()
	hub, fp, id, password := creds.Hub, creds.CAFingerprint, creds.DeviceID, creds.Password
	a.credsMu.Unlock()
	base, err := hubURL(hub)
	if err != nil {
		return err
	}
	client := pinnedClient(fp)
	defer client.CloseIdleConnections()
	var resp certificateResponse
	basic := func(r *http.Request) { r.SetBasicAuth(id, password) }
	if _, err := do(ctx, client, http.MethodPost, base+"/api/v1/device/certificate", nil, &resp, basic); err != nil {
		return err
	}
	c, err := clientCertificate(resp.Certificate, key)
	if err != nil {
		return fmt.Errorf("the hub answered with an unusable certificate: %w", err)
	}
	set(&c)
	a.credsMu.Lock()
	creds.Certificate = resp.Certificate
	saved := *creds
	a.credsMu.Unlock()
	if err := saveCredentials(filepath.Join(a.cfg.StateDir, "credentials.json"), &saved); err != nil {
		// In use already; the next start renews again.
		a.log.Error("save the renewed certificate", "err", err)
	}
	a.log.Info("renewed the device certificate", "not_after", c.Leaf.NotAfter)
	return nil
}
