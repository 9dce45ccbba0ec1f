package registry_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// t0 is the start of every test's clock.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// env is a registry on a real store in a temporary directory.
type env struct {
	t   *testing.T
	dir string
	clk *testkit.Clock
	cfg registry.Config
	db  *store.DB
	reg *registry.Registry
}

func newEnv(t *testing.T, cfg registry.Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(t0)}
	cfg.Now = e.clk.Now
	e.cfg = cfg
	e.open()
	return e
}

// open opens the store and a new Registry on it.
func (e *env) open() {
	e.t.Helper()
	// MinFreeBytes: -1 so that a nearly full /tmp does not fail the tests.
	db, err := store.Open(store.Options{Dir: e.dir, MinFreeBytes: -1})
	if err != nil {
		e.t.Fatalf("store.Open: %v", err)
	}
	e.t.Cleanup(func() { db.Close() })
	reg, err := registry.Open(db, e.cfg)
	if err != nil {
		e.t.Fatalf("registry.Open: %v", err)
	}
	e.db, e.reg = db, reg
}

// reopen closes the store, as a hub stop does, and opens it again.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatalf("store Close: %v", err)
	}
	e.open()
}

func secretHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func (e *env) enroll(id, name string) registry.Device {
	e.t.Helper()
	d, err := e.reg.Enroll(id, name, []byte("pk-"+id), secretHash("secret-"+id))
	if err != nil {
		e.t.Fatalf("Enroll(%s): %v", id, err)
	}
	return d
}

func (e *env) get(id string) registry.Device {
	e.t.Helper()
	d, err := e.reg.Get(id)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", id, err)
	}
	return d
}

// message builds a message from source sent at sent, round-tripped through
// the wire format so that only valid messages reach Handle.
func message(t *testing.T, source string, sent time.Time, p protocol.Payload) *protocol.Message {
	t.Helper()
	b, err := protocol.Encode(source, sent, p)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	m, err := protocol.Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return m
}

func (e *env) handle(id string, sent time.Time, p protocol.Payload) {
	e.t.Helper()
	if err := e.reg.Handle(id, message(e.t, id, sent, p)); err != nil {
		e.t.Fatalf("Handle(%s, %s): %v", id, p.MessageType(), err)
	}
}

func (e *env) online(id string) { e.handle(id, e.clk.Now(), online()) }

func online() *protocol.Status {
	return &protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup}
}
func shutdown() *protocol.Status {
	return &protocol.Status{State: protocol.StateOffline, Reason: protocol.ReasonShutdown}
}
func lost() *protocol.Status {
	return &protocol.Status{State: protocol.StateOffline, Reason: protocol.ReasonLost}
}
func heartbeat() *protocol.Heartbeat { return &protocol.Heartbeat{Seq: 1, UptimeS: 1} }

func register(name string, hbMS int64) *protocol.Register {
	return &protocol.Register{
		Name: name, AgentVersion: "1.2.3", HeartbeatMS: hbMS,
		Facts: protocol.Facts{Hostname: name, OS: "linux", Kernel: "6.6.0", Arch: "arm64", CPUCores: 4, MemoryBytes: 4 << 30, BootTime: t0.Add(-time.Hour)},
	}
}

// wantStatus fails unless device id has status s for reason, since since.
func (e *env) wantStatus(id string, s registry.Status, reason string, since time.Time) {
	e.t.Helper()
	d := e.get(id)
	if d.Status != s || d.StatusReason != reason || !d.StatusSince.Equal(since) {
		e.t.Fatalf("device %s: status %s/%s since %s, want %s/%s since %s",
			id, d.Status, d.StatusReason, d.StatusSince, s, reason, since)
	}
}

// TestUnsafeNamesRefusedOnEntry checks that every way in for a display
// name refuses bidirectional controls and control characters, naming them.
func TestUnsafeNamesRefusedOnEntry(t *testing.T) {
	e := newEnv(t, registry.Config{})
	for _, name := range []string{"kitchen\u202Egpj.exe", "\u2066pi", "pi\u0085", "pi\xfe"} {
		if _, err := e.reg.Enroll("dev-e", name, []byte("pk-e"), secretHash("s")); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "name: byte") {
			t.Errorf("Enroll(%q) = %v, want ErrInvalid naming the byte", name, err)
		}
		if _, err := e.reg.AddPending("dev-p", name, []byte("pk-p")); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "name: byte") {
			t.Errorf("AddPending(%q) = %v, want ErrInvalid naming the byte", name, err)
		}
		if err := registry.ValidateName(name); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if got := e.reg.List(); len(got) != 0 {
		t.Errorf("refused names made devices: %+v", got)
	}
	if err := registry.ValidateName("Küche <b>&</b> ☕"); err != nil {
		t.Errorf("ValidateName of a plain name: %v", err)
	}
}

func TestEnrollAndAuthenticate(t *testing.T) {
	e := newEnv(t, registry.Config{})
	d := e.enroll("dev-a", "Garage Pi")
	want := registry.Device{
		ID: "dev-a", Name: "Garage Pi", PublicKey: []byte("pk-dev-a"), SecretHash: secretHash("secret-dev-a"),
		Status: registry.StatusOffline, StatusReason: registry.ReasonEnrolled, StatusSince: t0, EnrolledAt: t0,
	}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Fatalf("Enroll returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, e.get("dev-a")); diff != "" {
		t.Fatalf("Get after Enroll (-want +got):\n%s", diff)
	}

	for _, c := range []struct {
		id, secret string
		want       bool
	}{
		{"dev-a", "secret-dev-a", true},
		{"dev-a", "secret-dev-b", false},
		{"dev-a", "", false},
		{"dev-b", "secret-dev-b", false}, // unknown device
	} {
		if got := e.reg.Authenticate(c.id, []byte(c.secret)); got != c.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", c.id, c.secret, got, c.want)
		}
	}

	// A known device is never enrolled again: its secret stays.
	e.clk.Advance(time.Minute)
	if _, err := e.reg.Enroll("dev-a", "Other name", []byte("pk2"), secretHash("new")); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("re-Enroll = %v, want ErrExists", err)
	}
	if d := e.get("dev-a"); d.Name != "Garage Pi" || !e.reg.Authenticate("dev-a", []byte("secret-dev-a")) || e.reg.Authenticate("dev-a", []byte("new")) {
		t.Errorf("a refused re-enrolment changed the device: %+v", d)
	}

	for _, c := range []struct{ id, name string }{
		{"a/b", "x"}, {"a+b", "x"}, {"", "x"}, {"dev-c", ""}, {"dev-c", "tab\there"},
	} {
		if _, err := e.reg.Enroll(c.id, c.name, nil, nil); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Enroll(%q, %q) = %v, want ErrInvalid", c.id, c.name, err)
		}
	}
	if n := len(e.reg.List()); n != 1 {
		t.Errorf("List has %d devices, want 1", n)
	}
}

