package agentd

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/discovery"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

// Pairing without a join token (Config.Pair). The agent has no fingerprint
// to pin, so it trusts the hub it finds on first use: the only hub that
// answers on the LAN (or the one named by --hub), whose CA it learns from
// the TLS handshake and pins from then on. It sends no secret: only its
// public key and a proof bound to that CA. The hub lists it as pending; an
// administrator approves it by typing the pairing code the agent logs,
// which both sides derive from the CA fingerprint and the device's key, so
// a code that differs means another device or another hub.

type pairRequest struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
}

// pairResponse is either answer of POST /api/v1/pair: 202 pending (status,
// pairing_code) or 201 approved (hub_id, mqtt).
type pairResponse struct {
	enrollResponse
	Status      string `json:"status"`
	PairingCode string `json:"pairing_code"`
}

// pairSettle is how long pairing keeps listening after the first hub
// answers on the LAN, to notice a second one.
const pairSettle = 3 * time.Second

// pair finds the hub (hub, or the only one on the LAN), pins its CA, and
// asks to pair until an administrator approves or rejects the device.
func (a *Agent) pair(ctx context.Context, key ed25519.PrivateKey, id, name, hub string) (*credentials, error) {
	var fp string
	if hub == "" {
		a.log.Info("looking for the hub on the LAN to pair with (mDNS); pass --hub HOST[:PORT] where multicast does not pass")
		var err error
		hub, fp, err = a.discoverForPairing(ctx)
		if err != nil {
			return nil, fmt.Errorf("agent: pairing: %w", err)
		}
	} else {
		addr, err := hubAddr(hub)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		fp, err = retry(ctx, a, "reaching the hub to pair", func() (string, error) { return pki.ProbeCA(ctx, addr) })
		if err != nil {
			return nil, fmt.Errorf("agent: pairing: %w", err)
		}
	}
	pub := key.Public().(ed25519.PublicKey)
	code := identity.PairingCode(fp, pub)
	a.log.Info("pairing with the hub; it is trusted from now on", "hub", hub, "ca_fingerprint", fp)
	base, err := hubURL(hub)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	client := pinnedClient(fp)
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(pairRequest{PublicKey: base64.StdEncoding.EncodeToString(pub), Name: name,
		Signature: base64.StdEncoding.EncodeToString(identity.SignPairing(key, fp))})
	announced := false
	resp, err := retry(ctx, a, "pairing", func() (*pairResponse, error) {
		for {
			var resp pairResponse
			status, err := do(ctx, client, http.MethodPost, base+"/api/v1/pair", body, &resp)
			if err != nil {
				return nil, err
			}
			if status != http.StatusAccepted {
				return &resp, nil
			}
			if resp.DeviceID != id || identity.NormalizePairingCode(resp.PairingCode) != identity.NormalizePairingCode(code) {
				return nil, errPermanent{fmt.Errorf("the hub answered for device %q with code %q, want %q and %q", resp.DeviceID, resp.PairingCode, id, code)}
			}
			if !announced {
				announced = true
				// Warn, so that it shows at every log level.
				a.log.Warn("waiting for approval: approve this device at the hub with its pairing code", "pairing_code", code, "device", id,
					"approve", fmt.Sprintf("POST /api/v1/devices/%s/approve {\"code\":%q}", id, code))
			}
			select {
			case <-ctx.Done():
				return nil, errPermanent{ctx.Err()}
			case <-time.After(a.cfg.PairPoll):
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("agent: pairing: %w", err)
	}
	creds, err := checkEnrolment(&resp.enrollResponse, key)
	if err != nil {
		return nil, fmt.Errorf("agent: pairing: %w", err)
	}
	creds.Hub, creds.CAFingerprint = hub, fp
	a.log.Info("approved by the hub", "device", id, "hub_id", creds.HubID)
	return creds, nil
}

// retry calls f until it succeeds or fails permanently, waiting longer
// after each temporary failure (hub unreachable, 5xx).
func retry[T any](ctx context.Context, a *Agent, what string, f func() (T, error)) (T, error) {
	delay := 250 * time.Millisecond
	for {
		v, err := f()
		var perm errPermanent
		if err == nil || errors.As(err, &perm) {
			return v, err
		}
		if ctx.Err() != nil {
			// Stopped while (or right after) an attempt failed: a stop, not
			// that attempt's failure.
			return v, ctx.Err()
		}
		a.log.Warn(what+" failed; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// discoverForPairing waits for a hub on the LAN and returns its API address
// and CA fingerprint. With more than one hub answering it refuses: pairing
// cannot tell which is this household's (a join token names it).
func (a *Agent) discoverForPairing(ctx context.Context) (hub, fp string, err error) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// By announced fingerprint, then instance: the fingerprint is public, so
	// a rogue may announce the real hub's; every announcer of it is tried.
	var (
		mu   sync.Mutex
		seen = map[string]map[string]discovery.Candidate{}
	)
	first := make(chan struct{})
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- discovery.Browse(bctx, discovery.ServiceType, func(c discovery.Candidate) {
			f := c.TXT["fp"]
			if f == "" || c.Port <= 0 || len(c.Addrs) == 0 {
				return
			}
			mu.Lock()
			if seen[f] == nil {
				seen[f] = map[string]discovery.Candidate{}
			}
			seen[f][c.Instance] = c
			mu.Unlock()
			once.Do(func() { close(first) })
		}, a.log)
	}()
	select {
	case <-first:
	case <-ctx.Done():
		cancel()
		<-done
		return "", "", ctx.Err()
	}
	// Another hub may answer a moment later.
	select {
	case <-time.After(pairSettle):
	case <-ctx.Done():
	}
	cancel()
	<-done
	if ctx.Err() != nil {
		return "", "", ctx.Err()
	}
	if len(seen) > 1 {
		var fps []string
		for f, byInstance := range seen {
			var names []string
			for name := range byInstance {
				names = append(names, name)
			}
			slices.Sort(names)
			fps = append(fps, fmt.Sprintf("%s (%s…)", strings.Join(names, " / "), f[:min(12, len(f))]))
		}
		slices.Sort(fps)
		return "", "", fmt.Errorf("%d hubs answer on this LAN (%s): pairing cannot tell which is yours; use a join token, which names the hub, or --hub", len(seen), strings.Join(fps, ", "))
	}
	for f, byInstance := range seen {
		for _, c := range byInstance {
			for _, ip := range c.Addrs {
				h := net.JoinHostPort(ip.String(), strconv.Itoa(c.Port))
				got, err := pki.ProbeCA(ctx, h)
				if err != nil || got != f {
					a.log.Warn("the hub candidate does not prove the CA it announces", "instance", c.Instance, "hub", h, "announced", f, "proved", got, "err", err)
					continue
				}
				a.log.Info("found the hub on the LAN", "hub", h, "instance", c.Instance)
				return h, f, nil
			}
		}
	}
	return "", "", errors.New("the hub that answered on the LAN did not prove the CA it announces")
}

// hubAddr turns HOST[:PORT] into HOST:PORT (default port 8470).
func hubAddr(hub string) (string, error) {
	base, err := hubURL(hub)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}
