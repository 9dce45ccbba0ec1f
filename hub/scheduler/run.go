package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/internal/schedule"
	"github.com/alicia-home/alicia/internal/store"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// lateAfter is how late a fire may be handled and still count as on time
// rather than missed (the hub was busy, not down).
const lateAfter = 10 * time.Second

// maxSleep bounds the loop's sleep, so that a changed clock (set at boot,
// or its trust) is noticed.
const maxSleep = time.Second

// Run fires the jobs and does their runs until ctx is done, then waits
// for the runs in progress to end (their context is cancelled: a run cut
// short resumes at the next start).
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		s.syncSchedules()
		now := s.cfg.Now()
		s.fire(now)
		s.dispatch(ctx, &wg, now)
		sleep := maxSleep
		if d := s.nextWake(now); d < sleep {
			sleep = max(d, time.Millisecond)
		}
		t.Reset(sleep)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-t.C:
		}
	}
}

// fire claims every job's fires due by now, under its missed-run policy.
func (s *Scheduler) fire(now time.Time) {
	clockOK, why := true, ""
	if s.cfg.ClockOK != nil {
		clockOK, why = s.cfg.ClockOK()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !clockOK && s.clock == "" {
		s.log.Warn("calendar jobs wait for a trustworthy clock", "reason", why)
	} else if clockOK && s.clock != "" {
		s.log.Info("the clock is trustworthy: calendar jobs fire")
	}
	s.clock = ""
	if !clockOK {
		s.clock = "waiting for a synchronised clock: " + why
	}
	ids := make([]string, 0, len(s.jobs))
	for id := range s.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := s.jobs[id]
		if e.st.Paused || e.job.Disabled || e.job.OnDevice || !now.After(e.st.Done) {
			continue // an on-device job is fired by its device
		}
		if !clockOK && e.sched.Kind() != schedule.KindInterval {
			continue
		}
		s.claim(e, now)
	}
}

// claim turns e's fires in (Done, now] into runs and skips, and moves Done
// to now, in one synced transaction: a fire is claimed once, whatever
// happens next.
func (s *Scheduler) claim(e *entry, now time.Time) {
	due := s.dueFires(e, now)
	if len(due.fires) == 0 && !due.beyondGrace {
		return // nothing to claim: Done stays (dueFires never walks past the grace)
	}
	var runs, skips []Run
	add := func(at time.Time, cause string) {
		runs = append(runs, Run{ID: fmt.Sprintf("%s.%d", e.job.ID, at.Unix()), Job: e.job.ID, Version: e.v.Number, Scheduled: at, Cause: cause, Status: RunRunning})
	}
	skip := func(at time.Time, why string) {
		skips = append(skips, Run{ID: fmt.Sprintf("%s.%d", e.job.ID, at.Unix()), Job: e.job.ID, Version: e.v.Number, Scheduled: at, Cause: "missed",
			Status: RunSkipped, Error: why, Ended: now})
	}
	// Of fires due at once, only the latest can be on time: the others
	// were not run at their time (the hub was down or stalled).
	missed := due.fires
	if n := len(missed); n > 0 && now.Sub(missed[n-1]) <= lateAfter {
		add(missed[n-1], "schedule")
		missed = missed[:n-1]
	}
	// What the policy does not run is recorded as one skipped run, at the
	// oldest fire it stands for.
	older, oldest := due.older, due.oldest
	leave := func(k int) {
		if k <= 0 {
			return
		}
		if oldest.IsZero() {
			oldest = missed[0]
		}
		older += k
		missed = missed[k:]
	}
	switch e.job.Missed {
	case MissedSkip:
		leave(len(missed))
	case MissedRunOnce:
		if len(runs) > 0 {
			leave(len(missed)) // the run on time stands for them
		} else {
			leave(len(missed) - 1)
		}
	default: // run_all
		leave(len(missed) - e.job.MissedLimit)
	}
	if older > 0 || due.beyondGrace {
		what := fmt.Sprintf("%d fire(s)", older)
		switch grace := time.Duration(e.job.Grace); {
		case due.beyondGrace && older == 0:
			what = fmt.Sprintf("fire(s) older than the grace %s", grace)
		case due.beyondGrace:
			what += fmt.Sprintf(" within the grace %s, and fires older than it,", grace)
		}
		skip(oldest, fmt.Sprintf("%s missed while the hub was down, stalled or its clock untrusted, not run (policy %s, missed_limit %d)",
			what, e.job.Missed, e.job.MissedLimit))
	}
	for _, at := range missed {
		add(at, "missed")
	}
	// Overlap: a fire while a run of the job is in progress.
	if len(runs) > 0 && e.job.Overlap == OverlapForbid && s.runningOf(e.job.ID) {
		for _, r := range runs {
			skip(r.Scheduled, "the job's previous run is still running (overlap: forbid)")
		}
		runs = nil
	}
	s.commitClaim(e, now, runs, skips)
}

