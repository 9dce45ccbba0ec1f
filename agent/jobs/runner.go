package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/internal/atomicfile"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/protocol"
)

// lateAfter is how late a fire may be handled and still count as on time
// rather than missed (the hub's rule).
const lateAfter = 10 * time.Second

// maxSleep bounds the loop's sleep, so that a clock set at boot, or its
// trust, is noticed.
const maxSleep = time.Second

// statusRunning marks a claimed run in the state file until it ends.
const statusRunning = "running"

// interrupted is the error of a run found in progress at start.
const interrupted = "interrupted by a restart of the agent; not run again (it may have acted)"

// Executor runs a command on the device's hardware
// (agentd.Hardware.Execute): at most once per command ID, never past its
// deadline.
type Executor func(ctx context.Context, c *protocol.Command) protocol.CommandResult

// Config configures a Runner.
type Config struct {
	// Path is the state file (jobs.json in the agent's state directory).
	// Required.
	Path string
	// Execute runs a job's command; nil fails every run (no hardware).
	Execute Executor
	// ClockOK says whether the kernel trusts the clock; default
	// clocksync.Synced(clocksync.Kernel).
	ClockOK func() (bool, string)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Deadline bounds a run's attempts (a pulse's duration is added).
	// Default 30s.
	Deadline time.Duration
	// Retries is how many times a failed command is tried again within the
	// deadline (default 2; negative: none). Backoff is the first wait
	// (default 1s), doubled after each attempt.
	Retries int
	Backoff time.Duration
	// Workers bounds the runs executing at once. Default 4.
	Workers int
	// Logger; nil discards.
	Logger *slog.Logger
}

// jobState is what the state file keeps of one job.
type jobState struct {
	// Key names the trigger and place Done belongs to.
	Key string `json:"key"`
	// Done is the instant up to which the job's fires are handled; zero
	// until the job may first fire (a calendar job set while the clock was
	// untrusted).
	Done time.Time `json:"done,omitzero"`
}

// state is the state file's content.
type state struct {
	Jobs map[string]jobState `json:"jobs"`
	// Runs are claimed runs not yet in the outbox: running (Status
	// "running") or ended.
	Runs []protocol.JobRun `json:"runs,omitempty"`
}

// entry is a job and its state.
type entry struct {
	job *Job
	st  jobState
}

// Runner fires a device's jobs from its own clock and keeps their runs in
// its outbox until the hub acknowledges them. Open it, give it its jobs
// with SetJobs (before or after Run), call Run for the agent's life and
// Send for each bus session, with HandleAck on the job ack topic. Its
// methods are safe for concurrent use.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	ob    *outbox.Outbox
	clock *clock
	wake  chan struct{}
	acked chan struct{}
	sem   chan struct{}
	runs  sync.WaitGroup // runs executing

	// mu guards the fields below. The state file is written, and the
	// outbox appended to and read for sending, under it: the sender never
	// sees a run the state file still holds.
	mu        sync.Mutex
	jobs      map[string]*entry
	set       bool // SetJobs was called: jobs, not st.Jobs, is the truth
	clockWait bool // the last pass found the clock untrusted
	st        state
	busy      map[string]int       // runs executing, by job
	inflight  map[uint64]time.Time // sent, not acknowledged: when (Now)
}

// Open loads the state file (a missing one is empty; a damaged one is
// moved aside) and returns a Runner whose runs go to ob, which the caller
// closes after Run and Send returned. It starts nothing.
func Open(cfg Config, ob *outbox.Outbox) (*Runner, error) {
	if cfg.Path == "" || ob == nil {
		return nil, errors.New("jobs: a state file and an outbox are required")
	}
	if cfg.ClockOK == nil {
		cfg.ClockOK = func() (bool, string) { return clocksync.Synced(clocksync.Kernel) }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 30 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	cfg.Retries = max(cfg.Retries, 0)
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, log: cfg.Logger, ob: ob, wake: make(chan struct{}, 1), acked: make(chan struct{}, 1),
		sem: make(chan struct{}, cfg.Workers), jobs: map[string]*entry{}, busy: map[string]int{}, inflight: map[uint64]time.Time{}}
	r.clock = &clock{kernel: cfg.ClockOK, now: cfg.Now, log: cfg.Logger}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runner) load() error {
	r.st = state{Jobs: map[string]jobState{}}
	b, err := os.ReadFile(r.cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", r.cfg.Path, r.cfg.Now().Unix())
		r.log.Error("the jobs' state file is damaged: moving it aside; the jobs start afresh (fires missed meanwhile are not run)", "path", r.cfg.Path, "moved_to", aside, "err", err)
		if rerr := os.Rename(r.cfg.Path, aside); rerr != nil {
			return fmt.Errorf("jobs: %s: %w (and moving it aside failed: %v)", r.cfg.Path, err, rerr)
		}
		return nil
	}
	if st.Jobs != nil {
		r.st.Jobs = st.Jobs
	}
	r.st.Runs = st.Runs
	return nil
}

