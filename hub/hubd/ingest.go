package hubd

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/throttle"
)

// ingest turns device messages from the bus into registry updates. Bad
// messages are counted and logged with what is wrong and where (at most
// one line per device every rejectLogEvery), and change nothing. Each
// device may send rate messages a second, with bursts of burst; the rest
// are dropped before they are decoded and counted (a metrics batch dropped
// so is not acknowledged: the agent sends it again).
type ingest struct {
	reg      *registry.Registry
	metrics  *metrics.Ingester
	commands *command.Service
	// input receives a device's input events.
	input    func(device string, ev *protocol.DeviceEvent)
	log      *throttle.Log
	rejected atomic.Uint64
	limited  atomic.Uint64

	rate  rate.Limit
	burst int
	// mu guards the field below.
	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by device ID
}

// Defaults of the per-device message rate limit: an agent sends a batch
// and a heartbeat every 10 s, and drains a backlog 64 batches at a time
// (as fast as the hub acknowledges, which is well below this).
const (
	DefaultDeviceMsgRate  = 200
	defaultDeviceMsgBurst = 400
	// rejectLogEvery bounds the "rejected" log lines per device.
	rejectLogEvery = 10 * time.Second
	// maxLimiters bounds the limiters kept: device IDs come from topics
	// the broker lets only enrolled devices publish on, so this is far
	// above any household; past it the limiters start afresh.
	maxLimiters = 100000
)

// allow reports whether device id may send one more message now.
func (in *ingest) allow(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	l := in.limiters[id]
	if l == nil {
		if in.limiters == nil || len(in.limiters) >= maxLimiters {
			in.limiters = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(in.rate, in.burst)
		in.limiters[id] = l
	}
	return l.Allow()
}

func (in *ingest) handle(_ context.Context, m bus.Message) {
	id, kind, err := protocol.ParseDeviceTopic(m.Topic)
	if err != nil {
		in.reject(m, err)
		return
	}
	if !in.allow(id) {
		in.limited.Add(1)
		in.log.Warn("limit/"+id, "device messages over the rate limit dropped (counted in alicia_hub_rate_limited_messages_total)",
			"device", id, "limit_per_second", float64(in.rate))
		return
	}
	if len(m.Payload) == 0 {
		// An empty retained message clears a topic; nothing to apply.
		return
	}
	msg, err := protocol.Decode(m.Payload)
	if err != nil {
		in.reject(m, err)
		return
	}
	if msg.Type() != kind.Type() {
		in.reject(m, errKindMismatch{kind: kind, typ: msg.Type()})
		return
	}
	switch p := msg.Payload.(type) {
	case *protocol.Metrics, *protocol.CommandResult, *protocol.DeviceEvent:
		// The registry checks what it handles itself; these go elsewhere,
		// from an accepted device about itself only.
		if msg.Source != id {
			in.reject(m, fmt.Errorf("message on the topic of %s claims source %s", id, msg.Source))
			return
		}
		if !in.reg.Allowed(id) {
			in.reject(m, fmt.Errorf("%s: %w", id, registry.ErrUnknownDevice))
			return
		}
		switch p := p.(type) {
		case *protocol.Metrics:
			// A batch that cannot be queued is not acknowledged, so the
			// agent resends it.
			in.metrics.Submit(id, p) // counted when refused; the agent resends
		case *protocol.CommandResult:
			in.commands.HandleResult(id, p)
		case *protocol.DeviceEvent:
			in.input(id, p)
		}
		return
	}
	if err := in.reg.Handle(id, msg); err != nil {
		in.reject(m, err)
	}
}

func (in *ingest) reject(m bus.Message, err error) {
	in.rejected.Add(1)
	in.log.Warn("reject/"+m.Topic, "device message rejected", "topic", m.Topic, "bytes", len(m.Payload), "err", err)
}

type errKindMismatch struct {
	kind protocol.Kind
	typ  protocol.Type
}

func (e errKindMismatch) Error() string {
	return "message of type " + string(e.typ) + " on a " + string(e.kind) + " topic"
}
