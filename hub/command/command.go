// Package command sends remote commands to devices and keeps their audit
// log. A command is checked against the hardware the device registered,
// published on the device's cmd topic with an ID and a deadline, and ends
// with the device's result or a timeout — never silence. A command to an
// offline device fails fast (ErrOffline) unless the caller asks to queue it
// for a while; queued commands are sent when the device comes online and
// expire otherwise. Every command, whoever sent it (REST, Home Assistant),
// is recorded with its outcome.
package command

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// Defaults and limits.
const (
	DefaultTimeout   = 5 * time.Second
	MaxTimeout       = 2 * time.Minute
	MaxQueueTTL      = 24 * time.Hour
	DefaultRetention = 90 * 24 * time.Hour
	// resultGrace is how long past a command's deadline the hub still
	// waits before it calls it a timeout (the result of a command started
	// just before its deadline is on its way).
	resultGrace = 2 * time.Second
)

// Record statuses besides the protocol's results (ok, failed, invalid,
// expired).
const (
	StatusQueued  = "queued"  // waiting for the device to come online
	StatusSent    = "sent"    // published, no result yet
	StatusTimeout = "timeout" // no result by the deadline
)

// Record is one command and its outcome: the audit log's entry.
type Record struct {
	ID      string                 `json:"id"`
	Device  string                 `json:"device"`
	Action  string                 `json:"action"`
	Params  protocol.CommandParams `json:"params"`
	Actor   string                 `json:"actor"`
	Status  string                 `json:"status"`
	Error   string                 `json:"error,omitempty"`
	Values  map[string]float64     `json:"values,omitempty"`
	Data    string                 `json:"data,omitempty"`
	Created time.Time              `json:"created"`
	// QueueUntil is when a queued command expires.
	QueueUntil time.Time `json:"queue_until,omitzero"`
	Sent       time.Time `json:"sent,omitzero"`
	Deadline   time.Time `json:"deadline,omitzero"`
	Done       time.Time `json:"done,omitzero"`
	// TimeoutMS is how long the hub waits for the result once sent.
	TimeoutMS int64 `json:"timeout_ms"`
}

func (r Record) timeout() time.Duration { return time.Duration(r.TimeoutMS) * time.Millisecond }

// Final reports whether r's status will not change any more (a timed-out
// command is final too, though a late result still updates the record).
func (r Record) Final() bool { return r.Status != StatusQueued && r.Status != StatusSent }

// Request is a command to send.
type Request struct {
	Action string
	Params protocol.CommandParams
	// Actor is who sends it, for the audit log ("admin", "homeassistant").
	Actor string
	// Timeout bounds the wait for the result. Default DefaultTimeout.
	Timeout time.Duration
	// QueueTTL, if positive, queues a command to an offline device for
	// that long instead of failing with ErrOffline.
	QueueTTL time.Duration
	// ID, if set, is the command's ID instead of a random one, so that a
	// caller that may submit the same command again (the scheduler after a
	// crash) never has it applied twice: a Submit with the ID of a
	// recorded command of the device returns that record and sends
	// nothing, and the agent executes an ID once.
	ID string
}

// Errors of Submit.
var (
	ErrInvalid  = errors.New("invalid command")
	ErrOffline  = errors.New("device is offline")
	ErrNotFound = errors.New("not found")
)

// Devices is the registry as the service uses it.
type Devices interface {
	Get(id string) (registry.Device, error)
}

// Config configures a Service.
type Config struct {
	Devices Devices
	// Publish sends a command to a device (QoS 1).
	Publish func(ctx context.Context, device string, c *protocol.Command) error
	// Retention of the audit log. Default DefaultRetention.
	Retention time.Duration
	Now       func() time.Time
	// OnDone, if set, is called with each record that becomes final (and
	// again when a late result updates a timed-out one), outside the
	// service's lock.
	OnDone func(Record)
	// Events, if set, is the hub's event stream: Run sends a device's
	// queued commands when a device_state event says it came online.
	Events Events
	Logger *slog.Logger
}

