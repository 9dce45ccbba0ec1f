package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// world is the rest of the hub as a rollout sees it: the registry, the
// health monitor and the config sender, set by the test.
type world struct {
	mu      sync.Mutex
	devs    map[string]registry.Device
	health  map[string]string // device → health state; default online
	alerts  []health.Alert
	states  map[string]confsync.KindState // device → its agent config state
	changed int
	events  []string // step[/device]
}

func (w *world) List() []registry.Device {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []registry.Device
	for _, d := range w.devs {
		out = append(out, d)
	}
	return out
}

func (w *world) Get(id string) (registry.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d, ok := w.devs[id]; ok {
		return d, nil
	}
	return registry.Device{}, registry.ErrNotFound
}

func (w *world) DeviceState(d registry.Device) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s, ok := w.health[d.ID]; ok {
		return s
	}
	return health.StateOnline
}

func (w *world) Active() []health.Alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]health.Alert(nil), w.alerts...)
}

func (w *world) State(dev string) map[string]confsync.KindState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s, ok := w.states[dev]; ok {
		return map[string]confsync.KindState{spec.KindAgent: s}
	}
	return nil
}

func (w *world) Changed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changed++
}

func (w *world) Publish(typ, device string, data any) events.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	step := data.(map[string]any)["step"].(string)
	if device != "" {
		step += "/" + device
	}
	w.events = append(w.events, step)
	return events.Event{Type: typ, Device: device}
}

