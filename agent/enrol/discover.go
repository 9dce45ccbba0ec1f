package enrol

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/alicia-home/alicia/internal/discovery"
)

// bootstrapAt asks the hub at HOST:PORT for its current broker URLs,
// waiting at most a few seconds, and notes the hub's clock.
func (e *Enroller) bootstrapAt(ctx context.Context, client *http.Client, hub string) (*bootstrap, error) {
	base, err := hubURL(hub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	b, err := fetchBootstrap(ctx, client, base)
	if err == nil {
		e.noteHubTime(b.Time)
	}
	return b, err
}

// discover finds on the LAN the hub that announces the pinned CA
// fingerprint and returns its API address, HOST:PORT. timeout 0 waits until
// ctx is done.
func (e *Enroller) discover(ctx context.Context, fingerprint string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client := pinnedClient(fingerprint)
	defer client.CloseIdleConnections()
	var hub string
	_, err := discovery.Lookup(ctx, discovery.ServiceType, func(c discovery.Candidate) bool {
		if c.TXT["fp"] != fingerprint {
			e.log.Warn("ignoring a hub that announces another CA: not the hub this device trusts (another installation, or a rogue)",
				"instance", c.Instance, "addrs", c.Addrs, "ca_fingerprint", c.TXT["fp"])
			return false
		}
		// The fingerprint is public, so anyone can announce it: take the
		// candidate only once it proves the pinned key over TLS (which
		// sends nothing secret), and otherwise keep browsing.
		for _, ip := range c.Addrs {
			if c.Port <= 0 {
				break
			}
			h := net.JoinHostPort(ip.String(), strconv.Itoa(c.Port))
			if _, err := e.bootstrapAt(ctx, client, h); err != nil {
				e.log.Warn("a candidate announcing our hub's fingerprint failed to prove it", "instance", c.Instance, "hub", h, "err", err)
				continue
			}
			hub = h
			return true
		}
		return false
	})
	if err != nil {
		return "", err
	}
	e.log.Info("found the hub on the LAN", "hub", hub)
	return hub, nil
}

// WatchHub looks for the hub on the LAN whenever connected has reported
// false for the duration after. If the pinned hub answers at a new address,
// it saves the address and the hub's broker URLs and returns true: the
// caller reconnects with the new credentials. It returns false when ctx is
// done.
func (e *Enroller) WatchHub(ctx context.Context, connected func() bool, after time.Duration) bool {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var downSince time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if connected() {
			downSince = time.Time{}
			continue
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if time.Since(downSince) < after {
			continue
		}
		downSince = time.Now() // at most one search per after
		if e.moved(ctx) {
			return true
		}
	}
}

// moved looks for the pinned hub on the LAN once, and reports whether it
// was found at a new address, usable and saved.
func (e *Enroller) moved(ctx context.Context) bool {
	creds, _ := e.store.Get()
	found, err := e.discover(ctx, creds.CAFingerprint, 5*time.Second)
	if err != nil || found == creds.Hub {
		return false
	}
	client := pinnedClient(creds.CAFingerprint)
	b, err := e.bootstrapAt(ctx, client, found)
	client.CloseIdleConnections()
	if err != nil || b.HubID != creds.HubID || usableBrokers(b.MQTTURLs) != nil {
		e.log.Warn("a hub answered at a new address but could not be used", "hub", found, "err", err)
		return false
	}
	if _, err := e.store.Update(func(c *Credentials) { c.Hub, c.MQTTURLs = found, b.MQTTURLs }); err != nil {
		e.log.Error("save credentials", "err", err)
		return false
	}
	e.log.Info("the hub moved: reconnecting at its new address", "old", creds.Hub, "new", found)
	return true
}