func TestRegisterStoresFactsAndName(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "enrolled-name")
	e.clk.Advance(time.Second)
	e.handle("dev-a", e.clk.Now(), register("pi-host", 5000))

	d := e.get("dev-a")
	wantFacts := register("pi-host", 5000).Facts
	if d.Facts == nil {
		t.Fatal("Facts not stored")
	}
	if diff := cmp.Diff(wantFacts, *d.Facts); diff != "" {
		t.Errorf("Facts (-want +got):\n%s", diff)
	}
	if d.Name != "pi-host" || d.AgentVersion != "1.2.3" || d.HeartbeatMS != 5000 {
		t.Errorf("got name %q version %q heartbeat %d, want pi-host 1.2.3 5000", d.Name, d.AgentVersion, d.HeartbeatMS)
	}
	if !d.FirstSeen.Equal(e.clk.Now()) || !d.LastSeen.Equal(e.clk.Now()) {
		t.Errorf("first/last seen %s/%s, want %s", d.FirstSeen, d.LastSeen, e.clk.Now())
	}
	if d.Status != registry.StatusOffline {
		t.Errorf("a registration alone made the device %s", d.Status)
	}

	// A name the registry refuses (here a bidi override) is ignored.
	e.handle("dev-a", e.clk.Now(), register("pi\u202Etsoh", 5000))
	if d := e.get("dev-a"); d.Name != "pi-host" {
		t.Errorf("name %q after a register with a bidi override, want pi-host kept", d.Name)
	}

	// Once an administrator named it, the agent's name no longer wins.
	name := "Kitchen"
	if _, err := e.reg.Update("dev-a", registry.Patch{Name: &name}); err != nil {
		t.Fatal(err)
	}
	reg := register("pi-renamed", 7000)
	reg.Facts.CPUCores = 8
	e.handle("dev-a", e.clk.Now(), reg)
	d = e.get("dev-a")
	if d.Name != "Kitchen" || !d.NameSet {
		t.Errorf("name %q (set %v) after register, want Kitchen (set)", d.Name, d.NameSet)
	}
	if d.Facts.CPUCores != 8 || d.HeartbeatMS != 7000 {
		t.Errorf("facts not updated by the second register: cores %d heartbeat %d", d.Facts.CPUCores, d.HeartbeatMS)
	}
	if d.Hardware != nil {
		t.Errorf("hardware %+v from a register without any", d.Hardware)
	}

	// The hardware the agent reports is stored, replaced, and survives a
	// restart; a later register without it removes it.
	hw := &protocol.Hardware{Backend: "sim", Lines: []protocol.HardwareLine{{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}}, I2C: []string{"1"}}
	reg.Hardware = hw
	e.handle("dev-a", e.clk.Now(), reg)
	if d := e.get("dev-a"); d.Hardware == nil || !cmp.Equal(*hw, *d.Hardware) {
		t.Errorf("hardware after register = %+v, want %+v", d.Hardware, hw)
	}
	got := e.get("dev-a")
	got.Hardware.Lines[0].Alias = "mutated"
	if d := e.get("dev-a"); d.Hardware.Lines[0].Alias != "relay" {
		t.Error("a caller's copy shares the registry's hardware")
	}
	reg.Hardware = nil
	e.handle("dev-a", e.clk.Now(), reg)
	if d := e.get("dev-a"); d.Hardware != nil {
		t.Errorf("hardware %+v kept after a register without it", d.Hardware)
	}
}

func TestStatusTransitions(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonEnrolled, t0)

	t1 := e.clk.Advance(time.Second)
	e.online("dev-a")
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t1)

	// Heartbeats keep it online, well past three default intervals in total.
	for range 10 {
		e.clk.Advance(5 * time.Second)
		e.handle("dev-a", e.clk.Now(), heartbeat())
		e.reg.Tick(e.clk.Now())
	}
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t1)
	if d := e.get("dev-a"); !d.LastSeen.Equal(e.clk.Now()) || !d.FirstSeen.Equal(t1) {
		t.Errorf("first/last seen %s/%s, want %s/%s", d.FirstSeen, d.LastSeen, t1, e.clk.Now())
	}

	t2 := e.clk.Advance(time.Second)
	e.handle("dev-a", t2, shutdown())
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonShutdown, t2)

	t3 := e.clk.Advance(time.Second)
	e.handle("dev-a", t3, heartbeat())
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonHeartbeat, t3)

	t4 := e.clk.Advance(time.Second)
	e.handle("dev-a", t4, lost())
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonLost, t4)
}

func TestHeartbeatTimeoutBoundary(t *testing.T) {
	for _, c := range []struct {
		name     string
		register int64         // heartbeat interval registered, 0 for none
		timeout  time.Duration // three intervals
	}{
		{"default interval", 0, 30 * time.Second},
		{"registered interval", 2000, 6 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, registry.Config{})
			e.enroll("dev-a", "a")
			if c.register > 0 {
				e.handle("dev-a", e.clk.Now(), register("a", c.register))
			}
			e.online("dev-a")
			last := e.clk.Advance(time.Second)
			e.handle("dev-a", last, heartbeat())
			deadline := last.Add(c.timeout)

			e.reg.Tick(deadline.Add(-time.Millisecond))
			e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t0)

			after := deadline.Add(time.Millisecond)
			e.reg.Tick(after)
			e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonHeartbeatTimeout, after)

			// A heartbeat while offline brings it back.
			back := e.clk.Advance(c.timeout + time.Second)
			e.handle("dev-a", back, heartbeat())
			e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonHeartbeat, back)
		})
	}
}