// Events is the event stream Run watches for devices coming online.
type Events interface {
	Subscribe(after uint64) ([]events.Event, *events.Sub)
}

// Service sends commands and records them. Create it with Open.
type Service struct {
	cfg     Config
	db      *store.DB
	records store.Keyspace
	log     *slog.Logger

	// sub is the subscription to Config.Events, taken in Open so that a
	// device that comes online before Run starts is not missed; nil
	// without Events. Only Run reads it.
	sub *events.Sub

	idMu sync.Mutex // serialises Submits with a caller's ID

	mu   sync.Mutex
	live map[string]*live // queued or sent, by command ID
}

// live is a command not final yet.
type live struct {
	rec       Record
	done      chan struct{} // closed when rec is final and stored
	finishing bool          // finish has begun; s.mu guards it
}

// Open returns a Service whose audit log is in db. Commands left
// queued by a previous run are queued again; commands left sent get a
// final "timeout" (their results, if they come, still update them).
func Open(db *store.DB, cfg Config) (*Service, error) {
	if db == nil || cfg.Devices == nil || cfg.Publish == nil {
		return nil, errors.New("command: a store, Devices and Publish are required")
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, db: db, records: db.Keyspace("commands"), log: cfg.Logger, live: map[string]*live{}}
	if cfg.Events != nil {
		_, s.sub = cfg.Events.Subscribe(0)
	}
	var recs []Record
	err := s.records.Scan(func(key string, val []byte) error {
		var r Record
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("command: record %q: %w", key, err)
		}
		if !r.Final() {
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Status == StatusQueued {
			s.live[r.ID] = &live{rec: r, done: make(chan struct{})}
			continue
		}
		r.Status, r.Error, r.Done = StatusTimeout, "the hub restarted before the result arrived", cfg.Now()
		if err := s.put(r); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Service) put(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *store.Tx) error {
		return tx.PutTTL(s.records, r.Device+"/"+r.ID, b, s.cfg.Retention)
	})
}

// Check validates req for device d: the parameters, and the line, bus or
// sensor it names against the hardware d registered. The error wraps
// ErrInvalid and names the problem.
func Check(d registry.Device, req Request) error {
	c := protocol.Command{Action: req.Action, Params: req.Params}
	if err := c.ValidateAction(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if req.Timeout < 0 || req.Timeout > MaxTimeout {
		return fmt.Errorf("%w: timeout_ms: %d out of range [0, %d]", ErrInvalid, req.Timeout.Milliseconds(), MaxTimeout.Milliseconds())
	}
	if req.QueueTTL < 0 || req.QueueTTL > MaxQueueTTL {
		return fmt.Errorf("%w: queue_ttl_ms: %d out of range [0, %d]", ErrInvalid, req.QueueTTL.Milliseconds(), MaxQueueTTL.Milliseconds())
	}
	if req.Action == protocol.ActionAgentRestart {
		return nil
	}
	hw := d.Hardware
	if hw == nil {
		return fmt.Errorf("%w: device %s reports no hardware (its agent runs without a HAL)", ErrInvalid, d.ID)
	}
	p := req.Params
	if p.Line != "" {
		i := slices.IndexFunc(hw.Lines, func(l protocol.HardwareLine) bool { return l.Name == p.Line || l.Alias == p.Line })
		if i < 0 {
			return fmt.Errorf("%w: params.line: %q is not a line of %s", ErrInvalid, p.Line, d.ID)
		}
		l := hw.Lines[i]
		write := req.Action != protocol.ActionGPIORead
		if write && l.Direction == protocol.DirIn {
			return fmt.Errorf("%w: params.line: %q (%s) is an input; %s writes", ErrInvalid, p.Line, l.Name, req.Action)
		}
		if req.Action == protocol.ActionPWMSet && !l.PWM {
			return fmt.Errorf("%w: params.line: %q (%s) has no hardware PWM", ErrInvalid, p.Line, l.Name)
		}
	}
	if p.Bus != "" && !slices.Contains(hw.I2C, p.Bus) {
		return fmt.Errorf("%w: params.bus: %q is not an I2C bus of %s (it has %v)", ErrInvalid, p.Bus, d.ID, hw.I2C)
	}
	if p.Sensor != "" && !slices.ContainsFunc(hw.Sensors, func(s protocol.HardwareSensor) bool { return s.Name == p.Sensor }) {
		return fmt.Errorf("%w: params.sensor: %q is not a sensor of %s", ErrInvalid, p.Sensor, d.ID)
	}
	return nil
}

// Check checks req against device dev's registered hardware, as Submit
// would, without sending anything (ErrNotFound for an unknown device).
func (s *Service) Check(dev string, req Request) error {
	d, err := s.cfg.Devices.Get(dev)
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("%w: device %s", ErrNotFound, dev)
	}
	if err != nil {
		return err
	}
	return Check(d, req)
}

