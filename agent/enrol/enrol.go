package enrol

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

// ErrNotEnrolled is returned by Credentials when the device has no
// credentials and no way to get them (neither a join token nor Pair).
var ErrNotEnrolled = errors.New("not enrolled")

// Config configures an Enroller.
type Config struct {
	// Key is the device's identity key. Required.
	Key ed25519.PrivateKey
	// Name is the display name the device enrols with.
	Name string
	// Hub is the hub's API address HOST[:PORT] given by the user; empty:
	// the saved one, or the hub found on the LAN.
	Hub string
	// JoinToken enrols a device without credentials.
	JoinToken string
	// Pair, without a JoinToken, pairs a device without credentials.
	Pair bool
	// PairPoll is how often a pending device asks whether it was approved.
	// Default 2s.
	PairPoll time.Duration
	// NoMDNS forbids looking for the hub on the LAN.
	NoMDNS bool
	// Logger; nil discards.
	Logger *slog.Logger
}

// Enroller gets and keeps the device's credentials: it enrols or pairs
// once, learns the hub's current broker addresses, finds a hub that moved,
// and renews the client certificate. All changes go through its Store.
type Enroller struct {
	cfg   Config
	id    string
	store *Store
	log   *slog.Logger
	// renew renews the certificate (renewHub; replaced in tests).
	renew func(context.Context) error

	// cert is the client certificate in use (nil: none).
	cert atomic.Pointer[tls.Certificate]
	// hubOffset is the hub's clock minus ours, in nanoseconds, from the
	// last bootstrap answer.
	hubOffset atomic.Int64
}

// New returns an Enroller keeping its credentials in store. It does no I/O.
func New(cfg Config, store *Store) (*Enroller, error) {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("enrol: no device key")
	}
	if store == nil {
		return nil, errors.New("enrol: no credentials store")
	}
	if cfg.Hub != "" {
		if _, err := hubURL(cfg.Hub); err != nil {
			return nil, err
		}
	}
	if cfg.PairPoll <= 0 {
		cfg.PairPoll = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Enroller{cfg: cfg, id: identity.DeviceID(cfg.Key.Public().(ed25519.PublicKey)), store: store, log: cfg.Logger}
	e.renew = e.renewHub
	return e, nil
}

// Credentials returns the device's credentials: the saved ones, with the
// broker addresses refreshed from the hub when it answers, or new ones
// from an enrolment with the join token or a pairing. It loads the client
// certificate they hold for ClientCertificate and Renew.
func (e *Enroller) Credentials(ctx context.Context) (Credentials, error) {
	creds, ok := e.store.Get()
	var err error
	switch {
	case ok && creds.DeviceID != e.id:
		return Credentials{}, fmt.Errorf("%s belongs to device %s, but the identity key is of %s: the key was replaced; delete the credentials and enrol again", e.store.Path(), creds.DeviceID, e.id)
	case ok:
		creds, err = e.refresh(ctx, creds)
	case e.cfg.JoinToken == "" && e.cfg.Pair:
		creds, err = e.obtain(ctx, "", e.pair)
	case e.cfg.JoinToken == "":
		return Credentials{}, fmt.Errorf("%w: start once with --join-token TOKEN (an admin creates one with POST /api/v1/join-tokens on the hub), or with --pair while the hub's pairing window is open", ErrNotEnrolled)
	default:
		creds, err = e.enrolWithToken(ctx)
	}
	if err != nil {
		return Credentials{}, err
	}
	if creds.Certificate != "" {
		c, err := clientCertificate(creds.Certificate, e.cfg.Key)
		if err != nil {
			return Credentials{}, fmt.Errorf("credentials: %w (delete them and enrol again)", err)
		}
		e.cert.Store(&c)
	}
	return creds, nil
}

// obtain gets new credentials from get (enrolment or pairing) at the hub
// (the configured one, else found on the LAN with the fingerprint fp, or
// any hub for pairing) and saves them.
func (e *Enroller) obtain(ctx context.Context, fp string, get func(ctx context.Context, hub string) (*Credentials, error)) (Credentials, error) {
	hub := e.cfg.Hub
	if hub == "" && e.cfg.NoMDNS {
		if fp == "" {
			return Credentials{}, errors.New("no hub address to pair with: pass --hub HOST[:PORT] (looking for the hub with mDNS is turned off)")
		}
		return Credentials{}, errors.New("no hub address: pass --hub HOST[:PORT] (looking for the hub with mDNS is turned off)")
	}
	creds, err := get(ctx, hub)
	if err != nil {
		return Credentials{}, err
	}
	if err := e.store.Save(*creds); err != nil {
		return Credentials{}, fmt.Errorf("save credentials: %w", err)
	}
	return *creds, nil
}

