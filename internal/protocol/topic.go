package protocol

import (
	"fmt"
	"strings"
)

// Root is the prefix of every Alicia topic. The path element "v1" is the
// major protocol version: a message on a v1 topic is always a v1 envelope.
const Root = "alicia/v1"

// Version is the protocol version carried in every envelope ("v").
const Version = 1

// Kind names the last element of a per-device topic.
type Kind string

// Per-device topic kinds. Devices publish these under their own subtree,
// alicia/v1/devices/{id}/{kind}.
const (
	// KindRegister carries a retained Register: who the device is and what it runs on.
	KindRegister Kind = "register"
	// KindStatus carries a retained Status; it is also the topic of the Last Will.
	KindStatus Kind = "status"
	// KindHeartbeat carries a Heartbeat every interval while the device is up.
	KindHeartbeat Kind = "heartbeat"
	// KindMetrics carries Metrics batches from the device's outbox.
	KindMetrics Kind = "metrics"
	// KindAck carries the hub's MetricsAck to the device. The hub publishes
	// it; ParseDeviceTopic does not accept it, so a device cannot.
	KindAck Kind = "ack"
	// KindCommand carries the hub's Command to the device; like KindAck, only
	// the hub publishes it.
	KindCommand Kind = "cmd"
	// KindResult carries the device's CommandResult.
	KindResult Kind = "result"
	// KindEvent carries the device's DeviceEvent (an input changed).
	KindEvent Kind = "event"
	// KindConfig carries the hub's retained Config to the device; like
	// KindAck, only the hub publishes it.
	KindConfig Kind = "config"
	// KindConfigStatus carries the device's ConfigStatus.
	KindConfigStatus Kind = "config_status"
	// KindJobRun carries the device's JobRun (a run of an on-device job).
	KindJobRun Kind = "job_run"
	// KindJobAck carries the hub's JobAck; like KindAck, only the hub
	// publishes it.
	KindJobAck Kind = "job_ack"
)

// Type is the message type a topic of kind k carries.
func (k Kind) Type() Type {
	switch k {
	case KindAck:
		return TypeMetricsAck
	case KindCommand:
		return TypeCommand
	case KindResult:
		return TypeCommandResult
	case KindEvent:
		return TypeDeviceEvent
	}
	return Type(k)
}

// kinds lists the per-device kinds a device publishes, for ParseDeviceTopic.
var kinds = map[Kind]bool{KindRegister: true, KindStatus: true, KindHeartbeat: true, KindMetrics: true, KindResult: true, KindEvent: true,
	KindConfigStatus: true, KindJobRun: true}

// DevicesPrefix is the parent of every device's subtree.
const DevicesPrefix = Root + "/devices/"

// DeviceTopic returns alicia/v1/devices/{id}/{kind}. It panics if id is not a
// valid ID: callers build topics only from IDs they have already validated,
// so an invalid one is a programming error, never input.
func DeviceTopic(id string, kind Kind) string {
	if err := ValidateID(id); err != nil {
		panic(fmt.Sprintf("protocol: DeviceTopic: %v", err))
	}
	return DevicesPrefix + id + "/" + string(kind)
}

// DeviceSubtree returns the filter alicia/v1/devices/{id}/# that covers every
// topic of one device.
func DeviceSubtree(id string) string {
	if err := ValidateID(id); err != nil {
		panic(fmt.Sprintf("protocol: DeviceSubtree: %v", err))
	}
	return DevicesPrefix + id + "/#"
}

// AllDevices returns the subscription filter alicia/v1/devices/+/{kind} that
// matches one kind of message from every device.
func AllDevices(kind Kind) string { return DevicesPrefix + "+/" + string(kind) }

// HubStatusTopic carries the hub's retained HubStatus (and its Last Will).
const HubStatusTopic = Root + "/hub/status"

// ParseDeviceTopic splits alicia/v1/devices/{id}/{kind} into its device ID and
// kind, and rejects any other shape, an invalid ID or an unknown kind.
func ParseDeviceTopic(topic string) (id string, kind Kind, err error) {
	rest, ok := strings.CutPrefix(topic, DevicesPrefix)
	if !ok {
		return "", "", fmt.Errorf("protocol: topic %q is not under %s", topic, DevicesPrefix)
	}
	id, k, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(k, "/") {
		return "", "", fmt.Errorf("protocol: topic %q: want %s{id}/{kind}", topic, DevicesPrefix)
	}
	if err := ValidateID(id); err != nil {
		return "", "", fmt.Errorf("protocol: topic %q: %w", topic, err)
	}
	if !kinds[Kind(k)] {
		return "", "", fmt.Errorf("protocol: topic %q: unknown kind %q", topic, k)
	}
	return id, Kind(k), nil
}

// MaxIDLen is the longest accepted device, hub or message ID.
const MaxIDLen = 64

// ValidateID reports whether s may be used as a device or hub ID, an MQTT
// client ID or username, and a topic level: 1 to 64 characters from
// [A-Za-z0-9._-], not starting with '.' or '-'. This refuses the MQTT
// wildcards '+' and '#', the level separator '/', '$', spaces, NUL and every
// other control character.
func ValidateID(s string) error {
	if s == "" {
		return fmt.Errorf("invalid id: empty")
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("invalid id %.16q…: longer than %d bytes", s, MaxIDLen)
	}
	if s[0] == '.' || s[0] == '-' {
		return fmt.Errorf("invalid id %q: must not start with %q", s, s[0])
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("invalid id %q: byte %d is %q (allowed: letters, digits, '.', '_', '-')", s, i, c)
		}
	}
	return nil
}

// IntegrationsPrefix is the parent of every integration account's
// subtree, alicia/v1/integrations/{name}/{kind}.
const IntegrationsPrefix = Root + "/integrations/"

// Integration topic kinds. An integration account of kind "metrics"
// publishes Metrics batches on its metrics topic (KindMetrics) and reads
// the hub's MetricsAck on its ack topic (KindAck).
var integrationKinds = map[Kind]bool{KindMetrics: true}

// IntegrationTopic returns alicia/v1/integrations/{name}/{kind}. It panics
// if name is not a valid ID, as DeviceTopic does.
func IntegrationTopic(name string, kind Kind) string {
	if err := ValidateID(name); err != nil {
		panic(fmt.Sprintf("protocol: IntegrationTopic: %v", err))
	}
	return IntegrationsPrefix + name + "/" + string(kind)
}

// AllIntegrations returns the filter alicia/v1/integrations/+/{kind}.
func AllIntegrations(kind Kind) string { return IntegrationsPrefix + "+/" + string(kind) }

// ParseIntegrationTopic splits alicia/v1/integrations/{name}/{kind} into
// the integration's name and kind, and rejects any other shape, an invalid
// name or a kind an integration does not publish (only metrics).
func ParseIntegrationTopic(topic string) (name string, kind Kind, err error) {
	rest, ok := strings.CutPrefix(topic, IntegrationsPrefix)
	if !ok {
		return "", "", fmt.Errorf("protocol: topic %q is not under %s", topic, IntegrationsPrefix)
	}
	name, k, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(k, "/") {
		return "", "", fmt.Errorf("protocol: topic %q: want %s{name}/{kind}", topic, IntegrationsPrefix)
	}
	if err := ValidateID(name); err != nil {
		return "", "", fmt.Errorf("protocol: topic %q: %w", topic, err)
	}
	if !integrationKinds[Kind(k)] {
		return "", "", fmt.Errorf("protocol: topic %q: unknown kind %q", topic, k)
	}
	return name, Kind(k), nil
}
