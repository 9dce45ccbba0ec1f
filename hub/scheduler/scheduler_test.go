package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCommands is the command service: devices "kitchen" (online) and
// "attic" (offline), a command applied once per ID.
type fakeCommands struct {
	mu       sync.Mutex
	records  map[string]command.Record // by ID
	submits  []string                  // IDs, in order, of commands sent
	fail     int                       // the next fail submits end "failed"
	hold     chan struct{}             // if set, Wait blocks until it is closed
	inflight map[string]int            // device → commands waiting
	maxPer   int                       // most commands waiting on one device
	maxAll   int                       // most commands waiting at once
	all      int
}

func newFakeCommands() *fakeCommands {
	return &fakeCommands{records: map[string]command.Record{}, inflight: map[string]int{}}
}

func (f *fakeCommands) Check(dev string, req command.Request) error {
	switch {
	case dev != "kitchen" && dev != "attic":
		return fmt.Errorf("%w: device %s", command.ErrNotFound, dev)
	case req.Params.Line != "relay":
		return fmt.Errorf("%w: line %q: no such line", command.ErrInvalid, req.Params.Line)
	}
	return nil
}

func (f *fakeCommands) Submit(_ context.Context, dev string, req command.Request) (command.Record, error) {
	if err := f.Check(dev, req); err != nil {
		return command.Record{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.records[req.ID]; ok {
		return r, nil
	}
	if dev == "attic" {
		if req.QueueTTL == 0 {
			return command.Record{}, fmt.Errorf("%w: attic", command.ErrOffline)
		}
		r := command.Record{ID: req.ID, Device: dev, Actor: req.Actor, Status: command.StatusQueued}
		f.records[req.ID] = r
		return r, nil
	}
	status := protocol.ResultOK
	if f.fail > 0 {
		f.fail--
		status = protocol.ResultFailed
	}
	r := command.Record{ID: req.ID, Device: dev, Actor: req.Actor, Status: command.StatusSent, Error: ""}
	f.records[req.ID] = r
	f.submits = append(f.submits, req.ID)
	f.inflight[dev]++
	f.all++
	f.maxPer = max(f.maxPer, f.inflight[dev])
	f.maxAll = max(f.maxAll, f.all)
	r.Status = status
	f.records[req.ID+"/final"] = r
	return f.records[req.ID], nil
}

func (f *fakeCommands) Wait(ctx context.Context, dev, id string) (command.Record, error) {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight[dev]--
	f.all--
	r := f.records[id+"/final"]
	if r.Status == protocol.ResultFailed {
		r.Error = "line busy"
	}
	f.records[id] = r
	return r, ctx.Err()
}

func (f *fakeCommands) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.submits...)
}

// env is a Scheduler on a store, with a fake clock the test steps.
type env struct {
	t     *testing.T
	sch   *fakeSchedules
	dir   string
	db    *store.DB
	clk   *testkit.Clock
	cmds  *fakeCommands
	s     *Scheduler
	clock bool // ClockOK's answer
	mu    sync.Mutex
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
}

