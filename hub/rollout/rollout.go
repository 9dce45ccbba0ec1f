package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/store"
)

// Errors callers branch on.
var (
	// ErrNotFound: no such rollout.
	ErrNotFound = errors.New("not found")
	// ErrBusy: a rollout of the kind is running or paused; writes of the
	// kind wait for it to end (or cancel it).
	ErrBusy = errors.New("a rollout is in progress")
	// ErrFinished: the rollout has ended; it cannot be paused, resumed
	// or cancelled.
	ErrFinished = errors.New("rollout already ended")
	// ErrInvalid: a malformed strategy or a write a rollout cannot make.
	ErrInvalid = errors.New("invalid")
)

// Rollout states.
const (
	StateRunning   = "running"
	StatePaused    = "paused"    // no new batch; the current one is still watched
	StateSucceeded = "succeeded" // every affected device was released
	StateReverted  = "reverted"  // too many failures: the old version was written back
	StateCancelled = "cancelled" // cancelled: the old version was written back
	StateFailed    = "failed"    // ended without finishing or reverting (Reason)
)

// Device states in a rollout.
const (
	DeviceHeld      = "held"      // keeps its old configuration until its batch
	DeviceUpdating  = "updating"  // released; the change is not applied yet
	DeviceVerifying = "verifying" // applied; must stay healthy MinHealthyTime
	DeviceHealthy   = "healthy"   // applied and stayed healthy
	DeviceFailed    = "failed"    // rejected, reverted, unhealthy or too slow (Reason)
	DeviceSkipped   = "skipped"   // offline or gone when its batch came: released unwatched
	DeviceReverted  = "reverted"  // released, then given the old version back
)

// Configs is what a rollout reads and writes of the configuration
// manager (hub/spec.Store).
type Configs interface {
	Latest(kind string, scope spec.Scope) (spec.Version, error)
	Put(w spec.Write) (spec.Version, error)
	Rollback(kind string, scope spec.Scope, to, ifVersion uint64, author, comment string) (spec.Version, error)
	Effective(kind string, d spec.Device) (spec.Effective, error)
}

// Devices is what a rollout reads of the registry.
type Devices interface {
	List() []registry.Device
	Get(id string) (registry.Device, error)
}

// Health is what a rollout reads of the health monitor (hub/health.Engine).
type Health interface {
	DeviceState(d registry.Device) string
	Active() []health.Alert
}

// Sync is the sender of the devices' configs (hub/confsync.Sync).
type Sync interface {
	// State is what the device runs of each kind, against what it should.
	State(device string) map[string]confsync.KindState
	// Changed makes the sender check every device now.
	Changed()
}

// Events is the hub's event stream (hub/events.Bus).
type Events interface {
	Publish(typ, device string, data any) events.Event
}

