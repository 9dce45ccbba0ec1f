package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
	"github.com/alicia-home/alicia/internal/store"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write names a version that is not the job's latest.
	ErrConflict = errors.New("version conflict")
)

// Commands is the hub's command service as the scheduler uses it.
type Commands interface {
	// Check checks a command against the device's registered hardware
	// (command.ErrNotFound for an unknown device).
	Check(dev string, req command.Request) error
	Submit(ctx context.Context, dev string, req command.Request) (command.Record, error)
	Wait(ctx context.Context, dev, id string) (command.Record, error)
}

// Configs makes a configuration document's content that of one of its
// versions (hub/spec Rollback, through the rollout guard). It reports
// false when the content already was that.
type Configs interface {
	// Check says whether that version exists.
	Check(kind, scope string, version uint64) error
	Restore(kind, scope string, version uint64, author, comment string) (changed bool, newVersion uint64, err error)
}

// Events is the event stream the scheduler publishes runs on.
type Events interface {
	Publish(typ, device string, data any) events.Event
}

// Config configures a Scheduler. Commands is required; the other actions
// are refused when their part is nil.
type Config struct {
	Commands Commands
	// Publish sends an MQTT message on the hub's bus.
	Publish func(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error
	Configs Configs
	// Schedules gives devices their on-device jobs; nil refuses them.
	Schedules DeviceSchedules
	// Webhook does a webhook's request; default an http.Client that does
	// not follow redirects.
	Webhook Doer
	Events  Events
	// Location is the hub's, for sunrise and sunset; nil refuses sun
	// triggers.
	Location *schedule.Location
	// ClockOK says whether the clock can be trusted for calendar triggers
	// (internal/clocksync); nil trusts it.
	ClockOK func() (bool, string)
	// Workers bounds the runs done at once. Default 4.
	Workers int
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Scheduler keeps the jobs and runs them. Create it with Open, run it
// with Run; its methods are safe for concurrent use.
type Scheduler struct {
	cfg  Config
	db   *store.DB
	ks   keyspaces
	log  *slog.Logger
	wake chan struct{}
	// backoff is the first retry's delay (tests shorten it).
	backoff time.Duration

	// mu guards the fields below.
	mu      sync.Mutex
	jobs    map[string]*entry
	queue   []*pending          // due, waiting for a worker
	running map[string]*pending // by run ID
	busy    map[string]int      // device → runs doing a command on it
	clock   string              // why calendar jobs wait, "" if they do not
	dirty   map[string]bool     // devices whose schedule must be given again
}

// entry is a job as the scheduler runs it.
type entry struct {
	v     Version
	job   Job // with defaults
	sched *schedule.Schedule
	st    state
}

// pending is a run claimed (stored as running) and waiting for, or
// doing, its action.
type pending struct {
	run      Run
	job      Job
	priority int
	start    time.Time // the fire time plus the job's jitter
	cancel   context.CancelFunc
}

// Open loads the jobs kept in db.
func Open(db *store.DB, cfg Config) (*Scheduler, error) {
	if db == nil || cfg.Commands == nil {
		return nil, errors.New("scheduler: a store and Commands are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Webhook == nil {
		cfg.Webhook = defaultWebhookClient()
	}
	s := &Scheduler{cfg: cfg, db: db, ks: openKeyspaces(db), log: cfg.Logger, wake: make(chan struct{}, 1), backoff: time.Second,
		jobs: map[string]*entry{}, running: map[string]*pending{}, busy: map[string]int{}, dirty: map[string]bool{}}
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("scheduler: load: %w", err)
	}
	return s, nil
}

// load reads every job's latest version and state, and queues again the
// runs a stop cut short (they resume with their own IDs: a command is
// never applied twice).
func (s *Scheduler) load() error {
	return s.db.View(func(tx *store.Tx) error {
		var heads = map[string]head{}
		err := tx.ScanPrefix(s.ks.heads, "", func(id string, b []byte) error {
			var h head
			if err := jsonUnmarshal(b, &h); err != nil {
				return fmt.Errorf("head %s: %w", id, err)
			}
			heads[id] = h
			return nil
		})
		if err != nil {
			return err
		}
		for id, h := range heads {
			if h.Deleted {
				continue
			}
			var v Version
			if err := getJSON(tx, s.ks.versions, versionKey(id, h.Number), &v); err != nil {
				return err
			}
			var st state
			if err := getJSON(tx, s.ks.states, id, &st); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			e, err := s.newEntry(v, st)
			if err != nil {
				// Stored, so valid when written: a sun job on a hub that
				// lost its location. It waits; its runs say why.
				s.log.Error("a job cannot be scheduled", "job", id, "err", err)
				continue
			}
			s.jobs[id] = e
			s.markSchedules(e.job) // given again at start: idempotent
		}
		return tx.ScanPrefix(s.ks.runs, "", func(key string, b []byte) error {
			var r Run
			if err := jsonUnmarshal(b, &r); err != nil {
				return fmt.Errorf("run %s: %w", key, err)
			}
			if r.Status != RunRunning {
				return nil
			}
			e := s.jobs[r.Job]
			if e == nil {
				return nil // the job was deleted; its run ends unrun
			}
			s.log.Info("resuming a run a stop cut short", "job", r.Job, "run", r.ID, "attempts", r.Attempts)
			s.queue = append(s.queue, s.newPending(e, r))
			return nil
		})
	})
}

// newEntry compiles v's job.
func (s *Scheduler) newEntry(v Version, st state) (*entry, error) {
	j := v.Job.withDefaults()
	sched, err := schedule.Compile(j.Trigger, s.cfg.Location)
	if err != nil {
		return nil, &InvalidError{Field: "trigger", Err: err}
	}
	return &entry{v: v, job: j, sched: sched, st: st}, nil
}

func (s *Scheduler) newPending(e *entry, r Run) *pending {
	return &pending{run: r, job: e.job, priority: e.job.Priority,
		start: r.Scheduled.Add(schedule.Jitter(e.job.ID, time.Duration(e.job.Jitter)))}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Write is a job to store.
type Write struct {
	Job Job
	// IfVersion is the version the write replaces; 0 creates the job.
	IfVersion uint64
	Author    string
	Comment   string
}

// Put checks w.Job whole (its device and command, its trigger with the
// hub's location, that it fires at all) and stores it as a new version.
// A new job, or one whose trigger changed, fires from now on: fires before
// it are not missed runs.
func (s *Scheduler) Put(w Write) (Version, error) {
	if strings.TrimSpace(w.Author) == "" {
		return Version{}, invalid("author", "required")
	}
	if len(w.Comment) > 1024 {
		return Version{}, invalid("comment", "at most 1024 bytes")
	}
	j := w.Job.withDefaults()
	if err := j.validate(); err != nil {
		return Version{}, err
	}
	now := s.cfg.Now()
	sched, err := schedule.Compile(j.Trigger, s.cfg.Location)
	if err != nil {
		return Version{}, &InvalidError{Field: "trigger", Err: err}
	}
	if err := sched.CheckFires(now); err != nil {
		return Version{}, &InvalidError{Field: "trigger", Err: err}
	}
	if err := s.checkAction(j); err != nil {
		return Version{}, err
	}
	hash, err := jobHash(w.Job)
	if err != nil {
		return Version{}, err
	}
	v := Version{Hash: hash, Author: w.Author, Time: now.UTC(), Comment: w.Comment, Job: w.Job}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := state{Done: now}
	if old := s.jobs[j.ID]; old != nil {
		st.Paused = old.st.Paused
		if sameTrigger(old.job.Trigger, j.Trigger) && !old.job.Disabled {
			st.Done = old.st.Done
		}
	}
	err = s.db.Update(func(tx *store.Tx) error { return s.ks.writeVersion(tx, &v, w.IfVersion, &st) })
	if err != nil {
		return Version{}, err
	}
	if old := s.jobs[j.ID]; old != nil {
		s.markSchedules(old.job)
	}
	s.jobs[j.ID] = &entry{v: v, job: j, sched: sched, st: st}
	s.markSchedules(j)
	s.poke()
	s.log.Info("job stored", "job", j.ID, "version", v.Number, "author", w.Author)
	return v, nil
}

func sameTrigger(a, b schedule.Trigger) bool {
	x, _ := jobHash(Job{Trigger: a})
	y, _ := jobHash(Job{Trigger: b})
	return x == y
}

// checkAction checks j's action against what the hub has.
func (s *Scheduler) checkAction(j Job) error {
	a := j.Action
	switch {
	case a.Command != nil:
		err := s.cfg.Commands.Check(a.Command.Device, commandRequest(j, "check"))
		switch {
		case errors.Is(err, command.ErrNotFound):
			return invalid("action.command.device", "%s: no such device", a.Command.Device)
		case err != nil:
			return &InvalidError{Field: "action.command", Err: err}
		}
	case j.OnDevice && s.cfg.Schedules == nil:
		return invalid("on_device", "this hub gives devices no schedules")
	case a.Publish != nil && s.cfg.Publish == nil:
		return invalid("action.publish", "this hub cannot publish (no bus)")
	case a.Config != nil && s.cfg.Configs == nil:
		return invalid("action.config", "this hub has no configuration manager")
	case a.Config != nil:
		if err := s.cfg.Configs.Check(a.Config.Kind, a.Config.Scope, a.Config.Version); err != nil {
			return &InvalidError{Field: "action.config", Err: err}
		}
	}
	return nil
}

// Delete deletes a job at version ifVersion (a version that says so is
// kept in its history). Its runs in progress end.
func (s *Scheduler) Delete(id string, ifVersion uint64, author string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[id]
	if e == nil {
		return fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	v := Version{Hash: e.v.Hash, Author: author, Time: s.cfg.Now().UTC(), Deleted: true, Job: e.v.Job}
	if err := s.db.Update(func(tx *store.Tx) error { return s.ks.writeVersion(tx, &v, ifVersion, nil) }); err != nil {
		return err
	}
	delete(s.jobs, id)
	s.markSchedules(e.job)
	for _, p := range s.running {
		if p.job.ID == id && p.cancel != nil {
			p.cancel()
		}
	}
	s.queue = slices.DeleteFunc(s.queue, func(p *pending) bool { return p.job.ID == id })
	s.log.Info("job deleted", "job", id, "author", author)
	return nil
}

// Status is a job as listed: its latest version and what the scheduler
// does with it.
type Status struct {
	Version
	Paused bool `json:"paused,omitempty"`
	// Next is the next fire, if any.
	Next time.Time `json:"next,omitzero"`
	// Waiting says why a calendar job does not fire now (an untrusted
	// clock).
	Waiting string `json:"waiting,omitempty"`
	// Running lists the IDs of its runs in progress.
	Running []string `json:"running,omitempty"`
}

// List returns every job, by ID.
func (s *Scheduler) List() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.jobs))
	for _, e := range s.jobs {
		out = append(out, s.statusLocked(e))
	}
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Job.ID, b.Job.ID) })
	return out
}

