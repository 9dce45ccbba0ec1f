package confapply_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/agent/confapply"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/mosquittotest"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const device = "d000000000000000000001"

var users = map[string]string{"dev": "dev-secret", "hub": "hub-secret"}

// fakeKind is an Applier that records what it checked and applied. It
// refuses content with "bad": true; content with "reconnect": true is a
// change of how the agent reaches the hub.
type fakeKind struct {
	mu      sync.Mutex
	checked []string
	applied []string
}

func (f *fakeKind) apply(content []byte) (confapply.Change, error) {
	var v struct{ Bad, Reconnect bool }
	if err := json.Unmarshal(content, &v); err != nil {
		return confapply.Change{}, err
	}
	f.mu.Lock()
	f.checked = append(f.checked, string(content))
	f.mu.Unlock()
	if v.Bad {
		return confapply.Change{}, errors.New("bad is not a setting this agent has")
	}
	return confapply.Change{Reconnect: v.Reconnect, Apply: func() {
		f.mu.Lock()
		f.applied = append(f.applied, string(content))
		f.mu.Unlock()
	}}, nil
}

func (f *fakeKind) state() (checked, applied []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.checked...), append([]string(nil), f.applied...)
}

// env is a Mosquitto, a "hub" client on it, and a Manager with a fake
// agent kind whose sessions the test makes.
type env struct {
	t        *testing.T
	broker   *mosquittotest.Broker
	hub      *bus.Client
	reports  chan protocol.ConfigStatus
	kind     *fakeKind
	path     string
	m        *confapply.Manager
	stopRun  func()
	sessions sync.WaitGroup
	endMu    sync.Mutex
	end      func() // ends the current session
	reconn   chan struct{}
	log      *slog.Logger
}

