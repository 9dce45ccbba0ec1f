package protocol

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Envelope is the one wrapper around every message: protocol version,
// message ID, time, source and type, with the payload inside it once.
type Envelope struct {
	// V is the protocol version; decoders refuse any other than Version.
	V int `json:"v"`
	// ID identifies this message (random, 32 hex digits), for dedup and
	// logs. Receivers accept any ID that passes ValidateID.
	ID string `json:"id"`
	// Time is when the source created the message (UTC).
	Time time.Time `json:"time"`
	// Source is the device ID, or the hub ID, of the sender.
	Source string `json:"source"`
	// Type names the payload's type.
	Type Type `json:"type"`
	// Payload is the type-specific body.
	Payload json.RawMessage `json:"payload"`
}

// Message is a decoded envelope together with its validated payload.
type Message struct {
	ID      string
	Time    time.Time
	Source  string
	Payload Payload
}

// Type returns the message type.
func (m *Message) Type() Type { return m.Payload.MessageType() }

// NewID returns a random 128-bit message ID in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

// Encode validates p and wraps it in an envelope from source at time t with
// a fresh ID.
func Encode(source string, t time.Time, p Payload) ([]byte, error) {
	return EncodeMessage(Message{ID: NewID(), Time: t, Source: source, Payload: p})
}

// EncodeMessage validates and encodes m as-is (tests use it for fixed IDs).
func EncodeMessage(m Message) ([]byte, error) {
	if err := ValidateID(m.ID); err != nil {
		return nil, fmt.Errorf("protocol: encode: id: %w", err)
	}
	if err := ValidateID(m.Source); err != nil {
		return nil, fmt.Errorf("protocol: encode: source: %w", err)
	}
	if err := m.Payload.Validate(); err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Payload.MessageType(), err)
	}
	body, err := json.Marshal(m.Payload)
	if err != nil {
		return nil, fmt.Errorf("protocol: encode %s: %w", m.Payload.MessageType(), err)
	}
	out, err := json.Marshal(Envelope{V: Version, ID: m.ID, Time: m.Time.UTC(), Source: m.Source, Type: m.Payload.MessageType(), Payload: body})
	if err != nil {
		return nil, fmt.Errorf("protocol: encode: %w", err)
	}
	if n := maxSize[m.Payload.MessageType()]; len(out) > n {
		return nil, fmt.Errorf("protocol: encode %s: %d bytes exceeds the limit of %d", m.Payload.MessageType(), len(out), n)
	}
	return out, nil
}

// ErrTooLarge is wrapped by decode errors for messages over the size limit.
var ErrTooLarge = errors.New("message too large")

// DecodeError says what is wrong with a received message and where: Field
// is a JSON path such as "payload.facts.hostname" (empty for the message as
// a whole).
type DecodeError struct {
	Type  Type // the envelope type, when it was readable
	Field string
	Err   error
}

func (e *DecodeError) Error() string {
	msg := "protocol: decode"
	if e.Type != "" {
		msg += " " + string(e.Type)
	}
	if e.Field != "" {
		msg += ": field " + e.Field
	}
	return msg + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// fieldErr is returned by Validate methods and carries the field name up to
// Decode, which prefixes it with "payload.".
type fieldErr struct {
	field string
	err   error
}

func (e *fieldErr) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldErr) Unwrap() error { return e.err }

func fieldError(field string, err error) error { return &fieldErr{field: field, err: err} }

// Decode parses data as one envelope, strictly: at most the type's size
// limit, no unknown fields, no trailing data, version equal to Version, an
// ID and a source that pass ValidateID, a known type, and a payload that
// passes Validate.
// Every error is a *DecodeError.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxMessageSize {
		return nil, &DecodeError{Err: fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)}
	}
	var env Envelope
	if err := strictUnmarshal(data, &env); err != nil {
		return nil, &DecodeError{Field: jsonField(err), Err: err}
	}
	if env.V != Version {
		return nil, &DecodeError{Type: env.Type, Field: "v", Err: fmt.Errorf("protocol version %d, want %d", env.V, Version)}
	}
	if err := ValidateID(env.ID); err != nil {
		return nil, &DecodeError{Type: env.Type, Field: "id", Err: err}
	}
	if env.Time.IsZero() {
		return nil, &DecodeError{Type: env.Type, Field: "time", Err: errors.New("required")}
	}
	if err := ValidateID(env.Source); err != nil {
		return nil, &DecodeError{Type: env.Type, Field: "source", Err: err}
	}
	p := newPayload(env.Type)
	if p == nil {
		return nil, &DecodeError{Field: "type", Err: fmt.Errorf("unknown message type %q", env.Type)}
	}
	if n := maxSize[env.Type]; len(data) > n {
		return nil, &DecodeError{Type: env.Type, Err: fmt.Errorf("%w: %d bytes, limit %d for %s", ErrTooLarge, len(data), n, env.Type)}
	}
	if len(env.Payload) == 0 || bytes.Equal(env.Payload, []byte("null")) {
		return nil, &DecodeError{Type: env.Type, Field: "payload", Err: errors.New("required")}
	}
	if err := strictUnmarshal(env.Payload, p); err != nil {
		f := "payload"
		if sub := jsonField(err); sub != "" {
			f += "." + sub
		}
		return nil, &DecodeError{Type: env.Type, Field: f, Err: err}
	}
	if err := p.Validate(); err != nil {
		var fe *fieldErr
		if errors.As(err, &fe) {
			return nil, &DecodeError{Type: env.Type, Field: "payload." + fe.field, Err: fe.err}
		}
		return nil, &DecodeError{Type: env.Type, Field: "payload", Err: err}
	}
	return &Message{ID: env.ID, Time: env.Time, Source: env.Source, Payload: p}, nil
}

// DecodeAs decodes data and checks that its payload is a T.
func DecodeAs[T Payload](data []byte) (*Message, T, error) {
	var zero T
	m, err := Decode(data)
	if err != nil {
		return nil, zero, err
	}
	p, ok := m.Payload.(T)
	if !ok {
		return nil, zero, &DecodeError{Type: m.Type(), Field: "type", Err: fmt.Errorf("got %q, want %q", m.Type(), zero.MessageType())}
	}
	return m, p, nil
}

// strictUnmarshal decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty message")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// jsonField extracts the offending field from an encoding/json error.
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}
