package protocol

import (
	"fmt"
	"strings"
	"time"
)

// Type names a message type; it is the envelope's "type" field.
type Type string

// Message types.
const (
	TypeRegister   Type = "register"
	TypeStatus     Type = "status"
	TypeHeartbeat  Type = "heartbeat"
	TypeHubStatus  Type = "hub_status"
	TypeMetrics    Type = "metrics"
	TypeMetricsAck Type = "metrics_ack"
	TypeHubEvent   Type = "hub_event"
	// Remote commands and device events (command.go).
	TypeCommand       Type = "command"
	TypeCommandResult Type = "command_result"
	TypeDeviceEvent   Type = "device_event"
	// Configuration (config.go).
	TypeConfig       Type = "config"
	TypeConfigStatus Type = "config_status"
	// On-device schedules (jobs.go).
	TypeJobRun Type = "job_run"
	TypeJobAck Type = "job_ack"
)

// Payload is implemented by every message payload. MessageType names the
// envelope type that carries it; Validate checks the decoded fields and
// returns an error naming the first invalid one.
type Payload interface {
	MessageType() Type
	Validate() error
}

// newPayload returns a zero payload of type t, or nil for an unknown type.
func newPayload(t Type) Payload {
	switch t {
	case TypeRegister:
		return new(Register)
	case TypeStatus:
		return new(Status)
	case TypeHeartbeat:
		return new(Heartbeat)
	case TypeHubStatus:
		return new(HubStatus)
	case TypeMetrics:
		return new(Metrics)
	case TypeMetricsAck:
		return new(MetricsAck)
	case TypeHubEvent:
		return new(HubEvent)
	case TypeCommand:
		return new(Command)
	case TypeCommandResult:
		return new(CommandResult)
	case TypeDeviceEvent:
		return new(DeviceEvent)
	case TypeConfig:
		return new(Config)
	case TypeConfigStatus:
		return new(ConfigStatus)
	case TypeJobRun:
		return new(JobRun)
	case TypeJobAck:
		return new(JobAck)
	}
	return nil
}

// maxSize is the largest encoded envelope accepted for each type.
var maxSize = map[Type]int{
	TypeRegister:      64 << 10,
	TypeStatus:        4 << 10,
	TypeHeartbeat:     4 << 10,
	TypeHubStatus:     4 << 10,
	TypeMetrics:       MaxMessageSize,
	TypeMetricsAck:    16 << 10,
	TypeHubEvent:      16 << 10,
	TypeCommand:       8 << 10,
	TypeCommandResult: 8 << 10,
	TypeDeviceEvent:   4 << 10,
	TypeConfig:        MaxMessageSize,
	TypeConfigStatus:  4 << 10,
	TypeJobRun:        8 << 10,
	TypeJobAck:        16 << 10,
}

// MaxMessageSize is the largest envelope of any type (a full Metrics
// batch); larger messages are rejected before parsing. It stays below the
// embedded broker's packet limit (256 KiB).
const MaxMessageSize = 192 << 10

// Register is published retained on alicia/v1/devices/{id}/register by the
// agent each time it connects. It tells the hub who the device is, what it
// runs on and how often it will send heartbeats.
type Register struct {
	// Name is the device's display name (the --name flag, else the hostname).
	Name string `json:"name"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agent_version"`
	// HeartbeatMS is the heartbeat interval in milliseconds. The hub marks
	// the device offline after three missed intervals.
	HeartbeatMS int64 `json:"heartbeat_ms"`
	// Facts describe the hardware and operating system.
	Facts Facts `json:"facts"`
	// Hardware is what the device offers to commands and sensors (hal),
	// absent when the agent runs without a HAL.
	Hardware *Hardware `json:"hardware,omitempty"`
}

// Facts are a device's hardware and operating-system facts.
type Facts struct {
	Hostname    string    `json:"hostname"`
	OS          string    `json:"os"`
	Platform    string    `json:"platform,omitempty"` // distribution, e.g. "debian 12"
	Kernel      string    `json:"kernel"`
	Arch        string    `json:"arch"` // GOARCH plus variant, e.g. "arm/v6"
	CPUModel    string    `json:"cpu_model,omitempty"`
	CPUCores    int       `json:"cpu_cores"`
	MemoryBytes uint64    `json:"memory_bytes"`
	BootTime    time.Time `json:"boot_time"`
}

// MessageType implements Payload.
func (*Register) MessageType() Type { return TypeRegister }

