// Package events is the hub's event stream: device joined, left and
// changed state, alert fired and resolved. Components publish into a Bus;
// the REST API streams it as Server-Sent Events (GET /api/v1/events) and the
// hub forwards it to MQTT, so automations and the dashboard never poll.
//
// The Bus keeps the last events in a ring so that a client that reconnects
// with Last-Event-ID misses nothing that is still in the ring; a client too
// slow to keep up is disconnected (and may reconnect the same way) rather
// than slowing the hub down.
package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Event types.
const (
	DeviceJoined  = "device_joined"  // enrolled, paired (pending) or approved
	DeviceLeft    = "device_left"    // deleted
	DeviceState   = "device_state"   // status changed (online, offline, revoked, …)
	AlertFired    = "alert_fired"    // an alert rule fired
	AlertResolved = "alert_resolved" // an alert resolved
	DeviceInput   = "device_input"   // a device's input line changed (a protocol.DeviceEvent)
	Command       = "command"        // a remote command finished (its audit record)
	Rollout       = "rollout"        // a configuration rollout moved on (hub/rollout)
	JobRun        = "job_run"        // a scheduled job's run started or ended (hub/scheduler)
	// Reset is sent to a client whose Last-Event-ID is older than the
	// ring: it missed events and should re-read the current state.
	Reset = "reset"
)

// Types lists the event types a client may filter on.
var Types = []string{DeviceJoined, DeviceLeft, DeviceState, AlertFired, AlertResolved, DeviceInput, Command, Rollout, JobRun}

// Event is one event. ID increases by one per event for the hub's
// lifetime; after a hub restart IDs start again at 1 and clients get a
// Reset (their Last-Event-ID is then unknown).
type Event struct {
	ID     uint64          `json:"id"`
	Type   string          `json:"type"`
	Time   time.Time       `json:"time"`
	Device string          `json:"device,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// DefaultRing is the number of past events kept for replay.
const DefaultRing = 1024

// subBuffer is how many events a subscriber may lag behind before it is
// cut off.
const subBuffer = 256

// Bus fans events out to subscribers. The zero value is not usable; use
// New. It is safe for concurrent use.
type Bus struct {
	now func() time.Time

	mu   sync.Mutex
	next uint64
	ring []Event // oldest first, at most cap
	size int
	subs map[*Sub]struct{}
}

// New returns a Bus that keeps ring past events (DefaultRing if ≤ 0).
func New(ring int, now func() time.Time) *Bus {
	if ring <= 0 {
		ring = DefaultRing
	}
	if now == nil {
		now = time.Now
	}
	return &Bus{now: now, next: 1, size: ring, subs: map[*Sub]struct{}{}}
}

// Publish records an event and delivers it to every subscriber. data is
// encoded as JSON (nil for none). It never blocks: a subscriber whose
// buffer is full is closed with Lagged set.
func (b *Bus) Publish(typ, device string, data any) Event {
	var raw json.RawMessage
	if data != nil {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			raw, _ = json.Marshal(map[string]string{"error": "unencodable event data: " + err.Error()})
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := Event{ID: b.next, Type: typ, Time: b.now().UTC(), Device: device, Data: raw}
	b.next++
	if len(b.ring) == b.size {
		copy(b.ring, b.ring[1:])
		b.ring = b.ring[:b.size-1]
	}
	b.ring = append(b.ring, e)
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			s.lagged = true
			delete(b.subs, s)
			close(s.ch)
		}
	}
	return e
}

// Sub is a subscription. Read C until it is closed; then Lagged tells
// whether it was cut off for being too slow.
type Sub struct {
	C      <-chan Event
	ch     chan Event
	bus    *Bus
	lagged bool
}

// Lagged reports whether the subscription was closed because it fell
// behind. Valid once C is closed.
func (s *Sub) Lagged() bool {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.lagged
}

// Close ends the subscription; C is closed.
func (s *Sub) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Subscribe starts a subscription. With after > 0 (a client's
// Last-Event-ID) it first returns the events after it that are still in
// the ring; if some were already dropped from it (or after is from before
// a hub restart), replay starts with a Reset event.
func (b *Bus) Subscribe(after uint64) (replay []Event, sub *Sub) {
	ch := make(chan Event, subBuffer)
	s := &Sub{C: ch, ch: ch, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if after > 0 {
		oldest := b.next
		if len(b.ring) > 0 {
			oldest = b.ring[0].ID
		}
		if after >= b.next || after+1 < oldest {
			replay = append(replay, Event{Type: Reset, Time: b.now().UTC()})
		}
		for _, e := range b.ring {
			if e.ID > after || after >= b.next {
				replay = append(replay, e)
			}
		}
	}
	b.subs[s] = struct{}{}
	return replay, s
}

// Last returns up to n of the most recent events, oldest first.
func (b *Bus) Last(n int) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > len(b.ring) {
		n = len(b.ring)
	}
	return append([]Event(nil), b.ring[len(b.ring)-n:]...)
}

// Forward passes each new event to send, in order, until ctx is done (the
// hub publishes its stream on MQTT this way). An event send fails for is
// not retried: the stream's ring and Last-Event-ID are the way to catch
// up. If Forward falls behind, it logs and goes on with new events.
func (b *Bus) Forward(ctx context.Context, send func(context.Context, Event) error, log *slog.Logger) {
	_, sub := b.Subscribe(0)
	defer func() { sub.Close() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				log.Warn("event forwarding fell behind; resuming with new events")
				_, sub = b.Subscribe(0)
				continue
			}
			if err := send(ctx, e); err != nil && ctx.Err() == nil {
				log.Debug("event not forwarded", "event", e.Type, "id", e.ID, "err", err)
			}
		}
	}
}
