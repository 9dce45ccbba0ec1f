package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hw is the device's hardware: lines GPIO17 (alias relay, out) and
// GPIO27 (in).
var hw = &protocol.Hardware{Backend: "sim", Lines: []protocol.HardwareLine{
	{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}, {Name: "GPIO27", Direction: protocol.DirIn},
}}

// fakeHW records the commands it executes and answers with result.
type fakeHW struct {
	mu     sync.Mutex
	ids    []string
	result func(ctx context.Context, c *protocol.Command) protocol.CommandResult
}

func (f *fakeHW) Execute(ctx context.Context, c *protocol.Command) protocol.CommandResult {
	f.mu.Lock()
	f.ids = append(f.ids, c.ID)
	res := f.result
	f.mu.Unlock()
	if res != nil {
		return res(ctx, c)
	}
	return protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK}
}

func (f *fakeHW) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

// rig is a Runner on a fake clock in a state directory that survives
// "restarts" (reopen).
type rig struct {
	t       *testing.T
	dir     string
	clk     *testkit.Clock
	hw      *fakeHW
	kernel  atomic.Bool // the kernel's clock state
	logs    *testkit.LogBuffer
	ob      *outbox.Outbox
	r       *Runner
	retries int
}

func newRig(t *testing.T, start time.Time) *rig {
	g := &rig{t: t, dir: t.TempDir(), clk: testkit.NewClock(start), hw: &fakeHW{}, retries: -1}
	g.kernel.Store(true)
	g.open()
	return g
}

// open opens (or reopens, after close) the runner on the rig's files.
func (g *rig) open() {
	g.t.Helper()
	ob, err := OpenOutbox(outbox.Options{Path: filepath.Join(g.dir, "jobs.db"), Now: g.clk.Now})
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { ob.Close() })
	var log *slog.Logger
	log, g.logs = testkit.NewLogger()
	g.r, err = Open(Config{Path: filepath.Join(g.dir, "jobs.json"), Execute: g.hw.Execute, Now: g.clk.Now, Retries: g.retries,
		Backoff: time.Millisecond, Logger: log, ClockOK: func() (bool, string) {
			if g.kernel.Load() {
				return true, ""
			}
			return false, "not synchronised (test)"
		}}, ob)
	if err != nil {
		g.t.Fatal(err)
	}
	g.ob = ob
}

// restart stops nothing (the caller did) and opens the files again, as
// a new process would.
func (g *rig) restart() {
	g.t.Helper()
	g.ob.Close()
	g.open()
	g.r.recover()
}

func (g *rig) set(jobs ...protocol.DeviceJob) {
	g.t.Helper()
	b, err := json.Marshal(protocol.DeviceSchedule{Jobs: jobs})
	if err != nil {
		g.t.Fatal(err)
	}
	s, err := Parse(b, hw)
	if err != nil {
		g.t.Fatalf("Parse: %v", err)
	}
	g.r.SetJobs(s)
}

// step runs one pass of the loop at the clock's time and waits for the
// runs it started.
func (g *rig) step() {
	g.r.step(context.Background())
	g.r.runs.Wait()
}

// queued returns the runs in the outbox, with their seqs.
func (g *rig) queued() ([]protocol.JobRun, []uint64) {
	g.t.Helper()
	es, err := g.ob.Pending(0, 1000)
	if err != nil {
		g.t.Fatal(err)
	}
	var runs []protocol.JobRun
	var seqs []uint64
	for _, e := range es {
		var jr protocol.JobRun
		if err := json.Unmarshal(e.Data, &jr); err != nil {
			g.t.Fatal(err)
		}
		runs = append(runs, jr)
		seqs = append(seqs, e.Seq)
	}
	return runs, seqs
}

// brief is a run as the tests compare it.
type brief struct {
	Run, Cause, Status string
}

func (g *rig) briefs() []brief {
	runs, _ := g.queued()
	var out []brief
	for _, r := range runs {
		out = append(out, brief{r.Run, r.Cause, r.Status})
	}
	return out
}

func relayJob(id string, trigger string) protocol.DeviceJob {
	on := true
	return protocol.DeviceJob{ID: id, Version: 1, Trigger: json.RawMessage(trigger), Action: protocol.ActionGPIOWrite,
		Params: protocol.CommandParams{Line: "relay", Level: &on}}
}

func rid(job string, at time.Time) string { return fmt.Sprintf("%s.%d", job, at.Unix()) }

