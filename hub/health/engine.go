package health

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
)

// Defaults of Config.
const (
	DefaultInterval     = 10 * time.Second
	DefaultHistoryLimit = 1000
	DefaultHistoryAge   = 30 * 24 * time.Hour
	// minStaleAfter is the least default StaleAfter.
	minStaleAfter = time.Minute
)

// Config configures an Engine.
type Config struct {
	// Devices lists the registry's devices (registry.Registry.List).
	// Required. Called once per evaluation and by States, outside the
	// engine's locks.
	Devices func() []registry.Device
	// Latest returns the latest sample of every series of a device
	// (metrics.Store.Latest). Required. Called by Evaluate, at most once
	// per device and pass, while it holds the lock that serialises
	// changes (never the one readers take): it must not call the
	// engine's Evaluate, PutRule or DeleteRule.
	Latest func(device string) []metrics.Sample
	// Range returns the samples of a device's series in a time range
	// (metrics.Store.Range), for trend and rate rules. Required. Called
	// by Evaluate under the same lock and conditions as Latest, at most
	// once per trend or rate rule, device and bucket of the rule's window
	// (Window/120: every 3 minutes for a 6-hour window).
	Range func(metrics.Query) ([]metrics.Series, error)
	// Now returns the current time; default time.Now. Run evaluates at
	// Now(); the engine's start (for the absence grace period) and the
	// resolve times of PutRule and DeleteRule are Now() too.
	Now func() time.Time
	// Interval is the evaluation period of Run. Default DefaultInterval.
	Interval time.Duration
	// StaleAfter is how old the latest sample of a series may be and still
	// count for a threshold rule: an older one neither starts, advances
	// nor resolves anything (a pending condition is forgotten). Default
	// 3×Interval, at least one minute (six samples at the agents' default
	// 10 s); keep it above twice the slowest agent's sample interval.
	StaleAfter time.Duration
	// HistoryLimit is the most resolved alerts kept. Default
	// DefaultHistoryLimit.
	HistoryLimit int
	// HistoryAge is how long a resolved alert is kept. Default
	// DefaultHistoryAge. History is bounded by both: at most HistoryLimit
	// alerts, none resolved longer than HistoryAge ago.
	HistoryAge time.Duration
	// OnEvent, if set, is called for every alert that fires or resolves,
	// after the change is stored, outside the engine's locks and in the
	// order of the changes. It must not block; it may call the engine.
	OnEvent func(Event)
	// Logger; nil discards.
	Logger *slog.Logger
}