var t0 = time.Date(2026, 3, 28, 3, 0, 0, 0, time.UTC) // 04:00 in Berlin

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(t0), cmds: newFakeCommands(), clock: true, sch: &fakeSchedules{set: map[string]protocol.DeviceSchedule{}}}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	e.db = testkit.OpenStore(e.t, e.dir)
	s, err := Open(e.db, Config{Commands: e.cmds, Schedules: e.sch, Now: e.clk.Now, Workers: 2, Location: &schedule.Location{Latitude: 52.52, Longitude: 13.40},
		ClockOK: func() (bool, string) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.clock, "the kernel says the clock is not synchronised"
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	s.backoff = time.Millisecond
	e.s = s
	e.ctx, e.stop = context.WithCancel(context.Background())
	e.t.Cleanup(func() { e.stop(); e.wg.Wait() })
}

// crash stops the scheduler as kill -9 would: runs in progress are not
// finished, and the store is reopened.
func (e *env) crash() {
	e.t.Helper()
	e.stop()
	e.wg.Wait()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// step fires what is due now and starts the runs; with wait, it waits
// for them, and for the runs queued behind them, until none is left.
func (e *env) step(wait bool) {
	for {
		now := e.clk.Now()
		e.s.fire(now)
		e.s.dispatch(e.ctx, &e.wg, now)
		if !wait {
			return
		}
		e.wg.Wait()
		e.s.mu.Lock()
		left := len(e.s.queue)
		e.s.mu.Unlock()
		if left == 0 {
			return
		}
	}
}

func relayJob(id, cron string) Job {
	return Job{ID: id, Trigger: schedule.Trigger{Cron: cron, Zone: "Europe/Berlin"},
		Action: Action{Command: &CommandAction{Device: "kitchen", Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: "relay", Level: ptr(true)}}}}
}

func ptr[T any](v T) *T { return &v }

func (e *env) put(j Job, ifv uint64) Version {
	e.t.Helper()
	v, err := e.s.Put(Write{Job: j, IfVersion: ifv, Author: "admin"})
	if err != nil {
		e.t.Fatalf("Put %s: %v", j.ID, err)
	}
	return v
}

func (e *env) runs(id string) []Run {
	e.t.Helper()
	rs, err := e.s.Runs(id, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

func statuses(rs []Run) string {
	var b []string
	for _, r := range rs {
		b = append(b, r.Cause+":"+r.Status)
	}
	return strings.Join(b, " ")
}

func TestInvalidJobsSayWhatAndWhere(t *testing.T) {
	e := newEnv(t)
	good := relayJob("morning", "30 6 * * *")
	for _, tc := range []struct {
		name  string
		edit  func(*Job)
		field string
		msg   string
	}{
		{"malformed cron", func(j *Job) { j.Trigger.Cron = "61 6 * * *" }, "trigger", "minute"},
		{"30 February", func(j *Job) { j.Trigger.Cron = "0 0 30 2 *" }, "trigger", "never fires"},
		{"unknown zone", func(j *Job) { j.Trigger.Zone = "Europe/Atlantis" }, "trigger", "Europe/Atlantis"},
		{"no action", func(j *Job) { j.Action = Action{} }, "action", "exactly one"},
		{"two actions", func(j *Job) { j.Action.Webhook = &WebhookAction{URL: "http://h/"} }, "action", "exactly one"},
		{"unknown device", func(j *Job) { j.Action.Command.Device = "garage" }, "action.command.device", "no such device"},
		{"unknown line", func(j *Job) { j.Action.Command.Params.Line = "fan" }, "action.command", `line "fan"`},
		{"bad id", func(j *Job) { j.ID = "Morning Relay" }, "id", "want 1 to 40"},
		{"past once", func(j *Job) { j.Trigger = schedule.Trigger{At: t0.Add(-time.Hour)} }, "trigger", "in the past"},
		{"bad policy", func(j *Job) { j.Missed = "catch_up" }, "missed", "run_once"},
		{"hub topic", func(j *Job) {
			j.Action = Action{Publish: &PublishAction{Topic: "alicia/v1/devices/x/cmd", Payload: "on"}}
		}, "action.publish.topic", "the hub's and the devices' own"},
		{"webhook url", func(j *Job) { j.Action = Action{Webhook: &WebhookAction{URL: "ftp://x/"}} }, "action.webhook.url", "http or https"},
	} {
		j := good
		cmd := *good.Action.Command
		j.Action.Command = &cmd
		tc.edit(&j)
		_, err := e.s.Put(Write{Job: j, Author: "admin"})
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want an InvalidError at %s saying %q", tc.name, err, tc.field, tc.msg)
		}
	}
	if len(e.s.List()) != 0 {
		t.Errorf("invalid jobs were stored: %+v", e.s.List())
	}
}

func TestVersionsAreCompareAndSet(t *testing.T) {
	e := newEnv(t)
	j := relayJob("morning", "30 6 * * *")
	v1 := e.put(j, 0)
	if _, err := e.s.Put(Write{Job: j, Author: "admin"}); !errors.Is(err, ErrConflict) {
		t.Errorf("create again: %v, want ErrConflict", err)
	}
	j.Trigger.Cron = "45 6 * * *"
	v2 := e.put(j, v1.Number)
	if _, err := e.s.Put(Write{Job: j, IfVersion: v1.Number, Author: "admin"}); !errors.Is(err, ErrConflict) {
		t.Errorf("write over version 1: %v, want ErrConflict", err)
	}
	if err := e.s.Delete("morning", v1.Number, "admin"); !errors.Is(err, ErrConflict) {
		t.Errorf("delete at version 1: %v, want ErrConflict", err)
	}
	if err := e.s.Delete("morning", v2.Number, "admin"); err != nil {
		t.Fatal(err)
	}
	vs, err := e.s.Versions("morning")
	if err != nil || len(vs) != 3 || !vs[0].Deleted || vs[1].Job.Trigger.Cron != "45 6 * * *" || vs[2].Author != "admin" {
		t.Errorf("history %+v, %v", vs, err)
	}
	if _, err := e.s.Get("morning"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete: %v", err)
	}
}

func TestFiresOnTimeWithOneCommandIDPerAttempt(t *testing.T) {
	e := newEnv(t)
	e.put(relayJob("morning", "30 6 * * *"), 0) // 06:30 Berlin = 05:30 UTC on 28 March (CET)
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	e.clk.Set(time.Date(2026, 3, 29, 4, 29, 59, 0, time.UTC))
	e.step(true)
	if rs := e.runs("morning"); len(rs) != 1 || rs[0].Status != RunOK {
		t.Fatalf("after 06:30 on 28 March: runs %+v", rs)
	}
	// 29 March is the spring-forward day: 06:30 CEST is 04:30 UTC.
	e.clk.Set(time.Date(2026, 3, 29, 4, 30, 0, 0, time.UTC))
	e.step(true)
	rs := e.runs("morning")
	if len(rs) != 2 || rs[0].Status != RunOK || !rs[0].Scheduled.Equal(time.Date(2026, 3, 29, 4, 30, 0, 0, time.UTC)) || rs[0].Cause != "schedule" {
		t.Fatalf("runs %+v", rs)
	}
	if sent := e.cmds.sent(); len(sent) != 2 || sent[1] != rs[0].ID+".1" {
		t.Errorf("commands sent %q, want the second with ID %s.1", sent, rs[0].ID)
	}
	e.cmds.mu.Lock()
	actor := e.cmds.records[rs[0].ID+".1"].Actor
	e.cmds.mu.Unlock()
	if actor != "scheduler:morning" {
		t.Errorf("actor %q", actor)
	}
}

func TestMissedRunsFollowThePolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		limit  int
		want   string // the runs' cause:status, newest first
		sent   int
	}{
		{MissedRunOnce, 0, "missed:ok missed:skipped", 1},    // one run, one record of the 9 not run
		{MissedRunOnce, -1, "schedule:ok missed:skipped", 1}, // the last fire is on time: it stands for the missed ones
		{MissedSkip, 0, "missed:skipped", 0},
		{MissedRunAll, 0, strings.Repeat("missed:ok ", 9) + "missed:ok", 10},
		{MissedRunAll, 3, "missed:ok missed:ok missed:ok missed:skipped", 3},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.policy, tc.limit), func(t *testing.T) {
			e := newEnv(t)
			j := relayJob("often", "*/5 * * * *")
			j.Missed, j.MissedLimit = tc.policy, max(tc.limit, 0)
			e.put(j, 0)
			// The hub is down for 52 minutes (ten fires), then starts;
			// limit -1: 50 minutes, the last fire 5 s ago (on time).
			e.crash()
			if tc.limit < 0 {
				e.clk.Advance(50*time.Minute + 5*time.Second)
			} else {
				e.clk.Advance(52*time.Minute + 30*time.Second)
			}
			e.step(true)
			if got := statuses(e.runs("often")); got != strings.TrimSpace(tc.want) {
				t.Errorf("runs %q, want %q", got, tc.want)
			}
			if n := len(e.cmds.sent()); n != tc.sent {
				t.Errorf("%d commands sent, want %d", n, tc.sent)
			}
			// Nothing more until the next fire.
			e.step(true)
			if n := len(e.cmds.sent()); n != tc.sent {
				t.Errorf("a second pass sent %d commands, want %d", n, tc.sent)
			}
		})
	}
}

