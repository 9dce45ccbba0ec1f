package protocol

import (
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Remote commands. The hub publishes a Command (QoS 1, not retained) on
// alicia/v1/devices/{id}/cmd; the agent executes it at most once per ID
// and publishes a CommandResult (QoS 1) on alicia/v1/devices/{id}/result.
// A command past its deadline is not executed: the agent answers
// "expired". Device events (edges on inputs) travel as DeviceEvent on
// alicia/v1/devices/{id}/event.

// Command actions.
const (
	ActionGPIOWrite    = "gpio.write"    // set an output line: line, level
	ActionGPIORead     = "gpio.read"     // read a line's level: line
	ActionGPIOPulse    = "gpio.pulse"    // set a line to level for duration_ms, then back: line, level, duration_ms
	ActionPWMSet       = "pwm.set"       // hardware PWM: line, duty (0–1), frequency_hz
	ActionI2CTransfer  = "i2c.transfer"  // write then read on a bus: bus, address, write (hex), read_len
	ActionSensorRead   = "sensor.read"   // read a declared sensor now: sensor
	ActionAgentRestart = "agent.restart" // the agent exits cleanly and its service manager restarts it
)

// Actions lists the command actions, in order.
var Actions = []string{ActionGPIOWrite, ActionGPIORead, ActionGPIOPulse, ActionPWMSet, ActionI2CTransfer, ActionSensorRead, ActionAgentRestart}

// Limits of command parameters.
const (
	MaxPulse       = 60 * time.Second
	MaxI2CTransfer = 256 // bytes written or read
	MaxPWMHz       = 100e6
)

// Command asks a device to act.
type Command struct {
	// ID identifies the command; the agent applies a command ID once, and
	// answers a repeat with the first result.
	ID string `json:"id"`
	// Action is one of Actions.
	Action string `json:"action"`
	// Params are the action's parameters; only those of the action may be
	// set.
	Params CommandParams `json:"params"`
	// Deadline is when the hub stops waiting; the agent does not start a
	// command past it.
	Deadline time.Time `json:"deadline"`
}

// CommandParams are the parameters of every action; each action uses a
// few of them (see the Action… constants).
type CommandParams struct {
	Line        string   `json:"line,omitempty"`
	Level       *bool    `json:"level,omitempty"`
	DurationMS  int64    `json:"duration_ms,omitempty"`
	Duty        *float64 `json:"duty,omitempty"`
	FrequencyHz float64  `json:"frequency_hz,omitempty"`
	Bus         string   `json:"bus,omitempty"`
	Address     *uint16  `json:"address,omitempty"`
	Write       string   `json:"write,omitempty"` // hex
	ReadLen     int      `json:"read_len,omitempty"`
	Sensor      string   `json:"sensor,omitempty"`
}

// MessageType implements Payload.
func (*Command) MessageType() Type { return TypeCommand }

// Validate implements Payload.
func (c *Command) Validate() error {
	if err := ValidateID(c.ID); err != nil {
		return fieldError("id", err)
	}
	if c.Deadline.IsZero() {
		return fieldError("deadline", fmt.Errorf("required"))
	}
	return c.ValidateAction()
}

// ValidateAction checks the action and that exactly its parameters are
// set, with valid values; the error names the parameter.
func (c *Command) ValidateAction() error {
	p := c.Params
	set := map[string]bool{
		"line": p.Line != "", "level": p.Level != nil, "duration_ms": p.DurationMS != 0, "duty": p.Duty != nil,
		"frequency_hz": p.FrequencyHz != 0, "bus": p.Bus != "", "address": p.Address != nil, "write": p.Write != "",
		"read_len": p.ReadLen != 0, "sensor": p.Sensor != "",
	}
	var required, optional []string
	switch c.Action {
	case ActionGPIOWrite:
		required = []string{"line", "level"}
	case ActionGPIORead:
		required = []string{"line"}
	case ActionGPIOPulse:
		required = []string{"line", "level", "duration_ms"}
	case ActionPWMSet:
		required = []string{"line", "duty", "frequency_hz"}
	case ActionI2CTransfer:
		required, optional = []string{"bus", "address"}, []string{"write", "read_len"}
	case ActionSensorRead:
		required = []string{"sensor"}
	case ActionAgentRestart:
	default:
		return fieldError("action", fmt.Errorf("%q is not one of %v", c.Action, Actions))
	}
	for _, name := range required {
		if !set[name] {
			return fieldError("params."+name, fmt.Errorf("required for %s", c.Action))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(set)) {
		if set[name] && !slices.Contains(required, name) && !slices.Contains(optional, name) {
			return fieldError("params."+name, fmt.Errorf("not a parameter of %s", c.Action))
		}
	}
	if p.Line != "" {
		if err := checkToken("params.line", p.Line, 64); err != nil {
			return err
		}
	}
	if p.Bus != "" {
		if err := checkToken("params.bus", p.Bus, 64); err != nil {
			return err
		}
	}
	if p.Sensor != "" {
		if err := checkToken("params.sensor", p.Sensor, 64); err != nil {
			return err
		}
	}
	if set["duration_ms"] && (p.DurationMS < 1 || p.DurationMS > MaxPulse.Milliseconds()) {
		return fieldError("params.duration_ms", fmt.Errorf("%d out of range [1, %d]", p.DurationMS, MaxPulse.Milliseconds()))
	}
	if p.Duty != nil && !(*p.Duty >= 0 && *p.Duty <= 1) {
		return fieldError("params.duty", fmt.Errorf("%v out of range [0, 1]", *p.Duty))
	}
	if set["frequency_hz"] && !(p.FrequencyHz > 0 && p.FrequencyHz <= MaxPWMHz) {
		return fieldError("params.frequency_hz", fmt.Errorf("%v out of range (0, %g]", p.FrequencyHz, float64(MaxPWMHz)))
	}
	if p.Address != nil && *p.Address > 0x3ff {
		return fieldError("params.address", fmt.Errorf("%#x is not a 7- or 10-bit address", *p.Address))
	}
	if p.Write != "" {
		b, err := hex.DecodeString(p.Write)
		if err != nil {
			return fieldError("params.write", fmt.Errorf("not hex: %v", err))
		}
		if len(b) > MaxI2CTransfer {
			return fieldError("params.write", fmt.Errorf("%d bytes, limit %d", len(b), MaxI2CTransfer))
		}
	}
	if set["read_len"] && (p.ReadLen < 0 || p.ReadLen > MaxI2CTransfer) {
		return fieldError("params.read_len", fmt.Errorf("%d out of range [0, %d]", p.ReadLen, MaxI2CTransfer))
	}
	if c.Action == ActionI2CTransfer && p.Write == "" && p.ReadLen == 0 {
		return fieldError("params", fmt.Errorf("%s needs write, read_len or both", c.Action))
	}
	return nil
}

// Result statuses.
const (
	ResultOK      = "ok"      // done; Values and Data hold what it read
	ResultFailed  = "failed"  // the device tried and failed: Error says why
	ResultInvalid = "invalid" // the device refused the command (unknown line, wrong direction…): Error says why
	ResultExpired = "expired" // it arrived past its deadline and was not started
)

// CommandResult is a device's answer to a Command.
type CommandResult struct {
	// ID is the command's.
	ID     string `json:"id"`
	Status string `json:"status"`
	// Error explains a status other than ok.
	Error string `json:"error,omitempty"`
	// Values are what the action read, by name with its unit: "level"
	// (0 or 1), "temperature_celsius", "pressure_pascals",
	// "humidity_ratio"…
	Values map[string]float64 `json:"values,omitempty"`
	// Data is what an i2c.transfer read, in hex.
	Data string `json:"data,omitempty"`
	// Repeat is set when the command ID had already been executed and this
	// is the first execution's result, not a second execution.
	Repeat bool `json:"repeat,omitempty"`
}

// MessageType implements Payload.
func (*CommandResult) MessageType() Type { return TypeCommandResult }

// Validate implements Payload.
func (r *CommandResult) Validate() error {
	if err := ValidateID(r.ID); err != nil {
		return fieldError("id", err)
	}
	switch r.Status {
	case ResultOK:
	case ResultFailed, ResultInvalid, ResultExpired:
		if r.Error == "" {
			return fieldError("error", fmt.Errorf("required with status %q", r.Status))
		}
	default:
		return fieldError("status", fmt.Errorf("%q is not one of ok, failed, invalid, expired", r.Status))
	}
	if err := checkText("error", r.Error, 0, 1024); err != nil {
		return err
	}
	if len(r.Values) > 64 {
		return fieldError("values", fmt.Errorf("%d values, limit 64", len(r.Values)))
	}
	for k, v := range r.Values {
		if err := ValidateMetricName(k); err != nil {
			return fieldError("values", err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fieldError("values."+k, fmt.Errorf("%v is not a finite number", v))
		}
	}
	if r.Data != "" {
		b, err := hex.DecodeString(r.Data)
		if err != nil || len(b) > MaxI2CTransfer {
			return fieldError("data", fmt.Errorf("want at most %d bytes in hex", MaxI2CTransfer))
		}
	}
	return nil
}

// Device event kinds.
const (
	EventGPIOEdge = "gpio.edge" // an input line changed: line, level
)

// DeviceEvent is something that happened on a device, published (QoS 1,
// not retained) on alicia/v1/devices/{id}/event.
type DeviceEvent struct {
	Event string    `json:"event"`
	Line  string    `json:"line,omitempty"`
	Level *bool     `json:"level,omitempty"`
	Time  time.Time `json:"time"`
}

// MessageType implements Payload.
func (*DeviceEvent) MessageType() Type { return TypeDeviceEvent }

// Validate implements Payload.
func (e *DeviceEvent) Validate() error {
	switch e.Event {
	case EventGPIOEdge:
		if err := checkToken("line", e.Line, 64); err != nil {
			return err
		}
		if e.Level == nil {
			return fieldError("level", fmt.Errorf("required for %s", e.Event))
		}
	default:
		return fieldError("event", fmt.Errorf("%q is not %q", e.Event, EventGPIOEdge))
	}
	if e.Time.IsZero() {
		return fieldError("time", fmt.Errorf("required"))
	}
	return nil
}
