package agentd

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// slowHardware executes every command until ctx is done, like a long
// pulse that a stop cuts short.
type slowHardware struct {
	started  chan struct{}
	mu       sync.Mutex
	finished int // commands whose Execute has returned
}

func (h *slowHardware) Hardware() *protocol.Hardware                            { return nil }
func (h *slowHardware) Sample(context.Context) []protocol.Point                 { return nil }
func (h *slowHardware) WatchInputs(context.Context, func(protocol.DeviceEvent)) {}
func (h *slowHardware) Execute(ctx context.Context, c *protocol.Command) protocol.CommandResult {
	h.started <- struct{}{}
	<-ctx.Done()
	h.mu.Lock()
	h.finished++
	h.mu.Unlock()
	return protocol.CommandResult{ID: c.ID, Status: protocol.ResultExpired, Error: "stopped"}
}

type publishedResults struct {
	mu     sync.Mutex
	topics []string
}

func (p *publishedResults) Publish(_ context.Context, m bus.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.topics = append(p.topics, m.Topic)
	return nil
}

// TestCommandsAreJoined: once the session stops, wait returns only after
// every running command has returned and published its result, so that
// nothing uses the hardware after Run returned (main closes the board).
func TestCommandsAreJoined(t *testing.T) {
	const id = "dev-1"
	hw := &slowHardware{started: make(chan struct{}, 2)}
	pub := &publishedResults{}
	c := &commands{hw: hw, pub: pub, id: id, log: slog.New(slog.DiscardHandler), restart: func() {}, sem: make(chan struct{}, maxCommands)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, cid := range []string{"cmd-1", "cmd-2"} {
		b, err := protocol.Encode("hub", time.Now(), &protocol.Command{ID: cid, Action: protocol.ActionAgentRestart, Deadline: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		c.handle(ctx, bus.Message{Payload: b})
	}
	for range 2 {
		select {
		case <-hw.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the commands did not start")
		}
	}
	cancel() // the session stops
	c.wait()
	hw.mu.Lock()
	finished := hw.finished
	hw.mu.Unlock()
	pub.mu.Lock()
	published := len(pub.topics)
	pub.mu.Unlock()
	if finished != 2 || published != 2 {
		t.Errorf("after wait: %d commands finished and %d results published, want 2 and 2", finished, published)
	}
}
