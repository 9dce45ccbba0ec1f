package registry

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Status is where a device is in its lifecycle and, once accepted, whether
// it is connected:
//
//	pending ──approve──▶ offline ⇄ online ──revoke──▶ revoked
//	   └─────reject────▶ rejected
//
// A device enrolled with a join token starts offline (accepted). Pending,
// rejected and revoked devices have no working credentials.
type Status string

// Statuses.
const (
	// StatusPending: the device asked to pair during a pairing window and
	// waits for an administrator to approve or reject it.
	StatusPending Status = "pending"
	// StatusRejected: an administrator rejected the pairing request. Final:
	// delete the device to let its key ask again.
	StatusRejected Status = "rejected"
	// StatusOffline: enrolled, but not connected (or not heard from).
	StatusOffline Status = "offline"
	// StatusOnline: connected and sending heartbeats.
	StatusOnline Status = "online"
	// StatusRevoked: an administrator revoked the device; its credentials
	// no longer work and its messages are ignored. Final: delete the device
	// to enrol its key again.
	StatusRevoked Status = "revoked"
)

// Accepted reports whether the device was accepted (enrolled with a join
// token, or approved) and not revoked: only then may it use the broker.
func (s Status) Accepted() bool { return s == StatusOnline || s == StatusOffline }

// Lifecycle states, as the API reports them next to the status.
const (
	StatePending  = "pending"
	StateAccepted = "accepted"
	StateRejected = "rejected"
	StateRevoked  = "revoked"
)

// State returns the lifecycle state of a status: pending, accepted,
// rejected or revoked.
func (s Status) State() string {
	switch s {
	case StatusPending:
		return StatePending
	case StatusRejected:
		return StateRejected
	case StatusRevoked:
		return StateRevoked
	}
	return StateAccepted
}

// Reasons for the last status change.
const (
	ReasonPairing          = "pairing_requested" // asked to pair; waits for approval
	ReasonApproved         = "approved"          // an administrator approved the pairing request
	ReasonRejected         = "rejected"          // an administrator rejected the pairing request
	ReasonEnrolled         = "enrolled"          // enrolled, not yet connected
	ReasonStartup          = "startup"           // the agent announced itself
	ReasonShutdown         = "shutdown"          // the agent stopped cleanly
	ReasonLost             = "connection_lost"   // the broker published its Last Will
	ReasonHeartbeatTimeout = "heartbeat_timeout" // three heartbeat intervals passed in silence
	ReasonHeartbeat        = "heartbeat"         // a heartbeat arrived while it was offline
	ReasonRevoked          = "revoked"           // an administrator revoked it
)

// ErrRevoked is returned by Handle for messages from a revoked device.
var ErrRevoked = errors.New("device revoked")

// ErrNotAccepted is returned by Handle for messages from a pending or
// rejected device, and by Approve, Reject and SetSecret for a device in the
// wrong state.
var ErrNotAccepted = errors.New("device not accepted")

// ErrTooManyPending is returned by AddPending when MaxPending devices
// already wait for approval.
var ErrTooManyPending = errors.New("too many devices waiting for approval")

// MaxPending bounds the devices waiting for approval, so that a flood of
// pairing requests during an open window cannot fill the store.
const MaxPending = 32

