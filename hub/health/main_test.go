package health_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// TestMain fails the package on leaked goroutines (webhook runs, HTTP
// connections, stores left open).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the start of every test's clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// source fakes the registry's device list and the metrics store's latest
// values.
type source struct {
	mu      sync.Mutex
	devices map[string]registry.Device
	latest  map[string]map[string]metrics.Sample // device → series key → sample
	// history holds every sample, by device, in the order they were set.
	history map[string][]metrics.Sample
	// rangeErr, if set, is what Range returns.
	rangeErr error
	// ranges counts the calls of Range.
	ranges int
}

func newSource() *source {
	return &source{devices: map[string]registry.Device{}, latest: map[string]map[string]metrics.Sample{},
		history: map[string][]metrics.Sample{}}
}

func (s *source) Devices() []registry.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.devices))
}

func (s *source) Latest(dev string) []metrics.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.latest[dev]))
}

// device adds or replaces a device that was enrolled long before t0 and
// seen since.
func (s *source) device(id, name string, status registry.Status, labels map[string]string) registry.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := registry.Device{ID: id, Name: name, Status: status, Labels: labels,
		EnrolledAt: t0.Add(-24 * time.Hour), FirstSeen: t0.Add(-24 * time.Hour), LastSeen: t0}
	s.devices[id] = d
	return d
}

func (s *source) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.devices, id)
}

// sample sets the latest value of a series.
func (s *source) sample(dev, name string, labels map[string]string, at time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest[dev] == nil {
		s.latest[dev] = map[string]metrics.Sample{}
	}
	key := name
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		key += "," + k + "=" + labels[k]
	}
	s.latest[dev][key] = metrics.Sample{Name: name, Labels: maps.Clone(labels), Time: at, Value: v}
	s.history[dev] = append(s.history[dev], metrics.Sample{Name: name, Labels: maps.Clone(labels), Time: at, Value: v})
}

// Range answers as metrics.Store.Range does: the matching series'
// samples in [From, To], averaged in buckets of Step aligned to the Unix
// epoch; series without points left out.
func (s *source) Range(q metrics.Query) ([]metrics.Series, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ranges++
	if s.rangeErr != nil {
		return nil, s.rangeErr
	}
	type acc struct {
		labels map[string]string
		pts    []metrics.Point
		n      []int
	}
	byKey := map[string]*acc{}
	for _, smp := range s.history[q.Device] {
		if smp.Name != q.Name || smp.Time.Before(q.From) || smp.Time.After(q.To) {
			continue
		}
		ok := true
		for k, v := range q.Labels {
			if smp.Labels[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		key := fmt.Sprint(smp.Labels)
		a := byKey[key]
		if a == nil {
			a = &acc{labels: smp.Labels}
			byKey[key] = a
		}
		t := smp.Time
		if q.Step > 0 {
			t = t.Truncate(q.Step)
		}
		if l := len(a.pts) - 1; l >= 0 && a.pts[l].Time.Equal(t) {
			a.pts[l].Value += smp.Value
			a.n[l]++
			continue
		}
		a.pts = append(a.pts, metrics.Point{Time: t, Value: smp.Value})
		a.n = append(a.n, 1)
	}
	out := []metrics.Series{}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		a := byKey[k]
		for i := range a.pts {
			a.pts[i].Value /= float64(a.n[i])
			a.pts[i].Count = a.n[i]
		}
		out = append(out, metrics.Series{Name: q.Name, Labels: a.labels, Points: a.pts})
	}
	return out, nil
}

// env is an Engine on a real store in a temporary directory, with a fake
// source, a manual clock and a recorder of its events.
type env struct {
	t   *testing.T
	dir string
	clk *testkit.Clock
	src *source
	cfg health.Config
	db  *store.DB
	eng *health.Engine

	mu     sync.Mutex
	events []health.Event
}

// newEnv opens an engine with cfg's settings (its DB, Devices, Latest,
// Now and OnEvent are filled in).
func newEnv(t *testing.T, cfg health.Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(t0), src: newSource()}
	cfg.Devices, cfg.Latest, cfg.Range, cfg.Now = e.src.Devices, e.src.Latest, e.src.Range, e.clk.Now
	cfg.OnEvent = func(ev health.Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.events = append(e.events, ev)
	}
	e.cfg = cfg
	e.open()
	return e
}

// newEnvRules is newEnv with only the given rules (the defaults deleted).
func newEnvRules(t *testing.T, rules ...health.Rule) *env {
	t.Helper()
	e := newEnv(t, health.Config{})
	for _, r := range e.eng.Rules() {
		if err := e.eng.DeleteRule(r.ID); err != nil {
			t.Fatalf("DeleteRule(%s): %v", r.ID, err)
		}
	}
	for _, r := range rules {
		if _, err := e.eng.PutRule(r); err != nil {
			t.Fatalf("PutRule(%s): %v", r.ID, err)
		}
	}
	return e
}

// open opens the store and a new Engine on it.
func (e *env) open() {
	e.t.Helper()
	// MinFreeBytes: -1 so that a nearly full /tmp does not fail the tests.
	db, err := store.Open(store.Options{Dir: e.dir, MinFreeBytes: -1})
	if err != nil {
		e.t.Fatalf("store.Open: %v", err)
	}
	e.t.Cleanup(func() { db.Close() })
	eng, err := health.Open(db, e.cfg)
	if err != nil {
		e.t.Fatalf("health.Open: %v", err)
	}
	e.db, e.eng = db, eng
}

// reopen closes the store, as a hub stop does, and opens a new engine on it.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatalf("store Close: %v", err)
	}
	e.open()
}

// eval sets the clock to at and runs one evaluation.
func (e *env) eval(at time.Time) {
	e.clk.Set(at)
	e.eng.Evaluate(at)
}

// takeEvents returns the events recorded since the last call.
func (e *env) takeEvents() []health.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events
	e.events = nil
	return ev
}

// eventTypes renders events as "type rule/device" lines.
func eventTypes(evs []health.Event) []string {
	out := []string{}
	for _, ev := range evs {
		out = append(out, ev.Type+" "+ev.Alert.Rule+"/"+ev.Alert.Device)
	}
	return out
}