func (w *world) set(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

type env struct {
	t       *testing.T
	dir     string
	clk     *testkit.Clock
	w       *world
	db      *store.DB
	configs *spec.Store
	m       *Manager
}

var t0 = time.Date(2026, 12, 8, 7, 0, 0, 0, time.UTC)

// newEnv has devices d1…dn, online, with labels room=garage, and the
// default agent document at version 1.
func newEnv(t *testing.T, n int) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(t0), w: &world{devs: map[string]registry.Device{}, health: map[string]string{},
		states: map[string]confsync.KindState{}}}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("d%d", i)
		e.w.devs[id] = registry.Device{ID: id, Name: id, Status: registry.StatusOnline, Labels: map[string]string{"room": "garage"}}
	}
	e.open()
	if _, err := e.configs.Put(spec.Write{Kind: spec.KindAgent, Author: "admin", Content: json.RawMessage(`{"log_level":"info"}`)}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) open() {
	e.t.Helper()
	e.db = testkit.OpenStore(e.t, e.dir)
	var err error
	if e.configs, err = spec.Open(e.db, spec.Config{Now: e.clk.Now}); err != nil {
		e.t.Fatal(err)
	}
	if e.m, err = Open(e.db, Config{Configs: e.configs, Devices: e.w, Health: e.w, Sync: e.w, Events: e.w, Now: e.clk.Now}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// start writes log_level debug to the default document with strategy st.
func (e *env) start(st Strategy) Rollout {
	e.t.Helper()
	_, r, err := e.m.Start(spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 1, Content: json.RawMessage(`{"log_level":"debug"}`)}, st)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) get(id string) Rollout {
	e.t.Helper()
	r, err := e.m.Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// devStates is "id:state" of every device of the rollout.
func (e *env) devStates(id string) []string {
	var out []string
	for _, d := range e.get(id).Devices {
		out = append(out, d.ID+":"+d.State)
	}
	return out
}

// report makes dev report state for the hash its rollout released to it.
func (e *env) report(id, dev, state, reason string) {
	e.t.Helper()
	for _, d := range e.get(id).Devices {
		if d.ID != dev {
			continue
		}
		ks := confsync.KindState{Desired: d.ToHash, State: state, Reason: reason, Applied: d.FromHash}
		if state == confsync.StateApplied {
			ks.Applied = d.ToHash
		}
		e.w.set(func() { e.w.states[dev] = ks })
		return
	}
	e.t.Fatalf("%s is not in rollout %s", dev, id)
}

// applyReleased makes every updating device report applied.
func (e *env) applyReleased(id string) {
	for _, d := range e.get(id).Devices {
		if d.State == DeviceUpdating {
			e.report(id, d.ID, confsync.StateApplied, "")
		}
	}
}

var strategy = Strategy{Canary: 1, MaxParallel: 2, MinHealthyTime: Duration(30 * time.Second), AutoRevert: true, ProgressDeadline: Duration(5 * time.Minute)}

func TestCanaryThenBatchesSucceed(t *testing.T) {
	e := newEnv(t, 5)
	r := e.start(strategy)
	if got, ok := e.m.Held("d3", spec.KindAgent); !ok || string(got) != `{"log_level":"info"}` {
		t.Fatalf("d3 at the start: held %s, %v; want held at the old content", got, ok)
	}
	e.m.Step()
	want := []string{"d1:updating", "d2:held", "d3:held", "d4:held", "d5:held"}
	if diff := cmp.Diff(want, e.devStates(r.ID)); diff != "" {
		t.Fatalf("after the first step (-want +got):\n%s", diff)
	}
	if _, ok := e.m.Held("d1", spec.KindAgent); ok {
		t.Error("the canary d1 is still held")
	}
	e.applyReleased(r.ID)
	e.m.Step()
	e.clk.Advance(29 * time.Second)
	e.m.Step()
	if got := e.devStates(r.ID)[:2]; got[0] != "d1:verifying" || got[1] != "d2:held" {
		t.Fatalf("before min_healthy_time: %v; want the canary verifying, the next batch held", got)
	}
	for range 3 { // the canary, then two batches of two
		e.clk.Advance(time.Second)
		e.m.Step()
		e.applyReleased(r.ID)
		e.m.Step()
		e.clk.Advance(30 * time.Second)
		e.m.Step()
	}
	got := e.get(r.ID)
	if got.State != StateSucceeded || got.Batch != 3 || got.Failures != 0 {
		t.Errorf("rollout: state %s, batch %d, failures %d; want succeeded after 3 batches (%s)", got.State, got.Batch, got.Failures, got.Reason)
	}
	for _, d := range got.Devices {
		if d.State != DeviceHealthy {
			t.Errorf("%s: %s, want healthy", d.ID, d.State)
		}
	}
	if _, ok := e.m.Held("d5", spec.KindAgent); ok {
		t.Error("a finished rollout still holds d5")
	}
	wantEv := []string{"started", "batch", "batch", "batch", "finished"}
	if diff := cmp.Diff(wantEv, e.w.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// Writes of the kind are allowed again.
	if err := e.m.Guard(spec.KindAgent, func() error { return nil }); err != nil {
		t.Errorf("Guard after the rollout: %v", err)
	}
}

func TestCanaryFailureStopsAndReverts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   func(e *env, id string)
		reason string
	}{
		{"rejected", func(e *env, id string) { e.report(id, "d1", confsync.StateRejected, "bad level") }, "the device rejected the change: bad level"},
		{"reverted by the device after applying", func(e *env, id string) {
			e.applyReleased(id)
			e.m.Step()
			e.report(id, "d1", confsync.StateReverted, "lost the hub")
		}, "the device reverted the change: lost the hub"},
		{"an alert fired after the change", func(e *env, id string) {
			e.applyReleased(id)
			e.m.Step()
			e.w.set(func() {
				e.w.alerts = []health.Alert{{Device: "d1", RuleName: "cpu hot", Severity: "critical", Summary: "cpu at 99%", FiredAt: e.clk.Now()}}
			})
		}, "alert cpu hot (critical) fired after the change: cpu at 99%"},
		{"not applied by the deadline", func(e *env, id string) { e.clk.Advance(5*time.Minute + time.Second) }, "not applied within progress_deadline 5m0s"},
		{"offline after applying, past the deadline", func(e *env, id string) {
			e.applyReleased(id)
			e.m.Step()
			e.w.set(func() { e.w.health["d1"] = health.StateOffline })
			e.m.Step()
			e.clk.Advance(5*time.Minute + 31*time.Second)
		}, "not healthy (offline)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 3)
			// An alert that fired before the change does not count.
			e.w.set(func() {
				e.w.alerts = []health.Alert{{Device: "d1", RuleName: "old", FiredAt: t0.Add(-time.Hour)}}
				e.w.health["d1"] = health.StateDegraded
			})
			r := e.start(strategy)
			e.m.Step()
			tc.fail(e, r.ID)
			e.m.Step()
			got := e.get(r.ID)
			if got.State != StateReverted || got.RevertVersion != 3 || got.Failures != 1 {
				t.Fatalf("rollout: state %s, revert version %d, failures %d (%s); want reverted by version 3", got.State, got.RevertVersion, got.Failures, got.Reason)
			}
			if !strings.HasPrefix(got.Devices[0].Reason, tc.reason) {
				t.Errorf("d1's reason %q; want it to start %q", got.Devices[0].Reason, tc.reason)
			}
			if diff := cmp.Diff([]string{"d1:failed", "d2:held", "d3:held"}, e.devStates(r.ID)); diff != "" {
				t.Errorf("devices (-want +got):\n%s", diff)
			}
			v, err := e.configs.Latest(spec.KindAgent, spec.Scope{})
			if err != nil {
				t.Fatal(err)
			}
			if string(v.Content) != `{"log_level":"info"}` || v.RolledBackTo != 1 || v.Author != "rollout "+r.ID {
				t.Errorf("document after the revert: version %d %s by %s, rolled back to %d", v.Number, v.Content, v.Author, v.RolledBackTo)
			}
			for _, d := range []string{"d1", "d2", "d3"} {
				if _, ok := e.m.Held(d, spec.KindAgent); ok {
					t.Errorf("%s is still held after the revert", d)
				}
			}
			if n := len(e.w.events); n < 2 || e.w.events[n-2] != "device_failed/d1" || e.w.events[n-1] != "finished" {
				t.Errorf("events %v; want device_failed/d1 then finished last", e.w.events)
			}
		})
	}
}

