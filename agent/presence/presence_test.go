package presence_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/agent/presence"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/mosquittotest"
	"github.com/alicia-home/alicia/internal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const device = "d000000000000000000001"

// seen collects what an observer receives of the device's subtree.
type seen struct {
	mu   sync.Mutex
	msgs []*protocol.Message
}

func (s *seen) handle(_ context.Context, m bus.Message) {
	if msg, err := protocol.Decode(m.Payload); err == nil {
		s.mu.Lock()
		s.msgs = append(s.msgs, msg)
		s.mu.Unlock()
	}
}

// wait polls until cond holds on what was seen.
func (s *seen) wait(t *testing.T, what string, cond func([]*protocol.Message) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		ok := cond(s.msgs)
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not seen in 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling what the observer got
	}
}

func heartbeats(msgs []*protocol.Message) []time.Time {
	var at []time.Time
	for _, m := range msgs {
		if _, ok := m.Payload.(*protocol.Heartbeat); ok {
			at = append(at, m.Time)
		}
	}
	return at
}

func lastRegister(msgs []*protocol.Message) *protocol.Register {
	var r *protocol.Register
	for _, m := range msgs {
		if x, ok := m.Payload.(*protocol.Register); ok {
			r = x
		}
	}
	return r
}

// TestBirthAndSetHeartbeat: after connecting the device publishes its
// registration and "online"; SetHeartbeat publishes the registration again
// with the new interval, and the heartbeats follow it.
func TestBirthAndSetHeartbeat(t *testing.T) {
	users := map[string]string{"dev": "d", "obs": "o"}
	b := mosquittotest.New(t, mosquittotest.Options{Users: users})
	b.Start()
	run := func(c *bus.Client) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	obs, err := bus.New(bus.Config{URL: b.URL(), ClientID: "obs", Username: "obs", Password: "o"})
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	if err := obs.Subscribe(protocol.DeviceSubtree(device), 1, s.handle); err != nil {
		t.Fatal(err)
	}
	run(obs)
	if err := obs.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}

	reg := &protocol.Register{Name: "pi", AgentVersion: "test", HeartbeatMS: 1000, Facts: protocol.Facts{Hostname: "pi", OS: "linux", Arch: "arm64"}}
	p, err := presence.New(presence.Config{DeviceID: device, Register: reg, HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := bus.Config{URL: b.URL(), ClientID: device, Username: "dev", Password: "d"}
	p.Configure(&cfg)
	dev, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(dev); err != nil {
		t.Fatal(err)
	}
	run(dev)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	s.wait(t, "registration and online", func(msgs []*protocol.Message) bool {
		online := false
		for _, m := range msgs {
			if st, ok := m.Payload.(*protocol.Status); ok && st.State == protocol.StateOnline {
				online = true
			}
		}
		r := lastRegister(msgs)
		return online && r != nil && r.HeartbeatMS == 1000
	})

	changed := time.Now()
	p.SetHeartbeat(100 * time.Millisecond)
	s.wait(t, "the registration with the new interval", func(msgs []*protocol.Message) bool {
		r := lastRegister(msgs)
		return r != nil && r.HeartbeatMS == 100
	})
	s.wait(t, "five heartbeats at the new interval", func(msgs []*protocol.Message) bool {
		n := 0
		for _, at := range heartbeats(msgs) {
			if at.After(changed) {
				n++
			}
		}
		return n >= 5
	})
	// Five heartbeats 100 ms apart: well under the old interval's five seconds.
	if took := time.Since(changed); took > 3*time.Second {
		t.Errorf("five heartbeats took %s after the change to 100ms", took)
	}
}
