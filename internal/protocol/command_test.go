package protocol

import (
	"strings"
	"testing"
	"time"
)

func TestCommandValidate(t *testing.T) {
	addr := func(a uint16) *uint16 { return &a }
	ok := func(action string, p CommandParams) Command {
		return Command{ID: "c1", Action: action, Params: p, Deadline: t0}
	}
	for _, c := range []Command{
		ok(ActionGPIOWrite, CommandParams{Line: "GPIO17", Level: ptr(false)}),
		ok(ActionGPIORead, CommandParams{Line: "door"}),
		ok(ActionGPIOPulse, CommandParams{Line: "GPIO17", Level: ptr(true), DurationMS: 500}),
		ok(ActionPWMSet, CommandParams{Line: "GPIO18", Duty: ptr(0.0), FrequencyHz: 1000}),
		ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76), Write: "d0", ReadLen: 1}),
		ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76), ReadLen: 2}),
		ok(ActionSensorRead, CommandParams{Sensor: "temp_garage"}),
		ok(ActionAgentRestart, CommandParams{}),
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s %+v: %v", c.Action, c.Params, err)
		}
	}
	for _, tc := range []struct {
		name string
		c    Command
		want string
	}{
		{"no id", Command{Action: ActionAgentRestart, Deadline: t0}, "id:"},
		{"no deadline", Command{ID: "c1", Action: ActionAgentRestart}, "deadline: required"},
		{"unknown action", ok("gpio.explode", CommandParams{}), `action: "gpio.explode" is not one of`},
		{"missing level", ok(ActionGPIOWrite, CommandParams{Line: "GPIO17"}), "params.level: required for gpio.write"},
		{"missing line", ok(ActionGPIORead, CommandParams{}), "params.line: required for gpio.read"},
		{"foreign parameter", ok(ActionGPIORead, CommandParams{Line: "GPIO17", Sensor: "x"}), "params.sensor: not a parameter of gpio.read"},
		{"bad line name", ok(ActionGPIORead, CommandParams{Line: "GPIO 17"}), "params.line: byte 4"},
		{"pulse too long", ok(ActionGPIOPulse, CommandParams{Line: "GPIO17", Level: ptr(true), DurationMS: 61000}), "params.duration_ms: 61000 out of range"},
		{"negative pulse", ok(ActionGPIOPulse, CommandParams{Line: "GPIO17", Level: ptr(true), DurationMS: -1}), "params.duration_ms"},
		{"duty over 1", ok(ActionPWMSet, CommandParams{Line: "GPIO18", Duty: ptr(1.5), FrequencyHz: 50}), "params.duty: 1.5 out of range"},
		{"negative frequency", ok(ActionPWMSet, CommandParams{Line: "GPIO18", Duty: ptr(0.5), FrequencyHz: -50}), "params.frequency_hz"},
		{"address too big", ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x400), ReadLen: 1}), "params.address: 0x400"},
		{"write not hex", ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76), Write: "zz"}), "params.write: not hex"},
		{"write too long", ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76), Write: strings.Repeat("00", 257)}), "params.write: 257 bytes"},
		{"read too long", ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76), ReadLen: 257}), "params.read_len: 257 out of range"},
		{"empty transfer", ok(ActionI2CTransfer, CommandParams{Bus: "1", Address: addr(0x76)}), "needs write, read_len or both"},
		{"restart with params", ok(ActionAgentRestart, CommandParams{Line: "GPIO17"}), "params.line: not a parameter of agent.restart"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestCommandResultAndEventValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Payload
		want string // "" for valid
	}{
		{"ok", &CommandResult{ID: "c1", Status: ResultOK, Values: map[string]float64{"level": 1}}, ""},
		{"failed needs error", &CommandResult{ID: "c1", Status: ResultFailed}, `error: required with status "failed"`},
		{"unknown status", &CommandResult{ID: "c1", Status: "meh"}, `status: "meh"`},
		{"bad value name", &CommandResult{ID: "c1", Status: ResultOK, Values: map[string]float64{"a-b": 1}}, "values:"},
		{"bad data", &CommandResult{ID: "c1", Status: ResultOK, Data: "xyz"}, "data:"},
		{"edge", &DeviceEvent{Event: EventGPIOEdge, Line: "GPIO27", Level: ptr(true), Time: t0}, ""},
		{"edge without level", &DeviceEvent{Event: EventGPIOEdge, Line: "GPIO27", Time: t0}, "level: required"},
		{"unknown event", &DeviceEvent{Event: "boom", Time: t0}, `event: "boom"`},
		{"event without time", &DeviceEvent{Event: EventGPIOEdge, Line: "GPIO27", Level: ptr(true), Time: time.Time{}}, "time: required"},
	} {
		err := tc.p.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestHardwareValidate(t *testing.T) {
	base := func() *Register {
		m := golden["register_hardware"].Payload.(*Register)
		c := *m
		h := *m.Hardware
		h.Lines = append([]HardwareLine(nil), h.Lines...)
		h.Sensors = append([]HardwareSensor(nil), h.Sensors...)
		h.I2C = append([]string(nil), h.I2C...)
		c.Hardware = &h
		return &c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("golden register with hardware: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(h *Hardware)
		want string
	}{
		{"backend", func(h *Hardware) { h.Backend = "gpio" }, `hardware.backend: "gpio"`},
		{"duplicate line", func(h *Hardware) { h.Lines[1].Name = "GPIO17" }, `hardware.lines[1].name: "GPIO17" names two lines`},
		{"alias clashes with a name", func(h *Hardware) { h.Lines[2].Alias = "GPIO18" }, `hardware.lines[2].alias: "GPIO18" names two lines`},
		{"direction", func(h *Hardware) { h.Lines[0].Direction = "both" }, `hardware.lines[0].direction: "both"`},
		{"sensor kind", func(h *Hardware) { h.Sensors[0].Kind = "dht22" }, `hardware.sensors[0].kind: "dht22"`},
		{"duplicate sensor", func(h *Hardware) { h.Sensors[1].Name = "temp_garage" }, `hardware.sensors[1].name: "temp_garage" names two sensors`},
		{"bus name", func(h *Hardware) { h.I2C[0] = "/dev/i2c-1" }, "hardware.i2c[0]"},
	} {
		r := base()
		tc.edit(r.Hardware)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
}