var t0 = time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC)

func TestFiresOnTime(t *testing.T) {
	g := newRig(t, t0)
	g.set(relayJob("morning", `{"cron": "30 6 * * *", "zone": "UTC"}`))
	g.clk.Set(t0.Add(29*time.Minute + 59*time.Second))
	g.step()
	if got := g.hw.commands(); len(got) != 0 {
		t.Fatalf("commands before the fire: %v", got)
	}
	fire := t0.Add(30 * time.Minute)
	g.clk.Set(fire.Add(300 * time.Millisecond))
	g.step()
	g.step() // the same fire is not run again
	if diff := cmp.Diff([]string{rid("morning", fire) + ".1"}, g.hw.commands()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	runs, _ := g.queued()
	if len(runs) != 1 {
		t.Fatalf("outbox: %+v, want one run", runs)
	}
	r := runs[0]
	want := protocol.JobRun{Job: "morning", Version: 1, Run: rid("morning", fire), Scheduled: fire, Started: fire.Add(300 * time.Millisecond),
		Ended: fire.Add(300 * time.Millisecond), Cause: "schedule", Status: protocol.JobRunOK, Attempts: 1}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("run (-want +got):\n%s", diff)
	}
	r.Epoch, r.Seq = g.ob.Epoch(), 1
	if err := r.Validate(); err != nil {
		t.Errorf("the run is not a valid JobRun: %v", err)
	}
}

// TestDST: a daily 02:30 in Europe/Berlin runs at 03:00 CEST on the day
// the clocks go forward (internal/schedule's rule), once.
func TestDST(t *testing.T) {
	start := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	g := newRig(t, start)
	g.set(relayJob("night", `{"cron": "30 2 * * *", "zone": "Europe/Berlin"}`))
	jump := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC) // 02:00 CET → 03:00 CEST
	for _, at := range []time.Time{jump.Add(-time.Second), jump, jump.Add(time.Second), jump.Add(time.Hour)} {
		g.clk.Set(at)
		g.step()
	}
	if diff := cmp.Diff([]brief{{rid("night", jump), "schedule", "ok"}}, g.briefs()); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
}

// TestMissedPolicies: an every-10-minutes job, the agent "down" from t0 to
// the time of the step.
func TestMissedPolicies(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name   string
		missed string
		limit  int
		graceS int64
		now    time.Time
		want   []brief
	}{
		{"skip", "skip", 0, 0, at(35), []brief{{rid("j", at(30)), "missed", "skipped"}}},
		{"run_once", "run_once", 0, 0, at(35), []brief{{rid("j", at(30)), "missed", "ok"}}},
		{"run_once, default policy", "", 0, 0, at(35), []brief{{rid("j", at(30)), "missed", "ok"}}},
		{"run_all", "run_all", 0, 0, at(35), []brief{
			{rid("j", at(10)), "missed", "ok"}, {rid("j", at(20)), "missed", "ok"}, {rid("j", at(30)), "missed", "ok"}}},
		{"run_all beyond the limit", "run_all", 2, 0, at(35), []brief{
			{rid("j", at(10)), "missed", "skipped"}, {rid("j", at(20)), "missed", "ok"}, {rid("j", at(30)), "missed", "ok"}}},
		{"run_all beyond the grace", "run_all", 0, 15 * 60, at(35), []brief{
			{rid("j", at(10)), "missed", "skipped"}, {rid("j", at(30)), "missed", "ok"}}},
		{"run_once, only beyond the grace", "run_once", 0, 60, at(35), []brief{{rid("j", at(10)), "missed", "skipped"}}},
		{"run_once with a run on time", "run_once", 0, 0, at(30).Add(2 * time.Second), []brief{
			{rid("j", at(20)), "missed", "skipped"}, {rid("j", at(30)), "schedule", "ok"}}},
		{"skip with a run on time", "skip", 0, 0, at(30), []brief{
			{rid("j", at(20)), "missed", "skipped"}, {rid("j", at(30)), "schedule", "ok"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, t0)
			j := relayJob("j", `{"every": "10m"}`)
			j.Missed, j.MissedLimit, j.GraceS = tc.missed, tc.limit, tc.graceS
			g.set(j)
			g.clk.Set(tc.now)
			g.step()
			got := g.briefs()
			// The order in the outbox: skips are claimed before runs end.
			sortBriefs(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("runs (-want +got):\n%s", diff)
			}
		})
	}
}

