// Package confsync sends every accepted device its desired configuration
// (its effective configuration of each kind, from hub/spec) and keeps what
// the device reports back, so that desired against applied is visible for
// each device. Only the hub's root (hub/hubd) imports it; the REST API
// reads its state through a small interface.
//
// The hub publishes one retained protocol.Config per device on the
// device's config topic, whenever what the device should have changes: a
// document written, the device's labels changed, the device enrolled or
// came online. Retained, so a device that was offline gets the latest when
// it returns. The embedded broker keeps retained messages in memory only,
// so after every (re)connection of the hub's bus every device's config is
// sent again (Resend). Every Interval all devices are checked again, which
// bounds what a missed event can cost.
//
// A device answers with a protocol.ConfigStatus per kind. What it reported
// is stored with synced writes, keyed by device: after a hub restart the
// applied hashes, rejections and their reasons are still known. The
// desired hashes are computed again from the documents, never stored.
package confsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// Configs is what confsync reads of the configuration manager.
type Configs interface {
	Kinds() []string
	Effective(kind string, d spec.Device) (spec.Effective, error)
}

// Devices is what confsync reads of the registry.
type Devices interface {
	List() []registry.Device
	Get(id string) (registry.Device, error)
}

// Events is the event stream confsync follows.
type Events interface {
	Subscribe(after uint64) ([]events.Event, *events.Sub)
}

// Holds says which devices keep an older configuration of a kind, and
// which. Held is called for every device and kind of every pass: it must
// be quick and must not call back into the Sync.
type Holds interface {
	Held(device, kind string) (content json.RawMessage, ok bool)
}