// Get returns one job.
func (s *Scheduler) Get(id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[id]
	if e == nil {
		return Status{}, fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	return s.statusLocked(e), nil
}

func (s *Scheduler) statusLocked(e *entry) Status {
	st := Status{Version: e.v, Paused: e.st.Paused}
	if !e.st.Paused && !e.job.Disabled {
		st.Next, _ = e.sched.Next(e.st.Done)
		if s.clock != "" && e.sched.Kind() != schedule.KindInterval {
			st.Waiting = s.clock
		}
	}
	for id, p := range s.running {
		if p.job.ID == e.job.ID {
			st.Running = append(st.Running, id)
		}
	}
	slices.Sort(st.Running)
	return st
}

// Versions returns a job's versions, newest first (a deleted job's too).
func (s *Scheduler) Versions(id string) ([]Version, error) {
	var out []Version
	err := s.db.View(func(tx *store.Tx) error {
		return tx.ScanPrefix(s.ks.versions, id+"/", func(_ string, b []byte) error {
			var v Version
			if err := jsonUnmarshal(b, &v); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	slices.Reverse(out)
	return out, nil
}

// Runs returns a job's runs, newest fire first, at most limit.
func (s *Scheduler) Runs(id string, limit int) ([]Run, error) {
	var out []Run
	err := s.db.View(func(tx *store.Tx) error {
		return tx.ScanPrefix(s.ks.runs, id+"/", func(_ string, b []byte) error {
			var r Run
			if err := jsonUnmarshal(b, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Preview returns the next n fires of job id, with DST notes.
func (s *Scheduler) Preview(id string, n int) ([]schedule.Fire, error) {
	s.mu.Lock()
	e := s.jobs[id]
	s.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	return e.sched.Preview(s.cfg.Now(), n), nil
}

// PreviewTrigger returns the next n fires of a trigger not stored, or why
// it is invalid or never fires.
func (s *Scheduler) PreviewTrigger(t schedule.Trigger, n int) ([]schedule.Fire, error) {
	sched, err := schedule.Compile(t, s.cfg.Location)
	if err != nil {
		return nil, &InvalidError{Field: "trigger", Err: err}
	}
	now := s.cfg.Now()
	if err := sched.CheckFires(now); err != nil {
		return nil, &InvalidError{Field: "trigger", Err: err}
	}
	return sched.Preview(now, n), nil
}

// Pause stops a job's fires until Resume; fires while paused are not
// missed runs. Runs in progress go on.
func (s *Scheduler) Pause(id string) (Status, error) { return s.setPaused(id, true) }

// Resume lets a paused job fire again, from now.
func (s *Scheduler) Resume(id string) (Status, error) { return s.setPaused(id, false) }

func (s *Scheduler) setPaused(id string, paused bool) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[id]
	if e == nil {
		return Status{}, fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	if e.st.Paused == paused {
		return s.statusLocked(e), nil
	}
	st := state{Done: e.st.Done, Paused: paused}
	if !paused {
		st.Done = s.cfg.Now()
	}
	if err := s.db.Update(func(tx *store.Tx) error { return putJSON(tx, s.ks.states, id, st) }); err != nil {
		return Status{}, err
	}
	e.st = st
	s.markSchedules(e.job)
	s.poke()
	return s.statusLocked(e), nil
}

// RunNow runs a job once now, whatever its trigger (and even if paused
// or disabled), and returns the run as claimed.
func (s *Scheduler) RunNow(id string) (Run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.jobs[id]
	if e == nil {
		return Run{}, fmt.Errorf("scheduler: job %s: %w", id, ErrNotFound)
	}
	now := s.cfg.Now()
	// A random suffix: manual runs of one second never share command IDs,
	// across restarts too.
	r := Run{ID: fmt.Sprintf("%s.%d-m%s", id, now.Unix(), protocol.NewID()[:6]), Job: id, Version: e.v.Number, Scheduled: now, Cause: "manual", Status: RunRunning}
	if err := s.db.Update(func(tx *store.Tx) error { return s.ks.putRun(tx, r, true) }); err != nil {
		return Run{}, err
	}
	p := s.newPending(e, r)
	p.start = now // no jitter for a person waiting
	s.queue = append(s.queue, p)
	s.poke()
	return r, nil
}
