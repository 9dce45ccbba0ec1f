package api

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/pairing"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/identity"
)

// Pairing without a join token: an administrator opens the pairing window
// (POST /api/v1/pairing, at most five minutes); an agent that found the hub
// asks to pair (POST /api/v1/pair) and is listed as pending with a short
// code it also prints; the administrator approves it by typing that code
// (POST /api/v1/devices/{id}/approve) or rejects it; the agent, asking
// again, then collects its credentials once.
//
// The window bounds when new devices may ask, not when they may be decided:
// a device that became pending while it was open can be approved later, and
// stays pending until approved, rejected or deleted, or for an hour
// (registry.DefaultPendingTTL; then it is deleted and must ask again during
// a window). At most registry.MaxPending wait. The pairing proof is a signature over a fixed
// message, sent only to the hub whose CA it names (inside TLS pinned to that
// CA); approval needs the code from the device's own log.

// noPairing is the window of a hub configured without one: never open.
type noPairing struct{}

func (noPairing) Open(time.Duration) (time.Time, error) {
	return time.Time{}, errors.New("pairing is not available on this hub")
}
func (noPairing) Close()                      {}
func (noPairing) ClosesAt() (time.Time, bool) { return time.Time{}, false }

// PairingWindowRequest is the (optional) body of POST /api/v1/pairing.
type PairingWindowRequest struct {
	Duration string `json:"duration,omitempty"` // Go duration, default and at most "5m"
}

// PairingWindowState answers the pairing-window routes.
type PairingWindowState struct {
	Open     bool       `json:"open"`
	ClosesAt *time.Time `json:"closes_at,omitempty"`
	// CAFingerprint lets an administrator compare it with what an agent
	// logs when it pairs.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
}

func (s *server) windowState() PairingWindowState {
	st := PairingWindowState{CAFingerprint: s.cfg.CAFingerprint}
	if until, open := s.cfg.Pairing.ClosesAt(); open {
		st.Open, st.ClosesAt = true, &until
	}
	return st
}

func (s *server) getPairing(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.windowState())
}

func (s *server) openPairing(w http.ResponseWriter, r *http.Request) {
	req := PairingWindowRequest{Duration: pairing.MaxDuration.String()}
	if !decodeOptionalBody(w, r, &req) {
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("duration: %v (use a duration such as \"2m\"; at most %s)", err, pairing.MaxDuration))
		return
	}
	if s.cfg.CAFingerprint == "" {
		writeProblem(w, http.StatusServiceUnavailable, noCADetail)
		return
	}
	if _, err := s.cfg.Pairing.Open(d); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("pairing window opened", "for", d)
	writeJSON(w, http.StatusOK, s.windowState())
}

func (s *server) closePairing(w http.ResponseWriter, _ *http.Request) {
	s.cfg.Pairing.Close()
	s.log.Info("pairing window closed")
	writeJSON(w, http.StatusOK, s.windowState())
}

const noCADetail = "this hub has no CA, so agents cannot verify it: pairing needs the hub's TLS identity"

// PairRequest is the body of POST /api/v1/pair.
type PairRequest struct {
	PublicKey string `json:"public_key"` // base64 (standard) of the Ed25519 public key
	Name      string `json:"name"`
	// Signature is the base64 of identity.SignPairing(key, CA fingerprint):
	// the fingerprint of the hub the agent verified, so that a request made
	// to a rogue hub is worthless here.
	Signature string `json:"signature"`
}

// PairPending answers a pairing request that waits for approval.
type PairPending struct {
	DeviceID string `json:"device_id"`
	Status   string `json:"status"` // "pending"
	// PairingCode is what the agent also shows; an administrator approves
	// the device by typing it.
	PairingCode string `json:"pairing_code"`
}