// Config configures a Manager. Configs, Devices, Health and Sync are
// required.
type Config struct {
	Configs Configs
	Devices Devices
	Health  Health
	Sync    Sync
	// Events, if set, hears of every step (events.Rollout).
	Events Events
	// Poll is how often running rollouts look at their devices. Default 1 s.
	Poll time.Duration
	// Keep is how many ended rollouts are kept. Default 100.
	Keep int
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Rollout is one change of a document released to the devices in
// batches; it is stored as JSON and shown as is over REST.
type Rollout struct {
	ID    string     `json:"id"`
	Kind  string     `json:"kind"`
	Scope spec.Scope `json:"scope"`
	// FromVersion is the document's version before the change, ToVersion
	// the change (0 only between its record and its write, see doc.go).
	FromVersion uint64 `json:"from_version"`
	ToVersion   uint64 `json:"to_version"`
	// RevertVersion is the version that wrote FromVersion's content back.
	RevertVersion uint64   `json:"revert_version,omitempty"`
	Author        string   `json:"author"`
	Strategy      Strategy `json:"strategy"`
	State         string   `json:"state"`
	Reason        string   `json:"reason,omitempty"`
	// Batch is the number of batches released so far.
	Batch int `json:"batch"`
	// Failures counts the failed devices; FailureBase those already
	// accepted by a resume after a pause on failures.
	Failures    int              `json:"failures"`
	FailureBase int              `json:"failure_base,omitempty"`
	Devices     []DeviceProgress `json:"devices"`
	Created     time.Time        `json:"created"`
	Updated     time.Time        `json:"updated"`
	Ended       time.Time        `json:"ended,omitzero"`
}

// DeviceProgress is one affected device in a rollout.
type DeviceProgress struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Batch is the batch the device was released in (1 = the first); 0
	// while held.
	Batch int `json:"batch"`
	// FromHash is the hash of the effective configuration it had before
	// the change; ToHash the one it was released to.
	FromHash     string    `json:"from_hash"`
	ToHash       string    `json:"to_hash,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	ReleasedAt   time.Time `json:"released_at,omitzero"`
	AppliedAt    time.Time `json:"applied_at,omitzero"`
	HealthySince time.Time `json:"healthy_since,omitzero"`
	EndedAt      time.Time `json:"ended_at,omitzero"`
}

// Active reports whether the rollout is running or paused.
func (r *Rollout) Active() bool { return r.State == StateRunning || r.State == StatePaused }

func (r *Rollout) clone() *Rollout {
	c := *r
	c.Devices = slices.Clone(r.Devices)
	return &c
}

// author is who a rollout's own writes are by.
func (r *Rollout) author() string { return "rollout " + r.ID }

// Manager runs the rollouts. Create it with Open, run it with Run; its
// methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	db    *store.DB
	ks    store.Keyspace // rollout/<id> → JSON Rollout
	holds store.Keyspace // rollout_hold/<id>/<device> → held content
	log   *slog.Logger
	wake  chan struct{}

	// mu guards rollouts, and is held across a step of a rollout and
	// across the writes Guard lets through, so that a write of a kind and
	// a rollout of it never interleave. Taken before hmu.
	mu       sync.Mutex
	rollouts map[string]*Rollout

	// hmu guards held: the content each held device keeps, by device and
	// kind. Held (called by the config sender) takes only hmu.
	hmu  sync.RWMutex
	held map[string]map[string]json.RawMessage
}

// Open loads the rollouts and the holds of the active ones from db.
func Open(db *store.DB, cfg Config) (*Manager, error) {
	if db == nil || cfg.Configs == nil || cfg.Devices == nil || cfg.Health == nil || cfg.Sync == nil {
		return nil, errors.New("rollout: a store, Configs, Devices, Health and Sync are required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, db: db, ks: db.Keyspace("rollout"), holds: db.Keyspace("rollout_hold"), log: cfg.Logger,
		wake: make(chan struct{}, 1), rollouts: map[string]*Rollout{}, held: map[string]map[string]json.RawMessage{}}
	err := m.ks.Scan(func(id string, b []byte) error {
		var r Rollout
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("rollout %s: %w", id, err)
		}
		// Healthy time must be watched time: what the hub did not see
		// while it was down does not count (the registry shows devices
		// online for a grace period after a start).
		for i := range r.Devices {
			if r.Active() && r.Devices[i].State == DeviceVerifying {
				r.Devices[i].HealthySince = time.Time{}
			}
		}
		m.rollouts[id] = &r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: load: %w", err)
	}
	err = m.holds.Scan(func(key string, b []byte) error {
		id, dev, _ := strings.Cut(key, "/")
		if r, ok := m.rollouts[id]; ok && r.Active() {
			m.setHeld(dev, r.Kind, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rollout: load holds: %w", err)
	}
	return m, nil
}

// Held returns the content device dev keeps of kind while a rollout holds
// it back. It has the signature of confsync.Holds.
func (m *Manager) Held(dev, kind string) (json.RawMessage, bool) {
	m.hmu.RLock()
	defer m.hmu.RUnlock()
	c, ok := m.held[dev][kind]
	return c, ok
}

func (m *Manager) setHeld(dev, kind string, content json.RawMessage) {
	m.hmu.Lock()
	defer m.hmu.Unlock()
	if m.held[dev] == nil {
		m.held[dev] = map[string]json.RawMessage{}
	}
	m.held[dev][kind] = content
}

// releaseAll drops every hold of kind.
func (m *Manager) releaseAll(kind string) {
	m.hmu.Lock()
	var devs []string
	for d := range m.held {
		devs = append(devs, d)
	}
	m.hmu.Unlock()
	m.release(kind, devs)
}

// release drops the holds of devs for kind.
func (m *Manager) release(kind string, devs []string) {
	m.hmu.Lock()
	for _, d := range devs {
		delete(m.held[d], kind)
		if len(m.held[d]) == 0 {
			delete(m.held, d)
		}
	}
	m.hmu.Unlock()
	m.cfg.Sync.Changed()
}

// activeLocked returns the active rollout of kind, if any. m.mu must be held.
func (m *Manager) activeLocked(kind string) *Rollout {
	for _, r := range m.rollouts {
		if r.Kind == kind && r.Active() {
			return r
		}
	}
	return nil
}

// busy is the error for a write of a kind that r is rolling out.
func busy(r *Rollout) error {
	return fmt.Errorf("rollout: %w: rollout %s of %s %s is %s; wait for it to end, or cancel it (POST /api/v1/rollouts/%s/cancel)",
		ErrBusy, r.ID, r.Kind, r.Scope, r.State, r.ID)
}

// Guard runs write, a write of a document of kind made without a rollout,
// unless a rollout of kind is running or paused (ErrBusy). No rollout of
// kind starts while write runs.
func (m *Manager) Guard(kind string, write func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.activeLocked(kind); r != nil {
		return busy(r)
	}
	return write()
}

// GuardAll runs write, a write that may touch documents of any kind (an
// import), unless a rollout of any kind is running or paused (ErrBusy).
func (m *Manager) GuardAll(write func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rollouts {
		if r.Active() {
			return busy(r)
		}
	}
	return write()
}

// List returns every rollout kept, newest first.
func (m *Manager) List() []Rollout {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Rollout, 0, len(m.rollouts))
	for _, r := range m.rollouts {
		out = append(out, *r.clone())
	}
	slices.SortFunc(out, func(a, b Rollout) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out
}

// Get returns one rollout.
func (m *Manager) Get(id string) (Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[id]
	if !ok {
		return Rollout{}, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	return *r.clone(), nil
}

// Start writes w, a new version of an existing document, and rolls it out
// with strategy st: the devices whose effective configuration of w.Kind
// changes keep their old one until their batch. It fails with ErrBusy
// while another rollout of the kind is active, ErrInvalid for a document
// that does not exist yet (there is no old version to keep) or a bad
// strategy, and as spec.Store.Put does.
func (m *Manager) Start(w spec.Write, st Strategy) (spec.Version, Rollout, error) {
	if err := st.Validate(); err != nil {
		return spec.Version{}, Rollout{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.activeLocked(w.Kind); r != nil {
		return spec.Version{}, Rollout{}, busy(r)
	}
	if w.IfVersion == 0 {
		return spec.Version{}, Rollout{}, fmt.Errorf("rollout: %w: a rollout changes an existing document; create %s %s without one first", ErrInvalid, w.Kind, w.Scope)
	}
	from, err := m.cfg.Configs.Latest(w.Kind, w.Scope)
	if err != nil {
		return spec.Version{}, Rollout{}, err
	}
	now := m.cfg.Now().UTC()
	r := &Rollout{ID: newID(now), Kind: w.Kind, Scope: w.Scope, FromVersion: from.Number, Author: w.Author, Strategy: st, State: StateRunning,
		Devices: []DeviceProgress{}, Created: now, Updated: now}
	// Hold every accepted device at what it has now, before the write, so
	// that the sender never sends the new version early; the holds of
	// the devices it does not change are dropped after it.
	before := map[string]json.RawMessage{}
	for _, d := range m.cfg.Devices.List() {
		if !d.Status.Accepted() {
			continue
		}
		eff, err := m.cfg.Configs.Effective(w.Kind, specDevice(d))
		if err != nil || len(eff.Layers) == 0 {
			continue // it has nothing to keep: it gets the change unwatched
		}
		before[d.ID] = eff.Content
		r.Devices = append(r.Devices, DeviceProgress{ID: d.ID, State: DeviceHeld, FromHash: eff.Hash})
	}
	slices.SortFunc(r.Devices, func(a, b DeviceProgress) int { return strings.Compare(a.ID, b.ID) })
	if err := m.save(r, before, nil); err != nil {
		return spec.Version{}, Rollout{}, err
	}
	for dev, c := range before {
		m.setHeld(dev, w.Kind, c)
	}
	m.rollouts[r.ID] = r
	v, err := m.cfg.Configs.Put(w)
	if err != nil {
		m.forgetLocked(r)
		return spec.Version{}, Rollout{}, err
	}
	m.begunLocked(r, v.Number)
	return v, *m.rollouts[r.ID].clone(), nil
}

// begunLocked completes a rollout whose version was written: the devices
// the change leaves as they were are let go. m.mu must be held.
func (m *Manager) begunLocked(r *Rollout, to uint64) {
	n := r.clone()
	n.ToVersion = to
	var unaffected []string
	kept := n.Devices[:0]
	for _, d := range n.Devices {
		dev, err := m.cfg.Devices.Get(d.ID)
		if err == nil {
			if eff, err := m.cfg.Configs.Effective(n.Kind, specDevice(dev)); err == nil && eff.Hash == d.FromHash {
				unaffected = append(unaffected, d.ID)
				continue
			}
		}
		kept = append(kept, d)
	}
	n.Devices = kept
	if len(kept) == 0 {
		n.State, n.Reason, n.Ended = StateSucceeded, "no device's configuration changes", m.cfg.Now().UTC()
	}
	if err := m.save(n, nil, unaffected); err != nil {
		// The holds stay until a step saves: the rollout goes on.
		m.log.Warn("rollout not saved; tried again at the next step", "rollout", n.ID, "err", err)
		r.ToVersion = to
		m.publish(r, "started", "", nil)
		m.poke()
		return
	}
	m.rollouts[n.ID] = n
	m.publish(n, "started", "", nil)
	if n.State == StateSucceeded {
		m.releaseAll(n.Kind)
		m.publish(n, "finished", "", nil)
	} else {
		m.release(n.Kind, unaffected)
	}
	m.log.Info("rollout started", "rollout", n.ID, "kind", n.Kind, "scope", n.Scope.String(), "from", n.FromVersion, "to", n.ToVersion,
		"devices", len(n.Devices))
	m.poke()
}

// forgetLocked drops a rollout whose write failed. m.mu must be held.
func (m *Manager) forgetLocked(r *Rollout) {
	delete(m.rollouts, r.ID)
	m.hmu.Lock()
	for _, d := range r.Devices {
		delete(m.held[d.ID], r.Kind)
		if len(m.held[d.ID]) == 0 {
			delete(m.held, d.ID)
		}
	}
	m.hmu.Unlock()
	err := m.db.Update(func(tx *store.Tx) error {
		if err := m.deleteHoldsTx(tx, r); err != nil {
			return err
		}
		return tx.Delete(m.ks, r.ID)
	})
	if err != nil {
		m.log.Warn("record of a rollout whose write failed not removed; it ends at the next start", "rollout", r.ID, "err", err)
	}
}

// Pause stops a running rollout from releasing more batches; the devices
// already released are still watched.
func (m *Manager) Pause(id string) (Rollout, error) {
	return m.change(id, func(r *Rollout) error {
		if r.State != StateRunning {
			return notNow(r, "pause")
		}
		r.State, r.Reason = StatePaused, "paused by the operator"
		return nil
	}, "paused")
}

// Resume lets a paused rollout go on. Failures that paused it (a rollout
// without auto_revert) are accepted: MaxFailures counts from here.
func (m *Manager) Resume(id string) (Rollout, error) {
	return m.change(id, func(r *Rollout) error {
		if r.State != StatePaused {
			return notNow(r, "resume")
		}
		r.State, r.Reason = StateRunning, ""
		if r.Failures-r.FailureBase > r.Strategy.MaxFailures {
			r.FailureBase = r.Failures
		}
		return nil
	}, "resumed")
}

func notNow(r *Rollout, what string) error {
	if !r.Active() {
		return fmt.Errorf("rollout: %w: %s ended %s; nothing to %s", ErrFinished, r.ID, r.State, what)
	}
	return fmt.Errorf("rollout: %w: %s is %s; cannot %s it", ErrFinished, r.ID, r.State, what)
}

// Cancel ends an active rollout: the old version is written back and
// every hold dropped, so every device gets its old configuration.
func (m *Manager) Cancel(id string) (Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[id]
	if !ok {
		return Rollout{}, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	if !r.Active() {
		return Rollout{}, notNow(r, "cancel")
	}
	if err := m.revertLocked(r, StateCancelled, "cancelled by the operator", nil); err != nil {
		return Rollout{}, err
	}
	return *m.rollouts[id].clone(), nil
}

// change applies f to a copy of rollout id and saves it.
func (m *Manager) change(id string, f func(*Rollout) error, step string) (Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rollouts[id]
	if !ok {
		return Rollout{}, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	n := r.clone()
	if err := f(n); err != nil {
		return Rollout{}, err
	}
	n.Updated = m.cfg.Now().UTC()
	if err := m.save(n, nil, nil); err != nil {
		return Rollout{}, err
	}
	m.rollouts[id] = n
	m.publish(n, step, "", nil)
	m.log.Info("rollout "+step, "rollout", id)
	m.poke()
	return *n.clone(), nil
}

// save writes r, with the holds to add and the holds to delete, in one
// synced transaction.
func (m *Manager) save(r *Rollout, add map[string]json.RawMessage, drop []string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	err = m.db.Update(func(tx *store.Tx) error {
		for dev, c := range add {
			if err := tx.Put(m.holds, r.ID+"/"+dev, c); err != nil {
				return err
			}
		}
		for _, dev := range drop {
			if err := tx.Delete(m.holds, r.ID+"/"+dev); err != nil {
				return err
			}
		}
		if !r.Active() {
			if err := m.deleteHoldsTx(tx, r); err != nil {
				return err
			}
		}
		return tx.Put(m.ks, r.ID, b)
	})
	if err != nil {
		return fmt.Errorf("rollout: save %s: %w", r.ID, err)
	}
	return nil
}

func (m *Manager) deleteHoldsTx(tx *store.Tx, r *Rollout) error {
	var keys []string
	if err := tx.ScanPrefix(m.holds, r.ID+"/", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(m.holds, k); err != nil {
			return err
		}
	}
	return nil
}

// poke makes Run step at once.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// publish sends a step of r to the event stream.
func (m *Manager) publish(r *Rollout, step, device string, devices []string) {
	if m.cfg.Events == nil {
		return
	}
	data := map[string]any{"step": step, "rollout": r.ID, "kind": r.Kind, "scope": r.Scope.String(), "state": r.State,
		"from_version": r.FromVersion, "to_version": r.ToVersion, "batch": r.Batch, "failures": r.Failures}
	if r.Reason != "" {
		data["reason"] = r.Reason
	}
	if devices != nil {
		data["devices"] = devices
	}
	if device != "" {
		for _, d := range r.Devices {
			if d.ID == device {
				data["device_reason"] = d.Reason
			}
		}
	}
	m.cfg.Events.Publish(events.Rollout, device, data)
}

// Run steps the active rollouts every Poll until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Poll)
	defer t.Stop()
	for {
		m.Step()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.wake:
		}
	}
}

// Step looks once at every active rollout's devices, and releases,
// finishes, pauses or reverts as they say; Run calls it every Poll.
func (m *Manager) Step() {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, r := range m.rollouts {
		if r.Active() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := m.stepLocked(m.rollouts[id]); err != nil {
			m.log.Warn("rollout step failed; tried again at the next one", "rollout", id, "err", err)
		}
	}
	m.pruneLocked()
}

// pruneLocked forgets the oldest ended rollouts beyond Keep.
func (m *Manager) pruneLocked() {
	var ended []*Rollout
	for _, r := range m.rollouts {
		if !r.Active() {
			ended = append(ended, r)
		}
	}
	if len(ended) <= m.cfg.Keep {
		return
	}
	slices.SortFunc(ended, func(a, b *Rollout) int { return a.Created.Compare(b.Created) })
	for _, r := range ended[:len(ended)-m.cfg.Keep] {
		if err := m.db.Update(func(tx *store.Tx) error { return tx.Delete(m.ks, r.ID) }); err != nil {
			m.log.Warn("old rollout not removed", "rollout", r.ID, "err", err)
			return
		}
		delete(m.rollouts, r.ID)
	}
}

// newID is a rollout's ID: its start time and random digits, so that IDs
// sort by start.
func newID(t time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func specDevice(d registry.Device) spec.Device {
	dev := spec.Device{ID: d.ID, Name: d.Name, Labels: d.Labels}
	if d.Facts != nil {
		dev.Arch, dev.Hostname = d.Facts.Arch, d.Facts.Hostname
	}
	return dev
}
