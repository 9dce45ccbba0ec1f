package command

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

type devices map[string]registry.Device

func (d devices) Get(id string) (registry.Device, error) {
	if dev, ok := d[id]; ok {
		return dev, nil
	}
	return registry.Device{}, fmt.Errorf("device %s: %w", id, registry.ErrNotFound)
}

var hw = &protocol.Hardware{Backend: "sim",
	Lines: []protocol.HardwareLine{{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}, {Name: "GPIO18", PWM: true}, {Name: "GPIO27", Alias: "door", Direction: protocol.DirIn}},
	I2C:   []string{"1"}, Sensors: []protocol.HardwareSensor{{Name: "temp", Kind: protocol.SensorDS18B20, Bus: "w1", Device: "28-1"}}}

type env struct {
	t    *testing.T
	dir  string
	db   *store.DB
	clk  *testkit.Clock
	devs devices
	s    *Service
	// events is the event stream Run watches.
	events *events.Bus

	mu   sync.Mutex
	sent []*protocol.Command
	done []Record
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)), events: events.New(0, nil), devs: devices{
		"dev-a": {ID: "dev-a", Status: registry.StatusOnline, Hardware: hw},
		"dev-b": {ID: "dev-b", Status: registry.StatusOffline, Hardware: hw},
		"dev-c": {ID: "dev-c", Status: registry.StatusOnline},
		"dev-r": {ID: "dev-r", Status: registry.StatusRevoked, Hardware: hw},
	}}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	if e.db != nil {
		e.db.Close()
	}
	db, err := store.Open(store.Options{Dir: e.dir, MinFreeBytes: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	e.db = db
	s, err := Open(db, Config{Devices: e.devs, Now: e.clk.Now, Events: e.events, OnDone: func(r Record) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.done = append(e.done, r)
	}, Publish: func(_ context.Context, dev string, c *protocol.Command) error {
		if err := c.Validate(); err != nil {
			e.t.Errorf("published an invalid command: %v", err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.sent = append(e.sent, c)
		return nil
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.s = s
}

func (e *env) published() []*protocol.Command {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*protocol.Command(nil), e.sent...)
}

func write(line string) Request {
	return Request{Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: line, Level: new(true)}, Actor: "admin"}
}

func TestCheckAgainstHardware(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		dev  string
		req  Request
		want string
	}{
		{"dev-a", write("GPIO5"), `params.line: "GPIO5" is not a line of dev-a`},
		{"dev-a", write("door"), `params.line: "door" (GPIO27) is an input`},
		{"dev-a", Request{Action: protocol.ActionPWMSet, Params: protocol.CommandParams{Line: "relay", Duty: new(0.5), FrequencyHz: 50}}, "has no hardware PWM"},
		{"dev-a", Request{Action: protocol.ActionI2CTransfer, Params: protocol.CommandParams{Bus: "2", Address: new(uint16(0x76)), ReadLen: 1}}, `params.bus: "2" is not an I2C bus`},
		{"dev-a", Request{Action: protocol.ActionSensorRead, Params: protocol.CommandParams{Sensor: "humid"}}, `params.sensor: "humid"`},
		{"dev-a", Request{Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: "relay"}}, "params.level: required"},
		{"dev-a", Request{Action: "gpio.toggle"}, `action: "gpio.toggle"`},
		{"dev-a", Request{Action: protocol.ActionGPIORead, Params: protocol.CommandParams{Line: "relay"}, Timeout: time.Hour}, "timeout_ms"},
		{"dev-c", write("GPIO17"), "reports no hardware"},
	} {
		_, err := e.s.Submit(context.Background(), tc.dev, tc.req)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s %+v: %v, want ErrInvalid with %q", tc.dev, tc.req.Action, tc.req.Params, err, tc.want)
		}
	}
	if _, err := e.s.Submit(context.Background(), "nope", write("GPIO17")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown device: %v, want ErrNotFound", err)
	}
	if _, err := e.s.Submit(context.Background(), "dev-r", write("GPIO17")); !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked device: %v, want ErrOffline saying revoked", err)
	}
	if n := len(e.published()); n != 0 {
		t.Errorf("%d refused commands were published", n)
	}
	// Reading an input, and a restart of an agent without hardware, pass.
	if _, err := e.s.Submit(context.Background(), "dev-a", Request{Action: protocol.ActionGPIORead, Params: protocol.CommandParams{Line: "door"}}); err != nil {
		t.Error(err)
	}
	if _, err := e.s.Submit(context.Background(), "dev-c", Request{Action: protocol.ActionAgentRestart}); err != nil {
		t.Error(err)
	}
}