func TestOfflineDevicesAreSkippedNotWaitedFor(t *testing.T) {
	e := newEnv(t, 3)
	e.w.set(func() { e.w.health["d1"] = health.StateOffline })
	r := e.start(Strategy{Canary: 1, MaxParallel: 1, ProgressDeadline: Duration(time.Minute)})
	e.m.Step()
	if got := e.devStates(r.ID); got[1] != "d2:updating" || got[0] != "d1:held" {
		t.Fatalf("the canary should be online d2, not offline d1: %v", got)
	}
	for range 3 {
		e.applyReleased(r.ID)
		e.m.Step()
		e.m.Step()
	}
	got := e.get(r.ID)
	if got.State != StateSucceeded || got.Failures != 0 {
		t.Fatalf("state %s, failures %d (%s); want succeeded", got.State, got.Failures, got.Reason)
	}
	if d := got.Devices[0]; d.State != DeviceSkipped || !strings.Contains(d.Reason, "offline") {
		t.Errorf("d1: %s (%s); want skipped, offline", d.State, d.Reason)
	}
	if e.clk.Now() != t0 {
		t.Error("the test moved the clock: the rollout waited")
	}
}

func TestPauseResumeCancel(t *testing.T) {
	e := newEnv(t, 3)
	r := e.start(Strategy{Canary: 1, MaxParallel: 1, ProgressDeadline: Duration(time.Minute)})
	e.m.Step()
	if _, err := e.m.Pause(r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Pause(r.ID); !errors.Is(err, ErrFinished) {
		t.Errorf("pause of a paused rollout: %v; want ErrFinished", err)
	}
	e.applyReleased(r.ID)
	e.m.Step()
	e.m.Step()
	if diff := cmp.Diff([]string{"d1:healthy", "d2:held", "d3:held"}, e.devStates(r.ID)); diff != "" {
		t.Fatalf("paused: the canary is watched, no batch released (-want +got):\n%s", diff)
	}
	if err := e.m.Guard(spec.KindAgent, func() error { t.Error("a write ran during a paused rollout"); return nil }); !errors.Is(err, ErrBusy) {
		t.Errorf("Guard while paused: %v; want ErrBusy", err)
	}
	if err := e.m.GuardAll(func() error { t.Error("an import ran during a paused rollout"); return nil }); !errors.Is(err, ErrBusy) {
		t.Errorf("GuardAll while paused: %v; want ErrBusy", err)
	}
	if _, _, err := e.m.Start(spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 2, Content: json.RawMessage(`{}`)}, strategy); !errors.Is(err, ErrBusy) {
		t.Errorf("a second rollout of the kind: %v; want ErrBusy", err)
	}
	if _, err := e.m.Resume(r.ID); err != nil {
		t.Fatal(err)
	}
	e.m.Step()
	if got := e.devStates(r.ID); got[1] != "d2:updating" {
		t.Fatalf("resumed: %v; want d2 released", got)
	}
	got, err := e.m.Cancel(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"d1:reverted", "d2:reverted", "d3:held"}, e.devStates(r.ID)); diff != "" || got.State != StateCancelled || got.RevertVersion != 3 {
		t.Errorf("cancelled: state %s, revert version %d, devices (-want +got):\n%s", got.State, got.RevertVersion, diff)
	}
	for _, f := range []func(string) (Rollout, error){e.m.Pause, e.m.Resume, e.m.Cancel} {
		if _, err := f(r.ID); !errors.Is(err, ErrFinished) {
			t.Errorf("after the cancel: %v; want ErrFinished", err)
		}
	}
	if _, err := e.m.Cancel("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel of an unknown rollout: %v", err)
	}
}

