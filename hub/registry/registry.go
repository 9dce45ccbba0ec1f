package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// Config configures a Registry. The zero value works.
type Config struct {
	// Now returns the current time; default time.Now. Tests inject a clock.
	Now func() time.Time
	// DefaultHeartbeat is assumed for devices that have not yet told their
	// heartbeat interval. Default 10s.
	DefaultHeartbeat time.Duration
	// MissedHeartbeats is how many heartbeat intervals may pass in silence
	// before a device is marked offline. Default 3.
	MissedHeartbeats int
	// TickInterval is how often Run checks heartbeat deadlines. Default 500ms.
	TickInterval time.Duration
	// FlushInterval is how often Run writes last-seen times to the store
	// (unsynced: a crash may lose the last few seconds of them, never a
	// status change). Default 30s.
	FlushInterval time.Duration
	// PendingTTL is how long a pairing request (a pending device) waits
	// for an administrator's decision; then it is deleted, its slot among
	// the MaxPending is freed, and the agent must ask again during a
	// pairing window. Default DefaultPendingTTL.
	PendingTTL time.Duration
	// OnChange, if set, is called after every status change, outside the
	// registry's lock and in the order of the changes. It must not block.
	OnChange func(Device)
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.DefaultHeartbeat <= 0 {
		c.DefaultHeartbeat = 10 * time.Second
	}
	if c.MissedHeartbeats <= 0 {
		c.MissedHeartbeats = 3
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 500 * time.Millisecond
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 30 * time.Second
	}
	if c.PendingTTL <= 0 {
		c.PendingTTL = DefaultPendingTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// DefaultPendingTTL is how long a pairing request waits for a decision by
// default: time to go round the house typing codes, short enough that
// requests nobody decides (junk sent during an open window) free their
// slots without an administrator.
const DefaultPendingTTL = time.Hour

// Registry holds every enrolled device. Its methods are safe for
// concurrent use.
type Registry struct {
	cfg Config
	log *slog.Logger
	db  *store.DB
	ks  store.Keyspace

	// notify serialises OnChange calls so they keep the order of changes.
	notify sync.Mutex

	// allowed holds the IDs of enrolled, unrevoked devices. It is kept
	// apart from mu so that the broker's per-message check never waits for
	// a synced write.
	allowed sync.Map // string → true

	mu      sync.Mutex // guards the fields below
	devices map[string]*entry
	// pending holds status changes not yet passed to OnChange, in the order
	// they happened; appended under mu, drained under notify.
	pending []Device
}

// entry is a device plus the registry's in-memory bookkeeping.
type entry struct {
	Device
	// deadline is when an online device is marked offline without a heartbeat.
	deadline time.Time
	// offlineSent is the envelope time of the last "offline" status; a
	// heartbeat sent before it is stale.
	offlineSent time.Time
	// seenDirty is set when LastSeen changed since the last flush.
	seenDirty bool
}

// Open loads the registry from db. Devices that were online when the hub
// stopped stay online for a grace period of MissedHeartbeats intervals from
// now, so a hub restart does not mark healthy devices offline.
func Open(db *store.DB, cfg Config) (*Registry, error) {
	cfg.setDefaults()
	r := &Registry{cfg: cfg, log: cfg.Logger, db: db, ks: db.Keyspace("device"), devices: map[string]*entry{}}
	now := cfg.Now()
	err := r.ks.Scan(func(key string, val []byte) error {
		var d Device
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("device %q: %w", key, err)
		}
		e := &entry{Device: d}
		if d.Status == StatusOnline {
			e.deadline = now.Add(r.timeout(&e.Device))
		}
		r.devices[d.ID] = e
		if d.Status.Accepted() {
			r.allowed.Store(d.ID, true)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: load: %w", err)
	}
	return r, nil
}

func (r *Registry) timeout(d *Device) time.Duration {
	hb := r.cfg.DefaultHeartbeat
	if d.HeartbeatMS > 0 {
		hb = time.Duration(d.HeartbeatMS) * time.Millisecond
	}
	return time.Duration(r.cfg.MissedHeartbeats) * hb
}

// Enroll adds the device with the given ID. It refuses an ID that is
// already enrolled with ErrExists: a join token must never replace the
// credentials of a known device (a replayed enrolment would take it over).
// To enrol a key again, delete the device first.
func (r *Registry) Enroll(id, name string, publicKey, secretHash []byte) (Device, error) {
	if err := protocol.ValidateID(id); err != nil {
		return Device{}, fmt.Errorf("registry: enroll: %w: %w", ErrInvalid, err)
	}
	if err := ValidateName(name); err != nil {
		return Device{}, fmt.Errorf("registry: enroll %s: %w", id, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.devices[id]; ok {
		return Device{}, fmt.Errorf("registry: enroll %s: %w", id, ErrExists)
	}
	now := r.cfg.Now()
	d := Device{ID: id, Name: name, Status: StatusOffline, StatusReason: ReasonEnrolled, StatusSince: now, EnrolledAt: now,
		PublicKey: slices.Clone(publicKey), SecretHash: slices.Clone(secretHash)}
	if err := r.putLocked(&d); err != nil {
		return Device{}, err
	}
	r.devices[id] = &entry{Device: d}
	r.allowed.Store(id, true)
	r.log.Info("device enrolled", "device", id, "name", d.Name)
	return d.clone(), nil
}

// AddPending records a device that asks to pair during a pairing window:
// it is listed as pending, with no credentials, until an administrator
// approves or rejects it, or for PendingTTL. A known ID is refused with
// ErrExists.
func (r *Registry) AddPending(id, name string, publicKey []byte) (Device, error) {
	if err := protocol.ValidateID(id); err != nil {
		return Device{}, fmt.Errorf("registry: pair: %w: %w", ErrInvalid, err)
	}
	if err := ValidateName(name); err != nil {
		return Device{}, fmt.Errorf("registry: pair %s: %w", id, err)
	}
	r.mu.Lock()
	now := r.cfg.Now()
	r.purgeExpiredLocked(now)
	if _, ok := r.devices[id]; ok {
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: pair %s: %w", id, ErrExists)
	}
	n := 0
	for _, e := range r.devices {
		if e.Status == StatusPending {
			n++
		}
	}
	if n >= MaxPending {
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: pair %s: %w (%d): approve, reject or delete some", id, ErrTooManyPending, MaxPending)
	}
	d := Device{ID: id, Name: name, Status: StatusPending, StatusReason: ReasonPairing, StatusSince: now, PublicKey: slices.Clone(publicKey)}
	if err := r.putLocked(&d); err != nil {
		r.mu.Unlock()
		return Device{}, err
	}
	e := &entry{Device: d}
	r.devices[id] = e
	r.queueLocked(e)
	r.mu.Unlock()
	r.notifyChanges()
	r.log.Info("device asks to pair", "device", id, "name", name)
	return d.clone(), nil
}

// Approve accepts a pending device: it becomes offline (enrolled) and may
// collect its credentials once (see SetSecret).
func (r *Registry) Approve(id string) (Device, error) {
	return r.decide(id, StatusOffline, ReasonApproved)
}

// Reject refuses a pending device for good (until it is deleted).
func (r *Registry) Reject(id string) (Device, error) {
	return r.decide(id, StatusRejected, ReasonRejected)
}

func (r *Registry) decide(id string, s Status, reason string) (Device, error) {
	r.mu.Lock()
	now := r.cfg.Now()
	if e, ok := r.devices[id]; ok && r.expired(e, now) {
		r.purgeExpiredLocked(now)
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: %s: its pairing request expired (after %s): %w", id, r.cfg.PendingTTL, ErrNotFound)
	}
	e, ok := r.devices[id]
	if !ok {
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	}
	if e.Status != StatusPending {
		st := e.Status
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: %s is %s, not pending: %w", id, st, ErrNotAccepted)
	}
	if s.Accepted() {
		e.EnrolledAt = now
	}
	err := r.setStatusLocked(e, s, reason, now)
	if err == nil {
		if s.Accepted() {
			r.allowed.Store(id, true)
		}
		r.queueLocked(e)
	}
	d := e.clone()
	r.mu.Unlock()
	r.notifyChanges()
	if err != nil {
		return Device{}, err
	}
	return d, nil
}

// SetSecret stores the hash of the broker password of an approved device
// that has none yet. It refuses with ErrExists if the device already has
// credentials (they are handed out once), and with ErrNotAccepted if it is
// not accepted.
func (r *Registry) SetSecret(id string, secretHash []byte) (Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.devices[id]
	switch {
	case !ok:
		return Device{}, fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	case !e.Status.Accepted():
		return Device{}, fmt.Errorf("registry: %s is %s: %w", id, e.Status, ErrNotAccepted)
	case len(e.SecretHash) != 0:
		return Device{}, fmt.Errorf("registry: %s: credentials already issued: %w", id, ErrExists)
	}
	d := e.clone()
	d.SecretHash = slices.Clone(secretHash)
	if err := r.putLocked(&d); err != nil {
		return Device{}, err
	}
	e.Device = d
	return d.clone(), nil
}

// Authenticate reports whether secret is the broker password of device id.
func (r *Registry) Authenticate(id string, secret []byte) bool {
	r.mu.Lock()
	e, ok := r.devices[id]
	var hash []byte
	if ok && e.Status.Accepted() {
		hash = e.SecretHash // replaced, never modified in place
	}
	r.mu.Unlock()
	return hash != nil && (&Device{SecretHash: hash}).checkSecret(secret)
}

// Allowed reports whether device id is enrolled and not revoked. The
// broker asks on every publish and subscription, so a session that slipped
// through while the device was being revoked can do nothing.
func (r *Registry) Allowed(id string) bool {
	_, ok := r.allowed.Load(id)
	return ok
}

// Revoke marks the device revoked, with a synced write: from then on its
// credentials fail and its messages are ignored. The caller closes its live
// broker session. Revoking a revoked device changes nothing.
func (r *Registry) Revoke(id string) (Device, error) {
	r.mu.Lock()
	e, ok := r.devices[id]
	if !ok {
		r.mu.Unlock()
		return Device{}, fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	}
	before := e.Status
	// Refused from now on, even before the write below is on disk: the
	// broker asks Allowed without waiting for r.mu.
	r.allowed.Delete(id)
	err := r.setStatusLocked(e, StatusRevoked, ReasonRevoked, r.cfg.Now())
	if err == nil && before != StatusRevoked {
		r.queueLocked(e)
	}
	d := e.clone()
	r.mu.Unlock()
	r.notifyChanges()
	if err != nil {
		return Device{}, err
	}
	return d, nil
}

// Get returns the device with the given ID or ErrNotFound.
func (r *Registry) Get(id string) (Device, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.devices[id]
	if !ok {
		return Device{}, fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	}
	return e.clone(), nil
}

// List returns every device, ordered by name and then ID.
func (r *Registry) List() []Device {
	r.mu.Lock()
	out := make([]Device, 0, len(r.devices))
	for _, e := range r.devices {
		out = append(out, e.clone())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Device) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out
}

// Update applies p to the device and returns the result.
func (r *Registry) Update(id string, p Patch) (Device, error) {
	if p.Name != nil {
		if err := ValidateName(*p.Name); err != nil {
			return Device{}, err
		}
	}
	for k, v := range p.Labels {
		if err := validateLabelKey(k); err != nil {
			return Device{}, err
		}
		if err := validateLabelValue(k, v); err != nil {
			return Device{}, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.devices[id]
	if !ok {
		return Device{}, fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	}
	d := e.clone()
	if p.Name != nil {
		d.Name, d.NameSet = *p.Name, true
	}
	for k, v := range p.Labels {
		if v == "" {
			delete(d.Labels, k)
			continue
		}
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		d.Labels[k] = v
	}
	if len(d.Labels) > MaxLabels {
		return Device{}, fmt.Errorf("%w: labels: more than %d", ErrInvalid, MaxLabels)
	}
	if err := r.putLocked(&d); err != nil {
		return Device{}, err
	}
	e.Device = d
	return d.clone(), nil
}

// Delete removes the device. Its credentials stop working at once; the
// caller closes its live broker session.
func (r *Registry) Delete(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.devices[id]; !ok {
		return fmt.Errorf("registry: %s: %w", id, ErrNotFound)
	}
	if err := r.ks.Delete(id); err != nil {
		return fmt.Errorf("registry: delete %s: %w", id, err)
	}
	delete(r.devices, id)
	r.allowed.Delete(id)
	r.log.Info("device deleted", "device", id)
	return nil
}

// putLocked writes d with a synced write. r.mu must be held.
func (r *Registry) putLocked(d *Device) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("registry: encode %s: %w", d.ID, err)
	}
	if err := r.ks.Put(d.ID, b); err != nil {
		return fmt.Errorf("registry: save %s: %w", d.ID, err)
	}
	return nil
}

// ErrUnknownDevice is returned by Handle for messages from devices that are
// not enrolled (for example one deleted while still connected).
var ErrUnknownDevice = errors.New("unknown device")

// Handle applies one decoded message that arrived on the topic of device id
// at the registry's current time. The message's source must be id.
func (r *Registry) Handle(id string, m *protocol.Message) error {
	if m.Source != id {
		return fmt.Errorf("registry: message on the topic of %s claims source %s", id, m.Source)
	}
	r.mu.Lock()
	e, ok := r.devices[id]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("registry: %s: %w", id, ErrUnknownDevice)
	}
	if e.Status == StatusRevoked {
		r.mu.Unlock()
		return fmt.Errorf("registry: %s: %w", id, ErrRevoked)
	}
	if !e.Status.Accepted() {
		r.mu.Unlock()
		return fmt.Errorf("registry: %s: %w", id, ErrNotAccepted)
	}
	now := r.cfg.Now()
	before := e.Status
	var err error
	switch p := m.Payload.(type) {
	case *protocol.Register:
		err = r.registerLocked(e, p, now)
	case *protocol.Status:
		err = r.statusLocked(e, m.Time, p, now)
	case *protocol.Heartbeat:
		err = r.heartbeatLocked(e, m.Time, now)
	default:
		err = fmt.Errorf("registry: %s: unexpected message type %s", id, m.Type())
	}
	if e.Status != before {
		r.queueLocked(e)
	}
	r.mu.Unlock()
	r.notifyChanges()
	return err
}

func (r *Registry) seenLocked(e *entry, now time.Time) {
	if e.FirstSeen.IsZero() {
		e.FirstSeen = now
	}
	e.LastSeen = now
	e.seenDirty = true
}

func (r *Registry) registerLocked(e *entry, p *protocol.Register, now time.Time) error {
	if e.AgentVersion == p.AgentVersion && e.HeartbeatMS == p.HeartbeatMS && e.Facts != nil && *e.Facts == p.Facts &&
		reflect.DeepEqual(e.Hardware, p.Hardware) && (e.NameSet || e.Name == p.Name) && !e.FirstSeen.IsZero() {
		// Nothing new (the usual reconnect): no synced write.
		r.seenLocked(e, now)
		if e.Status == StatusOnline {
			e.deadline = now.Add(r.timeout(&e.Device))
		}
		return nil
	}
	d := e.clone()
	if !d.NameSet && ValidateName(p.Name) == nil {
		d.Name = p.Name
	}
	d.AgentVersion = p.AgentVersion
	d.HeartbeatMS = p.HeartbeatMS
	f := p.Facts
	d.Facts = &f
	d.Hardware = nil
	if p.Hardware != nil {
		d.Hardware = cloneHardware(p.Hardware)
	}
	if d.FirstSeen.IsZero() {
		d.FirstSeen = now
	}
	d.LastSeen = now
	if err := r.putLocked(&d); err != nil {
		return err
	}
	e.Device = d
	if e.Status == StatusOnline {
		e.deadline = now.Add(r.timeout(&e.Device))
	}
	return nil
}

func (r *Registry) statusLocked(e *entry, sent time.Time, p *protocol.Status, now time.Time) error {
	switch p.State {
	case protocol.StateOnline:
		r.seenLocked(e, now)
		e.deadline = now.Add(r.timeout(&e.Device))
		if e.Session != p.Session {
			// A new connection: remember its session durably, so that a
			// late Will of the old one is recognised even after a hub
			// restart (an external broker keeps retained Wills).
			d := e.clone()
			d.Session = p.Session
			if e.Status == StatusOnline {
				if err := r.putLocked(&d); err != nil {
					return err
				}
			}
			e.Device = d
		}
		return r.setStatusLocked(e, StatusOnline, ReasonStartup, now)
	default:
		if p.Reason == protocol.ReasonLost && p.Session != "" && e.Session != "" && p.Session != e.Session {
			// The Will of a replaced connection, published after the
			// device had already reconnected.
			r.log.Debug("stale last will ignored", "device", e.ID, "will_session", p.Session, "online_session", e.Session)
			return nil
		}
		reason := ReasonShutdown
		if p.Reason == protocol.ReasonLost {
			reason = ReasonLost
		}
		e.offlineSent = sent
		return r.setStatusLocked(e, StatusOffline, reason, now)
	}
}

func (r *Registry) heartbeatLocked(e *entry, sent, now time.Time) error {
	if e.Status == StatusOffline && e.StatusReason == ReasonShutdown && !sent.After(e.offlineSent) {
		// A heartbeat sent before the device's goodbye, delivered late
		// (heartbeats and status travel on different topics): stale.
		return nil
	}
	r.seenLocked(e, now)
	e.deadline = now.Add(r.timeout(&e.Device))
	if e.Status != StatusOnline {
		return r.setStatusLocked(e, StatusOnline, ReasonHeartbeat, now)
	}
	return nil
}

// setStatusLocked records a status change with a synced write.
func (r *Registry) setStatusLocked(e *entry, s Status, reason string, now time.Time) error {
	if e.Status == s {
		return nil
	}
	d := e.clone()
	d.Status, d.StatusReason, d.StatusSince = s, reason, now
	if err := r.putLocked(&d); err != nil {
		return err
	}
	e.Device = d
	e.seenDirty = false
	r.log.Info("device status", "device", d.ID, "name", d.Name, "status", s, "reason", reason)
	return nil
}

// queueLocked records a status change of e for OnChange. r.mu must be held,
// so that changes are queued in the order they happen.
func (r *Registry) queueLocked(e *entry) {
	if r.cfg.OnChange != nil {
		r.pending = append(r.pending, e.clone())
	}
}

// notifyChanges passes the queued changes to OnChange, in order. It must be
// called without r.mu held. Whoever holds notify delivers every change
// queued so far, so a change is never reported after a later one.
func (r *Registry) notifyChanges() {
	if r.cfg.OnChange == nil {
		return
	}
	r.notify.Lock()
	defer r.notify.Unlock()
	for {
		r.mu.Lock()
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, d := range batch {
			r.cfg.OnChange(d)
		}
	}
}

// expired reports whether e is a pairing request older than PendingTTL at
// now.
func (r *Registry) expired(e *entry, now time.Time) bool {
	return e.Status == StatusPending && !now.Before(e.StatusSince.Add(r.cfg.PendingTTL))
}

// purgeExpiredLocked deletes the pairing requests that expired at now,
// freeing their slots. r.mu must be held.
func (r *Registry) purgeExpiredLocked(now time.Time) {
	for id, e := range r.devices {
		if !r.expired(e, now) {
			continue
		}
		if err := r.ks.Delete(id); err != nil {
			r.log.Error("delete an expired pairing request", "device", id, "err", err)
			continue
		}
		delete(r.devices, id)
		r.log.Info("pairing request expired: deleted", "device", id, "name", e.Name, "asked_at", e.StatusSince, "ttl", r.cfg.PendingTTL.String())
	}
}

// Tick marks offline every online device whose heartbeat deadline has
// passed at now, and deletes expired pairing requests. Run calls it every
// TickInterval; tests call it directly.
func (r *Registry) Tick(now time.Time) {
	r.mu.Lock()
	r.purgeExpiredLocked(now)
	for _, e := range r.devices {
		if e.Status == StatusOnline && !e.deadline.IsZero() && now.After(e.deadline) {
			if err := r.setStatusLocked(e, StatusOffline, ReasonHeartbeatTimeout, now); err != nil {
				r.log.Error("mark offline", "device", e.ID, "err", err)
				continue
			}
			r.queueLocked(e)
		}
	}
	r.mu.Unlock()
	r.notifyChanges()
}

// Flush writes changed last-seen times to the store without syncing.
func (r *Registry) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var dirty []*entry
	for _, e := range r.devices {
		if e.seenDirty {
			dirty = append(dirty, e)
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	err := r.db.UpdateLazy(func(tx *store.Tx) error {
		for _, e := range dirty {
			b, err := json.Marshal(&e.Device)
			if err != nil {
				return err
			}
			if err := tx.Put(r.ks, e.ID, b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("registry: flush last-seen times: %w", err)
	}
	for _, e := range dirty {
		e.seenDirty = false
	}
	return nil
}

// Run checks heartbeat deadlines and flushes last-seen times until ctx is
// done, then flushes once more.
func (r *Registry) Run(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.TickInterval)
	defer tick.Stop()
	flush := time.NewTicker(r.cfg.FlushInterval)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.Flush()
		case <-tick.C:
			r.Tick(r.cfg.Now())
		case <-flush.C:
			if err := r.Flush(); err != nil {
				r.log.Warn("flush", "err", err)
			}
		}
	}
}
