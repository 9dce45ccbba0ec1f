package enrol

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/identity"
)

// PairRequest asks to pair without a join token, with the agent's fields
// as it sent them.
type PairRequest struct {
	PublicKey string // base64 (standard) of the Ed25519 public key
	Name      string // empty: the device ID
	// Signature is the base64 of identity.SignPairing(key, CA
	// fingerprint) for this hub's CA.
	Signature string
	// BrokerURLs are the broker URLs the agent can reach; empty: none, and
	// an approved device cannot collect (ErrNoBroker).
	BrokerURLs []string
	// Remote is the agent's address, for the log.
	Remote string
}

// Paired answers a pairing request: the device waits for approval, or it
// collected its credentials.
type Paired struct {
	DeviceID string
	// Pending: the device waits for an administrator to approve it with
	// Code, the pairing code it also shows.
	Pending bool
	Code    string
	// Credentials, when not Pending: handed out this once.
	Credentials Credentials
}

const badPairingProof = "signature: not a valid pairing proof for this public key and this hub's CA fingerprint (an agent that verified another hub signs another fingerprint)"

// Pair handles a device's pairing request: an unknown key is listed as
// pending while the pairing window is open; a pending one is told so
// again; an approved one without credentials collects them (see the
// package doc); a rejected or revoked one, or one that already has its
// credentials, is refused.
func (s *Service) Pair(ctx context.Context, req PairRequest) (Paired, error) {
	fp := s.cfg.CAFingerprint
	if fp == "" {
		return Paired{}, fail(ErrNoCA, "this hub has no CA, so agents cannot verify it: pairing needs the hub's TLS identity", nil)
	}
	pub, err := checkSigned(req.PublicKey, req.Signature, req.Name,
		func(pub ed25519.PublicKey, sig []byte) bool { return identity.VerifyPairing(pub, fp, sig) }, badPairingProof)
	if err != nil {
		return Paired{}, err
	}
	id := identity.DeviceID(pub)
	code := identity.PairingCode(fp, pub)
	d, err := s.cfg.Devices.Get(id)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		if d, err = s.addPending(id, code, pub, req); err != nil {
			return Paired{}, err
		}
	case err != nil:
		return Paired{}, fail(ErrInternal, "pair "+id+": could not look up the device", err)
	}
	switch {
	case d.Status == registry.StatusPending:
		return Paired{DeviceID: id, Pending: true, Code: code}, nil
	case d.Status == registry.StatusRejected:
		return Paired{}, fail(ErrRefused, fmt.Sprintf("an administrator rejected device %s: it may ask again only after it is deleted at the hub", id), nil)
	case d.Status == registry.StatusRevoked:
		return Paired{}, fail(ErrRefused, fmt.Sprintf("device %s is revoked: it may pair again only after it is deleted at the hub", id), nil)
	case len(d.SecretHash) != 0:
		return Paired{}, fail(ErrConflict, fmt.Sprintf("device %s already has its credentials (they are handed out once): to pair this key again, delete the device first (DELETE /api/v1/devices/%s)", id, id), nil)
	}
	creds, err := s.collect(ctx, id, pub, req)
	if err != nil {
		return Paired{}, err
	}
	return Paired{DeviceID: id, Code: code, Credentials: creds}, nil
}

// addPending lists an unknown device as pending, if the window is open.
func (s *Service) addPending(id, code string, pub ed25519.PublicKey, req PairRequest) (registry.Device, error) {
	if _, open := s.cfg.Window.ClosesAt(); !open {
		return registry.Device{}, fail(ErrRefused, "the hub's pairing window is closed: an administrator opens it with POST /api/v1/pairing (for at most 5 minutes), or gives this device a join token", nil)
	}
	name := req.Name
	if name == "" {
		name = id
	}
	d, err := s.cfg.Devices.AddPending(id, name, pub)
	switch {
	case err == nil:
		s.log.Info("device asks to pair: approve it with the code it shows", "device", id, "name", name, "pairing_code", code, "remote", req.Remote)
		s.publish(id, map[string]string{"name": name, "via": "pairing", "pairing_code": code})
		return d, nil
	case errors.Is(err, registry.ErrExists): // a concurrent request of the same key
		if d, err = s.cfg.Devices.Get(id); err != nil {
			return registry.Device{}, fail(ErrInternal, "pair "+id+": could not look up the device", err)
		}
		return d, nil
	case errors.Is(err, registry.ErrTooManyPending):
		return registry.Device{}, fail(ErrTooMany, fmt.Sprintf("%d devices already wait for approval: approve, reject or delete some first", registry.MaxPending), nil)
	case errors.Is(err, registry.ErrInvalid):
		return registry.Device{}, fail(ErrInvalid, err.Error(), nil)
	}
	return registry.Device{}, fail(ErrInternal, "pair "+id+": could not save the device", err)
}

// collect hands an approved device its credentials, once.
func (s *Service) collect(ctx context.Context, id string, pub ed25519.PublicKey, req PairRequest) (Credentials, error) {
	if len(req.BrokerURLs) == 0 {
		return Credentials{}, fail(ErrNoBroker, "no broker is reachable from the agent's network", nil)
	}
	creds, hash, err := s.newCredentials(ctx, id, pub, req.BrokerURLs)
	if err != nil {
		return Credentials{}, err
	}
	if _, err := s.cfg.Devices.SetSecret(id, hash); err != nil {
		if errors.Is(err, registry.ErrExists) {
			// A concurrent request won: the account is its.
			return Credentials{}, fail(ErrConflict, fmt.Sprintf("device %s already has its credentials", id), nil)
		}
		s.removeAccount(ctx, id)
		if errors.Is(err, registry.ErrNotAccepted) || errors.Is(err, registry.ErrNotFound) {
			return Credentials{}, fail(ErrRefused, fmt.Sprintf("device %s is no longer approved", id), nil)
		}
		return Credentials{}, fail(ErrInternal, "pair "+id+": could not save the device's credentials", err)
	}
	s.log.Info("paired device collected its credentials", "device", id, "remote", req.Remote)
	return creds, nil
}