// Submit checks req and sends it to device dev, or queues it if the device
// is offline and req.QueueTTL is set. It returns the record (status sent
// or queued) without waiting for the result: see Wait. Errors wrap
// ErrNotFound (no such device), ErrInvalid or ErrOffline.
func (s *Service) Submit(ctx context.Context, dev string, req Request) (Record, error) {
	d, err := s.cfg.Devices.Get(dev)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return Record{}, fmt.Errorf("%w: device %s", ErrNotFound, dev)
		}
		return Record{}, err
	}
	if err := Check(d, req); err != nil {
		return Record{}, err
	}
	if req.Timeout == 0 {
		req.Timeout = DefaultTimeout
	}
	id := req.ID
	if id == "" {
		id = protocol.NewID()[:16]
	} else {
		// One Submit of a given ID at a time: the second finds the
		// first's record.
		s.idMu.Lock()
		defer s.idMu.Unlock()
		if r, found, err := s.submitted(dev, id); err != nil || found {
			return r, err
		}
	}
	now := s.cfg.Now()
	r := Record{ID: id, Device: dev, Action: req.Action, Params: req.Params, Actor: req.Actor, Created: now, TimeoutMS: req.Timeout.Milliseconds()}
	online := d.Status == registry.StatusOnline
	switch {
	case !d.Status.Accepted():
		return Record{}, fmt.Errorf("%w: device %s is %s", ErrOffline, dev, d.Status)
	case !online && req.QueueTTL <= 0:
		return Record{}, fmt.Errorf("%w: %s has been offline since %s (set queue_ttl_ms to queue the command)", ErrOffline, dev, d.StatusSince.Format(time.RFC3339))
	case !online:
		r.Status, r.QueueUntil = StatusQueued, now.Add(req.QueueTTL)
		if err := s.put(r); err != nil {
			return Record{}, err
		}
		s.mu.Lock()
		s.live[r.ID] = &live{rec: r, done: make(chan struct{})}
		s.mu.Unlock()
		return r, nil
	}
	return s.send(ctx, r)
}

// submitted returns the record of command id of dev if it was submitted
// before; id must be a valid ID.
func (s *Service) submitted(dev, id string) (Record, bool, error) {
	if err := protocol.ValidateID(id); err != nil {
		return Record{}, false, fmt.Errorf("%w: command id: %v", ErrInvalid, err)
	}
	r, err := s.Get(dev, id)
	switch {
	case err == nil:
		return r, true, nil
	case errors.Is(err, ErrNotFound):
		return Record{}, false, nil
	}
	return Record{}, false, err
}