// save writes the state file. r.mu must be held.
func (r *Runner) saveLocked() error {
	if r.set {
		r.st.Jobs = make(map[string]jobState, len(r.jobs))
		for id, e := range r.jobs {
			r.st.Jobs[id] = e.st
		}
	}
	b, err := json.Marshal(&r.st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(r.cfg.Path, b, 0o600)
}

// HubTime compares the device's clock with the hub's (see clock.HubTime):
// hub is the time of a message the hub made in answer to one the agent
// sent at sent. The telemetry's acks call it too.
func (r *Runner) HubTime(hub, sent time.Time) { r.clock.HubTime(hub, sent) }

// SetJobs makes s the device's jobs, at once. A job whose trigger and
// place are unchanged keeps its progress (what it missed while the agent
// was down is still missed); a new or changed one fires from now on. Runs
// in progress of a job that is gone end as they would.
func (r *Runner) SetJobs(s *Schedule) {
	now := r.cfg.Now()
	trusted, _ := r.cfg.ClockOK()
	trusted = trusted || r.clock.fromHub()
	r.mu.Lock()
	jobs := make(map[string]*entry, len(s.jobs))
	for _, j := range s.jobs {
		st, ok := r.st.Jobs[j.ID]
		if e := r.jobs[j.ID]; e != nil {
			st, ok = e.st, true
		}
		if !ok || st.Key != j.key {
			st = jobState{Key: j.key}
			if trusted || !j.calendar() {
				st.Done = now
			}
		}
		jobs[j.ID] = &entry{job: j, st: st}
	}
	r.jobs, r.set = jobs, true
	err := r.saveLocked()
	r.mu.Unlock()
	if err != nil {
		r.log.Error("save the jobs' state", "err", err)
	}
	r.log.Info("on-device jobs set", "jobs", len(s.jobs))
	r.poke()
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run fires the jobs until ctx is done, then waits for the runs it started
// (their context is cancelled: a run cut short is finished at the next
// start as interrupted). First it finishes what a previous process left.
func (r *Runner) Run(ctx context.Context) {
	defer r.runs.Wait()
	r.recover()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		r.step(ctx)
		t.Reset(r.sleep())
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// step claims the fires due now, starts their runs and puts ended runs in
// the outbox.
func (r *Runner) step(ctx context.Context) {
	now := r.cfg.Now()
	for _, p := range r.fire(now) {
		r.runs.Go(func() { r.execute(ctx, p) })
	}
	r.flush()
}

// sleep returns how long until the earliest fire, at most maxSleep.
func (r *Runner) sleep() time.Duration {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	next := maxSleep
	for _, e := range r.jobs {
		if e.st.Done.IsZero() || r.clockWait && e.job.calendar() {
			continue
		}
		if at, ok := e.job.sched.Next(e.st.Done); ok {
			next = min(next, at.Sub(now))
		}
	}
	return max(next, time.Millisecond)
}

// recover finishes the runs a previous process claimed: those already in
// the outbox are dropped from the state, those ended are put in it, and
// those still running are ended as failed (interrupted), never run again.
func (r *Runner) recover() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.st.Runs) == 0 {
		return
	}
	queued := map[string]bool{}
	for after := uint64(0); ; {
		es, err := r.ob.Pending(after, 256)
		if err != nil {
			r.log.Error("read the job outbox", "err", err)
			break
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			var jr protocol.JobRun
			if json.Unmarshal(e.Data, &jr) == nil {
				queued[jr.Run] = true
			}
			after = e.Seq
		}
	}
	now := r.cfg.Now()
	kept := r.st.Runs[:0]
	for _, jr := range r.st.Runs {
		switch {
		case queued[jr.Run]:
			continue // in the outbox already (the process stopped before saving)
		case jr.Status == statusRunning:
			jr.Status, jr.Error, jr.Ended = protocol.JobRunFailed, interrupted, now
			r.log.Warn("job run interrupted by a restart; not run again", "job", jr.Job, "run", jr.Run)
		}
		kept = append(kept, jr)
	}
	r.st.Runs = kept
	if err := r.saveLocked(); err != nil {
		r.log.Error("save the jobs' state", "err", err)
	}
	r.flushLocked()
}

// pending is a claimed run to execute.
type pending struct {
	job *Job
	run protocol.JobRun
}

// fire claims every job's fires due by now, under its missed-run policy,
// and returns the runs to execute.
func (r *Runner) fire(now time.Time) []pending {
	r.mu.Lock()
	defer r.mu.Unlock()
	var clockOK *bool
	var due []pending
	r.clockWait = false
	changed := false
	for _, id := range slices.Sorted(maps.Keys(r.jobs)) {
		e := r.jobs[id]
		if e.job.calendar() {
			if clockOK == nil {
				ok := r.clock.ok()
				clockOK = &ok
			}
			if !*clockOK {
				r.clockWait = true
				continue
			}
		}
		if e.st.Done.IsZero() {
			e.st.Done, changed = now, true // first fires from now on
			continue
		}
		if !now.After(e.st.Done) {
			continue
		}
		runs, claimed := r.claimLocked(e, now)
		due = append(due, runs...)
		changed = changed || claimed
	}
	if changed {
		if err := r.saveLocked(); err != nil {
			// The runs are not claimed on disk: a crash now would see
			// these fires again, as missed. Better run them than not.
			r.log.Error("save the jobs' state", "err", err)
		}
	}
	return due
}

// claimLocked turns e's fires in (Done, now] into runs and skips, and
// moves Done to now; the caller saves the state before executing them.
// r.mu must be held. It mirrors hub/scheduler's claim, except that fires
// older than the grace are counted, not listed.
func (r *Runner) claimLocked(e *entry, now time.Time) (runs []pending, claimed bool) {
	j := e.job
	from := e.st.Done
	old := 0 // fires beyond the grace, skipped under every policy
	if h := now.Add(-j.grace); h.After(from) {
		if at, ok := j.sched.Next(from); ok && !at.After(h) {
			old = 1
		}
		from = h
	}
	fires, more := j.sched.Missed(from, now, j.MissedLimit+1)
	if len(fires) == 0 && old == 0 {
		e.st.Done = now // in memory only: a restart computes the same
		return nil, false
	}
	add := func(at time.Time, cause string) {
		runs = append(runs, pending{job: j, run: protocol.JobRun{Job: j.ID, Version: j.Version, Run: runID(j.ID, at), Scheduled: at, Cause: cause, Status: statusRunning}})
	}
	skip := func(at time.Time, why string) {
		r.log.Info("job run skipped", "job", j.ID, "run", runID(j.ID, at), "reason", why)
		r.st.Runs = append(r.st.Runs, protocol.JobRun{Job: j.ID, Version: j.Version, Run: runID(j.ID, at), Scheduled: at, Ended: now,
			Cause: "missed", Status: protocol.JobRunSkipped, Error: why})
	}
	if old > 0 {
		// Fires beyond the grace: one skipped run, named after the first.
		at, _ := j.sched.Next(e.st.Done)
		skip(at, fmt.Sprintf("missed while the agent was down or its clock untrusted, by more than the job's grace %s", j.grace))
	}
	// Of fires due at once, only the latest can be on time.
	missed := fires
	if n := len(fires); n > 0 && now.Sub(fires[n-1]) <= lateAfter && !more {
		add(fires[n-1], "schedule")
		missed = fires[:n-1]
	}
	switch {
	case len(missed) == 0:
	case j.Missed == MissedSkip:
		skip(missed[len(missed)-1], fmt.Sprintf("missed %d fire(s) while the agent was down or its clock untrusted; the job's policy is skip", len(missed)))
	case j.Missed == MissedRunOnce:
		last := missed[len(missed)-1]
		if len(runs) > 0 {
			skip(last, fmt.Sprintf("missed %d fire(s); the run on time now stands for them (policy run_once)", len(missed)))
		} else {
			add(last, "missed")
		}
	default: // run_all
		if more || len(missed) > j.MissedLimit {
			skip(missed[0], fmt.Sprintf("more fires missed than missed_limit %d: the oldest are skipped", j.MissedLimit))
			missed = missed[max(0, len(missed)-j.MissedLimit):]
		}
		for _, at := range missed {
			add(at, "missed")
		}
	}
	// Overlap: a fire while a run of the job is in progress is skipped.
	if len(runs) > 0 && r.busy[j.ID] > 0 {
		for _, p := range runs {
			skip(p.run.Scheduled, "the job's previous run is still running")
		}
		runs = nil
	}
	for _, p := range runs {
		r.st.Runs = append(r.st.Runs, p.run)
		r.busy[j.ID]++
	}
	e.st.Done = now
	return runs, true
}

func runID(job string, at time.Time) string { return fmt.Sprintf("%s.%d", job, at.Unix()) }

// execute runs p's command on the hardware, trying again with backoff
// within the deadline, and ends the run. A run cut short because the
// agent stops is left running in the state file (interrupted at the next
// start).
func (r *Runner) execute(ctx context.Context, p pending) {
	defer func() {
		r.mu.Lock()
		r.busy[p.job.ID]--
		r.mu.Unlock()
		r.poke()
	}()
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-r.sem }()
	run := p.run
	run.Started = r.cfg.Now()
	deadline := r.cfg.Deadline + time.Duration(p.job.Params.DurationMS)*time.Millisecond
	rctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	until := run.Started.Add(deadline)
	for run.Attempts = 1; ; run.Attempts++ {
		res := r.command(rctx, &protocol.Command{ID: fmt.Sprintf("%s.%d", run.Run, run.Attempts), Action: p.job.Action, Params: p.job.Params, Deadline: until})
		if res.Status == protocol.ResultOK {
			run.Status, run.Error, run.Result = protocol.JobRunOK, "", result(res)
			break
		}
		run.Error = truncate(fmt.Sprintf("%s: %s", res.Status, res.Error), 1024)
		if ctx.Err() != nil {
			return // the agent stops: interrupted
		}
		if res.Status == protocol.ResultInvalid || run.Attempts > r.cfg.Retries || rctx.Err() != nil {
			run.Status = protocol.JobRunFailed
			break
		}
		backoff := min(30*r.cfg.Backoff, r.cfg.Backoff<<min(run.Attempts-1, 5))
		r.log.Info("job command failed; trying again", "job", run.Job, "run", run.Run, "attempt", run.Attempts, "in", backoff, "err", run.Error)
		t := time.NewTimer(backoff)
		select {
		case <-rctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	run.Ended = r.cfg.Now()
	if run.Status == protocol.JobRunFailed {
		r.log.Warn("job run failed", "job", run.Job, "run", run.Run, "attempts", run.Attempts, "err", run.Error)
	} else {
		r.log.Info("job run done", "job", run.Job, "run", run.Run, "cause", run.Cause, "result", run.Result)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.st.Runs, func(x protocol.JobRun) bool { return x.Run == run.Run })
	if i < 0 {
		r.st.Runs = append(r.st.Runs, run)
	} else {
		r.st.Runs[i] = run
	}
	r.flushLocked()
}

func (r *Runner) command(ctx context.Context, c *protocol.Command) protocol.CommandResult {
	if r.cfg.Execute == nil {
		return protocol.CommandResult{ID: c.ID, Status: protocol.ResultInvalid, Error: "this agent runs without hardware"}
	}
	return r.cfg.Execute(ctx, c)
}

// result summarises a command's result: "level=1", "data=0a0b".
func result(res protocol.CommandResult) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(res.Values)) {
		parts = append(parts, fmt.Sprintf("%s=%g", k, res.Values[k]))
	}
	if res.Data != "" {
		parts = append(parts, "data="+res.Data)
	}
	return truncate(strings.Join(parts, " "), 1024)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// flush puts the ended runs in the outbox.
func (r *Runner) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
}

// flushLocked appends the ended runs to the outbox and drops them from
// the state file (the outbox first: a crash in between leaves a run in
// both, which recover sees). r.mu must be held.
func (r *Runner) flushLocked() {
	kept := r.st.Runs[:0]
	moved := false
	for _, jr := range r.st.Runs {
		if jr.Status != statusRunning {
			b, err := json.Marshal(&jr)
			if err == nil {
				_, err = r.ob.Append(b)
			}
			if err == nil {
				moved = true
				continue
			}
			r.log.Error("job run not stored in the outbox; tried again", "job", jr.Job, "run", jr.Run, "err", err)
		}
		kept = append(kept, jr)
	}
	clear(r.st.Runs[len(kept):])
	r.st.Runs = kept
	if !moved {
		return
	}
	if err := r.saveLocked(); err != nil {
		r.log.Error("save the jobs' state", "err", err)
	}
}