// Device is one enrolled device.
type Device struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// NameSet is true once an administrator renamed the device; the name
	// the agent reports no longer replaces it.
	NameSet bool `json:"name_set,omitempty"`
	// PublicKey is the device's Ed25519 public key; the ID is derived from it.
	PublicKey []byte `json:"public_key"`
	// SecretHash is the SHA-256 of the device's broker password; empty
	// until the device has collected its credentials.
	SecretHash []byte `json:"secret_hash"`

	Status       Status    `json:"status"`
	StatusReason string    `json:"status_reason"`
	StatusSince  time.Time `json:"status_since"`
	// Session is the connection session of the latest "online" status (see
	// protocol.Status.Session); a Last Will of another session is stale.
	Session string `json:"session,omitempty"`

	AgentVersion string          `json:"agent_version,omitempty"`
	HeartbeatMS  int64           `json:"heartbeat_ms,omitempty"`
	Facts        *protocol.Facts `json:"facts,omitempty"`
	// Hardware is what the device's HAL offers, from its latest register
	// message; nil if it runs without one.
	Hardware *protocol.Hardware `json:"hardware,omitempty"`

	EnrolledAt time.Time `json:"enrolled_at"`
	FirstSeen  time.Time `json:"first_seen,omitzero"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
}

// clone returns a deep copy, so callers never share the registry's maps.
func (d *Device) clone() Device {
	c := *d
	c.Labels = maps.Clone(d.Labels)
	if d.Facts != nil {
		f := *d.Facts
		c.Facts = &f
	}
	if d.Hardware != nil {
		c.Hardware = cloneHardware(d.Hardware)
	}
	return c
}

// checkSecret reports whether secret hashes to the stored hash, in constant time.
func (d *Device) checkSecret(secret []byte) bool {
	h := sha256.Sum256(secret)
	return len(d.SecretHash) == len(h) && subtle.ConstantTimeCompare(h[:], d.SecretHash) == 1
}

// Patch changes a device's name and labels. Nil fields are left alone; a
// label set to "" is removed.
type Patch struct {
	Name   *string
	Labels map[string]string
}

// ErrNotFound is returned for an unknown device ID.
var ErrNotFound = errors.New("device not found")

// ErrExists is returned by Enroll for a device that is already enrolled.
var ErrExists = errors.New("device already enrolled")

// ErrInvalid wraps validation errors of a Patch or an enrolment.
var ErrInvalid = errors.New("invalid")

// Limits on names and labels.
const (
	MaxNameLen     = 128
	MaxLabels      = 32
	MaxLabelKeyLen = 63
	MaxLabelValLen = 255
)

// ValidateName reports why name cannot be a device's display name, or
// nil: it must not be blank, is at most MaxNameLen bytes, and passes
// protocol.CheckDisplayText (valid UTF-8, no control characters, no
// bidirectional controls). Errors wrap ErrInvalid. Enrolment, pairing and
// renaming refuse such a name; a register message's is ignored.
func ValidateName(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: name: must not be blank", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name: longer than %d bytes", ErrInvalid, MaxNameLen)
	}
	if err := protocol.CheckDisplayText(name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalid, err)
	}
	return nil
}

// validateLabelKey allows keys like "room" or "home.floor-1": lowercase
// letters, digits, '.', '_', '-', starting with a letter.
func validateLabelKey(k string) error {
	if k == "" || len(k) > MaxLabelKeyLen {
		return fmt.Errorf("%w: label key %q: must be 1 to %d bytes", ErrInvalid, k, MaxLabelKeyLen)
	}
	if k[0] < 'a' || k[0] > 'z' {
		return fmt.Errorf("%w: label key %q: must start with a lowercase letter", ErrInvalid, k)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: label key %q: byte %d (%q) not allowed; use a-z, 0-9, '.', '_', '-'", ErrInvalid, k, i, c)
		}
	}
	return nil
}

func validateLabelValue(k, v string) error {
	if len(v) > MaxLabelValLen {
		return fmt.Errorf("%w: label %q: value longer than %d bytes", ErrInvalid, k, MaxLabelValLen)
	}
	if err := protocol.CheckDisplayText(v); err != nil {
		return fmt.Errorf("%w: label %q: value: %w", ErrInvalid, k, err)
	}
	return nil
}

func cloneHardware(h *protocol.Hardware) *protocol.Hardware {
	c := *h
	c.Lines = slices.Clone(h.Lines)
	c.I2C = slices.Clone(h.I2C)
	c.SPI = slices.Clone(h.SPI)
	c.OneWire = slices.Clone(h.OneWire)
	c.Sensors = slices.Clone(h.Sensors)
	return &c
}
