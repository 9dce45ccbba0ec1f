package agentd_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/mosquittotest"
	"github.com/alicia-home/alicia/internal/protocol"
)

// relay is hardware with one output line, GPIO17 alias relay, that
// records the commands it executes.
type relay struct {
	mu  sync.Mutex
	ids []string
}

func (*relay) Hardware() *protocol.Hardware {
	return &protocol.Hardware{Backend: "sim", Lines: []protocol.HardwareLine{{Name: "GPIO17", Alias: "relay", Direction: protocol.DirOut}}}
}
func (r *relay) Execute(_ context.Context, c *protocol.Command) protocol.CommandResult {
	r.mu.Lock()
	r.ids = append(r.ids, c.ID)
	r.mu.Unlock()
	return protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK}
}
func (*relay) Sample(context.Context) []protocol.Point                 { return nil }
func (*relay) WatchInputs(context.Context, func(protocol.DeviceEvent)) {}

func (r *relay) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// fakeJobHub is the hub's side of on-device schedules on a Mosquitto: it
// publishes the device's configuration and receives its config reports
// and job runs, acknowledging them when ack is set.
type fakeJobHub struct {
	t      *testing.T
	client *bus.Client
	device string

	mu      sync.Mutex
	ack     bool
	runs    map[string]protocol.JobRun // by run ID, the last received
	acked   map[string]bool            // run IDs acknowledged
	reports []protocol.ConfigStatus
}

