package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Sender tuning.
const (
	// sendWindow bounds the runs sent but not yet acknowledged.
	sendWindow = 16
	// ackTimeout is how long the sender waits for an ack before it sends
	// everything unacknowledged again.
	ackTimeout = 15 * time.Second
)

// Outbox defaults: runs are small (a few hundred bytes) and rare; a month
// of them fits.
const (
	OutboxMaxBytes = 4 << 20
	OutboxMaxAge   = 31 * 24 * time.Hour
)

// OpenOutbox opens the job outbox at opts.Path (zero bounds: OutboxMaxBytes
// and OutboxMaxAge), moving a corrupt one aside (its unsent runs are lost,
// and said so; the new file is a new epoch).
func OpenOutbox(opts outbox.Options) (*outbox.Outbox, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = OutboxMaxBytes
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = OutboxMaxAge
	}
	ob, err := outbox.Open(opts)
	if !errors.Is(err, outbox.ErrCorrupt) {
		return ob, err
	}
	aside := fmt.Sprintf("%s.corrupt-%d", opts.Path, time.Now().Unix())
	if opts.Logger != nil {
		opts.Logger.Error("the job outbox is damaged: moving it aside and starting a new one (its unsent job runs are lost)", "path", opts.Path, "moved_to", aside, "err", err)
	}
	if rerr := os.Rename(opts.Path, aside); rerr != nil {
		return nil, fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
	}
	return outbox.Open(opts)
}

// Publisher is the bus as the sender uses it (*bus.Client).
type Publisher interface {
	Connected() bool
	WaitConnected(ctx context.Context) error
	// Stats' Connects counts connections: a new one resends everything.
	Stats() bus.Stats
	Publish(ctx context.Context, m bus.Message) error
}

// Send publishes the runs in the outbox, oldest first, as device id's
// JobRuns (QoS 1) on client until ctx is done: after every (re)connect and
// when no ack came for ackTimeout it starts again from the oldest.
// HandleAck deletes them.
func (r *Runner) Send(ctx context.Context, client Publisher, id string) {
	topic := protocol.DeviceTopic(id, protocol.KindJobRun)
	var after, connects uint64
	for ctx.Err() == nil {
		if !client.Connected() {
			if err := client.WaitConnected(ctx); err != nil {
				return
			}
		}
		if c := client.Stats().Connects; c != connects {
			connects, after = c, 0
			r.resetInflight()
		}
		n, oldest := r.inflightState()
		if n > 0 && r.cfg.Now().Sub(oldest) > ackTimeout {
			r.log.Info("no ack of job runs from the hub in time; sending them again", "runs", n)
			after, n = 0, 0
			r.resetInflight()
		}
		var entries []outbox.Entry
		if n < sendWindow {
			// Read under mu: a run the state file still holds is not sent
			// (see flushLocked). LastSeq before Pending, as telemetry does.
			r.mu.Lock()
			last := r.ob.Stats().LastSeq
			var err error
			entries, err = r.ob.Pending(after, sendWindow-n)
			r.mu.Unlock()
			if err != nil {
				r.log.Error("read the job outbox", "err", err)
			} else if len(entries) == 0 {
				after = max(after, last)
			}
		}
		if len(entries) == 0 {
			r.waitSend(ctx, after, n < sendWindow)
			continue
		}
		after = r.publish(ctx, client, id, topic, entries)
	}
}

// publish sends entries in order and returns the seq to continue after:
// the last one, or 0 when a publish failed.
func (r *Runner) publish(ctx context.Context, client Publisher, id, topic string, entries []outbox.Entry) (after uint64) {
	for _, e := range entries {
		after = e.Seq
		var jr protocol.JobRun
		err := json.Unmarshal(e.Data, &jr)
		var msg []byte
		if err == nil {
			jr.Epoch, jr.Seq = r.ob.Epoch(), e.Seq
			msg, err = protocol.Encode(id, r.cfg.Now(), &jr)
		}
		if err != nil {
			// Not a run this agent can send: do not block the queue on it.
			r.log.Error("job outbox entry is not a valid run; dropped", "seq", e.Seq, "err", err)
			_ = r.ob.Ack(e.Seq)
			continue
		}
		r.mu.Lock()
		r.inflight[e.Seq] = r.cfg.Now()
		r.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = client.Publish(pctx, bus.Message{Topic: topic, Payload: msg, QoS: 1})
		cancel()
		if err != nil {
			r.log.Debug("publish a job run", "seq", e.Seq, "err", err)
			r.resetInflight()
			return 0
		}
	}
	return after
}

func (r *Runner) resetInflight() {
	r.mu.Lock()
	clear(r.inflight)
	r.mu.Unlock()
}

func (r *Runner) inflightState() (n int, oldest time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.inflight {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	return len(r.inflight), oldest
}

// waitSend sleeps until an ack, a new run (if newRun), or a second passes.
func (r *Runner) waitSend(ctx context.Context, after uint64, newRun bool) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var appended <-chan struct{}
	if newRun {
		appended = r.ob.Wait(after)
	}
	select {
	case <-ctx.Done():
	case <-appended:
	case <-r.acked:
	case <-t.C:
	}
}

// HandleAck applies the hub's JobAck (a bus.Handler for the device's
// job_ack topic): the runs it names are deleted from the outbox. Its
// envelope time is compared with the device's clock (HubTime).
func (r *Runner) HandleAck(_ context.Context, m bus.Message) {
	msg, ack, err := protocol.DecodeAs[*protocol.JobAck](m.Payload)
	if err != nil {
		r.log.Warn("bad job ack from the hub", "err", err)
		return
	}
	if ack.Epoch != r.ob.Epoch() {
		return // for a previous outbox
	}
	var sent time.Time
	r.mu.Lock()
	for _, s := range ack.Seqs {
		if at, ok := r.inflight[s]; ok && (sent.IsZero() || at.Before(sent)) {
			sent = at
		}
	}
	r.mu.Unlock()
	if !sent.IsZero() {
		r.clock.HubTime(msg.Time, sent)
	}
	if err := r.ob.Ack(ack.Seqs...); err != nil {
		r.log.Error("apply the hub's job ack", "err", err)
		return
	}
	r.mu.Lock()
	for _, s := range ack.Seqs {
		delete(r.inflight, s)
	}
	r.mu.Unlock()
	select {
	case r.acked <- struct{}{}:
	default:
	}
}