func TestRegisterWhileOnlineMovesDeadline(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.online("dev-a") // default 10 s interval: deadline t0+30s
	e.handle("dev-a", t0, register("a", 1000))
	// The registered 1 s interval applies at once: deadline t0+3s.
	e.reg.Tick(t0.Add(3*time.Second + time.Millisecond))
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonHeartbeatTimeout, t0.Add(3*time.Second+time.Millisecond))
}

// TestStaleWillIgnored: a Will whose session is not the one of the latest
// "online" belongs to a connection the device already replaced.
func TestStaleWillIgnored(t *testing.T) {
	withSession := func(st *protocol.Status, session string) *protocol.Status {
		st.Session = session
		return st
	}
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.handle("dev-a", t0, withSession(online(), "session-1"))
	connect2 := e.clk.Advance(10 * time.Second)
	e.handle("dev-a", connect2, withSession(online(), "session-2"))

	// The broker publishes the Will of the first connection after the
	// device reconnected: it must not mark the device offline, whatever
	// its envelope time.
	for _, sent := range []time.Time{t0, connect2, e.clk.Advance(time.Second)} {
		e.handle("dev-a", sent, withSession(lost(), "session-1"))
		e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t0)
	}

	// The Will of the current connection does, although it was encoded
	// before the "online" it belongs to.
	now := e.clk.Advance(time.Second)
	e.handle("dev-a", t0, withSession(lost(), "session-2"))
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonLost, now)

	// Without sessions (an older agent) every Will counts.
	e.handle("dev-a", e.clk.Now(), online())
	now = e.clk.Advance(time.Second)
	e.handle("dev-a", now, withSession(lost(), "session-3"))
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonLost, now)
	e.handle("dev-a", e.clk.Now(), withSession(online(), "session-4"))
	now = e.clk.Advance(time.Second)
	e.handle("dev-a", now, lost())
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonLost, now)
}

// TestLateHeartbeatAfterShutdown: heartbeats and status travel on different
// topics; a heartbeat sent before the goodbye but handled after it must not
// bring the device back online. One sent later does.
func TestLateHeartbeatAfterShutdown(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.online("dev-a")
	hbSent := e.clk.Advance(time.Second)
	bye := e.clk.Advance(time.Millisecond)
	e.handle("dev-a", bye, shutdown())
	e.handle("dev-a", hbSent, heartbeat())
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonShutdown, bye)
	later := e.clk.Advance(time.Second)
	e.handle("dev-a", later, heartbeat())
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonHeartbeat, later)
}

// TestStaleWillAfterRestart: the session of the latest "online" survives a
// hub restart, so a stale Will retained by an external broker and delivered
// again to the restarted hub still changes nothing.
func TestStaleWillAfterRestart(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.handle("dev-a", t0, &protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup, Session: "session-1"})
	e.handle("dev-a", e.clk.Advance(time.Second), &protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup, Session: "session-2"})
	e.reopen()
	e.handle("dev-a", e.clk.Now(), &protocol.Status{State: protocol.StateOffline, Reason: protocol.ReasonLost, Session: "session-1"})
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t0)
	e.handle("dev-a", e.clk.Now(), &protocol.Status{State: protocol.StateOffline, Reason: protocol.ReasonLost, Session: "session-2"})
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonLost, e.clk.Now())
}

func TestHandleRejects(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.enroll("dev-b", "b")
	before := e.reg.List()

	t.Run("source differs from topic", func(t *testing.T) {
		err := e.reg.Handle("dev-a", message(t, "dev-b", t0, online()))
		if err == nil {
			t.Fatal("Handle accepted a message from dev-b on the topic of dev-a")
		}
		err = e.reg.Handle("dev-a", message(t, "dev-b", t0, register("evil", 1000)))
		if err == nil {
			t.Fatal("Handle accepted a register from dev-b on the topic of dev-a")
		}
	})
	t.Run("unknown device", func(t *testing.T) {
		err := e.reg.Handle("dev-z", message(t, "dev-z", t0, online()))
		if !errors.Is(err, registry.ErrUnknownDevice) {
			t.Fatalf("Handle from an unknown device = %v, want ErrUnknownDevice", err)
		}
	})
	t.Run("unexpected type", func(t *testing.T) {
		err := e.reg.Handle("dev-a", message(t, "dev-a", t0, &protocol.HubStatus{State: protocol.StateOnline}))
		if err == nil {
			t.Fatal("Handle accepted a hub_status message from a device")
		}
	})
	if diff := cmp.Diff(before, e.reg.List()); diff != "" {
		t.Errorf("rejected messages changed the registry (-before +after):\n%s", diff)
	}
}