func TestMissedBeyondGraceIsSkipped(t *testing.T) {
	e := newEnv(t)
	j := relayJob("daily", "0 7 * * *")
	e.put(j, 0)
	e.crash()
	e.clk.Set(time.Date(2026, 3, 28, 9, 0, 0, 0, time.UTC)) // 07:00 CET was 06:00 UTC: 3 h ago
	e.step(true)
	rs := e.runs("daily")
	if len(rs) != 1 || rs[0].Status != RunSkipped || !strings.Contains(rs[0].Error, "grace 1h0m0s") {
		t.Errorf("runs %+v", rs)
	}
}

// TestALongOutageRunsTheLatestWithinGrace: after three hours down, an
// every-minute run_once job runs its latest missed fire (within the
// grace), not an old one, and records the rest as one skipped run.
func TestALongOutageRunsTheLatestWithinGrace(t *testing.T) {
	e := newEnv(t)
	e.put(relayJob("often", "* * * * *"), 0)
	e.crash()
	e.clk.Advance(3*time.Hour + 30*time.Second)
	e.step(true)
	rs := e.runs("often")
	if got := statuses(rs); got != "missed:ok missed:skipped" {
		t.Fatalf("runs %q", got)
	}
	if want := t0.Add(3 * time.Hour); !rs[0].Scheduled.Equal(want) {
		t.Errorf("ran the fire of %s, want the latest, %s", rs[0].Scheduled, want)
	}
	if !strings.Contains(rs[1].Error, "59 fire(s) within the grace 1h0m0s, and fires older than it,") {
		t.Errorf("skipped record %+v", rs[1])
	}
}

