package enrol

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
func (e *Enroller) pair(ctx context.Context, hub string) (*Credentials, error) {
	var fp string
	if hub == "" {
		e.log.Info("looking for the hub on the LAN to pair with (mDNS); pass --hub HOST[:PORT] where multicast does not pass")
		var err error
		hub, fp, err = e.discoverForPairing(ctx)
		if err != nil {
			return nil, fmt.Errorf("pairing: %w", err)
		}
	} else {
		addr, err := hubAddr(hub)
		if err != nil {
			return nil, err
		}
		fp, err = retry(ctx, e.log, "reaching the hub to pair", func() (string, error) { return pki.ProbeCA(ctx, addr) })
		if err != nil {
			return nil, fmt.Errorf("pairing: %w", err)
		}
	}
	e.log.Info("pairing with the hub; it is trusted from now on", "hub", hub, "ca_fingerprint", fp)
	base, client, err := hubClient(hub, fp)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	announced := false // the pairing code is logged once, not at each retry
	resp, err := retry(ctx, e.log, "pairing", func() (*pairResponse, error) { return e.askToPair(ctx, client, base, fp, &announced) })
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	creds, err := checkEnrolment(&resp.enrollResponse, e.cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	creds.Hub, creds.CAFingerprint = hub, fp
	e.log.Info("approved by the hub", "device", e.id, "hub_id", creds.HubID)
	return creds, nil
}

// askToPair asks the hub at base, whose CA has fingerprint fp, to pair,
// every PairPoll while the device is pending, and returns its final answer.
// It logs the pairing code unless *announced, and sets it.
func (e *Enroller) askToPair(ctx context.Context, client *http.Client, base, fp string, announced *bool) (*pairResponse, error) {
	pub := e.cfg.Key.Public().(ed25519.PublicKey)
	code := identity.PairingCode(fp, pub)
	body, _ := json.Marshal(pairRequest{PublicKey: base64.StdEncoding.EncodeToString(pub), Name: e.cfg.Name,
		Signature: base64.StdEncoding.EncodeToString(identity.SignPairing(e.cfg.Key, fp))})
	for {
		var resp pairResponse
		status, err := do(ctx, client, http.MethodPost, base+"/api/v1/pair", body, &resp)
		if err != nil {
			return nil, err
		}
		if status != http.StatusAccepted {
			return &resp, nil
		}
		if resp.DeviceID != e.id || identity.NormalizePairingCode(resp.PairingCode) != identity.NormalizePairingCode(code) {
			return nil, errPermanent{fmt.Errorf("the hub answered for device %q with code %q, want %q and %q", resp.DeviceID, resp.PairingCode, e.id, code)}
		}
		if !*announced {
			*announced = true
			// Warn, so that it shows at every log level.
			e.log.Warn("waiting for approval: approve this device at the hub with its pairing code", "pairing_code", code, "device", e.id,
				"approve", fmt.Sprintf("POST /api/v1/devices/%s/approve {\"code\":%q}", e.id, code))
		}
		select {
		case <-ctx.Done():
			return nil, errPermanent{ctx.Err()}
		case <-time.After(e.cfg.PairPoll):
		}
	}
}

// retry calls f until it succeeds or fails permanently, waiting longer
// after each temporary failure (hub unreachable, 5xx).
func retry[T any](ctx context.Context, log *slog.Logger, what string, f func() (T, error)) (T, error) {
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
		log.Warn(what+" failed; retrying", "err", err, "retry_in", delay)
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
func (e *Enroller) discoverForPairing(ctx context.Context) (hub, fp string, err error) {
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
		}, e.log)
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
					e.log.Warn("the hub candidate does not prove the CA it announces", "instance", c.Instance, "hub", h, "ca_fingerprint", f, "proved_ca_fingerprint", got, "err", err)
					continue
				}
				e.log.Info("found the hub on the LAN", "hub", h, "instance", c.Instance)
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