// commitClaim stores e's claimed runs and skips and moves its Done to now,
// in one synced transaction, then queues the runs. s.mu must be held.
func (s *Scheduler) commitClaim(e *entry, now time.Time, runs, skips []Run) {
	st := e.st
	st.Done = now
	err := s.db.Update(func(tx *store.Tx) error {
		for _, r := range slices.Concat(skips, runs) {
			if err := s.ks.putRun(tx, r, true); err != nil {
				return err
			}
		}
		return putJSON(tx, s.ks.states, e.job.ID, st)
	})
	if err != nil {
		s.log.Error("job fires not claimed; tried again", "job", e.job.ID, "err", err)
		return
	}
	e.st = st
	for _, r := range skips {
		s.log.Info("job run skipped", "job", e.job.ID, "run", r.ID, "reason", r.Error)
		s.event(r, "")
	}
	for _, r := range runs {
		if e.job.Overlap == OverlapReplace {
			s.cancelRunsOf(e.job.ID)
		}
		s.queue = append(s.queue, s.newPending(e, r))
	}
}

// dueFires is what claim has to handle of a job.
type dueFires struct {
	// fires are the latest fires in (Done, now] within the job's grace,
	// at most MissedLimit+1 of them, oldest first.
	fires []time.Time
	// older counts the fires within the grace left out of fires (beyond
	// MissedLimit+1); beyondGrace says there are fires older than the
	// grace too (not counted); oldest is the oldest fire left out.
	older       int
	beyondGrace bool
	oldest      time.Time
}

// maxWalk bounds the fires dueFires looks at: a 1 s interval across the
// longest grace (744 h) is 2.7 million.
const maxWalk = 3_000_000

// dueFires returns e's fires due by now. Fires older than the job's grace
// are skipped under every policy, so they are not walked through: only
// whether there are any.
func (s *Scheduler) dueFires(e *entry, now time.Time) dueFires {
	var d dueFires
	from := e.st.Done
	if cut := now.Add(-time.Duration(e.job.Grace)); from.Before(cut) {
		if at, ok := e.sched.Next(from); ok && !at.After(cut) {
			d.beyondGrace, d.oldest = true, at
		}
		from = cut
	}
	keep := e.job.MissedLimit + 1
	for t, n := from, 0; n < maxWalk; n++ {
		at, ok := e.sched.Next(t)
		if !ok || at.After(now) {
			break
		}
		if len(d.fires) == keep {
			if d.oldest.IsZero() {
				d.oldest = d.fires[0]
			}
			d.older++
			d.fires = append(d.fires[:0], d.fires[1:]...)
		}
		d.fires = append(d.fires, at)
		t = at
	}
	return d
}

// runningOf reports whether job id has a run in progress. s.mu must be
// held.
func (s *Scheduler) runningOf(id string) bool {
	for _, p := range s.running {
		if p.job.ID == id {
			return true
		}
	}
	return false
}

// cancelRunsOf ends job id's runs in progress. s.mu must be held.
func (s *Scheduler) cancelRunsOf(id string) {
	for _, p := range s.running {
		if p.job.ID == id && p.cancel != nil {
			p.cancel()
		}
	}
}