func newFakeJobHub(t *testing.T, url, device string) *fakeJobHub {
	h := &fakeJobHub{t: t, device: device, runs: map[string]protocol.JobRun{}, acked: map[string]bool{}}
	c, err := bus.New(bus.Config{URL: url, ClientID: "hub", Username: "hub", Password: "hub-pw", ConnectTimeout: 2 * time.Second, MaxReconnectInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.client = c
	if err := c.Subscribe(protocol.DeviceTopic(device, protocol.KindJobRun), 1, h.jobRun); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(protocol.DeviceTopic(device, protocol.KindConfigStatus), 1, func(_ context.Context, m bus.Message) {
		_, st, err := protocol.DecodeAs[*protocol.ConfigStatus](m.Payload)
		if err != nil {
			t.Errorf("config report: %v", err)
			return
		}
		h.mu.Lock()
		h.reports = append(h.reports, *st)
		h.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := c.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *fakeJobHub) jobRun(ctx context.Context, m bus.Message) {
	_, jr, err := protocol.DecodeAs[*protocol.JobRun](m.Payload)
	if err != nil {
		h.t.Errorf("job run: %v", err)
		return
	}
	h.mu.Lock()
	h.runs[jr.Run] = *jr
	ack := h.ack
	if ack {
		h.acked[jr.Run] = true
	}
	h.mu.Unlock()
	if !ack {
		return
	}
	b, err := protocol.Encode("hub", time.Now(), &protocol.JobAck{Epoch: jr.Epoch, Seqs: []uint64{jr.Seq}})
	if err == nil {
		err = h.client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(h.device, protocol.KindJobAck), Payload: b, QoS: 1})
	}
	if err != nil && ctx.Err() == nil { // not while the test ends
		h.t.Errorf("job ack: %v", err)
	}
}

// configure publishes the device's schedule, retained, as the hub's
// configuration sync does, and returns its hash.
func (h *fakeJobHub) configure(content string) string {
	h.t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(content)); err != nil {
		h.t.Fatal(err)
	}
	content = compact.String()
	sum := sha256.Sum256([]byte(content))
	hash := hex.EncodeToString(sum[:])
	b, err := protocol.Encode("hub", time.Now(), &protocol.Config{Configs: map[string]protocol.ConfigDoc{
		protocol.KindSchedule: {Hash: hash, Content: json.RawMessage(content)}}})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.client.Publish(h.t.Context(), bus.Message{Topic: protocol.DeviceTopic(h.device, protocol.KindConfig), Payload: b, QoS: 1, Retained: true}); err != nil {
		h.t.Fatal(err)
	}
	return hash
}

func (h *fakeJobHub) report(hash string) (protocol.ConfigStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.reports {
		if r.Hash == hash {
			return r, true
		}
	}
	return protocol.ConfigStatus{}, false
}

func (h *fakeJobHub) received() (runs map[string]protocol.JobRun, acked map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	runs, acked = map[string]protocol.JobRun{}, map[string]bool{}
	for k, v := range h.runs {
		runs[k] = v
	}
	for k, v := range h.acked {
		acked[k] = v
	}
	return runs, acked
}

// TestOnDeviceSchedule: the hub's schedule reaches the agent as the
// configuration kind "schedule"; one the device cannot run is rejected
// with the reason; the agent fires the jobs on its hardware by itself,
// keeps their runs across a restart while the hub does not acknowledge
// them, and forgets them once it does. No command is executed twice.
func TestOnDeviceSchedule(t *testing.T) {
	dir, id := enrolled(t, savedCreds{})
	b := mosquittotest.New(t, mosquittotest.Options{Users: map[string]string{id: "dev-pw", "hub": "hub-pw"}})
	b.Start()
	writeCreds(t, filepath.Join(dir, "credentials.json"), savedCreds{DeviceID: id, HubID: "hub-1", Hub: closedAddr(t), MQTTURLs: []string{"mqtt://" + b.Addr()},
		Password: "dev-pw", CAFingerprint: newCA(t).Fingerprint()})
	hub := newFakeJobHub(t, b.URL(), id)
	hw := &relay{}
	cfg := agentd.Config{StateDir: dir, Hub: closedAddr(t), Hardware: hw, Clock: clocksync.Trust, SampleInterval: time.Hour}

	bad := hub.configure(`{"jobs": [{"id": "pump", "trigger": {"every": "1s"}, "action": "gpio.write", "params": {"line": "GPIO4", "level": true}}]}`)
	s := start(t, cfg)
	s.waitFor(t, "the bad schedule's report", func() bool { _, ok := hub.report(bad); return ok })
	if r, _ := hub.report(bad); r.State != protocol.ConfigRejected || !strings.Contains(r.Reason, `params.line: "GPIO4" is not a line of this device`) {
		t.Errorf("report of the bad schedule: %+v, want rejected naming the line", r)
	}

	// The hub does not acknowledge: the runs wait in the job outbox.
	good := hub.configure(`{"jobs": [{"id": "pump", "version": 1, "trigger": {"every": "1s"}, "action": "gpio.write", "params": {"line": "relay", "level": true}}]}`)
	s.waitFor(t, "the schedule applied", func() bool { r, ok := hub.report(good); return ok && r.State == protocol.ConfigApplied })
	s.waitFor(t, "two runs at the hub", func() bool { runs, _ := hub.received(); return len(runs) >= 2 })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	before := pendingRuns(t, dir)
	if len(before) < 2 {
		t.Fatalf("job outbox after the stop: %v, want the unacknowledged runs", before)
	}

	// Restarted, with a hub that acknowledges: the runs from before the
	// restart arrive again and are forgotten.
	hub.mu.Lock()
	hub.ack = true
	hub.mu.Unlock()
	s = start(t, cfg)
	s.waitFor(t, "the runs from before the restart acknowledged", func() bool {
		_, acked := hub.received()
		for _, r := range before {
			if !acked[r] {
				return false
			}
		}
		return true
	})
	// Two runs later (two seconds), the agent has long applied those acks.
	n, _ := hub.received()
	s.waitFor(t, "two more runs", func() bool { runs, _ := hub.received(); return len(runs) >= len(n)+2 })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	left := map[string]bool{}
	for _, r := range pendingRuns(t, dir) {
		left[r] = true
	}
	for _, r := range before {
		if left[r] {
			t.Errorf("run %s is still in the job outbox after the hub acknowledged it", r)
		}
	}
	runs, _ := hub.received()
	seen := map[string]bool{}
	for _, c := range hw.commands() {
		if seen[c] {
			t.Errorf("command %s executed twice", c)
		}
		seen[c] = true
		run := c[:strings.LastIndex(c, ".")]
		if r, ok := runs[run]; ok && (r.Status != protocol.JobRunOK || r.Job != "pump") {
			t.Errorf("run %+v, want pump ok", r)
		}
	}
	if len(seen) < 2 {
		t.Errorf("commands %v, want at least two", hw.commands())
	}
}

// pendingRuns returns the run IDs in the agent's job outbox.
func pendingRuns(t *testing.T, dir string) []string {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	es, err := ob.Pending(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range es {
		var jr protocol.JobRun
		if err := json.Unmarshal(e.Data, &jr); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, jr.Run)
	}
	return ids
}
