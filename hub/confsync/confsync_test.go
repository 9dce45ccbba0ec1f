package confsync

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type devices struct {
	mu sync.Mutex
	m  map[string]registry.Device
}

func (d *devices) List() []registry.Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []registry.Device
	for _, v := range d.m {
		out = append(out, v)
	}
	return out
}

func (d *devices) Get(id string) (registry.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.m[id]; ok {
		return v, nil
	}
	return registry.Device{}, registry.ErrNotFound
}

type env struct {
	t       *testing.T
	dir     string
	db      *store.DB
	configs *spec.Store
	devs    *devices
	s       *Sync
	clk     *testkit.Clock

	mu   sync.Mutex
	sent map[string][]*protocol.Config
	held fakeHolds
}

// fakeHolds holds devices at the content in it, by device and kind.
type fakeHolds struct {
	mu sync.Mutex
	m  map[string]map[string]json.RawMessage
}

func (h *fakeHolds) Held(dev, kind string) (json.RawMessage, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.m[dev][kind]
	return c, ok
}

func (h *fakeHolds) set(dev, kind string, c json.RawMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]map[string]json.RawMessage{}
	}
	if c == nil {
		delete(h.m, dev)
		return
	}
	h.m[dev] = map[string]json.RawMessage{kind: c}
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(time.Date(2026, 12, 8, 7, 0, 0, 0, time.UTC)), sent: map[string][]*protocol.Config{},
		devs: &devices{m: map[string]registry.Device{
			"g1": {ID: "g1", Name: "garage-1", Status: registry.StatusOnline, Labels: map[string]string{"room": "garage"}},
			"g2": {ID: "g2", Name: "garage-2", Status: registry.StatusOffline, Labels: map[string]string{"room": "garage"}},
			"k1": {ID: "k1", Name: "kitchen", Status: registry.StatusOnline, Labels: map[string]string{"room": "kitchen"}},
			"p1": {ID: "p1", Name: "pending", Status: registry.StatusPending, Labels: map[string]string{"room": "garage"}},
		}}}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	db := testkit.OpenStore(e.t, e.dir)
	var err error
	if e.configs, err = spec.Open(db, spec.Config{Now: e.clk.Now}); err != nil {
		e.t.Fatal(err)
	}
	e.s, err = Open(db, Config{Configs: e.configs, Devices: e.devs, Now: e.clk.Now, Holds: &e.held,
		Publish: func(_ context.Context, dev string, c *protocol.Config) error {
			if err := c.Validate(); err != nil {
				e.t.Errorf("published an invalid config: %v", err)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			e.sent[dev] = append(e.sent[dev], c)
			return nil
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.db = db
}

func (e *env) take() map[string][]*protocol.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.sent
	e.sent = map[string][]*protocol.Config{}
	return out
}

func (e *env) put(scope spec.Scope, ifv uint64, content string) {
	e.t.Helper()
	if _, err := e.configs.Put(spec.Write{Kind: spec.KindAgent, Scope: scope, IfVersion: ifv, Author: "admin", Content: json.RawMessage(content)}); err != nil {
		e.t.Fatal(err)
	}
}

var garage = spec.Scope{Selector: map[string]string{"room": "garage"}}

func TestSendsWhatChangedToAcceptedDevices(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.s.passAll(ctx)
	if got := e.take(); len(got) != 0 {
		t.Fatalf("with no documents, sent %v; want nothing", got)
	}
	e.put(garage, 0, `{"sample_interval":"30s"}`)
	e.s.passAll(ctx)
	got := e.take()
	if len(got) != 2 || len(got["g1"]) != 1 || len(got["g2"]) != 1 {
		t.Fatalf("sent to %v; want g1 and g2 once (the offline one too: retained), not the pending one nor the kitchen", keys(got))
	}
	if c := got["g1"][0].Configs["agent"]; string(c.Content) != `{"sample_interval":"30s"}` || len(c.Hash) != 64 {
		t.Errorf("g1's config: %+v", c)
	}
	e.s.passAll(ctx)
	if got := e.take(); len(got) != 0 {
		t.Errorf("an unchanged config was sent again: %v", keys(got))
	}
	// A label change moves a device in or out of a selector.
	e.devs.mu.Lock()
	k1 := e.devs.m["k1"]
	k1.Labels = map[string]string{"room": "garage"}
	e.devs.m["k1"] = k1
	e.devs.mu.Unlock()
	e.s.passAll(ctx)
	if got := e.take(); len(got) != 1 || len(got["k1"]) != 1 {
		t.Errorf("after k1 moved to the garage, sent to %v; want k1", keys(got))
	}
	// Resend (the hub's bus reconnected): everyone again.
	e.s.Resend(ctx)
	e.s.passAll(ctx)
	if got := e.take(); len(got) != 3 {
		t.Errorf("after Resend, sent to %v; want g1, g2, k1", keys(got))
	}
}

func TestDesiredAgainstApplied(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put(garage, 0, `{"sample_interval":"30s"}`)
	e.s.passAll(ctx)
	hash := e.take()["g1"][0].Configs["agent"].Hash
	if st := e.s.State("g1")["agent"]; st.State != StatePending || st.Desired != hash || st.Applied != "" {
		t.Errorf("before any report: %+v, want pending", st)
	}
	e.s.HandleStatus("g1", &protocol.ConfigStatus{Kind: "agent", Hash: hash, State: protocol.ConfigApplied})
	if st := e.s.State("g1")["agent"]; st.State != StateApplied || st.Applied != hash {
		t.Errorf("after applied: %+v", st)
	}
	// A new config: pending until the device answers; it refuses it.
	e.put(garage, 1, `{"sample_interval":"5s"}`)
	e.s.passAll(ctx)
	newHash := e.take()["g1"][0].Configs["agent"].Hash
	e.s.HandleStatus("g1", &protocol.ConfigStatus{Kind: "agent", Hash: newHash, State: protocol.ConfigRejected, Reason: "too often for this SD card"})
	st := e.s.State("g1")["agent"]
	if st.State != StateRejected || st.Reason != "too often for this SD card" || st.Desired != newHash || st.Applied != hash {
		t.Errorf("after a rejection: %+v, want rejected, still running the old one", st)
	}
	// Reports survive a restart.
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e.open()
	e.s.passAll(ctx)
	if st := e.s.State("g1")["agent"]; st.State != StateRejected || st.Applied != hash {
		t.Errorf("after a restart: %+v", st)
	}
}

func TestHeldDevicesKeepTheirOldContent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.put(garage, 0, `{"sample_interval":"30s"}`)
	e.s.passAll(ctx)
	old := e.take()["g1"][0].Configs["agent"]
	// A rollout holds g1 at what it has, then the document changes: g2
	// gets the change, g1 nothing new.
	e.held.set("g1", "agent", old.Content)
	e.put(garage, 1, `{"sample_interval":"40s"}`)
	e.s.passAll(ctx)
	got := e.take()
	if len(got) != 1 || len(got["g2"]) != 1 {
		t.Fatalf("with g1 held, sent to %v; want g2 only", keys(got))
	}
	if st := e.s.State("g1")["agent"]; st.Desired != old.Hash {
		t.Errorf("held g1's desired hash = %s, want the held content's %s", st.Desired, old.Hash)
	}
	// After a Resend the held content goes out again, with its own hash.
	e.s.Resend(ctx)
	e.s.passAll(ctx)
	if c := e.take()["g1"]; len(c) != 1 || c[0].Configs["agent"].Hash != old.Hash || string(c[0].Configs["agent"].Content) != string(old.Content) {
		t.Errorf("held g1 was sent %+v, want its old config %+v", c, old)
	}
	// Released, it gets the change.
	e.held.set("g1", "agent", nil)
	e.s.passAll(ctx)
	c := e.take()["g1"]
	if len(c) != 1 || string(c[0].Configs["agent"].Content) != `{"sample_interval":"40s"}` {
		t.Errorf("released g1 was sent %+v, want the new config", c)
	}
}

func TestRunFollowsTheEventStreamAndStops(t *testing.T) {
	e := newEnv(t)
	e.put(garage, 0, `{"sample_interval":"30s"}`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.take()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the first pass
	}
	e.put(garage, 1, `{"sample_interval":"40s"}`)
	e.s.Changed()
	var got map[string][]*protocol.Config
	for len(got) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the pass Changed asked for
		for k, v := range e.take() {
			if got == nil {
				got = map[string][]*protocol.Config{}
			}
			got[k] = append(got[k], v...)
		}
	}
	if len(got) != 2 {
		t.Errorf("after Changed, sent to %v; want g1 and g2", keys(got))
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Error(err)
	}
}

func keys(m map[string][]*protocol.Config) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
