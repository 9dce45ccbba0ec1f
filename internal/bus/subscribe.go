package bus

import (
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// subscription is one registered filter with its queue and handler.
type subscription struct {
	c      *Client
	filter string
	qos    byte
	h      Handler
	queue  chan Message
	quit   chan struct{} // closed when unregistered

	gen     uint64 // session.gen it was last subscribed on; guarded by Client.mu
	removed atomic.Bool

	lastDropLog     atomic.Int64 // unix nanoseconds of the last "dropped" log
	droppedSinceLog atomic.Uint64
}

// Subscribe registers h for messages matching filter, at most qos. The
// registration lasts for the life of the Client: Run makes it on every
// connect and reconnect, before OnConnect. Subscribe may be called before or
// while Run runs (not after it returned); a filter may be registered once.
//
// When connected, Subscribe also subscribes at once and waits for the SUBACK
// (at most ConnectTimeout). It returns an error, and undoes the registration,
// when the broker refuses the filter (SUBACK 0x80) or does not answer in
// time. If the connection is lost meanwhile it returns nil: the subscription
// is made on reconnect.
//
// Overlapping filters each receive a matching message. Subscribe is safe for
// concurrent use.
func (c *Client) Subscribe(filter string, qos byte, h Handler) error {
	if err := validateTopic(filter, true); err != nil {
		return fmt.Errorf("bus: subscribe: %w", err)
	}
	if qos > 2 {
		return fmt.Errorf("bus: subscribe %q: qos %d: must be 0, 1 or 2", filter, qos)
	}
	if h == nil {
		return fmt.Errorf("bus: subscribe %q: nil handler", filter)
	}
	sub := &subscription{
		c:      c,
		filter: filter,
		qos:    qos,
		h:      h,
		queue:  make(chan Message, c.cfg.HandlerQueue),
		quit:   make(chan struct{}),
	}

	c.mu.Lock()
	if c.state == stateStopped {
		c.mu.Unlock()
		return fmt.Errorf("bus: subscribe %q: %w", filter, errClosed)
	}
	if _, dup := c.subs[filter]; dup {
		c.mu.Unlock()
		return fmt.Errorf("bus: subscribe %q: already subscribed", filter)
	}
	c.subs[filter] = sub
	if c.state == stateRunning {
		c.startWorkerLocked(sub)
	}
	s := c.sess
	if s != nil {
		sub.gen = s.gen
	}
	c.mu.Unlock()
	if s == nil {
		return nil // Run subscribes on connect
	}

	tok := s.pc.Subscribe(filter, qos, sub.deliver)
	timer := time.NewTimer(c.cfg.ConnectTimeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
	case <-s.lost:
		return nil
	case <-timer.C:
		c.unregister(sub)
		return fmt.Errorf("bus: subscribe %q: no SUBACK within %s", filter, c.cfg.ConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		// paho fails a SUBSCRIBE only for connection trouble (lost, not
		// connected, write timeout): the next connect subscribes it.
		c.log.Debug("subscribe deferred to reconnect", "filter", filter, "err", err)
		return nil
	}
	if err := subackError(filter, tok); err != nil {
		c.unregister(sub)
		return err
	}
	return nil
}

func (c *Client) subscriptionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}

func (c *Client) unregister(sub *subscription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs[sub.filter] == sub {
		delete(c.subs, sub.filter)
	}
	if sub.removed.CompareAndSwap(false, true) {
		close(sub.quit)
	}
}

// startWorkerLocked starts the goroutine that drains sub's queue. c.mu must be
// held and c.state be stateRunning.
func (c *Client) startWorkerLocked(sub *subscription) {
	ctx := c.runCtx
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.quit:
				return
			case m := <-sub.queue:
				if ctx.Err() != nil {
					return
				}
				sub.h(ctx, m)
			}
		}
	}()
}

// deliver is the paho route callback. It runs on paho's router goroutine and
// must never block: it enqueues or drops. A drop is logged at most once per
// second per subscription, with the number dropped since the previous log.
func (sub *subscription) deliver(_ mqtt.Client, pm mqtt.Message) {
	if sub.removed.Load() {
		return
	}
	m := Message{Topic: pm.Topic(), Payload: pm.Payload(), QoS: pm.Qos(), Retained: pm.Retained()}
	select {
	case sub.queue <- m:
		return
	default:
	}
	sub.c.dropped.Add(1)
	sub.droppedSinceLog.Add(1)
	now := time.Now().UnixNano()
	last := sub.lastDropLog.Load()
	if now-last >= int64(time.Second) && sub.lastDropLog.CompareAndSwap(last, now) {
		sub.c.log.Warn("handler queue full, message dropped",
			"filter", sub.filter, "topic", m.Topic, "queue_len", cap(sub.queue),
			"dropped_since_last_log", sub.droppedSinceLog.Swap(0))
	}
}