func newEnv(t *testing.T) *env {
	b := mosquittotest.New(t, mosquittotest.Options{Users: users})
	b.Start()
	e := &env{t: t, broker: b, reports: make(chan protocol.ConfigStatus, 16), kind: &fakeKind{}, path: filepath.Join(t.TempDir(), "config.json"), reconn: make(chan struct{}, 4)}
	t.Cleanup(e.sessions.Wait) // after every session's cancel (cleanups run last first)
	e.hub = e.client("hub", b.URL())
	if err := e.hub.Subscribe(protocol.DeviceTopic(device, protocol.KindConfigStatus), 1, func(_ context.Context, m bus.Message) {
		_, st, err := protocol.DecodeAs[*protocol.ConfigStatus](m.Payload)
		if err != nil {
			t.Errorf("report: %v", err)
			return
		}
		e.reports <- *st
	}); err != nil {
		t.Fatal(err)
	}
	e.run(e.hub)
	if err := e.hub.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) client(user, url string) *bus.Client {
	c, err := bus.New(bus.Config{URL: url, ClientID: user + "-" + strings.ReplaceAll(e.t.Name(), "/", "-"), Username: user, Password: users[user],
		ConnectTimeout: 2 * time.Second, MaxReconnectInterval: 100 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// run runs c until the test ends or its session is ended.
func (e *env) run(c *bus.Client) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	e.sessions.Go(func() { c.Run(ctx) })
	return cancel
}

// open opens the Manager (again) and runs it.
func (e *env) open(window time.Duration) {
	e.t.Helper()
	if e.stopRun != nil {
		e.stopRun()
	}
	if e.log == nil {
		var buf *testkit.LogBuffer
		e.log, buf = testkit.NewLogger()
		e.t.Cleanup(func() {
			if e.t.Failed() {
				e.t.Logf("manager log:\n%s", buf)
			}
		})
	}
	m, err := confapply.Open(confapply.Config{Path: e.path, DeviceID: device, ConfirmWindow: window,
		Kinds: map[string]confapply.Applier{"agent": e.kind.apply},
		Reconnect: func() {
			e.endSession()
			e.reconn <- struct{}{}
		}, Logger: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = m
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.Run(ctx) })
	e.stopRun = func() { cancel(); wg.Wait() }
	e.t.Cleanup(e.stopRun)
}

// session starts a device session to url, as the agent does.
func (e *env) session(url string) {
	e.t.Helper()
	c := e.client("dev", url)
	if err := e.m.Attach(c); err != nil {
		e.t.Fatal(err)
	}
	cancel := e.run(c)
	e.endMu.Lock()
	e.end = cancel
	e.endMu.Unlock()
}

func (e *env) endSession() {
	e.endMu.Lock()
	defer e.endMu.Unlock()
	if e.end != nil {
		e.end()
		e.end = nil
	}
}

// send publishes the device's desired configuration of kind "agent" (and
// of extra kinds), retained, as the hub does.
func (e *env) send(content string, extra ...string) string {
	e.t.Helper()
	c := &protocol.Config{Configs: map[string]protocol.ConfigDoc{"agent": doc(content)}}
	for _, k := range extra {
		c.Configs[k] = doc(`{}`)
	}
	b, err := protocol.Encode("hub", time.Now(), c)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.hub.Publish(e.t.Context(), bus.Message{Topic: protocol.DeviceTopic(device, protocol.KindConfig), Payload: b, QoS: 1, Retained: true}); err != nil {
		e.t.Fatal(err)
	}
	return c.Configs["agent"].Hash
}

func doc(content string) protocol.ConfigDoc {
	sum := sha256.Sum256([]byte(content))
	return protocol.ConfigDoc{Hash: hex.EncodeToString(sum[:]), Content: json.RawMessage(content)}
}

// report waits for the next report of kind.
func (e *env) report(kind string) protocol.ConfigStatus {
	e.t.Helper()
	for {
		select {
		case r := <-e.reports:
			if r.Kind == kind {
				return r
			}
		case <-time.After(10 * time.Second):
			e.t.Fatalf("no %s report in 10 s", kind)
		}
	}
}

// waitConfirmed waits until the agent kind is not pending.
func (e *env) waitConfirmed(hash string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, pending := e.m.Pending("agent")
		if h == hash && !pending {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("agent config %s pending=%v, want %s confirmed", h, pending, hash)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAppliesConfirmsAndRejects(t *testing.T) {
	e := newEnv(t)
	e.open(time.Minute)
	e.session(e.broker.URL())
	h := e.send(`{"interval":"5s"}`, "lights")
	if r := e.report("agent"); r.State != protocol.ConfigApplied || r.Hash != h {
		t.Fatalf("report %+v, want applied %s", r, h)
	}
	if r := e.report("lights"); r.State != protocol.ConfigRejected || !strings.Contains(r.Reason, `does not apply configurations of kind "lights"`) {
		t.Errorf("unknown kind: report %+v, want rejected naming the kind", r)
	}
	e.waitConfirmed(h)
	if _, applied := e.kind.state(); len(applied) != 1 || applied[0] != `{"interval":"5s"}` {
		t.Errorf("applied %q", applied)
	}

	// A configuration the agent refuses leaves the one in effect.
	bad := e.send(`{"bad":true}`)
	if r := e.report("agent"); r.State != protocol.ConfigRejected || r.Hash != bad || !strings.Contains(r.Reason, "bad is not a setting") {
		t.Fatalf("report %+v, want rejected with the applier's reason", r)
	}
	if h2, pending := e.m.Pending("agent"); h2 != h || pending {
		t.Errorf("after a rejection: in effect %s (pending %v), want %s", h2, pending, h)
	}
	// Sent again at a reconnect: answered again, not checked again.
	checked, _ := e.kind.state()
	e.endSession()
	e.session(e.broker.URL())
	if r := e.report("agent"); r.State != protocol.ConfigRejected || r.Hash != bad {
		t.Errorf("after a reconnect: report %+v, want the rejection again", r)
	}
	if again, _ := e.kind.state(); len(again) != len(checked) {
		t.Errorf("the rejected configuration was checked again: %q", again[len(checked):])
	}
}

func TestRevertsWhatCutsTheAgentOff(t *testing.T) {
	e := newEnv(t)
	e.open(300 * time.Millisecond)
	e.session(e.broker.URL())
	good := e.send(`{"interval":"5s"}`)
	e.report("agent")
	e.waitConfirmed(good)

	// The next configuration is about how to reach the hub: the session
	// is made again, and with it the hub cannot be reached.
	start := time.Now()
	bad := e.send(`{"reconnect":true}`)
	select {
	case <-e.reconn:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect after a change of how the hub is reached")
	}
	e.session("tcp://127.0.0.1:1") // nobody listens there
	select {
	case <-e.reconn:
	case <-time.After(10 * time.Second):
		t.Fatal("not reverted")
	}
	took := time.Since(start)
	if h, pending := e.m.Pending("agent"); h != good || pending {
		t.Fatalf("after the window: in effect %s (pending %v), want %s confirmed", h, pending, good)
	}
	if _, applied := e.kind.state(); applied[len(applied)-1] != `{"interval":"5s"}` {
		t.Errorf("applied %q, want the good one last", applied)
	}
	t.Logf("reverted %v after the change (window 300ms)", took)

	// Back on the hub: the revert is reported with its reason, and the
	// configuration is not applied again though the hub still sends it.
	e.session(e.broker.URL())
	var r protocol.ConfigStatus
	for r = e.report("agent"); r.State == protocol.ConfigApplied && r.Hash == bad; r = e.report("agent") {
		// "applied" may have reached the hub over the old session
	}
	if r.State != protocol.ConfigReverted || r.Hash != bad || !strings.Contains(r.Reason, "could not be reached") {
		t.Fatalf("report %+v, want reverted %s with the reason", r, bad)
	}
	_, before := e.kind.state()
	e.endSession()
	e.session(e.broker.URL())
	if r := e.report("agent"); r.State != protocol.ConfigReverted || r.Hash != bad {
		t.Errorf("report %+v, want the revert again", r)
	}
	if _, after := e.kind.state(); len(after) != len(before) {
		t.Errorf("the reverted configuration was applied again: %q", after[len(before):])
	}

	// A new configuration from the hub is applied.
	next := e.send(`{"interval":"7s"}`)
	if r := e.report("agent"); r.State != protocol.ConfigApplied || r.Hash != next {
		t.Errorf("report %+v, want applied %s", r, next)
	}
}

func TestStateSurvivesARestart(t *testing.T) {
	e := newEnv(t)
	e.open(time.Minute)
	e.session(e.broker.URL())
	good := e.send(`{"interval":"5s"}`)
	e.report("agent")
	e.waitConfirmed(good)
	e.endSession()

	// Restarted: the configuration is in effect before any session.
	e.open(time.Minute)
	if _, applied := e.kind.state(); applied[len(applied)-1] != `{"interval":"5s"}` {
		t.Fatalf("after a restart applied %q, want the saved configuration", applied)
	}
	// A configuration applied and not confirmed before a restart gets a
	// new window, and is reverted when the hub stays out of reach.
	e.session(e.broker.URL())
	bad := e.send(`{"reconnect":true}`)
	<-e.reconn
	e.stopRun()
	e.open(200 * time.Millisecond)
	if h, pending := e.m.Pending("agent"); h != bad || !pending {
		t.Fatalf("after a restart: %s pending=%v, want %s pending", h, pending, bad)
	}
	select {
	case <-e.reconn:
	case <-time.After(10 * time.Second):
		t.Fatal("not reverted after the restart")
	}
	if h, pending := e.m.Pending("agent"); h != good || pending {
		t.Errorf("after the window: %s pending=%v, want %s", h, pending, good)
	}
}

func TestDamagedStateFileIsMovedAside(t *testing.T) {
	e := &env{t: t, kind: &fakeKind{}, path: filepath.Join(t.TempDir(), "config.json"), reconn: make(chan struct{}, 4)}
	if err := os.WriteFile(e.path, []byte(`{"kinds":{"agent":`), 0o600); err != nil {
		t.Fatal(err)
	}
	e.open(time.Minute)
	if h, pending := e.m.Pending("agent"); h != "" || pending {
		t.Errorf("from a damaged file: %s pending=%v, want nothing", h, pending)
	}
	aside, _ := filepath.Glob(e.path + ".corrupt-*")
	if len(aside) != 1 {
		t.Errorf("moved aside: %q, want one file", aside)
	}
}