func TestUpdate(t *testing.T) {
	str := func(s string) *string { return &s }
	manyLabels := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = "v"
		}
		return m
	}
	for _, c := range []struct {
		name    string
		patch   registry.Patch
		wantErr bool
	}{
		{"name", registry.Patch{Name: str("Kitchen Pi ☕")}, false},
		{"name max length", registry.Patch{Name: str(strings.Repeat("n", registry.MaxNameLen))}, false},
		{"name empty", registry.Patch{Name: str("")}, true},
		{"name blank", registry.Patch{Name: str("   ")}, true},
		{"name too long", registry.Patch{Name: str(strings.Repeat("n", registry.MaxNameLen+1))}, true},
		{"name control", registry.Patch{Name: str("a\nb")}, true},
		{"name DEL", registry.Patch{Name: str("a\x7fb")}, true},
		{"name with HTML", registry.Patch{Name: str(`<img src=x onerror="alert(1)"> & co`)}, false}, // escaped where shown
		{"name in Arabic", registry.Patch{Name: str("مطبخ")}, false},
		{"name right-to-left override", registry.Patch{Name: str("kitchen\u202Egpj.exe")}, true},
		{"name left-to-right embedding", registry.Patch{Name: str("\u202Akitchen")}, true},
		{"name isolate", registry.Patch{Name: str("kitchen\u2067x\u2069")}, true},
		{"name right-to-left mark", registry.Patch{Name: str("kitchen\u200F")}, true},
		{"name Arabic letter mark", registry.Patch{Name: str("\u061Ckitchen")}, true},
		{"name C1 control", registry.Patch{Name: str("kitchen\u009B31m")}, true},
		{"name line separator", registry.Patch{Name: str("a\u2028b")}, true},
		{"name invalid UTF-8", registry.Patch{Name: str("kitchen\xff")}, true},
		{"label keys", registry.Patch{Labels: map[string]string{"room": "kitchen", "home.floor-1": "x", "a_b": "y"}}, false},
		{"label key max length", registry.Patch{Labels: map[string]string{"k" + strings.Repeat("x", registry.MaxLabelKeyLen-1): "v"}}, false},
		{"label key too long", registry.Patch{Labels: map[string]string{"k" + strings.Repeat("x", registry.MaxLabelKeyLen): "v"}}, true},
		{"label key empty", registry.Patch{Labels: map[string]string{"": "v"}}, true},
		{"label key uppercase", registry.Patch{Labels: map[string]string{"Room": "v"}}, true},
		{"label key digit first", registry.Patch{Labels: map[string]string{"1room": "v"}}, true},
		{"label key dash first", registry.Patch{Labels: map[string]string{"-room": "v"}}, true},
		{"label key space", registry.Patch{Labels: map[string]string{"ro om": "v"}}, true},
		{"label key slash", registry.Patch{Labels: map[string]string{"room/x": "v"}}, true},
		{"label value max length", registry.Patch{Labels: map[string]string{"k": strings.Repeat("v", registry.MaxLabelValLen)}}, false},
		{"label value too long", registry.Patch{Labels: map[string]string{"k": strings.Repeat("v", registry.MaxLabelValLen+1)}}, true},
		{"label value control", registry.Patch{Labels: map[string]string{"k": "a\tb"}}, true},
		{"label value right-to-left override", registry.Patch{Labels: map[string]string{"room": "\u202Enehctik"}}, true},
		{"label value pop directional isolate", registry.Patch{Labels: map[string]string{"room": "x\u2069"}}, true},
		{"label value invalid UTF-8", registry.Patch{Labels: map[string]string{"room": "\xc3"}}, true},
		{"max labels", registry.Patch{Labels: manyLabels(registry.MaxLabels)}, false},
		{"too many labels", registry.Patch{Labels: manyLabels(registry.MaxLabels + 1)}, true},
		{"valid name invalid label", registry.Patch{Name: str("ok"), Labels: map[string]string{"Bad": "v"}}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, registry.Config{})
			before := e.enroll("dev-a", "a")
			got, err := e.reg.Update("dev-a", c.patch)
			if c.wantErr {
				if !errors.Is(err, registry.ErrInvalid) {
					t.Fatalf("Update = %v, want ErrInvalid", err)
				}
				if diff := cmp.Diff(before, e.get("dev-a")); diff != "" {
					t.Errorf("a refused Update changed the device (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want := before
			if c.patch.Name != nil {
				want.Name, want.NameSet = *c.patch.Name, true
			}
			if c.patch.Labels != nil {
				want.Labels = c.patch.Labels
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Update returned (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, e.get("dev-a")); diff != "" {
				t.Errorf("Get after Update (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("merge and remove", func(t *testing.T) {
		e := newEnv(t, registry.Config{})
		e.enroll("dev-a", "a")
		if _, err := e.reg.Update("dev-a", registry.Patch{Labels: map[string]string{"room": "kitchen", "floor": "1"}}); err != nil {
			t.Fatal(err)
		}
		d, err := e.reg.Update("dev-a", registry.Patch{Labels: map[string]string{"room": "", "zone": "north", "absent": ""}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]string{"floor": "1", "zone": "north"}, d.Labels); diff != "" {
			t.Errorf("labels (-want +got):\n%s", diff)
		}
		// Removing labels makes room for new ones within the limit.
		full := map[string]string{"floor": "", "zone": ""}
		for i := range registry.MaxLabels {
			full[fmt.Sprintf("k%02d", i)] = "v"
		}
		if d, err := e.reg.Update("dev-a", registry.Patch{Labels: full}); err != nil || len(d.Labels) != registry.MaxLabels {
			t.Errorf("Update to exactly MaxLabels after removals: %d labels, %v", len(d.Labels), err)
		}
		if d, err := e.reg.Update("dev-a", registry.Patch{Labels: map[string]string{"one-more": "v"}}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Update past MaxLabels = %v (%d labels), want ErrInvalid", err, len(d.Labels))
		}
		// The returned copy does not alias the registry's map.
		d.Labels["sneaky"] = "x"
		if _, ok := e.get("dev-a").Labels["sneaky"]; ok {
			t.Error("changing a returned Device changed the registry")
		}
	})

	t.Run("unknown device", func(t *testing.T) {
		e := newEnv(t, registry.Config{})
		if _, err := e.reg.Update("dev-z", registry.Patch{}); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Update(unknown) = %v, want ErrNotFound", err)
		}
	})
}

func TestDelete(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.enroll("dev-b", "b")
	if err := e.reg.Delete("dev-a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := e.reg.Get("dev-a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if e.reg.Authenticate("dev-a", []byte("secret-dev-a")) {
		t.Error("a deleted device still authenticates")
	}
	if err := e.reg.Handle("dev-a", message(t, "dev-a", t0, online())); !errors.Is(err, registry.ErrUnknownDevice) {
		t.Errorf("Handle after Delete = %v, want ErrUnknownDevice", err)
	}
	if err := e.reg.Delete("dev-a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	e.reopen()
	if _, err := e.reg.Get("dev-a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get after Delete and reopen = %v, want ErrNotFound", err)
	}
	if got := len(e.reg.List()); got != 1 {
		t.Errorf("%d devices after reopen, want 1", got)
	}
}

func TestPersistence(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.enroll("dev-b", "b")
	e.enroll("dev-c", "c")
	name := "Garage"
	if _, err := e.reg.Update("dev-a", registry.Patch{Name: &name, Labels: map[string]string{"room": "garage"}}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	e.handle("dev-b", e.clk.Now(), register("b-host", 1000))
	e.online("dev-b")
	e.online("dev-c")
	e.clk.Advance(time.Second)
	e.handle("dev-c", e.clk.Now(), shutdown())
	before := e.reg.List()

	e.reopen()
	if diff := cmp.Diff(before, e.reg.List()); diff != "" {
		t.Errorf("registry after reopen (-before +after):\n%s", diff)
	}
	if !e.reg.Authenticate("dev-a", []byte("secret-dev-a")) {
		t.Error("credentials lost across reopen")
	}
}

func TestRestartGrace(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.enroll("dev-b", "b")
	e.handle("dev-a", e.clk.Now(), register("a", 1000)) // timeout 3 s
	e.online("dev-a")
	e.online("dev-b") // default interval: timeout 30 s
	e.handle("dev-b", e.clk.Now(), shutdown())

	// The hub is down for an hour, far longer than any heartbeat deadline.
	e.db.Close()
	reopened := e.clk.Advance(time.Hour)
	e.open()

	e.reg.Tick(reopened.Add(3*time.Second - time.Millisecond))
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t0)
	e.wantStatus("dev-b", registry.StatusOffline, registry.ReasonShutdown, t0)

	at := reopened.Add(3*time.Second + time.Millisecond)
	e.reg.Tick(at)
	e.wantStatus("dev-a", registry.StatusOffline, registry.ReasonHeartbeatTimeout, at)
	e.wantStatus("dev-b", registry.StatusOffline, registry.ReasonShutdown, t0)
}

func TestRestartGraceHeartbeatKeepsOnline(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.online("dev-a")
	e.db.Close()
	reopened := e.clk.Advance(time.Hour)
	e.open()
	e.clk.Advance(20 * time.Second)
	e.handle("dev-a", e.clk.Now(), heartbeat())
	e.reg.Tick(reopened.Add(31 * time.Second))
	e.wantStatus("dev-a", registry.StatusOnline, registry.ReasonStartup, t0)
}

func TestFlushPersistsLastSeen(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.enroll("dev-b", "b")
	e.online("dev-a")
	e.online("dev-b")
	seenA := e.clk.Advance(5 * time.Second)
	e.handle("dev-a", seenA, heartbeat())
	seenB := e.clk.Advance(5 * time.Second)
	e.handle("dev-b", seenB, heartbeat())
	if err := e.reg.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := e.reg.Flush(); err != nil { // nothing left to write
		t.Fatalf("second Flush: %v", err)
	}
	e.reopen()
	for id, want := range map[string]time.Time{"dev-a": seenA, "dev-b": seenB} {
		if d := e.get(id); !d.LastSeen.Equal(want) || !d.FirstSeen.Equal(t0) {
			t.Errorf("%s after reopen: first/last seen %s/%s, want %s/%s", id, d.FirstSeen, d.LastSeen, t0, want)
		}
	}
}

func TestRunFlushesOnStop(t *testing.T) {
	e := newEnv(t, registry.Config{})
	e.enroll("dev-a", "a")
	e.online("dev-a")
	seen := e.clk.Advance(5 * time.Second)
	e.handle("dev-a", seen, heartbeat())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.reg.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.reopen()
	if d := e.get("dev-a"); !d.LastSeen.Equal(seen) {
		t.Errorf("LastSeen after Run and reopen = %s, want %s", d.LastSeen, seen)
	}
}

// change is what OnChange reported.
type change struct {
	ID     string
	Status registry.Status
	Reason string
}

// recorder collects OnChange calls.
type recorder struct {
	mu  sync.Mutex
	got []change
}

func (r *recorder) onChange(d registry.Device) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, change{d.ID, d.Status, d.StatusReason})
}

func (r *recorder) changes() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]change(nil), r.got...)
}