// send publishes r and records it as sent.
func (s *Service) send(ctx context.Context, r Record) (Record, error) {
	now := s.cfg.Now()
	r.Status, r.Sent, r.Deadline = StatusSent, now, now.Add(r.timeout())
	l := &live{rec: r, done: make(chan struct{})}
	s.mu.Lock()
	s.live[r.ID] = l
	s.mu.Unlock()
	if err := s.put(r); err != nil {
		s.finish(r.ID, func(r *Record) { r.Status, r.Error = protocol.ResultFailed, "not recorded: "+err.Error() })
		return Record{}, err
	}
	c := &protocol.Command{ID: r.ID, Action: r.Action, Params: r.Params, Deadline: r.Deadline}
	if err := s.cfg.Publish(ctx, r.Device, c); err != nil {
		rec, _ := s.finish(r.ID, func(r *Record) { r.Status, r.Error = protocol.ResultFailed, "not sent: "+err.Error() })
		return rec, nil
	}
	return r, nil
}

// finish applies fn to the live record id, makes it final, stores it and
// wakes its waiters. It reports false if id was not live (or is being
// finished). The record stays live until it is stored, so that Get and
// Wait always find it, live or final.
func (s *Service) finish(id string, fn func(*Record)) (Record, bool) {
	s.mu.Lock()
	l := s.live[id]
	if l == nil || l.finishing {
		s.mu.Unlock()
		return Record{}, false
	}
	l.finishing = true
	rec := l.rec
	fn(&rec)
	rec.Done = s.cfg.Now()
	s.mu.Unlock()
	if err := s.put(rec); err != nil {
		s.log.Error("command record not stored", "command", id, "err", err)
	}
	s.mu.Lock()
	l.rec = rec
	delete(s.live, id)
	s.mu.Unlock()
	close(l.done)
	if s.cfg.OnDone != nil {
		s.cfg.OnDone(rec)
	}
	return rec, true
}

// HandleResult records a device's result. A result for a command that
// timed out updates its record; one for an unknown command or from
// another device is ignored.
func (s *Service) HandleResult(dev string, res *protocol.CommandResult) {
	apply := func(r *Record) {
		r.Status, r.Error, r.Values, r.Data = res.Status, res.Error, res.Values, res.Data
	}
	s.mu.Lock()
	l := s.live[res.ID]
	var owner string
	if l != nil {
		owner = l.rec.Device
	}
	s.mu.Unlock()
	if l != nil {
		if owner != dev {
			s.log.Warn("command result from the wrong device", "command", res.ID, "from", dev, "sent to", owner)
			return
		}
		if _, ok := s.finish(res.ID, apply); ok {
			return
		}
		// It was timing out just now: the late-result path below.
	}
	r, err := s.Get(dev, res.ID)
	if err != nil || r.Status != StatusTimeout {
		return // unknown, or a repeat of a recorded result
	}
	apply(&r)
	r.Done = s.cfg.Now()
	if err := s.put(r); err != nil {
		s.log.Error("late command result not stored", "command", res.ID, "err", err)
	}
	if s.cfg.OnDone != nil {
		s.cfg.OnDone(r)
	}
}

// Wait waits until command id of device dev is final or ctx is done, and
// returns its record as it is then.
func (s *Service) Wait(ctx context.Context, dev, id string) (Record, error) {
	s.mu.Lock()
	l := s.live[id]
	s.mu.Unlock()
	if l != nil {
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	}
	return s.Get(dev, id)
}

// Get returns the record of command id of device dev; the error wraps
// ErrNotFound if there is none.
func (s *Service) Get(dev, id string) (Record, error) {
	s.mu.Lock()
	if l := s.live[id]; l != nil && l.rec.Device == dev {
		r := l.rec
		s.mu.Unlock()
		return r, nil
	}
	s.mu.Unlock()
	if protocol.ValidateID(dev) != nil || protocol.ValidateID(id) != nil {
		return Record{}, fmt.Errorf("%w: command %s of %s", ErrNotFound, id, dev)
	}
	b, err := s.records.Get(dev + "/" + id)
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: command %s of %s", ErrNotFound, id, dev)
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("command: record %s/%s: %w", dev, id, err)
	}
	return r, nil
}

