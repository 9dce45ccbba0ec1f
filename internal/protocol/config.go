package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
)

// Config carries a device's desired configuration, every kind of it, as
// the hub's configuration manager computed it (hub/spec). The hub
// publishes it retained, QoS 1, on the device's KindConfig topic whenever
// it changes, so that a device that was offline gets the latest when it
// comes back. The device applies each kind whose hash differs from what it
// applied last and answers with a ConfigStatus per kind.
type Config struct {
	// Configs are the device's effective configuration of each kind, by
	// kind name (e.g. "agent").
	Configs map[string]ConfigDoc `json:"configs"`
}

// ConfigDoc is one kind's effective configuration.
type ConfigDoc struct {
	// Hash is the SHA-256 of Content, in lowercase hex: what the device
	// reports once it has applied it.
	Hash string `json:"hash"`
	// Content is a JSON object, the kind's settings.
	Content json.RawMessage `json:"content"`
}

// MaxConfigKinds bounds the kinds in one Config.
const MaxConfigKinds = 64

// configKind is a valid kind name.
var configKind = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// hexHash is a SHA-256 in lowercase hex.
var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// MessageType implements Payload.
func (*Config) MessageType() Type { return TypeConfig }

// Validate implements Payload.
func (c *Config) Validate() error {
	if len(c.Configs) > MaxConfigKinds {
		return fieldError("configs", fmt.Errorf("%d kinds, at most %d", len(c.Configs), MaxConfigKinds))
	}
	kinds := make([]string, 0, len(c.Configs))
	for k := range c.Configs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		d := c.Configs[k]
		if !configKind.MatchString(k) {
			return fieldError("configs", fmt.Errorf("kind %q: want 1 to 63 of a-z, 0-9, '_', '-', starting with a letter", k))
		}
		if !hexHash.MatchString(d.Hash) {
			return fieldError("configs."+k+".hash", fmt.Errorf("%q: want 64 lowercase hex digits", d.Hash))
		}
		if len(d.Content) == 0 || d.Content[0] != '{' {
			return fieldError("configs."+k+".content", fmt.Errorf("want a JSON object"))
		}
		// The content is what the hash is over, so it must come out of
		// a re-encoding byte for byte: compact, with <, > and & escaped,
		// as encoding/json writes it (and the hub makes it).
		if canon, err := json.Marshal(d.Content); err != nil || !bytes.Equal(canon, d.Content) {
			return fieldError("configs."+k+".content", fmt.Errorf("want a JSON object as encoding/json writes it (compact; <, > and & escaped)"))
		}
	}
	return nil
}

// Config states a device reports.
const (
	// ConfigApplied: the configuration is in use.
	ConfigApplied = "applied"
	// ConfigRejected: the device refused it (Reason says why) and keeps
	// what it had.
	ConfigRejected = "rejected"
	// ConfigReverted: the device applied it, lost the hub, and went back
	// to the last configuration that kept it connected (Reason says so).
	ConfigReverted = "reverted"
)

// ConfigStatus is a device's answer to a Config, one per kind it acted
// on, published QoS 1 on its KindConfigStatus topic.
type ConfigStatus struct {
	Kind string `json:"kind"`
	// Hash is the configuration's the status is about.
	Hash  string `json:"hash"`
	State string `json:"state"`
	// Reason explains a state other than applied.
	Reason string `json:"reason,omitempty"`
}

// MessageType implements Payload.
func (*ConfigStatus) MessageType() Type { return TypeConfigStatus }

// Validate implements Payload.
func (s *ConfigStatus) Validate() error {
	if !configKind.MatchString(s.Kind) {
		return fieldError("kind", fmt.Errorf("%q: want 1 to 63 of a-z, 0-9, '_', '-', starting with a letter", s.Kind))
	}
	if !hexHash.MatchString(s.Hash) {
		return fieldError("hash", fmt.Errorf("%q: want 64 lowercase hex digits", s.Hash))
	}
	switch s.State {
	case ConfigApplied:
	case ConfigRejected, ConfigReverted:
		if s.Reason == "" {
			return fieldError("reason", fmt.Errorf("required with state %q", s.State))
		}
	default:
		return fieldError("state", fmt.Errorf("%q: want %s, %s or %s", s.State, ConfigApplied, ConfigRejected, ConfigReverted))
	}
	return checkText("reason", s.Reason, 0, 1024)
}