func TestOnChange(t *testing.T) {
	var rec recorder
	e := newEnv(t, registry.Config{OnChange: rec.onChange})
	e.enroll("dev-a", "a") // enrolment is not a status change
	e.enroll("dev-b", "b")
	e.online("dev-a")
	e.online("dev-a")                                  // no change
	e.handle("dev-a", e.clk.Now(), heartbeat())        // no change
	e.handle("dev-a", e.clk.Now(), register("a", 100)) // no change
	e.handle("dev-a", e.clk.Now(), shutdown())
	e.handle("dev-a", e.clk.Now(), lost()) // offline already: no change
	e.handle("dev-a", e.clk.Advance(time.Millisecond), heartbeat())
	e.online("dev-b")
	e.reg.Tick(e.clk.Advance(time.Second)) // dev-a times out (300 ms), dev-b not (30 s)
	e.reg.Tick(e.clk.Advance(time.Second)) // nothing new
	e.handle("dev-b", e.clk.Now(), lost())

	want := []change{
		{"dev-a", registry.StatusOnline, registry.ReasonStartup},
		{"dev-a", registry.StatusOffline, registry.ReasonShutdown},
		{"dev-a", registry.StatusOnline, registry.ReasonHeartbeat},
		{"dev-b", registry.StatusOnline, registry.ReasonStartup},
		{"dev-a", registry.StatusOffline, registry.ReasonHeartbeatTimeout},
		{"dev-b", registry.StatusOffline, registry.ReasonLost},
	}
	if diff := cmp.Diff(want, rec.changes()); diff != "" {
		t.Errorf("OnChange calls (-want +got):\n%s", diff)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, registry.Config{})
	if got := e.reg.List(); len(got) != 0 {
		t.Fatalf("List of an empty registry = %v", got)
	}
	for _, d := range []struct{ id, name string }{
		{"x1", "beta"}, {"x2", "alpha"}, {"x0", "beta"}, {"a9", "gamma"}, {"b0", "Zulu"},
	} {
		e.enroll(d.id, d.name)
	}
	var got []string
	for _, d := range e.reg.List() {
		got = append(got, d.Name+"/"+d.ID)
	}
	want := []string{"Zulu/b0", "alpha/x2", "beta/x0", "beta/x1", "gamma/a9"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List order (-want +got):\n%s", diff)
	}
}

