package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/internal/protocol"
)

// connect makes device id online with hardware, as its agent's register
// and status messages do.
func (h *harness) connect(t *testing.T, id string, hw *protocol.Hardware) {
	t.Helper()
	facts := protocol.Facts{Hostname: "pi", OS: "linux", Arch: "arm64", CPUCores: 4, BootTime: t0}
	for _, p := range []protocol.Payload{
		&protocol.Register{Name: "pi", AgentVersion: "v0.1.0", HeartbeatMS: 5000, Facts: facts, Hardware: hw},
		&protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup},
	} {
		if err := h.reg.Handle(id, &protocol.Message{ID: protocol.NewID(), Time: h.clock.Now(), Source: id, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
}

var simHardware = &protocol.Hardware{Backend: "sim",
	Lines: []protocol.HardwareLine{{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}, {Name: "GPIO27", Alias: "button", Direction: protocol.DirIn}},
	I2C:   []string{"1"}}

func TestCommandRoundTrip(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "pi").DeviceID
	h.connect(t, id, simHardware)
	if got := h.device(t, id).Hardware; got == nil || len(got.Lines) != 2 {
		t.Fatalf("device view hardware = %+v", got)
	}
	answer := func(dev string, c *protocol.Command) *protocol.CommandResult {
		switch c.Action {
		case protocol.ActionGPIORead:
			return &protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK, Values: map[string]float64{"level": 1}}
		case protocol.ActionI2CTransfer:
			return &protocol.CommandResult{ID: c.ID, Status: protocol.ResultFailed, Error: "i2c bus 1, address 0x77: no ACK"}
		case protocol.ActionGPIOPulse:
			return nil // the device never answers
		}
		return &protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK}
	}
	h.answer.Store(&answer)

	r := h.adminDo(t, "POST", "/api/v1/devices/"+id+"/commands", CommandRequest{Action: protocol.ActionGPIORead, Params: protocol.CommandParams{Line: "button"}})
	rec := decode[command.Record](t, r)
	if r.status != http.StatusOK || rec.Status != protocol.ResultOK || rec.Values["level"] != 1 || rec.Actor != "admin" {
		t.Errorf("gpio.read: %d %+v", r.status, rec)
	}
	r = h.adminDo(t, "POST", "/api/v1/devices/"+id+"/commands", map[string]any{"action": "i2c.transfer", "params": map[string]any{"bus": "1", "address": 0x77, "read_len": 1}})
	if rec := decode[command.Record](t, r); r.status != http.StatusUnprocessableEntity || rec.Status != protocol.ResultFailed || !strings.Contains(rec.Error, "no ACK") {
		t.Errorf("failing i2c.transfer: %d %+v, want 422 failed", r.status, rec)
	}
	// No answer: the wait ends at the deadline (the harness clock does not
	// move, so the service's real-time ticker is not running here: tick it).
	done := make(chan response)
	go func() {
		done <- h.adminDo(t, "POST", "/api/v1/devices/"+id+"/commands", map[string]any{"action": "gpio.pulse", "timeout_ms": 1000,
			"params": map[string]any{"line": "relay", "level": true, "duration_ms": 100}})
	}()
	var timedOut response
	for deadline := time.Now().Add(5 * time.Second); ; {
		h.commands.Tick(h.clock.Now().Add(time.Minute))
		select {
		case timedOut = <-done:
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the command without an answer did not time out")
			}
			continue
		}
		break
	}
	if rec := decode[command.Record](t, timedOut); timedOut.status != http.StatusGatewayTimeout || rec.Status != command.StatusTimeout {
		t.Errorf("unanswered: %d %+v, want 504 timeout", timedOut.status, rec)
	}

	// Async: 202 at once, then poll.
	r = h.adminDo(t, "POST", "/api/v1/devices/"+id+"/commands", map[string]any{"action": "gpio.write", "async": true, "params": map[string]any{"line": "GPIO17", "level": false}})
	rec = decode[command.Record](t, r)
	if r.status != http.StatusAccepted || rec.ID == "" {
		t.Fatalf("async: %d %+v", r.status, rec)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r = h.adminDo(t, "GET", "/api/v1/devices/"+id+"/commands/"+rec.ID, nil)
		if got := decode[command.Record](t, r); got.Status == protocol.ResultOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("async command never finished: %s", r.body)
		}
	}

	r = h.adminDo(t, "GET", "/api/v1/audit?device="+id, nil)
	audit := decode[AuditList](t, r)
	if len(audit.Commands) != 4 {
		t.Errorf("audit has %d commands, want 4: %+v", len(audit.Commands), audit)
	}
	if r := h.adminDo(t, "GET", "/api/v1/devices/"+id+"/commands/nope", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown command: %d", r.status)
	}
	if r := h.adminDo(t, "GET", "/api/v1/audit?limit=0", nil); r.status != http.StatusBadRequest {
		t.Errorf("limit=0: %d", r.status)
	}
}