// Validate implements Payload.
func (r *Register) Validate() error {
	if err := checkText("name", r.Name, 1, 128); err != nil {
		return err
	}
	if err := checkText("agent_version", r.AgentVersion, 1, 64); err != nil {
		return err
	}
	if r.HeartbeatMS < 100 || r.HeartbeatMS > int64(time.Hour/time.Millisecond) {
		return fieldError("heartbeat_ms", fmt.Errorf("%d out of range [100, 3600000]", r.HeartbeatMS))
	}
	if err := r.Facts.validate("facts."); err != nil {
		return err
	}
	if r.Hardware != nil {
		return r.Hardware.validate("hardware.")
	}
	return nil
}

func (f *Facts) validate(prefix string) error {
	for _, c := range []struct {
		name, v  string
		min, max int
	}{
		{"hostname", f.Hostname, 1, 255},
		{"os", f.OS, 1, 32},
		{"platform", f.Platform, 0, 128},
		{"kernel", f.Kernel, 0, 128},
		{"arch", f.Arch, 1, 32},
		{"cpu_model", f.CPUModel, 0, 128},
	} {
		if err := checkText(prefix+c.name, c.v, c.min, c.max); err != nil {
			return err
		}
	}
	if f.CPUCores < 0 || f.CPUCores > 4096 {
		return fieldError(prefix+"cpu_cores", fmt.Errorf("%d out of range [0, 4096]", f.CPUCores))
	}
	return nil
}

// Device states carried by Status.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Reasons carried by Status.
const (
	ReasonStartup  = "startup"  // the agent connected
	ReasonShutdown = "shutdown" // the agent is stopping cleanly
	ReasonLost     = "lost"     // the Last Will: the broker lost the connection
)

// Status is published retained on alicia/v1/devices/{id}/status: "online"
// after each connect, "offline" before a clean disconnect, and "offline"
// with reason "lost" as the MQTT Last Will. The Last Will is encoded when
// the connection is made, so receivers use the time they receive it.
type Status struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
	// Session identifies the MQTT connection: the agent picks a new random
	// one for every connect and puts it in both that connection's Will and
	// its "online" status. A Will whose session is not the one of the
	// latest "online" belongs to a connection the device has already
	// replaced, and is ignored. Optional.
	Session string `json:"session,omitempty"`
}

// MessageType implements Payload.
func (*Status) MessageType() Type { return TypeStatus }

// Validate implements Payload.
func (s *Status) Validate() error {
	switch s.State {
	case StateOnline, StateOffline:
	default:
		return fieldError("state", fmt.Errorf("%q is not %q or %q", s.State, StateOnline, StateOffline))
	}
	switch s.Reason {
	case ReasonStartup, ReasonShutdown, ReasonLost:
	default:
		return fieldError("reason", fmt.Errorf("%q is not one of %q, %q, %q", s.Reason, ReasonStartup, ReasonShutdown, ReasonLost))
	}
	if s.Session != "" {
		if err := ValidateID(s.Session); err != nil {
			return fieldError("session", err)
		}
	}
	return nil
}

// Heartbeat is published (QoS 0, not retained) on
// alicia/v1/devices/{id}/heartbeat every Register.HeartbeatMS.
type Heartbeat struct {
	// Seq counts heartbeats since the agent started, from 1.
	Seq uint64 `json:"seq"`
	// UptimeS is the agent process's uptime in seconds.
	UptimeS int64 `json:"uptime_s"`
}

// MessageType implements Payload.
func (*Heartbeat) MessageType() Type { return TypeHeartbeat }

// Validate implements Payload.
func (h *Heartbeat) Validate() error {
	if h.Seq == 0 {
		return fieldError("seq", fmt.Errorf("must be at least 1"))
	}
	if h.UptimeS < 0 {
		return fieldError("uptime_s", fmt.Errorf("%d is negative", h.UptimeS))
	}
	return nil
}

// HubStatus is published retained on alicia/v1/hub/status by the hub:
// "online" when it starts, "offline" on a clean stop and as its Last Will.
type HubStatus struct {
	State string `json:"state"`
}

// MessageType implements Payload.
func (*HubStatus) MessageType() Type { return TypeHubStatus }

// Validate implements Payload.
func (s *HubStatus) Validate() error {
	if s.State != StateOnline && s.State != StateOffline {
		return fieldError("state", fmt.Errorf("%q is not %q or %q", s.State, StateOnline, StateOffline))
	}
	return nil
}

// checkText validates a free-text field: length in bytes within [min, max]
// and no control characters.
func checkText(field, v string, min, max int) error {
	if len(v) < min {
		if min == 1 {
			return fieldError(field, fmt.Errorf("required"))
		}
		return fieldError(field, fmt.Errorf("shorter than %d bytes", min))
	}
	if len(v) > max {
		return fieldError(field, fmt.Errorf("longer than %d bytes", max))
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fieldError(field, fmt.Errorf("control character at byte %d", i))
	}
	return nil
}