func sortBriefs(b []brief) {
	for i := range b {
		for j := i + 1; j < len(b); j++ {
			if b[j].Run < b[i].Run {
				b[i], b[j] = b[j], b[i]
			}
		}
	}
}

// TestStateSurvivesARestart: Done is kept in jobs.json, so a restarted
// agent runs what it missed (under the policy) and not what it ran.
func TestStateSurvivesARestart(t *testing.T) {
	g := newRig(t, t0)
	job := relayJob("j", `{"every": "10m"}`)
	g.set(job)
	g.clk.Set(t0.Add(10 * time.Minute))
	g.step()
	// Down from 06:10 to 06:45; the same schedule comes back from the
	// saved configuration.
	g.restart()
	g.set(job)
	g.clk.Set(t0.Add(45 * time.Minute))
	g.step()
	want := []brief{{rid("j", t0.Add(10*time.Minute)), "schedule", "ok"}, {rid("j", t0.Add(40*time.Minute)), "missed", "ok"}}
	if diff := cmp.Diff(want, g.briefs()); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	// Down again from 06:45 to 07:30, and the trigger changed meanwhile:
	// the job starts afresh, nothing missed.
	g.restart()
	g.clk.Set(t0.Add(90 * time.Minute))
	g.set(relayJob("j", `{"every": "15m"}`))
	g.clk.Set(t0.Add(91 * time.Minute))
	g.step()
	if n := len(g.briefs()); n != 2 {
		t.Errorf("after a new trigger: %v, want no new run", g.briefs())
	}
	g.clk.Set(t0.Add(105 * time.Minute))
	g.step()
	if got := g.briefs(); len(got) != 3 || got[2] != (brief{rid("j", t0.Add(105*time.Minute)), "schedule", "ok"}) {
		t.Errorf("runs: %v, want a third on time at 07:45", got)
	}
}