// Audit returns the recorded commands, newest first, of one device (or of
// every device if dev is ""), at most limit.
func (s *Service) Audit(dev string, limit int) ([]Record, error) {
	var out []Record
	prefix := ""
	if dev != "" {
		prefix = dev + "/"
	}
	err := s.records.ScanPrefix(prefix, func(key string, val []byte) error {
		var r Record
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("command: record %q: %w", key, err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(b.ID, a.ID)) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	if out == nil {
		out = []Record{}
	}
	return out, nil
}

// DeviceOnline sends the commands queued for device dev.
func (s *Service) DeviceOnline(ctx context.Context, dev string) {
	s.mu.Lock()
	var due []Record
	for _, l := range s.live {
		if l.rec.Device == dev && l.rec.Status == StatusQueued {
			due = append(due, l.rec)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(due, func(a, b Record) int { return a.Created.Compare(b.Created) })
	now := s.cfg.Now()
	for _, r := range due {
		if now.After(r.QueueUntil) {
			continue // Tick expires it
		}
		s.mu.Lock()
		delete(s.live, r.ID) // send adds it back as sent
		s.mu.Unlock()
		if _, err := s.send(ctx, r); err != nil {
			s.log.Error("queued command not sent", "command", r.ID, "device", dev, "err", err)
		}
	}
}

// Tick expires queued commands past their queue TTL and times out sent
// commands past their deadline.
func (s *Service) Tick(now time.Time) {
	s.mu.Lock()
	var expired, timedOut []string
	for id, l := range s.live {
		switch {
		case l.rec.Status == StatusQueued && now.After(l.rec.QueueUntil):
			expired = append(expired, id)
		case l.rec.Status == StatusSent && now.After(l.rec.Deadline.Add(resultGrace)):
			timedOut = append(timedOut, id)
		}
	}
	s.mu.Unlock()
	for _, id := range expired {
		s.finish(id, func(r *Record) {
			r.Status, r.Error = protocol.ResultExpired, fmt.Sprintf("the device did not come online within the queue TTL (until %s)", r.QueueUntil.Format(time.RFC3339))
		})
	}
	for _, id := range timedOut {
		s.finish(id, func(r *Record) {
			r.Status, r.Error = StatusTimeout, fmt.Sprintf("no result from the device within %s", r.timeout())
		})
	}
}

// Run times out and expires commands, and sends a device its queued
// commands when the event stream says it came online, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var online <-chan events.Event // nil without Events: never ready
	if s.sub != nil {
		online = s.sub.C
	}
	defer func() {
		if s.sub != nil {
			s.sub.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Tick(s.cfg.Now())
		case e, ok := <-online:
			if !ok {
				// Fell behind: resubscribe, then send what is queued for
				// devices online now (some came online unseen).
				_, s.sub = s.cfg.Events.Subscribe(0)
				online = s.sub.C
				s.sendQueuedToOnline(ctx)
				continue
			}
			if cameOnline(e) {
				s.DeviceOnline(ctx, e.Device)
			}
		}
	}
}

// sendQueuedToOnline sends the queued commands of every device that is
// online now.
func (s *Service) sendQueuedToOnline(ctx context.Context) {
	s.mu.Lock()
	devs := map[string]bool{}
	for _, l := range s.live {
		if l.rec.Status == StatusQueued {
			devs[l.rec.Device] = true
		}
	}
	s.mu.Unlock()
	for dev := range devs {
		if d, err := s.cfg.Devices.Get(dev); err == nil && d.Status == registry.StatusOnline {
			s.DeviceOnline(ctx, dev)
		}
	}
}

// cameOnline reports whether e says a device is now online.
func cameOnline(e events.Event) bool {
	if e.Type != events.DeviceState {
		return false
	}
	var d struct {
		Status string `json:"status"`
	}
	return json.Unmarshal(e.Data, &d) == nil && d.Status == string(registry.StatusOnline)
}