func TestWithoutAutoRevertFailuresPause(t *testing.T) {
	e := newEnv(t, 2)
	r := e.start(Strategy{Canary: 1, MaxParallel: 1, ProgressDeadline: Duration(time.Minute)})
	e.m.Step()
	e.report(r.ID, "d1", confsync.StateRejected, "no")
	e.m.Step()
	got := e.get(r.ID)
	if got.State != StatePaused || !strings.Contains(got.Reason, "resume to go on anyway") || got.RevertVersion != 0 {
		t.Fatalf("state %s (%s), revert version %d; want paused, not reverted", got.State, got.Reason, got.RevertVersion)
	}
	if _, err := e.m.Resume(r.ID); err != nil {
		t.Fatal(err)
	}
	e.m.Step()
	e.applyReleased(r.ID)
	e.m.Step()
	e.m.Step()
	if got := e.get(r.ID); got.State != StateSucceeded || got.Failures != 1 {
		t.Errorf("after resume: state %s, failures %d (%s); want succeeded with the one failure accepted", got.State, got.Failures, got.Reason)
	}
}

func TestARestartMidRolloutGoesOn(t *testing.T) {
	e := newEnv(t, 3)
	r := e.start(strategy)
	e.m.Step()
	e.applyReleased(r.ID)
	e.m.Step()
	e.reopen() // as after kill -9: what was saved is all there is
	if _, ok := e.m.Held("d2", spec.KindAgent); !ok {
		t.Fatal("after the restart, d2 is no longer held")
	}
	if _, ok := e.m.Held("d1", spec.KindAgent); ok {
		t.Fatal("after the restart, the released canary is held again")
	}
	e.m.Step() // the canary's healthy time counts from here
	e.clk.Advance(30 * time.Second)
	e.m.Step()
	e.applyReleased(r.ID)
	e.m.Step()
	e.clk.Advance(30 * time.Second)
	e.m.Step()
	if got := e.get(r.ID); got.State != StateSucceeded {
		t.Errorf("after the restart: %s (%s) %v; want succeeded", got.State, got.Reason, e.devStates(r.ID))
	}
	// A device updating when the hub stopped keeps its deadline from its
	// release, not from the restart.
	_, r2, err := e.m.Start(spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 2, Content: json.RawMessage(`{"log_level":"warn"}`)}, strategy)
	if err != nil {
		t.Fatal(err)
	}
	e.m.Step()
	e.clk.Advance(4 * time.Minute)
	e.reopen()
	e.clk.Advance(time.Minute + time.Second)
	e.m.Step()
	if got := e.get(r2.ID); got.State != StateReverted || got.Devices[0].State != DeviceFailed {
		t.Errorf("a canary silent past its deadline across a restart: %s, %v", got.State, e.devStates(r2.ID))
	}
}

// TestHealthyTimeIsWatchedTime: the time the hub was down does not count
// towards a device's min_healthy_time.
func TestHealthyTimeIsWatchedTime(t *testing.T) {
	e := newEnv(t, 2)
	r := e.start(strategy)
	e.m.Step()
	e.applyReleased(r.ID)
	e.m.Step() // the canary is verifying from now
	e.clk.Advance(29 * time.Second)
	e.reopen()
	e.m.Step() // watched again from now
	e.clk.Advance(2 * time.Second)
	e.m.Step()
	if got := e.get(r.ID).Devices[0]; got.State != DeviceVerifying {
		t.Fatalf("2 s after a restart: canary %s, want still verifying (30 s of watched health needed)", got.State)
	}
	e.clk.Advance(28 * time.Second)
	e.m.Step()
	if got := e.get(r.ID).Devices[0]; got.State != DeviceHealthy {
		t.Errorf("30 s after the restart: canary %s, want healthy", got.State)
	}
}