// TestInterruptedRunIsNotExecutedAgain: the agent stops while a run's
// command executes; the next process ends it as failed and does not send
// the command again, nor claim the fire again.
func TestInterruptedRunIsNotExecutedAgain(t *testing.T) {
	g := newRig(t, t0)
	started := make(chan struct{})
	g.hw.result = func(ctx context.Context, c *protocol.Command) protocol.CommandResult {
		close(started)
		<-ctx.Done()
		return protocol.CommandResult{ID: c.ID, Status: protocol.ResultFailed, Error: ctx.Err().Error()}
	}
	job := relayJob("j", `{"every": "10m"}`)
	g.set(job)
	fire := g.clk.Advance(10 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	g.r.step(ctx)
	<-started
	cancel() // the agent stops
	g.r.runs.Wait()
	if runs, _ := g.queued(); len(runs) != 0 {
		t.Fatalf("outbox after the stop: %+v, want nothing yet", runs)
	}
	g.hw.result = nil
	g.restart()
	g.set(job)
	g.step()
	want := []brief{{rid("j", fire), "schedule", "failed"}}
	if diff := cmp.Diff(want, g.briefs()); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if runs, _ := g.queued(); len(runs) == 1 && runs[0].Error != interrupted {
		t.Errorf("error %q, want %q", runs[0].Error, interrupted)
	}
	if diff := cmp.Diff([]string{rid("j", fire) + ".1"}, g.hw.commands()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
	if !strings.Contains(g.logs.String(), "interrupted by a restart") {
		t.Errorf("log does not say the run was interrupted:\n%s", g.logs)
	}
}

// TestRunInBothIsQueuedOnce: a process that stopped after putting a run in
// the outbox but before saving jobs.json leaves it in both; the next one
// queues it once.
func TestRunInBothIsQueuedOnce(t *testing.T) {
	g := newRig(t, t0)
	jr := protocol.JobRun{Job: "j", Version: 1, Run: rid("j", t0), Scheduled: t0, Ended: t0, Cause: "schedule", Status: protocol.JobRunOK, Attempts: 1}
	b, _ := json.Marshal(&jr)
	if _, err := g.ob.Append(b); err != nil {
		t.Fatal(err)
	}
	g.r.st.Runs = []protocol.JobRun{jr}
	if err := g.r.saveLocked(); err != nil {
		t.Fatal(err)
	}
	g.restart()
	if diff := cmp.Diff([]brief{{rid("j", t0), "schedule", "ok"}}, g.briefs()); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	st, err := os.ReadFile(filepath.Join(g.dir, "jobs.json"))
	if err != nil || strings.Contains(string(st), `"runs"`) {
		t.Errorf("jobs.json still holds runs: %s (%v)", st, err)
	}
}

func TestRetriesAndFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []string
		want     string
		attempts int
	}{
		{"ok after a failure", []string{"failed", "ok"}, "ok", 2},
		{"failed three times", []string{"failed", "failed", "failed"}, "failed", 3},
		{"invalid is not retried", []string{"invalid"}, "failed", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t, t0)
			g.ob.Close()
			g.retries = 2
			g.open()
			var n atomic.Int32
			g.hw.result = func(_ context.Context, c *protocol.Command) protocol.CommandResult {
				i := int(n.Add(1)) - 1
				return protocol.CommandResult{ID: c.ID, Status: tc.statuses[i], Error: "from the test"}
			}
			g.set(relayJob("j", `{"every": "10m"}`))
			fire := g.clk.Advance(10 * time.Minute)
			g.step()
			runs, _ := g.queued()
			if len(runs) != 1 || runs[0].Status != tc.want || runs[0].Attempts != tc.attempts {
				t.Fatalf("runs %+v, want one %s after %d attempts", runs, tc.want, tc.attempts)
			}
			var ids []string
			for i := 1; i <= tc.attempts; i++ {
				ids = append(ids, fmt.Sprintf("%s.%d", rid("j", fire), i))
			}
			if diff := cmp.Diff(ids, g.hw.commands()); diff != "" {
				t.Errorf("command IDs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestClockUntrusted: calendar jobs wait for a trusted clock (kernel or
// the hub's agreement), interval jobs do not; a restart forgets what the
// hub taught.
func TestClockUntrusted(t *testing.T) {
	g := newRig(t, t0)
	g.kernel.Store(false)
	g.set(relayJob("cal", `{"cron": "*/10 * * * *", "zone": "UTC"}`), relayJob("every", `{"every": "10m"}`))
	g.clk.Set(t0.Add(10 * time.Minute))
	g.step()
	g.step()
	if diff := cmp.Diff([]brief{{rid("every", t0.Add(10*time.Minute)), "schedule", "ok"}}, g.briefs()); diff != "" {
		t.Errorf("runs with an untrusted clock (-want +got):\n%s", diff)
	}
	if n := strings.Count(g.logs.String(), "calendar jobs wait for a trustworthy clock"); n != 1 {
		t.Errorf("the wait is logged %d times, want once:\n%s", n, g.logs)
	}
	// The hub's time disagrees: still waiting.
	now := g.clk.Now()
	g.r.HubTime(now.Add(time.Hour), now.Add(-time.Second))
	g.step()
	if n := len(g.briefs()); n != 1 {
		t.Errorf("runs after a disagreeing hub time: %v", g.briefs())
	}
	// The hub's time agrees: the calendar job, set while the clock was
	// untrusted, fires from now on.
	g.r.HubTime(now.Add(-200*time.Millisecond), now.Add(-time.Second))
	g.step()
	if n := len(g.briefs()); n != 1 {
		t.Errorf("runs when the hub's clock agrees: %v, want no calendar run for a fire before the clock was trusted", g.briefs())
	}
	if !strings.Contains(g.logs.String(), "the clock is trustworthy: calendar jobs fire") {
		t.Errorf("the start is not logged:\n%s", g.logs)
	}
	g.clk.Set(t0.Add(20 * time.Minute))
	g.step()
	want := []brief{{rid("cal", t0.Add(20*time.Minute)), "schedule", "ok"},
		{rid("every", t0.Add(10*time.Minute)), "schedule", "ok"}, {rid("every", t0.Add(20*time.Minute)), "schedule", "ok"}}
	got := g.briefs()
	sortBriefs(got) // runs of one pass end in any order
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs once the hub's clock agrees (-want +got):\n%s", diff)
	}
	// A later disagreement stops them again.
	now = g.clk.Now()
	g.r.HubTime(now.Add(-time.Hour), now.Add(-time.Second))
	g.clk.Set(t0.Add(30 * time.Minute))
	g.step()
	if got := g.briefs(); len(got) != 4 || got[3].Run != rid("every", t0.Add(30*time.Minute)) {
		t.Errorf("runs after the hub's clock disagreed: %v, want the interval job's only", got)
	}
	// A restart forgets the hub's word.
	g.r.HubTime(g.clk.Now(), g.clk.Now())
	g.restart()
	g.set(relayJob("cal", `{"cron": "*/10 * * * *", "zone": "UTC"}`), relayJob("every", `{"every": "10m"}`))
	g.clk.Set(t0.Add(31 * time.Minute))
	g.step()
	for _, b := range g.briefs() {
		if strings.HasPrefix(b.Run, "cal.") && b.Run != rid("cal", t0.Add(20*time.Minute)) {
			t.Errorf("the calendar job ran after a restart without a trusted clock: %v", b)
		}
	}
	// Once the kernel syncs, the fires missed meanwhile follow the policy
	// (run_once: the latest).
	g.kernel.Store(true)
	g.clk.Set(t0.Add(35 * time.Minute))
	g.step()
	got = g.briefs()
	if last := got[len(got)-1]; last != (brief{rid("cal", t0.Add(30*time.Minute)), "missed", "ok"}) {
		t.Errorf("last run %v, want cal's 06:30 as missed", last)
	}
}

// pub is a fake bus for the sender.
type pub struct {
	mu   sync.Mutex
	msgs []bus.Message
	sent chan struct{}
}

func (p *pub) Connected() bool                     { return true }
func (p *pub) WaitConnected(context.Context) error { return nil }
func (p *pub) Stats() bus.Stats                    { return bus.Stats{Connects: 1} }
func (p *pub) Publish(_ context.Context, m bus.Message) error {
	p.mu.Lock()
	p.msgs = append(p.msgs, m)
	p.mu.Unlock()
	select {
	case p.sent <- struct{}{}:
	default:
	}
	return nil
}

// TestOutboxUntilAcked: runs stay in the outbox until the hub's JobAck;
// the sender publishes them as JobRuns, QoS 1; the ack's time teaches the
// clock.
func TestOutboxUntilAcked(t *testing.T) {
	g := newRig(t, t0)
	g.kernel.Store(false)
	g.set(relayJob("j", `{"every": "10m"}`), relayJob("cal", `{"cron": "*/10 * * * *", "zone": "UTC"}`))
	fire := g.clk.Advance(10 * time.Minute)
	g.step()
	p := &pub{sent: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.r.Send(ctx, p, "dev1") }()
	defer func() { cancel(); <-done }()
	deadline := time.After(10 * time.Second)
	var msg bus.Message
	for msg.Topic == "" {
		select {
		case <-p.sent:
			p.mu.Lock()
			msg = p.msgs[0]
			p.mu.Unlock()
		case <-deadline:
			t.Fatal("nothing published")
		}
	}
	if msg.Topic != protocol.DeviceTopic("dev1", protocol.KindJobRun) || msg.QoS != 1 {
		t.Errorf("published on %q QoS %d", msg.Topic, msg.QoS)
	}
	_, jr, err := protocol.DecodeAs[*protocol.JobRun](msg.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if jr.Epoch != g.ob.Epoch() || jr.Seq != 1 || jr.Run != rid("j", fire) {
		t.Errorf("sent %+v", jr)
	}
	if runs, _ := g.queued(); len(runs) != 1 {
		t.Fatalf("outbox before the ack: %v", runs)
	}
	ack, err := protocol.Encode("hub1", g.clk.Now(), &protocol.JobAck{Epoch: g.ob.Epoch(), Seqs: []uint64{1}})
	if err != nil {
		t.Fatal(err)
	}
	g.r.HandleAck(ctx, bus.Message{Payload: ack})
	if runs, _ := g.queued(); len(runs) != 0 {
		t.Errorf("outbox after the ack: %v", runs)
	}
	// The ack's time agreed with the device's clock: calendar jobs fire
	// (from now on: the job was set while the clock was untrusted).
	g.step()
	g.clk.Advance(10 * time.Minute)
	g.step()
	var cal int
	for _, b := range g.briefs() {
		if strings.HasPrefix(b.Run, "cal.") {
			cal++
		}
	}
	if cal == 0 {
		t.Errorf("no calendar run after the hub's ack agreed: %v\n%s", g.briefs(), g.logs)
	}
}

func TestDamagedStateIsMovedAside(t *testing.T) {
	g := newRig(t, t0)
	path := filepath.Join(g.dir, "jobs.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.restart()
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 1 {
		t.Errorf("moved aside: %v", m)
	}
	if !strings.Contains(g.logs.String(), "damaged") {
		t.Errorf("not logged:\n%s", g.logs)
	}
}
