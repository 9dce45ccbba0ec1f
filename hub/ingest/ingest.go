// Package ingest dispatches the messages devices publish on their own
// topics (alicia/v1/devices/<id>/<kind>): registrations, statuses and
// heartbeats to the registry, metric batches to the metrics ingester,
// command results to the command service, input events to the event
// stream and config statuses to the config sender; and integrations'
// metric batches (alicia/v1/integrations/<name>/metrics). Only the hub's root (hub/hubd) imports it.
//
// A message is checked before it reaches anyone: its topic, its size and
// JSON (internal/protocol), that its type fits its topic and, for what
// the registry does not check itself, that it comes from an accepted
// device about itself. Bad messages are counted (Stats) and logged with
// what is wrong and where, at most rejectLogBurst lines per topic
// every rejectLogEvery, and change nothing. Each device may send Config.Rate
// messages a second, with bursts of Config.Burst; the rest are dropped
// before they are decoded and counted (a metrics batch dropped so is not
// acknowledged: the agent sends it again). The Dispatcher keeps no state
// that outlives the process.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/throttle"
)

// Registry is what the dispatcher needs of the device registry.
type Registry interface {
	// Allowed reports whether device id is accepted (may use the bus).
	Allowed(id string) bool
	// Handle applies a registration, status or heartbeat of device id.
	Handle(id string, m *protocol.Message) error
}

// Metrics takes a device's validated batch; false means it was not
// queued (the agent resends it).
type Metrics interface {
	Submit(dev string, m *protocol.Metrics) bool
}

// Results takes a device's command result.
type Results interface {
	HandleResult(dev string, r *protocol.CommandResult)
}

// Config configures a Dispatcher. Registry, Metrics, Results and Input are
// required.
type Config struct {
	Registry Registry
	Metrics  Metrics
	Results  Results
	// Input receives a device's input events.
	Input func(device string, ev *protocol.DeviceEvent)
	// ConfigStatus, if set, receives what a device says of its config;
	// without it such messages are rejected.
	ConfigStatus func(device string, st *protocol.ConfigStatus)
	// JobRun, if set, receives the runs of a device's on-device jobs;
	// without it such messages are rejected.
	JobRun func(device string, r *protocol.JobRun)
	// IntegrationMetrics, if set, reports whether source (an integration's
	// username) is an account that may push metrics; without it
	// integrations' batches are rejected.
	IntegrationMetrics func(source string) bool
	// Rate is how many messages a second each device may send; default
	// DefaultRate. Burst is how many it may send at once; default twice
	// Rate.
	Rate  float64
	Burst int
	// Logger; nil discards.
	Logger *slog.Logger
}

// Dispatcher routes device messages. Create it with New; Handle is a
// bus.Handler. Its methods are safe for concurrent use.
type Dispatcher struct {
	cfg      Config
	log      *throttle.Log
	rejected atomic.Uint64
	limited  atomic.Uint64

	// mu guards the field below.
	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by device ID
}

// DefaultRate is the default per-device message rate limit: an agent
// sends a batch and a heartbeat every 10 s, and drains a backlog 64
// batches at a time (as fast as the hub acknowledges, which is well below
// this).
const DefaultRate = 200

const (
	// rejectLogEvery and rejectLogBurst bound the "rejected" log lines:
	// at most rejectLogBurst per topic every rejectLogEvery.
	rejectLogEvery = 10 * time.Second
	rejectLogBurst = 10
	// maxLimiters bounds the limiters kept: device IDs come from topics
	// the broker lets only enrolled devices publish on, so this is far
	// above any household; past it the limiters start afresh.
	maxLimiters = 100000
)

// New validates cfg and returns a Dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Registry == nil || cfg.Metrics == nil || cfg.Results == nil || cfg.Input == nil {
		return nil, errors.New("ingest: Registry, Metrics, Results and Input are required")
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("ingest: rate %v: must be positive", cfg.Rate)
	}
	if cfg.Burst <= 0 {
		cfg.Burst = int(2 * cfg.Rate)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{cfg: cfg, log: &throttle.Log{Logger: cfg.Logger, Every: rejectLogEvery, Burst: rejectLogBurst}}, nil
}

// Stats returns how many device messages were rejected (malformed,
// forged, from unknown devices) and how many were dropped by the rate
// limit.
func (in *Dispatcher) Stats() (rejected, limited uint64) {
	return in.rejected.Load(), in.limited.Load()
}

// Allow reports whether source id (a device, or an integration's
// username) may send one more message now; it is the limit the REST push
// of an integration's metrics shares with its MQTT messages.
func (in *Dispatcher) Allow(id string) bool { return in.allow(id) }