// TestACrashMidRunNeverAppliesTwice: a run claimed and sent before a
// crash resumes with its IDs: the command is not sent again, and the fire
// is not run again as a missed one.
func TestACrashMidRunNeverAppliesTwice(t *testing.T) {
	e := newEnv(t)
	e.cmds.hold = make(chan struct{})
	e.put(relayJob("morning", "30 6 * * *"), 0)
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(false)
	waitFor(t, "the command sent", func() bool { return len(e.cmds.sent()) == 1 })
	e.crash() // the run is stored running, its command sent
	close(e.cmds.hold)
	e.clk.Advance(2 * time.Minute)
	e.step(true)
	rs := e.runs("morning")
	if len(rs) != 1 || rs[0].Status != RunOK || rs[0].Attempts != 1 {
		t.Errorf("runs after the restart %+v, want the one run, resumed and ok", rs)
	}
	if sent := e.cmds.sent(); len(sent) != 1 {
		t.Errorf("commands sent %q, want one", sent)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not in 5 s: %s", what)
		}
		time.Sleep(time.Millisecond) // polling a goroutine's progress
	}
}

func TestCalendarJobsWaitForATrustedClock(t *testing.T) {
	e := newEnv(t)
	e.clock = false
	e.put(relayJob("morning", "30 6 * * *"), 0)
	every := relayJob("pulse", "")
	every.Trigger = schedule.Trigger{Every: schedule.Duration(time.Minute)}
	e.put(every, 0)
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	if rs := e.runs("morning"); len(rs) != 0 {
		t.Errorf("a calendar job ran on an untrusted clock: %+v", rs)
	}
	if st, _ := e.s.Get("morning"); !strings.Contains(st.Waiting, "not synchronised") {
		t.Errorf("status %+v, want it to say it waits for the clock", st)
	}
	if rs := e.runs("pulse"); len(rs) == 0 {
		t.Error("an interval job waited for the clock")
	}
	e.clock = true
	e.clk.Advance(10 * time.Second)
	e.step(true)
	if got := statuses(e.runs("morning")); got != "schedule:ok" {
		t.Errorf("once the clock is trusted: %q, want the 06:30 run", got)
	}
}

func TestPriorityAndLimits(t *testing.T) {
	e := newEnv(t)
	e.cmds.hold = make(chan struct{})
	for i := range 6 {
		j := relayJob(fmt.Sprintf("job%d", i), "30 6 * * *")
		j.Priority = i
		if i%2 == 1 {
			j.Action.Command.Device = "kitchen"
		}
		e.put(j, 0)
	}
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(false)
	waitFor(t, "the first run started", func() bool { return len(e.cmds.sent()) == 1 })
	// One device: one command at a time, the highest priority first.
	if sent := e.cmds.sent(); !strings.HasPrefix(sent[0], "job5.") {
		t.Errorf("first command %q, want job5's", sent[0])
	}
	close(e.cmds.hold)
	for range 6 {
		e.wg.Wait()
		e.step(false)
	}
	e.wg.Wait()
	if e.cmds.maxPer != 1 {
		t.Errorf("%d commands at once on one device, want 1", e.cmds.maxPer)
	}
	if n := len(e.cmds.sent()); n != 6 {
		t.Errorf("%d commands, want 6", n)
	}
}

func TestRetriesThenFails(t *testing.T) {
	e := newEnv(t)
	e.cmds.fail = 2
	e.put(relayJob("morning", "30 6 * * *"), 0)
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	rs := e.runs("morning")
	if len(rs) != 1 || rs[0].Status != RunOK || rs[0].Attempts != 3 {
		t.Fatalf("runs %+v, want ok at the third attempt", rs)
	}
	if sent := e.cmds.sent(); len(sent) != 3 || sent[2] != rs[0].ID+".3" {
		t.Errorf("commands %q, want one ID per attempt", sent)
	}
	j := relayJob("evening", "0 19 * * *")
	j.Retries = ptr(1)
	e.put(j, 0)
	e.cmds.fail = 5
	e.clk.Set(time.Date(2026, 3, 28, 18, 0, 0, 0, time.UTC))
	e.step(true)
	rs = e.runs("evening")
	if len(rs) != 1 || rs[0].Status != RunFailed || rs[0].Attempts != 2 || !strings.Contains(rs[0].Error, "line busy") {
		t.Errorf("runs %+v, want failed after 2 attempts with the device's error", rs)
	}
}

