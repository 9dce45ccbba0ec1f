package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/hub/enrol"
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
	// Checked before the body, which a hub without a CA cannot judge.
	if s.cfg.CAFingerprint == "" {
		writeProblem(w, http.StatusServiceUnavailable, noCADetail)
		return
	}
	var req PairRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, err := s.enrolment.Pair(r.Context(), enrol.PairRequest{PublicKey: req.PublicKey, Name: req.Name, Signature: req.Signature,
		BrokerURLs: s.cfg.BrokerURLs(r), Remote: r.RemoteAddr})
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case p.Pending:
		writeJSON(w, http.StatusAccepted, PairPending{DeviceID: p.DeviceID, Status: string(registry.StatusPending), PairingCode: p.Code})
	default:
		writeJSON(w, http.StatusCreated, s.enrollResponse(p.Credentials))
	}
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
	d, err := s.devices.Get(id)
	if err != nil {
		s.writeError(w, r, err)
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
	d, err = s.decisions.Approve(id)
	if err != nil {
		s.writeError(w, r, decisionError(id, err))
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
	d, err := s.decisions.Reject(id)
	if err != nil {
		s.writeError(w, r, decisionError(id, err))
		return
	}
	s.log.Info("device rejected", "device", id, "name", d.Name)
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

// decisionError says which device is not pending (registry.ErrNotAccepted
// answers 409).
func decisionError(id string, err error) error {
	if errors.Is(err, registry.ErrNotAccepted) {
		return fmt.Errorf("device %s is not pending: %w", id, err)
	}
	return err
}