func (s *server) pair(w http.ResponseWriter, r *http.Request) {
	if !secure(r) {
		writeProblem(w, http.StatusForbidden, insecureDetail)
		return
	}
	if s.cfg.CAFingerprint == "" {
		writeProblem(w, http.StatusServiceUnavailable, noCADetail)
		return
	}
	var req PairRequest
	if !decodeBody(w, r, &req) {
		return
	}
	pub, ok := checkSigned(w, req.PublicKey, req.Signature, req.Name,
		func(pub ed25519.PublicKey, sig []byte) bool {
			return identity.VerifyPairing(pub, s.cfg.CAFingerprint, sig)
		},
		"signature: not a valid pairing proof for this public key and this hub's CA fingerprint (an agent that verified another hub signs another fingerprint)")
	if !ok {
		return
	}
	id := identity.DeviceID(pub)
	code := identity.PairingCode(s.cfg.CAFingerprint, pub)
	d, err := s.cfg.Devices.Get(id)
	if errors.Is(err, registry.ErrNotFound) {
		if _, open := s.cfg.Pairing.ClosesAt(); !open {
			writeProblem(w, http.StatusForbidden, "the hub's pairing window is closed: an administrator opens it with POST /api/v1/pairing (for at most 5 minutes), or gives this device a join token")
			return
		}
		name := req.Name
		if name == "" {
			name = id
		}
		d, err = s.cfg.Devices.AddPending(id, name, pub)
		switch {
		case err == nil:
			s.log.Info("device asks to pair: approve it with the code it shows", "device", id, "name", name, "pairing_code", code, "remote", r.RemoteAddr)
			s.cfg.Events.Publish(events.DeviceJoined, id, map[string]string{"name": name, "via": "pairing", "pairing_code": code})
		case errors.Is(err, registry.ErrExists): // a concurrent request of the same key
			d, err = s.cfg.Devices.Get(id)
		case errors.Is(err, registry.ErrTooManyPending):
			writeProblem(w, http.StatusTooManyRequests, fmt.Sprintf("%d devices already wait for approval: approve, reject or delete some first", registry.MaxPending))
			return
		case errors.Is(err, registry.ErrInvalid):
			writeProblem(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if err != nil {
		s.log.Error("pair", "device", id, "err", err)
		writeProblem(w, http.StatusInternalServerError, "could not look up or save the device: "+err.Error())
		return
	}
	switch {
	case d.Status == registry.StatusPending:
		writeJSON(w, http.StatusAccepted, PairPending{DeviceID: id, Status: string(d.Status), PairingCode: code})
	case d.Status == registry.StatusRejected:
		writeProblem(w, http.StatusForbidden, fmt.Sprintf("an administrator rejected device %s: it may ask again only after it is deleted at the hub", id))
	case d.Status == registry.StatusRevoked:
		writeProblem(w, http.StatusForbidden, fmt.Sprintf("device %s is revoked: it may pair again only after it is deleted at the hub", id))
	case len(d.SecretHash) != 0:
		writeProblem(w, http.StatusConflict, fmt.Sprintf("device %s already has its credentials (they are handed out once): to pair this key again, delete the device first (DELETE /api/v1/devices/%s)", id, id))
	default:
		s.collect(w, r, id, pub)
	}
}

// collect hands an approved device its credentials, once.
func (s *server) collect(w http.ResponseWriter, r *http.Request, id string, pub ed25519.PublicKey) {
	urls := s.cfg.BrokerURLs(r)
	if len(urls) == 0 {
		writeProblem(w, http.StatusServiceUnavailable, noBrokerDetail)
		return
	}
	access, hash, ok := s.newCredentials(w, r, id, pub, urls)
	if !ok {
		return
	}
	if _, err := s.cfg.Devices.SetSecret(id, hash); err != nil {
		if !errors.Is(err, registry.ErrExists) {
			// (With ErrExists a concurrent request won: the account is its.)
			s.removeAccount(r, id)
		}
		switch {
		case errors.Is(err, registry.ErrExists):
			writeProblem(w, http.StatusConflict, fmt.Sprintf("device %s already has its credentials", id))
		case errors.Is(err, registry.ErrNotAccepted), errors.Is(err, registry.ErrNotFound):
			writeProblem(w, http.StatusForbidden, fmt.Sprintf("device %s is no longer approved", id))
		default:
			s.log.Error("pair: save credentials", "device", id, "err", err)
			writeProblem(w, http.StatusInternalServerError, "could not save the device: "+err.Error())
		}
		return
	}
	s.log.Info("paired device collected its credentials", "device", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, EnrollResponse{DeviceID: id, HubID: s.cfg.HubID, MQTT: access})
}

// ApproveRequest is the body of POST /api/v1/devices/{id}/approve.
type ApproveRequest struct {
	// Code is the pairing code the device shows (in its log); dashes,
	// spaces and case do not matter.
	Code string `json:"code"`
}

func (s *server) approveDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	var req ApproveRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Code == "" {
		writeProblem(w, http.StatusBadRequest, "code: required: type the pairing code the device shows in its log")
		return
	}
	d, err := s.cfg.Devices.Get(id)
	if err != nil {
		s.deviceError(w, err)
		return
	}
	if d.Status != registry.StatusPending {
		writeProblem(w, http.StatusConflict, fmt.Sprintf("device %s is %s, not pending", id, d.Status))
		return
	}
	if identity.NormalizePairingCode(req.Code) != identity.NormalizePairingCode(identity.PairingCode(s.cfg.CAFingerprint, d.PublicKey)) {
		s.log.Warn("approval refused: wrong pairing code", "device", id)
		writeProblem(w, http.StatusUnprocessableEntity, "code: does not match this device's pairing code: approve only the device that shows this code (another code means another device, or an agent that reached another hub)")
		return
	}
	d, err = s.cfg.Devices.Approve(id)
	if err != nil {
		s.decisionError(w, id, err)
		return
	}
	s.log.Info("device approved", "device", id, "name", d.Name)
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

func (s *server) rejectDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	d, err := s.cfg.Devices.Reject(id)
	if err != nil {
		s.decisionError(w, id, err)
		return
	}
	s.log.Info("device rejected", "device", id, "name", d.Name)
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

func (s *server) decisionError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, registry.ErrNotAccepted) {
		writeProblem(w, http.StatusConflict, fmt.Sprintf("device %s is not pending: %v", id, err))
		return
	}
	s.deviceError(w, err)
}