func TestCommandRefusals(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "pi").DeviceID
	post := func(body any) response {
		return h.adminDo(t, "POST", "/api/v1/devices/"+id+"/commands", body)
	}
	// Enrolled but never connected: offline.
	if r := post(map[string]any{"action": "agent.restart"}); r.status != http.StatusConflict || !strings.Contains(string(r.body), "offline") {
		t.Errorf("offline device: %d %s, want 409", r.status, r.body)
	}
	h.connect(t, id, simHardware)
	for _, tc := range []struct {
		body any
		want string
	}{
		{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "GPIO4", "level": true}}, `params.line: \"GPIO4\" is not a line of`},
		{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "button", "level": true}}, "is an input"},
		{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay"}}, "params.level: required"},
		{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": true, "sensor": "x"}}, "params.sensor: not a parameter"},
		{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": "on"}}, `\"params.level\": got a JSON string, want a boolean`},
		{map[string]any{"action": "gpio.dance"}, `action: \"gpio.dance\"`},
		{map[string]any{"action": "agent.restart", "timeout_ms": -1}, "timeout_ms: -1 out of range [0, 120000]"},
		{map[string]any{"action": "agent.restart", "timeout_ms": 120001}, "timeout_ms: 120001 out of range [0, 120000]"},
		// 18446744073710 ms is 2^64 ns and a bit: multiplied into a
		// time.Duration it would wrap past the range check (async, so that
		// a command sent anyway is answered at once, not waited for).
		{map[string]any{"action": "agent.restart", "async": true, "timeout_ms": int64(18446744073710)}, "timeout_ms: 18446744073710 out of range [0, 120000]"},
		{map[string]any{"action": "agent.restart", "async": true, "queue_ttl_ms": int64(18446744073710)}, "queue_ttl_ms: 18446744073710 out of range [0, 86400000]"},
		{map[string]any{"action": "agent.restart", "queue_ttl_ms": -1}, "queue_ttl_ms: -1 out of range"},
		{map[string]any{"action": "agent.restart", "timeout_ms": 1e30}, `\"timeout_ms\": got a JSON number 1e+30, want an integer`},
		{map[string]any{"action": "agent.restart", "colour": "red"}, `\"colour\": unknown field`},
	} {
		r := post(tc.body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), tc.want) {
			t.Errorf("%v: %d %s, want 400 with %s", tc.body, r.status, r.body, tc.want)
		}
	}
	if r := h.adminDo(t, "POST", "/api/v1/devices/unknown-dev/commands", map[string]any{"action": "agent.restart"}); r.status != http.StatusNotFound {
		t.Errorf("unknown device: %d", r.status)
	}
	// Offline with a queue TTL: 202 queued.
	if err := h.reg.Handle(id, &protocol.Message{ID: protocol.NewID(), Time: h.clock.Now(), Source: id,
		Payload: &protocol.Status{State: protocol.StateOffline, Reason: protocol.ReasonShutdown}}); err != nil {
		t.Fatal(err)
	}
	r := post(map[string]any{"action": "gpio.write", "queue_ttl_ms": 60000, "params": map[string]any{"line": "relay", "level": true}})
	if rec := decode[command.Record](t, r); r.status != http.StatusAccepted || rec.Status != command.StatusQueued {
		t.Errorf("queued: %d %+v", r.status, rec)
	}
	if r := h.send(t, request{method: "POST", target: "/api/v1/devices/" + id + "/commands", body: `{"action":"agent.restart"}`}); r.status != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", r.status)
	}
}