// TestConcurrency runs Handle, Update, List, Get, Tick and Flush in
// parallel (run it with -race) and checks that OnChange saw the status
// changes of each device in the order they happened: every change flips
// the status, so a device's reported statuses must alternate and end with
// its final status.
func TestConcurrency(t *testing.T) {
	var rec recorder
	e := newEnv(t, registry.Config{OnChange: rec.onChange, DefaultHeartbeat: time.Millisecond})
	ids := []string{"dev-a", "dev-b", "dev-c"}
	for _, id := range ids {
		e.enroll(id, id)
	}
	const rounds = 200
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for _, id := range ids {
		var msgs []*protocol.Message
		for _, p := range []protocol.Payload{online(), shutdown(), heartbeat(), lost(), register(id, 100)} {
			msgs = append(msgs, message(t, id, t0, p))
		}
		for w := range 3 {
			wg.Go(func() {
				for i := range rounds {
					m := msgs[(i+w)%len(msgs)]
					if err := e.reg.Handle(id, m); err != nil {
						errc <- fmt.Errorf("Handle(%s, %s): %w", id, m.Type(), err)
						return
					}
				}
			})
		}
	}
	wg.Go(func() {
		for i := range rounds {
			e.reg.Tick(e.clk.Advance(time.Millisecond))
			if i%20 == 0 {
				if err := e.reg.Flush(); err != nil {
					errc <- fmt.Errorf("Flush: %w", err)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for i := range rounds {
			name := fmt.Sprintf("name-%03d", i)
			id := ids[i%len(ids)]
			if _, err := e.reg.Update(id, registry.Patch{Name: &name, Labels: map[string]string{"n": name}}); err != nil {
				errc <- fmt.Errorf("Update: %w", err)
				return
			}
		}
	})
	wg.Go(func() {
		for range rounds {
			if n := len(e.reg.List()); n != len(ids) {
				errc <- fmt.Errorf("List has %d devices, want %d", n, len(ids))
				return
			}
			if _, err := e.reg.Get(ids[0]); err != nil {
				errc <- err
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}

	last := map[string]registry.Status{}
	for _, c := range rec.changes() {
		prev, ok := last[c.ID]
		if !ok {
			prev = registry.StatusOffline
		}
		if c.Status == prev {
			t.Fatalf("OnChange reported %s %s twice in a row: changes were delivered out of order", c.ID, c.Status)
		}
		last[c.ID] = c.Status
	}
	for _, id := range ids {
		if got, ok := last[id]; ok && got != e.get(id).Status {
			t.Errorf("last OnChange for %s said %s, but the device is %s", id, got, e.get(id).Status)
		}
	}
}

// TestOnChangeOrderTickRacesHeartbeats has heartbeats arrive for devices
// that Tick has just marked offline, while Tick is still reporting its
// changes. OnChange must still see each device go offline before it comes
// back online; a consumer that saw them the other way round would show
// healthy devices as offline.
func TestOnChangeOrderTickRacesHeartbeats(t *testing.T) {
	const n = 16
	var (
		rec     recorder
		reg     *registry.Registry
		once    sync.Once
		ids     []string
		hbs     = map[string]*protocol.Message{}
		raceErr = make(chan error, n+1)
	)
	onChange := func(d registry.Device) {
		rec.onChange(d)
		if d.StatusReason != registry.ReasonHeartbeatTimeout {
			return
		}
		// On the first change Tick reports, the other devices' heartbeats
		// arrive (each waits to report its own change)...
		once.Do(func() {
			for _, id := range ids {
				if id == d.ID {
					continue
				}
				go func() {
					if err := reg.Handle(id, hbs[id]); err != nil {
						raceErr <- err
					}
				}()
			}
			// ...and are applied before Tick reports its next change.
			deadline := time.Now().Add(10 * time.Second)
			for _, id := range ids {
				for {
					if got, err := reg.Get(id); err == nil && (id == d.ID || got.Status == registry.StatusOnline) {
						break
					}
					if time.Now().After(deadline) {
						raceErr <- fmt.Errorf("heartbeat for %s not applied within 10s", id)
						return
					}
					runtime.Gosched()
				}
			}
		})
	}
	e := newEnv(t, registry.Config{OnChange: onChange})
	reg = e.reg
	for i := range n {
		id := fmt.Sprintf("dev-%02d", i)
		ids = append(ids, id)
		e.enroll(id, id)
		e.online(id)
		hbs[id] = message(t, id, t0, heartbeat())
	}
	e.reg.Tick(t0.Add(time.Hour))

	// Wait until every change has been reported: n online, n offline and
	// n-1 online again.
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.changes()) < 3*n-1 {
		select {
		case err := <-raceErr:
			t.Fatal(err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes reported within 10s, want %d", len(rec.changes()), 3*n-1)
		}
		runtime.Gosched()
	}
	last := map[string]registry.Status{}
	for _, c := range rec.changes() {
		if prev, ok := last[c.ID]; ok && prev == c.Status {
			t.Errorf("OnChange reported %s %s twice in a row: changes delivered out of order", c.ID, c.Status)
		}
		last[c.ID] = c.Status
	}
	for _, id := range ids {
		if got := e.get(id).Status; last[id] != got {
			t.Errorf("the last change reported for %s is %s, but it is %s", id, last[id], got)
		}
	}
}

// TestRevoke: a revoked device cannot authenticate, its messages change
// nothing, it stays revoked across a restart, and revoking is idempotent.
func TestRevoke(t *testing.T) {
	var rec recorder
	e := newEnv(t, registry.Config{OnChange: rec.onChange})
	e.enroll("dev-a", "a")
	e.online("dev-a")
	if !e.reg.Allowed("dev-a") || e.reg.Allowed("dev-x") {
		t.Fatal("Allowed before revoking")
	}
	now := e.clk.Advance(time.Second)
	d, err := e.reg.Revoke("dev-a")
	if err != nil || d.Status != registry.StatusRevoked || d.StatusReason != registry.ReasonRevoked {
		t.Fatalf("Revoke = %+v, %v", d, err)
	}
	if e.reg.Authenticate("dev-a", []byte("secret-dev-a")) || e.reg.Allowed("dev-a") {
		t.Error("a revoked device still authenticates or is allowed")
	}
	if err := e.reg.Handle("dev-a", message(t, "dev-a", e.clk.Now(), online())); !errors.Is(err, registry.ErrRevoked) {
		t.Errorf("Handle from a revoked device = %v, want ErrRevoked", err)
	}
	e.reg.Tick(e.clk.Advance(time.Hour))
	e.wantStatus("dev-a", registry.StatusRevoked, registry.ReasonRevoked, now)
	if _, err := e.reg.Revoke("dev-a"); err != nil {
		t.Errorf("second Revoke: %v", err)
	}
	e.reopen()
	e.wantStatus("dev-a", registry.StatusRevoked, registry.ReasonRevoked, now)
	if e.reg.Authenticate("dev-a", []byte("secret-dev-a")) {
		t.Error("a revoked device authenticates after a restart")
	}
	if _, err := e.reg.Revoke("dev-x"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
	got := rec.changes()
	if n := len(got); n != 2 || got[1].Status != registry.StatusRevoked {
		t.Errorf("OnChange calls %+v, want online then one revoked", got)
	}
}

func TestPairingLifecycle(t *testing.T) {
	var rec recorder
	e := newEnv(t, registry.Config{OnChange: rec.onChange})
	asked := e.clk.Now()
	d, err := e.reg.AddPending("dev-p", "kitchen", []byte("pk-p"))
	if err != nil || d.Status != registry.StatusPending || d.Status.State() != registry.StatePending {
		t.Fatalf("AddPending = %+v, %v", d, err)
	}
	if _, err := e.reg.AddPending("dev-p", "kitchen", []byte("pk-p")); !errors.Is(err, registry.ErrExists) {
		t.Errorf("second AddPending = %v, want ErrExists", err)
	}
	if _, err := e.reg.Enroll("dev-p", "kitchen", []byte("pk-p"), secretHash("s")); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Enroll of a pending device = %v, want ErrExists", err)
	}
	// Pending: no broker access, messages refused, no secret can be set.
	if e.reg.Allowed("dev-p") {
		t.Error("a pending device is allowed on the broker")
	}
	if err := e.reg.Handle("dev-p", message(t, "dev-p", e.clk.Now(), online())); !errors.Is(err, registry.ErrNotAccepted) {
		t.Errorf("Handle from a pending device = %v, want ErrNotAccepted", err)
	}
	if _, err := e.reg.SetSecret("dev-p", secretHash("s")); !errors.Is(err, registry.ErrNotAccepted) {
		t.Errorf("SetSecret of a pending device = %v, want ErrNotAccepted", err)
	}
	e.reopen() // pending survives a restart, still without access
	e.wantStatus("dev-p", registry.StatusPending, registry.ReasonPairing, asked)
	if e.reg.Allowed("dev-p") {
		t.Error("a pending device is allowed after a restart")
	}

	approved := e.clk.Advance(time.Minute)
	d, err = e.reg.Approve("dev-p")
	if err != nil || d.Status != registry.StatusOffline || d.StatusReason != registry.ReasonApproved ||
		d.Status.State() != registry.StateAccepted || !d.EnrolledAt.Equal(approved) {
		t.Fatalf("Approve = %+v, %v", d, err)
	}
	if _, err := e.reg.Approve("dev-p"); !errors.Is(err, registry.ErrNotAccepted) {
		t.Errorf("second Approve = %v, want ErrNotAccepted", err)
	}
	if _, err := e.reg.Reject("dev-p"); !errors.Is(err, registry.ErrNotAccepted) {
		t.Errorf("Reject of an approved device = %v, want ErrNotAccepted", err)
	}
	if e.reg.Authenticate("dev-p", []byte("s")) {
		t.Error("an approved device authenticates before it has a secret")
	}
	if _, err := e.reg.SetSecret("dev-p", secretHash("s")); err != nil {
		t.Fatalf("SetSecret: %v", err)
	}
	if _, err := e.reg.SetSecret("dev-p", secretHash("other")); !errors.Is(err, registry.ErrExists) {
		t.Errorf("second SetSecret = %v, want ErrExists (credentials are handed out once)", err)
	}
	e.reopen()
	if !e.reg.Authenticate("dev-p", []byte("s")) || !e.reg.Allowed("dev-p") {
		t.Error("an approved device with its secret cannot use the broker after a restart")
	}
	e.online("dev-p")

	// Reject: final, survives a restart.
	if _, err := e.reg.AddPending("dev-r", "intruder", []byte("pk-r")); err != nil {
		t.Fatal(err)
	}
	rejected := e.clk.Advance(time.Second)
	if d, err := e.reg.Reject("dev-r"); err != nil || d.Status != registry.StatusRejected || d.Status.State() != registry.StateRejected {
		t.Fatalf("Reject = %+v, %v", d, err)
	}
	if _, err := e.reg.Approve("dev-r"); !errors.Is(err, registry.ErrNotAccepted) {
		t.Errorf("Approve of a rejected device = %v, want ErrNotAccepted", err)
	}
	e.reopen()
	e.wantStatus("dev-r", registry.StatusRejected, registry.ReasonRejected, rejected)
	if e.reg.Allowed("dev-r") {
		t.Error("a rejected device is allowed")
	}
	for _, id := range []string{"dev-x"} {
		if _, err := e.reg.Approve(id); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Approve(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := e.reg.SetSecret(id, secretHash("s")); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("SetSecret(unknown) = %v, want ErrNotFound", err)
		}
	}
	var statuses []registry.Status
	for _, c := range rec.changes() {
		statuses = append(statuses, c.Status)
	}
	// reopen reuses e.cfg, so the recorder saw every registry's changes.
	want := []registry.Status{registry.StatusPending, registry.StatusOffline, registry.StatusOnline, registry.StatusPending, registry.StatusRejected}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("OnChange statuses %v, want %v", statuses, want)
	}
}

func TestAddPendingLimits(t *testing.T) {
	e := newEnv(t, registry.Config{})
	for i := range registry.MaxPending {
		if _, err := e.reg.AddPending(fmt.Sprintf("dev-%d", i), "x", []byte{byte(i)}); err != nil {
			t.Fatalf("AddPending %d: %v", i, err)
		}
	}
	if _, err := e.reg.AddPending("dev-over", "x", []byte("o")); !errors.Is(err, registry.ErrTooManyPending) {
		t.Fatalf("AddPending beyond MaxPending = %v, want ErrTooManyPending", err)
	}
	// Deciding one makes room.
	if _, err := e.reg.Reject("dev-0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.AddPending("dev-over", "x", []byte("o")); err != nil {
		t.Errorf("AddPending after a reject: %v", err)
	}
	for _, tc := range []struct{ id, name string }{{"bad/id", "x"}, {"", "x"}, {"dev-ok", " "}, {"dev-ok", "a\x00b"}} {
		if _, err := e.reg.AddPending(tc.id, tc.name, []byte("k")); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("AddPending(%q, %q) = %v, want ErrInvalid", tc.id, tc.name, err)
		}
	}
}

// TestPendingExpires: pairing requests nobody decides expire after
// PendingTTL and free their slots, so junk sent during one open window
// cannot keep every slot for good; decided devices never expire.
func TestPendingExpires(t *testing.T) {
	e := newEnv(t, registry.Config{})
	ttl := registry.DefaultPendingTTL
	ids := func() []string {
		var out []string
		for _, d := range e.reg.List() {
			out = append(out, d.ID)
		}
		return out
	}
	// Half of the slots at t0, half 10 minutes later; one of the early
	// requests approved and one rejected: decided, they leave the pending
	// set and never expire.
	half := registry.MaxPending / 2
	for i := range registry.MaxPending + 2 {
		if i == half+2 {
			e.clk.Advance(10 * time.Minute)
		}
		if _, err := e.reg.AddPending(fmt.Sprintf("dev-%02d", i), "x", []byte{byte(i)}); err != nil {
			t.Fatalf("AddPending %d: %v", i, err)
		}
		if i == 0 {
			if _, err := e.reg.Approve("dev-00"); err != nil {
				t.Fatal(err)
			}
		}
		if i == 1 {
			if _, err := e.reg.Reject("dev-01"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.reg.AddPending("dev-new", "x", []byte("n")); !errors.Is(err, registry.ErrTooManyPending) {
		t.Fatalf("AddPending with every slot taken = %v, want ErrTooManyPending", err)
	}

	// Just before the first requests expire, nothing changes.
	e.clk.Set(t0.Add(ttl - time.Nanosecond))
	e.reg.Tick(e.clk.Now())
	if _, err := e.reg.AddPending("dev-new", "x", []byte("n")); !errors.Is(err, registry.ErrTooManyPending) {
		t.Fatalf("AddPending just before the first expiry = %v, want ErrTooManyPending", err)
	}
	if _, err := e.reg.Approve("dev-02"); err != nil {
		t.Fatalf("Approve just before expiry: %v", err)
	}

	// At t0+TTL the first half's undecided requests are gone: approving one
	// is "not found", and their slots are free without a Tick.
	e.clk.Set(t0.Add(ttl))
	if _, err := e.reg.Approve("dev-03"); !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Approve of an expired request = %v, want ErrNotFound saying it expired", err)
	}
	if _, err := e.reg.AddPending("dev-new", "x", []byte("n")); err != nil {
		t.Fatalf("AddPending once the first requests expired: %v", err)
	}
	var want []string
	want = append(want, "dev-00", "dev-01", "dev-02") // decided: kept
	for i := half + 2; i < registry.MaxPending+2; i++ {
		want = append(want, fmt.Sprintf("dev-%02d", i))
	}
	want = append(want, "dev-new")
	if diff := cmp.Diff(want, ids()); diff != "" {
		t.Errorf("devices once the first requests expired (-want +got):\n%s", diff)
	}

	// The rest expire by Tick alone, and stay deleted after a restart.
	e.reopen()
	e.clk.Set(t0.Add(10*time.Minute + ttl))
	e.reg.Tick(e.clk.Now())
	if diff := cmp.Diff([]string{"dev-00", "dev-01", "dev-02", "dev-new"}, ids()); diff != "" {
		t.Errorf("devices after the second expiry (-want +got):\n%s", diff)
	}
	e.reopen()
	if diff := cmp.Diff([]string{"dev-00", "dev-01", "dev-02", "dev-new"}, ids()); diff != "" {
		t.Errorf("devices after a restart (-want +got):\n%s", diff)
	}
	if _, err := e.reg.Get("dev-40"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get of an expired request = %v, want ErrNotFound", err)
	}
}

func TestPendingTTLConfigurable(t *testing.T) {
	e := newEnv(t, registry.Config{PendingTTL: time.Minute})
	if _, err := e.reg.AddPending("dev-p", "x", []byte("p")); err != nil {
		t.Fatal(err)
	}
	e.reg.Tick(e.clk.Advance(time.Minute - time.Nanosecond))
	e.get("dev-p")
	e.reg.Tick(e.clk.Advance(time.Nanosecond))
	if _, err := e.reg.Get("dev-p"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get a minute after asking, with PendingTTL 1m = %v, want ErrNotFound", err)
	}
}