func TestRoundTripAndAudit(t *testing.T) {
	e := newEnv(t)
	r, err := e.s.Submit(context.Background(), "dev-a", write("relay"))
	if err != nil {
		t.Fatal(err)
	}
	pub := e.published()
	if len(pub) != 1 || pub[0].ID != r.ID || pub[0].Params.Line != "relay" || !pub[0].Deadline.Equal(e.clk.Now().Add(DefaultTimeout)) {
		t.Fatalf("published %+v, want the command with a deadline %s out", pub, DefaultTimeout)
	}
	if r.Status != StatusSent {
		t.Errorf("status after Submit: %s, want sent", r.Status)
	}
	// A result from another device is ignored.
	e.s.HandleResult("dev-b", &protocol.CommandResult{ID: r.ID, Status: protocol.ResultOK})
	if got, _ := e.s.Get("dev-a", r.ID); got.Status != StatusSent {
		t.Errorf("after a result from the wrong device: %s, want still sent", got.Status)
	}
	done := make(chan Record)
	go func() {
		rec, err := e.s.Wait(context.Background(), "dev-a", r.ID)
		if err != nil {
			t.Error(err)
		}
		done <- rec
	}()
	e.clk.Advance(12 * time.Millisecond)
	e.s.HandleResult("dev-a", &protocol.CommandResult{ID: r.ID, Status: protocol.ResultOK, Values: map[string]float64{"level": 1}})
	rec := <-done
	if rec.Status != protocol.ResultOK || rec.Values["level"] != 1 || rec.Actor != "admin" || rec.Done.Sub(rec.Sent) != 12*time.Millisecond {
		t.Errorf("record after the result: %+v", rec)
	}

	e.clk.Advance(time.Second)
	r2, err := e.s.Submit(context.Background(), "dev-a", Request{Action: protocol.ActionGPIORead, Params: protocol.CommandParams{Line: "door"}, Actor: "homeassistant"})
	if err != nil {
		t.Fatal(err)
	}
	e.s.HandleResult("dev-a", &protocol.CommandResult{ID: r2.ID, Status: protocol.ResultFailed, Error: "line busy"})
	e.open() // the audit log survives a restart
	audit, err := e.s.Audit("dev-a", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 || audit[0].ID != r2.ID || audit[0].Status != protocol.ResultFailed || audit[0].Error != "line busy" || audit[1].ID != r.ID {
		t.Errorf("audit newest first: %+v", audit)
	}
	if all, _ := e.s.Audit("", 1); len(all) != 1 || all[0].ID != r2.ID {
		t.Errorf("audit of all devices, limit 1: %+v", all)
	}
}

func TestTimeoutThenLateResult(t *testing.T) {
	e := newEnv(t)
	r, err := e.s.Submit(context.Background(), "dev-a", Request{Action: protocol.ActionGPIORead, Params: protocol.CommandParams{Line: "door"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.s.Tick(e.clk.Advance(time.Second)) // at the deadline: still waiting
	if got, _ := e.s.Get("dev-a", r.ID); got.Status != StatusSent {
		t.Fatalf("at the deadline: %s, want sent", got.Status)
	}
	e.s.Tick(e.clk.Advance(resultGrace + time.Millisecond))
	got, _ := e.s.Wait(context.Background(), "dev-a", r.ID)
	if got.Status != StatusTimeout || !strings.Contains(got.Error, "no result from the device within 1s") {
		t.Fatalf("past the deadline: %+v, want timeout", got)
	}
	e.s.HandleResult("dev-a", &protocol.CommandResult{ID: r.ID, Status: protocol.ResultOK, Values: map[string]float64{"level": 0}})
	if got, _ := e.s.Get("dev-a", r.ID); got.Status != protocol.ResultOK {
		t.Errorf("a late result did not update the timed-out record: %+v", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.done) != 2 || e.done[0].Status != StatusTimeout || e.done[1].Status != protocol.ResultOK {
		t.Errorf("OnDone saw %+v, want the timeout then the late result", e.done)
	}
}

func TestOfflineFailsFastOrQueues(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.Submit(context.Background(), "dev-b", write("relay"))
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "queue_ttl_ms") {
		t.Fatalf("offline device: %v, want ErrOffline mentioning queue_ttl_ms", err)
	}
	q := write("relay")
	q.QueueTTL = time.Minute
	r, err := e.s.Submit(context.Background(), "dev-b", q)
	if err != nil || r.Status != StatusQueued {
		t.Fatalf("queued: %+v, %v", r, err)
	}
	q2 := write("GPIO17")
	q2.QueueTTL = time.Second
	r2, err := e.s.Submit(context.Background(), "dev-b", q2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.published()); n != 0 {
		t.Fatalf("%d commands published to an offline device", n)
	}
	e.open() // queued commands survive a restart
	e.s.Tick(e.clk.Advance(2 * time.Second))
	if got, _ := e.s.Get("dev-b", r2.ID); got.Status != protocol.ResultExpired || !strings.Contains(got.Error, "queue TTL") {
		t.Errorf("queued past its TTL: %+v, want expired", got)
	}
	e.s.DeviceOnline(context.Background(), "dev-b")
	pub := e.published()
	if len(pub) != 1 || pub[0].ID != r.ID {
		t.Fatalf("published when the device came online: %+v, want only the live queued command", pub)
	}
	if got, _ := e.s.Get("dev-b", r.ID); got.Status != StatusSent {
		t.Errorf("after DeviceOnline: %s, want sent", got.Status)
	}
}

// Run learns from the event stream that a device came online and sends it
// its queued commands, in Run's own goroutine.
func TestRunSendsQueuedWhenDeviceComesOnline(t *testing.T) {
	e := newEnv(t)
	q := write("relay")
	q.QueueTTL = time.Minute
	r, err := e.s.Submit(context.Background(), "dev-b", q)
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	// Not for another status, nor for another device.
	e.events.Publish(events.DeviceState, "dev-b", map[string]string{"status": "offline"})
	e.events.Publish(events.DeviceState, "dev-a", map[string]string{"status": "online"})
	e.events.Publish(events.DeviceState, "dev-b", map[string]string{"status": "online"})
	if pub := e.waitPublished(); len(pub) != 1 || pub[0].ID != r.ID {
		t.Fatalf("published after the online event: %+v, want the queued command", pub)
	}
}

// run runs the Service until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.s.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// waitPublished waits (10 s at most) until a command is published and
// returns what was.
func (e *env) waitPublished() []*protocol.Command {
	deadline := time.Now().Add(10 * time.Second)
	for len(e.published()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for Run to act
	}
	return e.published()
}

// When Run falls behind the event stream (more events than its buffer
// before it reads them), it sends what is queued for devices online now.
func TestRunCatchesUpAfterFallingBehind(t *testing.T) {
	e := newEnv(t)
	q := write("relay")
	q.QueueTTL = time.Minute
	r, err := e.s.Submit(context.Background(), "dev-b", q)
	if err != nil {
		t.Fatal(err)
	}
	d := e.devs["dev-b"]
	d.Status = registry.StatusOnline
	e.devs["dev-b"] = d
	for range 1000 { // the online event is lost among them
		e.events.Publish(events.DeviceState, "dev-x", map[string]string{"status": "offline"})
	}
	e.run()
	if pub := e.waitPublished(); len(pub) != 1 || pub[0].ID != r.ID {
		t.Fatalf("published after falling behind: %+v, want the queued command", pub)
	}
}

func TestRestartTimesOutSentCommands(t *testing.T) {
	e := newEnv(t)
	r, err := e.s.Submit(context.Background(), "dev-a", write("relay"))
	if err != nil {
		t.Fatal(err)
	}
	e.open()
	got, err := e.s.Get("dev-a", r.ID)
	if err != nil || got.Status != StatusTimeout || !strings.Contains(got.Error, "restarted") {
		t.Errorf("a sent command after a hub restart: %+v, %v; want timeout saying the hub restarted", got, err)
	}
	if _, err := e.s.Get("dev-a", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
}

// TestCallerIDSubmitsOnce: a command submitted again with the ID of one
// already recorded (a scheduler resuming after a crash) is not sent again,
// also across a restart; an invalid ID is refused.
func TestCallerIDSubmitsOnce(t *testing.T) {
	e := newEnv(t)
	req := write("relay")
	req.ID = "sched.kitchen.1790000000"
	r, err := e.s.Submit(context.Background(), "dev-a", req)
	if err != nil || r.ID != req.ID {
		t.Fatalf("Submit: %+v, %v; want the caller's ID", r, err)
	}
	e.s.HandleResult("dev-a", &protocol.CommandResult{ID: r.ID, Status: protocol.ResultOK})
	e.open()
	again, err := e.s.Submit(context.Background(), "dev-a", req)
	if err != nil || again.ID != r.ID || again.Status != protocol.ResultOK {
		t.Errorf("Submit again: %+v, %v; want the first record", again, err)
	}
	if pub := e.published(); len(pub) != 1 {
		t.Errorf("published %d commands, want 1", len(pub))
	}
	req.ID = "-bad id"
	if _, err := e.s.Submit(context.Background(), "dev-a", req); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid ID: %v, want ErrInvalid", err)
	}
}