// nextWake returns how long until the earliest fire or queued start.
func (s *Scheduler) nextWake(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maxSleep
	for _, e := range s.jobs {
		if e.st.Paused || e.job.Disabled || e.job.OnDevice {
			continue
		}
		if at, ok := e.sched.Next(e.st.Done); ok {
			next = min(next, at.Sub(now))
		}
	}
	for _, p := range s.queue {
		next = min(next, p.start.Sub(now))
	}
	return next
}

// dispatch starts the queued runs whose start has come, highest priority
// first, at most Workers at once and one command at a time per device:
// many jobs due at 06:30 never arrive at once.
func (s *Scheduler) dispatch(ctx context.Context, wg *sync.WaitGroup, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.SortStableFunc(s.queue, func(a, b *pending) int {
		if c := cmp.Compare(b.priority, a.priority); c != 0 {
			return c
		}
		return a.run.Scheduled.Compare(b.run.Scheduled)
	})
	kept := s.queue[:0]
	for _, p := range s.queue {
		dev := ""
		if c := p.job.Action.Command; c != nil {
			dev = c.Device
		}
		if len(s.running) >= s.cfg.Workers || p.start.After(now) || dev != "" && s.busy[dev] > 0 {
			kept = append(kept, p)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Duration(p.job.Deadline))
		p.cancel = cancel
		s.running[p.run.ID] = p
		if dev != "" {
			s.busy[dev]++
		}
		wg.Go(func() {
			defer cancel()
			s.execute(ctx, rctx, p)
			s.mu.Lock()
			delete(s.running, p.run.ID)
			if dev != "" {
				s.busy[dev]--
			}
			s.mu.Unlock()
			s.poke()
		})
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

// execute does p's action in ctx (its deadline), retrying with backoff,
// and stores the outcome. A run cut short because the scheduler stops
// (parent done) is left running in the store: it resumes at the next
// start, with the same IDs.
func (s *Scheduler) execute(parent, ctx context.Context, p *pending) {
	r := p.run
	r.Started = s.cfg.Now()
	dev := ""
	if c := p.job.Action.Command; c != nil {
		dev = c.Device
	}
	s.event(r, dev)
	retries := *p.job.Retries
	// A run resumed after a stop goes on with the attempt it was at (its
	// command was perhaps sent: its ID finds it).
	r.Attempts = max(r.Attempts, 1)
	for ; ; r.Attempts++ {
		if err := s.saveRun(r); err != nil {
			s.log.Error("run not recorded; it is not done", "job", r.Job, "run", r.ID, "err", err)
			return
		}
		res, err := s.act(ctx, p.job, r)
		r.Result = res.String()
		if err == nil {
			r.Status, r.Error = res.status(), ""
			break
		}
		r.Error = err.Error()
		if parent.Err() != nil {
			return // the hub stops: resumed at the next start
		}
		if res.permanent || r.Attempts > retries || ctx.Err() != nil {
			r.Status = RunFailed
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				r.Error = fmt.Sprintf("the job's deadline %s passed: %s", time.Duration(p.job.Deadline), r.Error)
			case ctx.Err() != nil:
				r.Error = "ended by a newer run of the job (overlap: replace)"
			}
			break
		}
		backoff := min(30*s.backoff, s.backoff<<min(r.Attempts-1, 5))
		s.log.Info("job action failed; trying again", "job", r.Job, "run", r.ID, "attempt", r.Attempts, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	r.Ended = s.cfg.Now()
	if err := s.saveRun(r); err != nil {
		s.log.Error("run outcome not recorded", "job", r.Job, "run", r.ID, "err", err)
	}
	if r.Status == RunFailed {
		s.log.Warn("job run failed", "job", r.Job, "run", r.ID, "attempts", r.Attempts, "err", r.Error)
	} else {
		s.log.Info("job run done", "job", r.Job, "run", r.ID, "status", r.Status, "result", r.Result)
	}
	s.event(r, dev)
}

func (s *Scheduler) saveRun(r Run) error {
	return s.db.Update(func(tx *store.Tx) error { return s.ks.putRun(tx, r, false) })
}

// event publishes a run on the event stream; dev is the device its
// command is for, if any.
func (s *Scheduler) event(r Run, dev string) {
	if s.cfg.Events != nil {
		s.cfg.Events.Publish(events.JobRun, dev, r)
	}
}