// Validate reports a missing dependency or a negative setting.
func (c *Config) Validate() error {
	switch {
	case c.Devices == nil:
		return errors.New("health: config: Devices is required")
	case c.Latest == nil:
		return errors.New("health: config: Latest is required")
	case c.Range == nil:
		return errors.New("health: config: Range is required")
	case c.Interval < 0, c.StaleAfter < 0, c.HistoryLimit < 0, c.HistoryAge < 0:
		return errors.New("health: config: Interval, StaleAfter, HistoryLimit and HistoryAge must not be negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = max(3*c.Interval, minStaleAfter)
	}
	if c.HistoryLimit == 0 {
		c.HistoryLimit = DefaultHistoryLimit
	}
	if c.HistoryAge == 0 {
		c.HistoryAge = DefaultHistoryAge
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Why an alert resolved.
const (
	// ReasonRecovered: the value went back past the margin, or data
	// arrived again.
	ReasonRecovered = "recovered"
	// ReasonRuleChanged: the rule's condition was edited.
	ReasonRuleChanged = "rule_changed"
	// ReasonRuleDisabled: the rule was disabled.
	ReasonRuleDisabled = "rule_disabled"
	// ReasonRuleDeleted: the rule was deleted.
	ReasonRuleDeleted = "rule_deleted"
	// ReasonOutOfScope: the device was deleted, is no longer accepted
	// (revoked) or no longer matches the rule's Devices, or the series is
	// gone.
	ReasonOutOfScope = "out_of_scope"
)

// Alert is a rule firing for one device (and, for a threshold rule, one
// series). Alerts with the same rule, device and series labels share an ID.
type Alert struct {
	// ID identifies the rule, device and series: 16 hex digits.
	ID         string `json:"id"`
	Rule       string `json:"rule"`
	RuleName   string `json:"rule_name"`
	Kind       string `json:"kind"`
	Device     string `json:"device"`
	DeviceName string `json:"device_name"`
	// Metric and Labels name the series (threshold, trend and rate rules;
	// for absence rules, the rule's metric and Match).
	Metric   string            `json:"metric,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Severity string            `json:"severity"`
	// State is AlertFiring or AlertResolved.
	State string `json:"state"`
	// Since is when the condition began: the first breaching sample, or
	// the last sample before the silence (absence).
	Since   time.Time `json:"since"`
	FiredAt time.Time `json:"fired_at"`
	// ResolvedAt and ResolveReason are set once resolved.
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
	ResolveReason string    `json:"resolve_reason,omitempty"`
	// Value is the value that fired; for an absence rule, the seconds of
	// silence when it fired; for a rate rule, the change over the window;
	// for a trend rule, the series' level now on the fitted line.
	Value float64 `json:"value"`
	// Threshold is the rule's threshold; for an absence rule, its For in
	// seconds.
	Threshold float64 `json:"threshold"`
	// ProjectedAt is, for a trend rule, when the series was projected to
	// cross the threshold when the alert fired (to the second).
	ProjectedAt time.Time `json:"projected_at,omitzero"`
	// Summary is the rule's suggestion with its placeholders filled in.
	Summary string `json:"summary"`
}

func (a Alert) clone() Alert {
	a.Labels = maps.Clone(a.Labels)
	return a
}

// Event types, the same strings as the hub's event bus uses.
const (
	EventAlertFired    = "alert_fired"
	EventAlertResolved = "alert_resolved"
)

// Event is an alert that fired or resolved. Its JSON form is what the
// webhook posts.
type Event struct {
	// Type is EventAlertFired or EventAlertResolved.
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	Alert Alert     `json:"alert"`
}

// Device states, as DeviceState reports them.
const (
	StateOnline   = "online"   // connected, no firing alert
	StateDegraded = "degraded" // connected, with at least one firing alert
	StateOffline  = "offline"  // accepted, not connected
	StateUnknown  = "unknown"  // pending, rejected, revoked, or never seen
)

// Keyspaces and keys in the store:
//
//	health_rule/<rule id>                   → JSON Rule
//	health_alert/<alert id>                 → JSON Alert (firing)
//	health_history/<resolved ms>/<alert id>/<fired ms> → JSON Alert (resolved)
//	health_meta/seeded                      → JSON list of the DefaultRules IDs stored once (legacy: "1")
const (
	ksRule    = "health_rule"
	ksAlert   = "health_alert"
	ksHistory = "health_history"
	ksMeta    = "health_meta"
	keySeeded = "seeded"
)

// commitChunk bounds the alert changes written in one transaction, far
// below what a badger transaction holds.
const commitChunk = 256

// Engine evaluates the alert rules against the latest samples and keeps
// the active alerts and their history. Its methods are safe for
// concurrent use.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	db    *store.DB
	rules store.Keyspace
	alert store.Keyspace
	hist  store.Keyspace
	meta  store.Keyspace
	start time.Time

	// wmu serialises the writers (Evaluate, PutRule, DeleteRule). They
	// read the fields under mu without taking it, since only writers
	// change them, and hold wmu across their store writes so that memory
	// follows the store.
	wmu sync.Mutex
	// pending holds the threshold conditions that hold but not yet for
	// long enough, by alert ID. Guarded by wmu; never stored (a hub
	// restart starts them again).
	pending map[string]pendingState
	// failing is set while writes fail, so that the failure is logged
	// once. Guarded by wmu.
	failing bool
	// fitted holds when each trend or rate rule last read its window for
	// a device, by rule ID + "\x00" + device ID. Guarded by wmu; never
	// stored.
	fitted map[string]time.Time
	// rangeFailing is set while Config.Range fails, so that the failure is
	// logged once. Guarded by wmu.
	rangeFailing bool

	mu      sync.RWMutex // guards the fields below; writers hold wmu too
	rule    map[string]Rule
	active  map[string]Alert // by alert ID
	history []histEntry      // oldest first
	// events not yet passed to OnEvent, in order; draining is set while
	// one goroutine passes them.
	events   []Event
	draining bool
}

type pendingState struct {
	rule, device string
	// since is the time of the first breaching sample (threshold), or of
	// the first evaluation that found the condition (trend, rate).
	since time.Time
}

type histEntry struct {
	key   string
	alert Alert
}

// Open loads the rules, the active alerts and the history from db, which
// keeps them (synced writes).
// On the first start (the store was never seeded) it stores
// DefaultRules. It starts no goroutine: call Run.
//
// The engine's start is cfg.Now() at Open: no absence alert fires before
// the rule's For has passed since then, so that a hub restart gives every
// device time to send again instead of firing "no data" for all of them
// at once. Alerts that were active when the hub stopped stay active
// without firing again.
func Open(db *store.DB, cfg Config) (*Engine, error) {
	if db == nil {
		return nil, errors.New("health: a store is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	e := &Engine{cfg: cfg, log: cfg.Logger, db: db,
		rules: db.Keyspace(ksRule), alert: db.Keyspace(ksAlert), hist: db.Keyspace(ksHistory), meta: db.Keyspace(ksMeta),
		start: cfg.Now(), pending: map[string]pendingState{}, fitted: map[string]time.Time{}, rule: map[string]Rule{}, active: map[string]Alert{}}
	// A hub whose store refuses writes (disk full) still starts: the
	// default rules then apply from memory and are stored on a later start.
	seedErr := e.seed()
	if seedErr != nil {
		e.log.Warn("default alert rules not stored; they apply from memory", "err", seedErr)
	}
	err := e.rules.Scan(func(key string, val []byte) error {
		var r Rule
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("rule %q: %w", key, err)
		}
		e.rule[r.ID] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("health: load rules: %w", err)
	}
	if seedErr != nil && len(e.rule) == 0 {
		for _, r := range DefaultRules() {
			e.rule[r.ID] = r
		}
	}
	err = e.alert.Scan(func(key string, val []byte) error {
		var a Alert
		if err := json.Unmarshal(val, &a); err != nil {
			return fmt.Errorf("alert %q: %w", key, err)
		}
		e.active[a.ID] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("health: load alerts: %w", err)
	}
	err = e.hist.Scan(func(key string, val []byte) error {
		var a Alert
		if err := json.Unmarshal(val, &a); err != nil {
			return fmt.Errorf("history %q: %w", key, err)
		}
		e.history = append(e.history, histEntry{key: key, alert: a})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("health: load history: %w", err)
	}
	// Apply the history bounds now, in case they shrank (a failed write
	// only postpones it).
	if err := e.commitLocked(nil, e.start); err != nil {
		e.log.Warn("alert history not trimmed", "err", err)
	}
	return e, nil
}

// seed stores each of DefaultRules once: on the first start all of them,
// on later starts those added to DefaultRules since (a default the user
// deleted stays deleted; a rule of the user's with a default's ID is kept).
// The IDs already offered are stored under keySeeded as a JSON list; the
// value "1" of earlier versions means legacyDefaults.
func (e *Engine) seed() error {
	err := e.db.Update(func(tx *store.Tx) error {
		var offered []string
		v, err := tx.Get(e.meta, keySeeded)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case string(v) == "1":
			offered = slices.Clone(legacyDefaults)
		default:
			if err := json.Unmarshal(v, &offered); err != nil {
				return fmt.Errorf("%s/%s: %w", ksMeta, keySeeded, err)
			}
		}
		added := false
		for _, r := range DefaultRules() {
			if slices.Contains(offered, r.ID) {
				continue
			}
			offered, added = append(offered, r.ID), true
			if _, err := tx.Get(e.rules, r.ID); err == nil {
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := tx.Put(e.rules, r.ID, b); err != nil {
				return err
			}
		}
		if !added {
			return nil
		}
		b, err := json.Marshal(offered)
		if err != nil {
			return err
		}
		return tx.Put(e.meta, keySeeded, b)
	})
	if err != nil {
		return fmt.Errorf("health: store default rules: %w", err)
	}
	return nil
}

// legacyDefaults are the default rules of the versions that marked the
// store seeded with "1".
var legacyDefaults = []string{"cpu_temperature", "disk_full", "memory_high", "filesystem_readonly", "cpu_busy", "no_data"}

// Run evaluates the rules every Interval until ctx is done, then returns
// nil.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.Evaluate(e.cfg.Now())
		}
	}
}

// Rules returns every rule, ordered by ID.
func (e *Engine) Rules() []Rule {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]Rule, 0, len(e.rule))
	for _, id := range slices.Sorted(maps.Keys(e.rule)) {
		out = append(out, e.rule[id].clone())
	}
	return out
}

// Rule returns the rule id, or an error wrapping ErrNotFound.
func (e *Engine) Rule(id string) (Rule, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	r, ok := e.rule[id]
	if !ok {
		return Rule{}, fmt.Errorf("health: rule %q: %w", id, ErrNotFound)
	}
	return r.clone(), nil
}

// PutRule validates r and stores it (synced), creating or replacing the
// rule r.ID; created reports which. Validation errors wrap ErrInvalid.
//
// Replacing a rule with a different condition (kind, metric, match,
// devices, op, threshold, for or resolve margin) resolves its active
// alerts with ReasonRuleChanged and forgets its pending conditions: they
// fire again once the new condition has held for For. Disabling a rule
// resolves its alerts with ReasonRuleDisabled. Changing only the name,
// severity or suggestion keeps the active alerts as they fired.
func (e *Engine) PutRule(r Rule) (created bool, err error) {
	if err := r.Validate(); err != nil {
		return false, fmt.Errorf("health: put rule: %w", err)
	}
	r = r.clone()
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("health: put rule %s: %w", r.ID, err)
	}
	e.wmu.Lock()
	old, exists := e.rule[r.ID]
	if !exists && len(e.rule) >= MaxRules {
		e.wmu.Unlock()
		return false, fmt.Errorf("health: put rule %s: %w", r.ID, invalid("id", "there are already %d rules, the most allowed: delete some first", MaxRules))
	}
	if err := e.rules.Put(r.ID, b); err != nil {
		e.wmu.Unlock()
		return false, fmt.Errorf("health: put rule %s: %w", r.ID, err)
	}
	e.mu.Lock()
	e.rule[r.ID] = r
	e.mu.Unlock()
	reason := ""
	switch {
	case !r.Enabled:
		reason = ReasonRuleDisabled
	case exists && !r.sameCondition(old):
		reason = ReasonRuleChanged
	}
	if reason != "" {
		err = e.resolveRuleLocked(r.ID, reason, e.cfg.Now())
	}
	e.wmu.Unlock()
	e.deliver()
	if err != nil {
		// The rule is stored; its alerts resolve at the next evaluation.
		return !exists, fmt.Errorf("health: put rule %s: resolve its alerts: %w", r.ID, err)
	}
	return !exists, nil
}

// DeleteRule deletes the rule id (synced) and resolves its active alerts
// with ReasonRuleDeleted. An unknown id is an error wrapping ErrNotFound.
func (e *Engine) DeleteRule(id string) error {
	e.wmu.Lock()
	if _, ok := e.rule[id]; !ok {
		e.wmu.Unlock()
		return fmt.Errorf("health: delete rule %q: %w", id, ErrNotFound)
	}
	if err := e.rules.Delete(id); err != nil {
		e.wmu.Unlock()
		return fmt.Errorf("health: delete rule %s: %w", id, err)
	}
	e.mu.Lock()
	delete(e.rule, id)
	e.mu.Unlock()
	err := e.resolveRuleLocked(id, ReasonRuleDeleted, e.cfg.Now())
	e.wmu.Unlock()
	e.deliver()
	if err != nil {
		// The rule is gone; its alerts resolve at the next evaluation.
		return fmt.Errorf("health: delete rule %s: resolve its alerts: %w", id, err)
	}
	return nil
}

// resolveRuleLocked resolves the active alerts of rule id and forgets its
// pending conditions. e.wmu must be held.
func (e *Engine) resolveRuleLocked(id, reason string, now time.Time) error {
	for k, p := range e.pending {
		if p.rule == id {
			delete(e.pending, k)
		}
	}
	for k := range e.fitted {
		if strings.HasPrefix(k, id+"\x00") {
			delete(e.fitted, k)
		}
	}
	var changes []Alert
	for _, a := range e.sortedActive() {
		if a.Rule == id {
			changes = append(changes, resolved(a, reason, now))
		}
	}
	return e.commitLocked(changes, now)
}

// Active returns the firing alerts, most recently fired first.
func (e *Engine) Active() []Alert {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.sortedActive()
}

// sortedActive returns copies of the active alerts, most recently fired
// first (then by ID). e.mu or e.wmu must be held.
func (e *Engine) sortedActive() []Alert {
	out := make([]Alert, 0, len(e.active))
	for _, a := range e.active {
		out = append(out, a.clone())
	}
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(b.FiredAt.Compare(a.FiredAt), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// History returns up to limit resolved alerts, most recently resolved
// first; limit ≤ 0 returns all that are kept.
func (e *Engine) History(limit int) []Alert {
	e.mu.RLock()
	defer e.mu.RUnlock()
	n := len(e.history)
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]Alert, 0, n)
	for i := len(e.history) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, e.history[i].alert.clone())
	}
	return out
}

// DeviceState returns the health state of a device: StateUnknown if it
// is not accepted (pending, rejected, revoked) or was never seen;
// StateOffline if it is offline; StateDegraded if it is online with at
// least one firing alert; StateOnline otherwise.
func (e *Engine) DeviceState(d registry.Device) string {
	switch {
	case !d.Status.Accepted() || d.FirstSeen.IsZero() && d.LastSeen.IsZero():
		return StateUnknown
	case d.Status == registry.StatusOffline:
		return StateOffline
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, a := range e.active {
		if a.Device == d.ID {
			return StateDegraded
		}
	}
	return StateOnline
}

// States returns the DeviceState of every device in the registry, by
// device ID.
func (e *Engine) States() map[string]string {
	devices := e.cfg.Devices()
	out := make(map[string]string, len(devices))
	for _, d := range devices {
		out[d.ID] = e.DeviceState(d)
	}
	return out
}

// resolved returns a resolved copy of a.
func resolved(a Alert, reason string, now time.Time) Alert {
	a = a.clone()
	a.State, a.ResolvedAt, a.ResolveReason = AlertResolved, now.UTC(), reason
	return a
}

// commitLocked stores changes (fired alerts: State firing; resolved ones:
// State resolved) in synced transactions of at most commitChunk changes,
// trims the history to its bounds, and applies each committed chunk to
// memory and to the event queue. It stops at the first failed
// transaction and returns its error: the changes not committed are not
// applied (the next evaluation finds them again). e.wmu must be held (or
// New be running).
func (e *Engine) commitLocked(changes []Alert, now time.Time) error {
	for first := true; first || len(changes) > 0; first = false {
		part := changes[:min(len(changes), commitChunk)]
		changes = changes[len(part):]

		// The history after this chunk: old entries, then the new ones,
		// minus the oldest beyond the limit and those too old.
		old := len(e.history)
		all := slices.Clone(e.history)
		for _, a := range part {
			if a.State == AlertResolved {
				all = append(all, histEntry{key: historyKey(a), alert: a})
			}
		}
		cut := max(len(all)-e.cfg.HistoryLimit, 0)
		for cut < len(all) && all[cut].alert.ResolvedAt.Before(now.Add(-e.cfg.HistoryAge)) {
			cut++
		}
		if len(part) == 0 && cut == 0 {
			return nil
		}
		err := e.db.Update(func(tx *store.Tx) error {
			for _, a := range part {
				if a.State == AlertFiring {
					if err := putJSON(tx, e.alert, a.ID, a); err != nil {
						return err
					}
				} else if err := tx.Delete(e.alert, a.ID); err != nil {
					return err
				}
			}
			for i, h := range all {
				switch {
				case i < cut && i < old:
					if err := tx.Delete(e.hist, h.key); err != nil {
						return err
					}
				case i >= cut && i >= old:
					if err := putJSON(tx, e.hist, h.key, h.alert); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			if !e.failing {
				e.log.Error("store alerts; retrying at the next evaluation", "err", err)
			}
			e.failing = true
			return fmt.Errorf("health: store alerts: %w", err)
		}
		if e.failing {
			e.log.Info("storing alerts works again")
			e.failing = false
		}
		e.mu.Lock()
		for _, a := range part {
			typ := EventAlertFired
			if a.State == AlertFiring {
				e.active[a.ID] = a
			} else {
				delete(e.active, a.ID)
				typ = EventAlertResolved
			}
			e.events = append(e.events, Event{Type: typ, Time: now.UTC(), Alert: a.clone()})
			e.log.Info(typ, "alert", a.ID, "rule", a.Rule, "device", a.Device, "severity", a.Severity,
				"summary", a.Summary, "reason", a.ResolveReason)
		}
		e.history = all[cut:]
		e.mu.Unlock()
	}
	return nil
}

func putJSON(tx *store.Tx, k store.Keyspace, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return tx.Put(k, key, b)
}

// deliver passes the queued events to OnEvent, in order, outside the
// locks. Whichever goroutine finds no delivery under way does it; others
// only queue, so OnEvent may call the engine.
func (e *Engine) deliver() {
	e.mu.Lock()
	if e.draining || e.cfg.OnEvent == nil {
		if e.cfg.OnEvent == nil {
			e.events = nil
		}
		e.mu.Unlock()
		return
	}
	e.draining = true
	for len(e.events) > 0 {
		ev := e.events[0]
		e.events = e.events[1:]
		e.mu.Unlock()
		e.cfg.OnEvent(ev)
		e.mu.Lock()
	}
	e.events = nil
	e.draining = false
	e.mu.Unlock()
}

// alertID is the ID of the alert of rule for device and a series' labels:
// the first 8 bytes of SHA-256 over them, in hex.
func alertID(rule, device string, labels map[string]string) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(device))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// historyKey orders resolved alerts by resolve time.
func historyKey(a Alert) string {
	return hex16(a.ResolvedAt.UnixMilli()) + "/" + a.ID + "/" + hex16(a.FiredAt.UnixMilli())
}

// hex16 encodes v as 16 hex digits, so that byte order is numeric order
// (for times after 1970).
func hex16(v int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return hex.EncodeToString(b[:])
}