func TestOfflineDeviceFailsOrQueues(t *testing.T) {
	e := newEnv(t)
	fail := relayJob("attic-fail", "30 6 * * *")
	fail.Action.Command.Device = "attic"
	e.put(fail, 0)
	queue := relayJob("attic-queue", "30 6 * * *")
	queue.Action.Command.Device = "attic"
	queue.Action.Command.QueueTTL = schedule.Duration(time.Hour)
	e.put(queue, 0)
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	if rs := e.runs("attic-fail"); len(rs) != 1 || rs[0].Status != RunFailed || rs[0].Attempts != 1 || !strings.Contains(rs[0].Error, "set queue_ttl to queue") {
		t.Errorf("fail: %+v", rs)
	}
	if rs := e.runs("attic-queue"); len(rs) != 1 || rs[0].Status != RunQueued {
		t.Errorf("queue: %+v", rs)
	}
}

func TestOverlapForbidSkips(t *testing.T) {
	e := newEnv(t)
	e.cmds.hold = make(chan struct{})
	j := relayJob("pulse", "")
	j.Trigger = schedule.Trigger{Every: schedule.Duration(time.Minute)}
	e.put(j, 0)
	e.clk.Advance(time.Minute)
	e.step(false)
	waitFor(t, "the first run started", func() bool { return len(e.cmds.sent()) == 1 })
	e.clk.Advance(time.Minute)
	e.step(false)
	close(e.cmds.hold)
	e.wg.Wait()
	if got := statuses(e.runs("pulse")); got != "missed:skipped schedule:ok" && got != "schedule:skipped schedule:ok" {
		t.Errorf("runs %q, want the second fire skipped", got)
	}
}

func TestWebhookCarriesTheRunAndRetries(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body["job"] != "hook" {
			t.Errorf("body %v, %v", body, err)
		}
		if len(keys) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	j := Job{ID: "hook", Trigger: schedule.Trigger{Cron: "30 6 * * *", Zone: "UTC"}, Action: Action{Webhook: &WebhookAction{URL: srv.URL}}}
	e.put(j, 0)
	e.clk.Set(time.Date(2026, 3, 28, 6, 30, 0, 0, time.UTC))
	e.step(true)
	rs := e.runs("hook")
	if len(rs) != 1 || rs[0].Status != RunOK || rs[0].Attempts != 2 || rs[0].Result != "webhook answered 200" {
		t.Fatalf("runs %+v", rs)
	}
	if len(keys) != 2 || keys[0] != rs[0].ID || keys[1] != rs[0].ID {
		t.Errorf("Idempotency-Keys %q, want the run's ID twice", keys)
	}
}

func TestPauseResumeAndRunNow(t *testing.T) {
	e := newEnv(t)
	e.put(relayJob("morning", "30 6 * * *"), 0)
	if _, err := e.s.Pause("morning"); err != nil {
		t.Fatal(err)
	}
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	if rs := e.runs("morning"); len(rs) != 0 {
		t.Errorf("a paused job ran: %+v", rs)
	}
	e.clk.Advance(time.Hour)
	if _, err := e.s.Resume("morning"); err != nil {
		t.Fatal(err)
	}
	e.step(true)
	if rs := e.runs("morning"); len(rs) != 0 {
		t.Errorf("fires while paused ran after resume: %+v", rs)
	}
	r, err := e.s.RunNow("morning")
	if err != nil {
		t.Fatal(err)
	}
	e.step(true)
	if rs := e.runs("morning"); len(rs) != 1 || rs[0].ID != r.ID || rs[0].Cause != "manual" || rs[0].Status != RunOK {
		t.Errorf("runs %+v", rs)
	}
}

// fakeSchedules records the schedules given to devices.
type fakeSchedules struct {
	mu  sync.Mutex
	set map[string]protocol.DeviceSchedule
	n   int // SetSchedule calls
}

func (f *fakeSchedules) SetSchedule(dev string, s protocol.DeviceSchedule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set[dev] = s
	f.n++
	return nil
}