// Config configures a Sync. Configs, Devices and Publish are required.
type Config struct {
	Configs Configs
	Devices Devices
	// Publish sends a device its Config, retained, QoS 1.
	Publish func(ctx context.Context, device string, c *protocol.Config) error
	// Events, if set, makes device changes take effect at once; without
	// it they wait for the next Interval.
	Events Events
	// Holds, if set, holds devices back during a rollout (hub/rollout):
	// a held device is sent the content Holds gives instead of its
	// effective configuration of that kind.
	Holds Holds
	// Interval is how often every device is checked again. Default 30 s.
	Interval time.Duration
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// States of a device's configuration of one kind.
const (
	StatePending  = "pending"  // sent, not applied yet
	StateApplied  = "applied"  // the device runs the desired configuration
	StateRejected = "rejected" // the device refused it (Reason)
	StateReverted = "reverted" // the device went back to its last good one (Reason)
	StateError    = "error"    // the hub could not make or send it (Reason)
)

// KindState is a device's configuration of one kind: desired against
// applied.
type KindState struct {
	// Desired is the hash of the effective configuration the device
	// should run; Applied the last hash it reported applied.
	Desired string    `json:"desired"`
	Applied string    `json:"applied,omitempty"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since"`
}

// report is what a device said of one kind, as stored.
type report struct {
	Hash   string    `json:"hash"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	// Applied is the last hash reported applied (a rejection keeps it).
	Applied string `json:"applied,omitempty"`
}

// Sync is the configuration sender. Create it with Open, run it with Run;
// its methods are safe for concurrent use.
type Sync struct {
	cfg   Config
	db    *store.DB
	ks    store.Keyspace
	log   *slog.Logger
	poke  chan struct{} // a full pass is due
	sub   *events.Sub   // taken in Open, read by Run
	onDev chan string   // devices to check now

	// mu guards the fields below.
	mu      sync.Mutex
	reports map[string]map[string]report    // device → kind → last report
	desired map[string]map[string]KindState // device → kind → desired, with the hub's own errors
	sent    map[string][32]byte             // device → hash of the last Config sent
}

// Open loads the devices' reports from db.
func Open(db *store.DB, cfg Config) (*Sync, error) {
	if db == nil || cfg.Configs == nil || cfg.Devices == nil || cfg.Publish == nil {
		return nil, errors.New("confsync: a store, Configs, Devices and Publish are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sync{cfg: cfg, db: db, ks: db.Keyspace("confsync"), log: cfg.Logger, poke: make(chan struct{}, 1), onDev: make(chan string, 256),
		reports: map[string]map[string]report{}, desired: map[string]map[string]KindState{}, sent: map[string][32]byte{}}
	err := s.ks.Scan(func(dev string, b []byte) error {
		var r map[string]report
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("device %s: %w", dev, err)
		}
		s.reports[dev] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("confsync: load: %w", err)
	}
	if cfg.Events != nil {
		_, s.sub = cfg.Events.Subscribe(0)
	}
	return s, nil
}

// Changed says the documents changed: every device is checked at once.
func (s *Sync) Changed() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Resend forgets what was sent, so that every device's config is sent
// again (after the hub's bus reconnected: the broker may have lost its
// retained messages). It has the signature of a bus connect hook.
func (s *Sync) Resend(context.Context) {
	s.mu.Lock()
	clear(s.sent)
	s.mu.Unlock()
	s.Changed()
}

// Run sends configs until ctx is done.
func (s *Sync) Run(ctx context.Context) error {
	var evs <-chan events.Event
	if s.sub != nil {
		evs = s.sub.C
		defer func() { s.sub.Close() }()
	}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	s.passAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.passAll(ctx)
		case <-s.poke:
			s.passAll(ctx)
		case e, ok := <-evs:
			if !ok {
				_, s.sub = s.cfg.Events.Subscribe(0)
				evs = s.sub.C
				s.passAll(ctx)
				continue
			}
			switch e.Type {
			case events.DeviceJoined, events.DeviceState:
				if d, err := s.cfg.Devices.Get(e.Device); err == nil {
					s.pass(ctx, d)
				}
			case events.DeviceLeft:
				s.forget(e.Device)
			}
		}
	}
}

// passAll checks every device.
func (s *Sync) passAll(ctx context.Context) {
	for _, d := range s.cfg.Devices.List() {
		if ctx.Err() != nil {
			return
		}
		s.pass(ctx, d)
	}
}

// pass sends device d its config if it changed since it was last sent.
func (s *Sync) pass(ctx context.Context, d registry.Device) {
	if !d.Status.Accepted() {
		return
	}
	dev := spec.Device{ID: d.ID, Name: d.Name, Labels: d.Labels}
	if d.Facts != nil {
		dev.Arch, dev.Hostname = d.Facts.Arch, d.Facts.Hostname
	}
	msg := &protocol.Config{Configs: map[string]protocol.ConfigDoc{}}
	desired := map[string]KindState{}
	now := s.cfg.Now()
	for _, kind := range s.cfg.Configs.Kinds() {
		if held, ok := s.held(d.ID, kind); ok {
			sum := sha256.Sum256(held)
			h := hex.EncodeToString(sum[:])
			msg.Configs[kind] = protocol.ConfigDoc{Hash: h, Content: held}
			desired[kind] = KindState{Desired: h, Since: now}
			continue
		}
		eff, err := s.cfg.Configs.Effective(kind, dev)
		switch {
		case err != nil:
			// The device keeps what it has; the hub says why.
			desired[kind] = KindState{State: StateError, Reason: err.Error(), Since: now}
		case len(eff.Layers) > 0:
			msg.Configs[kind] = protocol.ConfigDoc{Hash: eff.Hash, Content: eff.Content}
			desired[kind] = KindState{Desired: eff.Hash, Since: now}
		}
	}
	b, err := json.Marshal(msg)
	if err != nil {
		s.log.Error("config not encoded", "device", d.ID, "err", err)
		return
	}
	sum := sha256.Sum256(b)
	s.mu.Lock()
	for kind, k := range desired {
		if old, ok := s.desired[d.ID][kind]; ok && old.Desired == k.Desired && old.State == k.State {
			k.Since = old.Since // desired since it first was
			desired[kind] = k
		}
	}
	s.desired[d.ID] = desired
	last, sentBefore := s.sent[d.ID]
	s.mu.Unlock()
	if sentBefore && last == sum || !sentBefore && len(msg.Configs) == 0 {
		return // unchanged, or nothing to say to a device told nothing yet
	}
	if err := s.cfg.Publish(ctx, d.ID, msg); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("config not sent; tried again at the next pass", "device", d.ID, "err", err)
		}
		return
	}
	s.mu.Lock()
	s.sent[d.ID] = sum
	s.mu.Unlock()
	s.log.Debug("config sent", "device", d.ID, "kinds", len(msg.Configs))
}

// held returns what Holds holds device dev at, of kind.
func (s *Sync) held(dev, kind string) (json.RawMessage, bool) {
	if s.cfg.Holds == nil {
		return nil, false
	}
	return s.cfg.Holds.Held(dev, kind)
}

// forget drops a deleted device's state.
func (s *Sync) forget(dev string) {
	s.mu.Lock()
	delete(s.desired, dev)
	delete(s.sent, dev)
	_, had := s.reports[dev]
	delete(s.reports, dev)
	s.mu.Unlock()
	if had {
		if err := s.db.Update(func(tx *store.Tx) error { return tx.Delete(s.ks, dev) }); err != nil {
			s.log.Warn("config reports of a deleted device not removed", "device", dev, "err", err)
		}
	}
}

// HandleStatus records what a device reported of one kind (synced).
func (s *Sync) HandleStatus(dev string, st *protocol.ConfigStatus) {
	s.mu.Lock()
	r := s.reports[dev]
	if r == nil {
		r = map[string]report{}
		s.reports[dev] = r
	}
	prev := r[st.Kind]
	rep := report{Hash: st.Hash, State: st.State, Reason: st.Reason, At: s.cfg.Now().UTC(), Applied: prev.Applied}
	if st.State == protocol.ConfigApplied {
		rep.Applied = st.Hash
	}
	r[st.Kind] = rep
	b, err := json.Marshal(r)
	s.mu.Unlock()
	if err == nil {
		err = s.db.Update(func(tx *store.Tx) error { return tx.Put(s.ks, dev, b) })
	}
	if err != nil {
		s.log.Warn("config status not stored", "device", dev, "kind", st.Kind, "err", err)
	}
	if st.State != protocol.ConfigApplied {
		s.log.Warn("device did not apply its config", "device", dev, "kind", st.Kind, "state", st.State, "reason", st.Reason)
	}
}

// State returns device dev's configuration state of every kind it should
// have, or had reported.
func (s *Sync) State(dev string) map[string]KindState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]KindState{}
	for kind, d := range s.desired[dev] {
		out[kind] = s.stateLocked(dev, kind, d)
	}
	for kind := range s.reports[dev] {
		if _, ok := out[kind]; !ok {
			out[kind] = s.stateLocked(dev, kind, KindState{})
		}
	}
	return out
}

// stateLocked combines the desired state of a kind with the device's last
// report. s.mu must be held.
func (s *Sync) stateLocked(dev, kind string, d KindState) KindState {
	r := s.reports[dev][kind]
	out := d
	out.Applied = r.Applied
	switch {
	case d.State == StateError:
	case d.Desired == "":
		out.State, out.Since = StateApplied, r.At // nothing desired: what it runs is its own
	case r.Hash == d.Desired && r.State != protocol.ConfigApplied:
		out.State, out.Reason, out.Since = r.State, r.Reason, r.At
	case r.Applied == d.Desired:
		out.State, out.Since = StateApplied, r.At
	default:
		out.State = StatePending
	}
	return out
}