// enrolWithToken enrols with the join token at the hub it names by its CA
// fingerprint.
func (e *Enroller) enrolWithToken(ctx context.Context) (Credentials, error) {
	_, fp, err := identity.ParseJoinToken(e.cfg.JoinToken)
	if err != nil {
		return Credentials{}, err
	}
	if fp == "" {
		return Credentials{}, errors.New("the join token does not name the hub's CA (it lacks the '.<fingerprint>' part): create a new one with POST /api/v1/join-tokens")
	}
	creds, err := e.obtain(ctx, fp, func(ctx context.Context, hub string) (*Credentials, error) {
		if hub == "" {
			// No address given: find the hub on the LAN. mDNS is only a
			// hint: the candidate must announce the pinned fingerprint,
			// and the TLS handshake proves it before anything is sent.
			e.log.Info("looking for the hub on the LAN (mDNS); pass --hub HOST[:PORT] where multicast does not pass")
			if hub, err = e.discover(ctx, fp, 0); err != nil {
				return nil, fmt.Errorf("finding the hub: %w", err)
			}
		}
		return e.enrolWithRetry(ctx, hub, fp)
	})
	if err == nil {
		e.log.Info("enrolled with the hub", "device", e.id, "hub_id", creds.HubID)
	}
	return creds, err
}

// enrolWithRetry enrols at hub, pinning the CA fingerprint fp, retrying
// while the hub is unreachable or answers 5xx, and giving up at once on a
// refusal.
func (e *Enroller) enrolWithRetry(ctx context.Context, hub, fp string) (*Credentials, error) {
	base, client, err := hubClient(hub, fp)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	creds, err := retry(ctx, e.log, "enrolment at "+base, func() (*Credentials, error) {
		return e.enrol(ctx, client, base, e.cfg.Key, e.cfg.JoinToken, e.cfg.Name)
	})
	var perm errPermanent
	switch {
	case err == nil:
		creds.Hub, creds.CAFingerprint = hub, fp
		return creds, nil
	case errors.As(err, &perm) && ctx.Err() == nil:
		return nil, fmt.Errorf("enrolment refused: %w", err)
	default:
		return nil, fmt.Errorf("enrolment: %w", err)
	}
}

// refresh learns the current broker address of an enrolled device's hub,
// but does not wait for the hub: a device keeps working with what it knows.
func (e *Enroller) refresh(ctx context.Context, creds Credentials) (Credentials, error) {
	hub := e.cfg.Hub
	if hub == "" {
		hub = creds.Hub
	}
	client := pinnedClient(creds.CAFingerprint)
	defer client.CloseIdleConnections()
	b, err := e.bootstrapAt(ctx, client, hub)
	if err != nil && e.cfg.Hub == "" && !e.cfg.NoMDNS {
		// The hub may have moved: look for it on the LAN for a moment.
		if found, derr := e.discover(ctx, creds.CAFingerprint, 5*time.Second); derr == nil && found != hub {
			e.log.Info("found the hub at a new address", "old", hub, "new", found)
			if nb, nerr := e.bootstrapAt(ctx, client, found); nerr == nil {
				hub, b, err = found, nb, nil
			}
		}
	}
	var perm errPermanent
	switch {
	case errors.As(err, &perm) && errors.Is(err, pki.ErrWrongHub):
		return creds, fmt.Errorf("%w: the hub's identity changed; if it was re-installed on purpose, re-pair this device (delete %s and enrol with a new join token)", err, e.store.Path())
	case err != nil:
		e.log.Warn("hub not reachable; using the saved broker address", "hub", hub, "err", err)
	case b.HubID != creds.HubID:
		return creds, fmt.Errorf("the hub at %s is %s, but this device is enrolled with %s: refusing a different hub (delete %s to enrol again)", hub, b.HubID, creds.HubID, e.store.Path())
	case !slices.Equal(b.MQTTURLs, creds.MQTTURLs) || creds.Hub != hub:
		if err := usableBrokers(b.MQTTURLs); err != nil {
			e.log.Warn("ignoring broker addresses from the hub's bootstrap answer; using the saved ones", "err", err)
			break
		}
		saved, err := e.store.Update(func(c *Credentials) { c.MQTTURLs, c.Hub = b.MQTTURLs, hub })
		if err != nil {
			return creds, fmt.Errorf("save credentials: %w", err)
		}
		return saved, nil
	}
	return creds, nil
}