func TestAStartCutShortEndsCleanly(t *testing.T) {
	for _, written := range []bool{false, true} {
		t.Run(fmt.Sprintf("written=%v", written), func(t *testing.T) {
			e := newEnv(t, 2)
			// The record and holds as Start saves them before its write.
			r := &Rollout{ID: "r1", Kind: spec.KindAgent, FromVersion: 1, Author: "admin", Strategy: strategy, State: StateRunning, Created: t0,
				Devices: []DeviceProgress{{ID: "d1", State: DeviceHeld}, {ID: "d2", State: DeviceHeld}}}
			eff, err := e.configs.Effective(spec.KindAgent, spec.Device{ID: "d1"})
			if err != nil {
				t.Fatal(err)
			}
			r.Devices[0].FromHash, r.Devices[1].FromHash = eff.Hash, eff.Hash
			if err := e.m.save(r, map[string]json.RawMessage{"d1": eff.Content, "d2": eff.Content}, nil); err != nil {
				t.Fatal(err)
			}
			if written {
				if _, err := e.configs.Put(spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 1, Content: json.RawMessage(`{"log_level":"warn"}`)}); err != nil {
					t.Fatal(err)
				}
			}
			e.reopen()
			if _, ok := e.m.Held("d1", spec.KindAgent); !ok {
				t.Fatal("the holds saved before the write were not loaded")
			}
			e.m.Step()
			e.m.Step()
			got := e.get("r1")
			switch {
			case written && (got.State != StateRunning || got.ToVersion != 2 || got.Batch != 1):
				t.Errorf("the write was made: %s, to %d, batch %d (%s); want running on version 2", got.State, got.ToVersion, got.Batch, got.Reason)
			case !written && (got.State != StateFailed || !strings.Contains(got.Reason, "before the change was written")):
				t.Errorf("the write was not made: %s (%s); want failed, nothing changed", got.State, got.Reason)
			}
			if _, ok := e.m.Held("d1", spec.KindAgent); !written && ok {
				t.Error("a rollout that never started still holds d1")
			}
		})
	}
}

func TestStartRefuses(t *testing.T) {
	e := newEnv(t, 1)
	for _, tc := range []struct {
		name string
		w    spec.Write
		st   Strategy
		want error
	}{
		{"a new document", spec.Write{Kind: spec.KindAgent, Scope: spec.Scope{Device: "d1"}, Author: "admin", Content: json.RawMessage(`{}`)}, strategy, ErrInvalid},
		{"a bad strategy", spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 1, Content: json.RawMessage(`{}`)}, Strategy{MaxParallel: 0, ProgressDeadline: Duration(time.Minute)}, ErrInvalid},
		{"a stale version", spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 7, Content: json.RawMessage(`{}`)}, strategy, spec.ErrConflict},
		{"a schema error", spec.Write{Kind: spec.KindAgent, Author: "admin", IfVersion: 1, Content: json.RawMessage(`{"log_level":"loud"}`)}, strategy, spec.ErrSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.m.Start(tc.w, tc.st); !errors.Is(err, tc.want) {
				t.Errorf("Start: %v; want %v", err, tc.want)
			}
			if len(e.m.List()) != 0 {
				t.Errorf("a refused start left a rollout: %+v", e.m.List())
			}
			if _, ok := e.m.Held("d1", spec.KindAgent); ok {
				t.Error("a refused start left d1 held")
			}
		})
	}
}

func TestDecodeStrategy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // error text it contains; "" = no error
	}{
		{`{}`, ""},
		{`{"canary":2,"max_parallel":3,"min_healthy_time":"1m","max_failures":1,"auto_revert":false,"progress_deadline":"10m"}`, ""},
		{`{"canary":-1}`, "rollout.canary: -1 out of range"},
		{`{"max_parallel":0}`, "rollout.max_parallel: 0 out of range"},
		{`{"min_healthy_time":"soon"}`, `rollout.min_healthy_time: "soon": want a duration`},
		{`{"progress_deadline":"10ms"}`, "rollout.progress_deadline: 10ms out of range"},
		{`{"max_failures":"one"}`, "rollout.max_failures: got a JSON string"},
		{`{"canaries":1}`, `unknown field "canaries"`},
		{`[]`, "want a JSON object"},
	} {
		s, err := DecodeStrategy(json.RawMessage(tc.in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("%s: %v; want an ErrInvalid saying %q", tc.in, err, tc.want)
		}
		if tc.in == `{}` && s != DefaultStrategy {
			t.Errorf("{} decoded as %+v, want the defaults", s)
		}
	}
}

func TestRunStepsAndStops(t *testing.T) {
	e := newEnv(t, 1)
	e.m.cfg.Poll = time.Millisecond
	r := e.start(Strategy{MaxParallel: 1, ProgressDeadline: Duration(time.Minute)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.m.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for e.get(r.ID).Devices[0].State != DeviceUpdating && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling for Run's steps
	}
	e.applyReleased(r.ID)
	for e.get(r.ID).State != StateSucceeded && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling for Run's steps
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if got := e.get(r.ID); got.State != StateSucceeded {
		t.Errorf("Run did not finish the rollout: %s %v", got.State, e.devStates(r.ID))
	}
}