// allow reports whether device id may send one more message now.
func (in *Dispatcher) allow(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	l := in.limiters[id]
	if l == nil {
		if in.limiters == nil || len(in.limiters) >= maxLimiters {
			in.limiters = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(rate.Limit(in.cfg.Rate), in.cfg.Burst)
		in.limiters[id] = l
	}
	return l.Allow()
}

// Handle dispatches one message from a device topic.
func (in *Dispatcher) Handle(_ context.Context, m bus.Message) {
	id, kind, err := protocol.ParseDeviceTopic(m.Topic)
	if err != nil {
		in.reject(m, err)
		return
	}
	msg, ok := in.decode(m, id, "device", id)
	if !ok {
		return
	}
	if msg.Type() != kind.Type() {
		in.reject(m, errKindMismatch{kind: kind, typ: msg.Type()})
		return
	}
	switch p := msg.Payload.(type) {
	case *protocol.Metrics, *protocol.CommandResult, *protocol.DeviceEvent, *protocol.ConfigStatus, *protocol.JobRun:
		// The registry checks what it handles itself; these go elsewhere,
		// from an accepted device about itself only.
		if msg.Source != id {
			in.reject(m, fmt.Errorf("message on the topic of %s claims source %s", id, msg.Source))
			return
		}
		if !in.cfg.Registry.Allowed(id) {
			in.reject(m, fmt.Errorf("%s: %w", id, registry.ErrUnknownDevice))
			return
		}
		switch p := p.(type) {
		case *protocol.Metrics:
			// A batch that cannot be queued is not acknowledged, so the
			// agent resends it.
			in.cfg.Metrics.Submit(id, p) // counted when refused; the agent resends
		case *protocol.CommandResult:
			in.cfg.Results.HandleResult(id, p)
		case *protocol.DeviceEvent:
			in.cfg.Input(id, p)
		case *protocol.ConfigStatus:
			if in.cfg.ConfigStatus == nil {
				in.reject(m, errors.New("config status: this hub sends no configs"))
				return
			}
			in.cfg.ConfigStatus(id, p)
		case *protocol.JobRun:
			if in.cfg.JobRun == nil {
				in.reject(m, errors.New("job run: this hub gives devices no jobs"))
				return
			}
			in.cfg.JobRun(id, p)
		}
		return
	}
	if err := in.cfg.Registry.Handle(id, msg); err != nil {
		in.reject(m, err)
	}
}

// HandleIntegration dispatches one message from an integration's topic
// (alicia/v1/integrations/<name>/metrics): a metrics batch from an
// account of kind metrics, about itself (its envelope's source is the
// account's username), under the same rate limit as a device's, stored
// under that username. The broker lets an account publish only on its
// own topic; the checks here hold with any broker.
func (in *Dispatcher) HandleIntegration(_ context.Context, m bus.Message) {
	name, _, err := protocol.ParseIntegrationTopic(m.Topic)
	if err != nil {
		in.reject(m, err)
		return
	}
	src := integrations.SourceID(name)
	msg, ok := in.decode(m, src, "integration", name)
	if !ok {
		return
	}
	p, ok := msg.Payload.(*protocol.Metrics)
	if !ok {
		in.reject(m, errKindMismatch{kind: protocol.KindMetrics, typ: msg.Type()})
		return
	}
	if msg.Source != src {
		in.reject(m, fmt.Errorf("message on the topic of integration %s claims source %s (want %s)", name, msg.Source, src))
		return
	}
	if in.cfg.IntegrationMetrics == nil || !in.cfg.IntegrationMetrics(src) {
		in.reject(m, fmt.Errorf("%s is not an integration account of kind metrics", src))
		return
	}
	in.cfg.Metrics.Submit(src, p) // counted when refused; the integration resends
}

// decode applies source src's rate limit to m and decodes it; it reports
// false when m is dropped: over the limit (counted and logged, as a
// message of a what named name), empty (a retained message cleared:
// nothing to apply) or not a valid envelope (rejected).
func (in *Dispatcher) decode(m bus.Message, src, what, name string) (*protocol.Message, bool) {
	if !in.allow(src) {
		in.limited.Add(1)
		in.log.Warn("limit/"+src, what+" messages over the rate limit dropped (counted in alicia_hub_rate_limited_messages_total)",
			what, name, "limit_per_second", in.cfg.Rate)
		return nil, false
	}
	if len(m.Payload) == 0 {
		return nil, false
	}
	msg, err := protocol.Decode(m.Payload)
	if err != nil {
		in.reject(m, err)
		return nil, false
	}
	return msg, true
}

func (in *Dispatcher) reject(m bus.Message, err error) {
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