func (f *fakeSchedules) get(dev string) (protocol.DeviceSchedule, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.set[dev]
	return s, ok
}

// TestOnDeviceJobs: an on-device job is given to its device (not fired by
// the hub), taken back when deleted, and the runs the device reports are
// stored once.
func TestOnDeviceJobs(t *testing.T) {
	e := newEnv(t)
	j := relayJob("morning", "30 6 * * *")
	j.OnDevice = true
	v := e.put(j, 0)
	e.s.syncSchedules()
	sch, ok := e.sch.get("kitchen")
	if !ok || len(sch.Jobs) != 1 || sch.Jobs[0].ID != "morning" || sch.Jobs[0].Version != v.Number || sch.Jobs[0].Action != protocol.ActionGPIOWrite ||
		sch.Jobs[0].Missed != MissedRunOnce || sch.Jobs[0].GraceS != 3600 || !strings.Contains(string(sch.Jobs[0].Trigger), `"30 6 * * *"`) {
		t.Fatalf("kitchen's schedule %+v", sch)
	}
	e.clk.Set(time.Date(2026, 3, 28, 5, 30, 0, 0, time.UTC))
	e.step(true)
	if n := len(e.cmds.sent()); n != 0 {
		t.Errorf("the hub sent %d commands for an on-device job", n)
	}
	// The device reports its run, twice (a resend before the ack).
	jr := &protocol.JobRun{Epoch: "e1", Seq: 1, Job: "morning", Version: v.Number, Run: "morning.1774675800",
		Scheduled: e.clk.Now(), Ended: e.clk.Now(), Cause: "schedule", Status: protocol.JobRunOK, Attempts: 1, Result: "ok"}
	for range 2 {
		if err := e.s.RecordDeviceRun("kitchen", jr); err != nil {
			t.Fatal(err)
		}
	}
	if rs := e.runs("morning"); len(rs) != 1 || rs[0].Cause != "device schedule" || rs[0].Status != RunOK {
		t.Errorf("runs %+v, want the device's run once", rs)
	}
	if err := e.s.RecordDeviceRun("attic", jr); err == nil {
		t.Error("a run of kitchen's job from attic was stored")
	}
	jr.Job, jr.Run = "nosuch", "nosuch.1774675800"
	if err := e.s.RecordDeviceRun("kitchen", jr); err == nil {
		t.Error("a run of a job that never existed was stored")
	}
	// Given again after a restart (idempotent), taken back when deleted.
	e.crash()
	e.s.syncSchedules()
	if sch, _ := e.sch.get("kitchen"); len(sch.Jobs) != 1 {
		t.Errorf("after a restart: %+v", sch)
	}
	if err := e.s.Delete("morning", v.Number, "admin"); err != nil {
		t.Fatal(err)
	}
	e.s.syncSchedules()
	if sch, _ := e.sch.get("kitchen"); len(sch.Jobs) != 0 {
		t.Errorf("after the delete: %+v, want no jobs", sch)
	}
	// Only a command job runs on a device.
	hook := Job{ID: "hook", OnDevice: true, Trigger: schedule.Trigger{Cron: "0 7 * * *", Zone: "UTC"}, Action: Action{Webhook: &WebhookAction{URL: "http://h/"}}}
	var ie *InvalidError
	if _, err := e.s.Put(Write{Job: hook, Author: "admin"}); !errors.As(err, &ie) || ie.Field != "on_device" {
		t.Errorf("an on-device webhook: %v", err)
	}
}

func TestOverlapReplaceEndsThePreviousRun(t *testing.T) {
	e := newEnv(t)
	e.cmds.hold = make(chan struct{})
	defer close(e.cmds.hold)
	j := relayJob("pulse", "")
	j.Trigger = schedule.Trigger{Every: schedule.Duration(time.Minute)}
	j.Overlap = OverlapReplace
	e.put(j, 0)
	e.clk.Advance(time.Minute)
	e.step(false)
	waitFor(t, "the first run started", func() bool { return len(e.cmds.sent()) == 1 })
	e.clk.Advance(time.Minute)
	e.s.fire(e.clk.Now()) // cancels the first run and queues the second
	waitFor(t, "the first run ended", func() bool {
		rs := e.runs("pulse")
		return len(rs) == 2 && rs[1].Status == RunFailed
	})
	if rs := e.runs("pulse"); !strings.Contains(rs[1].Error, "overlap: replace") {
		t.Errorf("the replaced run: %+v", rs[1])
	}
}
