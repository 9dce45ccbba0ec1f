package telemetry

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Telemetry: a collector appends one batch per interval to the durable
// outbox, whether or not the hub is reachable; while connected, a sender
// publishes the unacknowledged batches oldest first and the hub's acks
// (sent after its commit) delete them. See docs/metrics.md.

// Sender tuning.
const (
	// sendWindow bounds the batches published but not yet acknowledged.
	sendWindow = 64
	// ackTimeout is how long the sender waits for an ack before it resends
	// everything unacknowledged (the hub may have restarted and lost them
	// from its queue).
	ackTimeout = 15 * time.Second
)

// storedBatch is an outbox entry before compression: one collection.
type storedBatch struct {
	Time   time.Time        `json:"time"`
	Points []protocol.Point `json:"points"`
}

// encodeEntry returns b as deflated JSON (see appendDeflate).
func encodeEntry(b storedBatch) ([]byte, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return appendDeflate(nil, raw), nil
}

// entryDecoder decodes outbox entries, reusing its inflater (about 40 KiB)
// from one entry to the next. It is not safe for concurrent use.
type entryDecoder struct {
	src bytes.Reader
	fr  io.ReadCloser // a flate reader, made on first use
	raw bytes.Buffer
}

func (d *entryDecoder) decode(data []byte) (storedBatch, error) {
	var b storedBatch
	d.src.Reset(data)
	if d.fr == nil {
		d.fr = flate.NewReader(&d.src)
	} else if err := d.fr.(flate.Resetter).Reset(&d.src, nil); err != nil {
		return b, err
	}
	d.raw.Reset()
	if _, err := d.raw.ReadFrom(io.LimitReader(d.fr, protocol.MaxMessageSize*4)); err != nil {
		return b, err
	}
	err := json.Unmarshal(d.raw.Bytes(), &b)
	if d.raw.Cap() > 64<<10 {
		d.raw = bytes.Buffer{} // do not keep the buffer of an unusually large entry
	}
	return b, err
}

// Config configures a Telemetry.
type Config struct {
	// Every is how often a batch is collected. Required.
	Every time.Duration
	// Extra, if set, adds the hardware's samples to each batch; it is
	// called while the host collectors run.
	Extra func(context.Context) []protocol.Point
	// Custom, if set, adds the custom metrics of the device's scripts
	// (agent/textfile) to each batch, after the agent's own points: a
	// custom point whose name the agent's own points of the batch use is
	// left out, and custom points are the first left out of a batch that
	// is too large.
	Custom func() []protocol.Point
	// HubTime, if set, is told the envelope time of each ack of the hub
	// and when (the device's clock) the oldest batch it acknowledges was
	// published, so that the agent can compare its clock with the hub's.
	HubTime func(hub, sent time.Time)
	// Logger; nil discards.
	Logger *slog.Logger
}

// Telemetry is the agent's collector and sender, sharing one outbox.
type Telemetry struct {
	ob      *outbox.Outbox
	extra   func(context.Context) []protocol.Point
	custom  func() []protocol.Point
	hubTime func(hub, sent time.Time)
	log     *slog.Logger
	retimed chan struct{} // signalled by SetEvery

	// mu guards the fields below.
	mu       sync.Mutex
	sampler  *sample.Sampler
	every    time.Duration
	inflight map[uint64]time.Time // published, not acknowledged: when
	acked    chan struct{}        // signalled after each ack
}

// New returns the collector and sender of ob, sampling with s. It does no
// I/O; the caller keeps ob and closes it after Collect and Send returned.
func New(cfg Config, ob *outbox.Outbox, s *sample.Sampler) (*Telemetry, error) {
	if cfg.Every <= 0 {
		return nil, fmt.Errorf("telemetry: interval %s: want more than 0", cfg.Every)
	}
	if ob == nil || s == nil {
		return nil, errors.New("telemetry: an outbox and a sampler are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Telemetry{ob: ob, sampler: s, extra: cfg.Extra, custom: cfg.Custom, hubTime: cfg.HubTime, every: cfg.Every, log: log, retimed: make(chan struct{}, 1),
		inflight: map[uint64]time.Time{}, acked: make(chan struct{}, 1)}, nil
}

// SetEvery changes the collection interval at run time: the next
// collection is one new interval after the change.
func (t *Telemetry) SetEvery(d time.Duration) {
	if d <= 0 {
		return
	}
	t.mu.Lock()
	changed := t.every != d
	t.every = d
	t.mu.Unlock()
	if changed {
		select {
		case t.retimed <- struct{}{}:
		default:
		}
	}
}

// SetSampler replaces the host collectors from the next collection on.
func (t *Telemetry) SetSampler(s *sample.Sampler) {
	if s == nil {
		return
	}
	t.mu.Lock()
	t.sampler = s
	t.mu.Unlock()
}

// current returns the interval and the sampler in use.
func (t *Telemetry) current() (time.Duration, *sample.Sampler) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.every, t.sampler
}

// OpenOutbox opens the outbox at opts.Path, moving a corrupt one aside
// (its batches are lost; the new file is a new epoch). Errors logged go to
// opts.Logger.
func OpenOutbox(opts outbox.Options) (*outbox.Outbox, error) {
	ob, err := outbox.Open(opts)
	if !errors.Is(err, outbox.ErrCorrupt) {
		return ob, err
	}
	aside := fmt.Sprintf("%s.corrupt-%d", opts.Path, time.Now().Unix())
	if opts.Logger != nil {
		opts.Logger.Error("the outbox is damaged: moving it aside and starting a new one (its unsent samples are lost)", "path", opts.Path, "moved_to", aside, "err", err)
	}
	if rerr := os.Rename(opts.Path, aside); rerr != nil {
		return nil, fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
	}
	return outbox.Open(opts)
}

// Collect appends one batch per interval until ctx is done.
//
// The first collection has no CPU usage (a ratio needs two readings of
// /proc/stat), so the second follows after primeDelay instead of a whole
// interval: a device that just started shows its CPU usage at once.
//
// SetEvery restarts the ticker at the new interval.
func (t *Telemetry) Collect(ctx context.Context) {
	t.collectOnce(ctx)
	every, _ := t.current()
	select {
	case <-ctx.Done():
		return
	case <-time.After(min(primeDelay, every)):
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		t.collectOnce(ctx)
		for again := true; again; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				again = false
			case <-t.retimed:
				every, _ = t.current()
				tick.Reset(every)
				t.log.Info("sample interval changed", "interval", every)
			}
		}
	}
}

// primeDelay is the time between an agent's first two collections.
const primeDelay = time.Second

func (t *Telemetry) collectOnce(ctx context.Context) {
	now := time.Now()
	// The hardware's sensors (a DS18B20 takes 750 ms) are read while the
	// host collectors run.
	var extra []protocol.Point
	done := make(chan struct{})
	if t.extra != nil {
		go func() { defer close(done); extra = t.extra(ctx) }()
	} else {
		close(done)
	}
	_, sampler := t.current()
	points, rep := sampler.Collect(ctx)
	<-done
	points = append(points, extra...)
	if ctx.Err() != nil {
		return
	}
	st := t.ob.Stats()
	points = append(points,
		protocol.Point{Name: "agent_outbox_batches", Value: float64(st.Depth)},
		protocol.Point{Name: "agent_outbox_bytes", Value: float64(st.Bytes)},
		protocol.Point{Name: "agent_outbox_dropped_batches_total", Value: float64(st.Dropped)},
	)
	if t.custom != nil {
		points = appendCustom(points, t.custom(), t.log)
	}
	if len(points) > protocol.MaxPoints {
		t.log.Warn("more points than a batch may hold; the rest are left out", "points", len(points), "limit", protocol.MaxPoints)
		points = points[:protocol.MaxPoints]
	}
	// A batch must also fit in one message: leave points out until it does
	// (only a machine with very many disks or interfaces gets here).
	for len(points) > 1 {
		msg, err := protocol.Encode("d", now, &protocol.Metrics{Epoch: t.ob.Epoch(), Seq: 1, Dropped: st.Dropped, Time: now, Points: points})
		if err != nil || len(msg) <= protocol.MaxMessageSize-1024 {
			break
		}
		t.log.Warn("a batch is larger than a message may be; points are left out", "bytes", len(msg), "points", len(points))
		points = points[:len(points)*9/10]
	}
	data, err := encodeEntry(storedBatch{Time: now.UTC(), Points: points})
	if err == nil {
		_, err = t.ob.Append(data)
	}
	if err != nil {
		t.log.Error("samples not stored", "err", err)
		return
	}
	if rep.Dropped > 0 {
		t.log.Warn("more points than a batch may hold; the rest are left out", "left_out", rep.Dropped)
	}
	t.log.Debug("collected", "points", len(points), "took", time.Since(now))
}

// appendCustom appends the custom points whose names own does not use.
// (agent/textfile refuses the names the agent may send; this catches a name
// it sends that the list lacks.)
func appendCustom(own, custom []protocol.Point, log *slog.Logger) []protocol.Point {
	if len(custom) == 0 {
		return own
	}
	names := make(map[string]bool, len(own))
	for _, p := range own {
		names[p.Name] = true
	}
	for _, p := range custom {
		if names[p.Name] {
			log.Warn("custom metric left out: the agent sends this name itself", "name", p.Name)
			continue
		}
		own = append(own, p)
	}
	return own
}

// HandleAck applies an ack of the hub (a bus.Handler for the device's ack
// topic) to the outbox.
func (t *Telemetry) HandleAck(_ context.Context, m bus.Message) {
	msg, ack, err := protocol.DecodeAs[*protocol.MetricsAck](m.Payload)
	if err != nil {
		t.log.Warn("bad ack from the hub", "err", err)
		return
	}
	if ack.Epoch != t.ob.Epoch() {
		return // for a previous outbox
	}
	if t.hubTime != nil {
		var sent time.Time
		t.mu.Lock()
		for _, s := range ack.Seqs {
			if at, ok := t.inflight[s]; ok && (sent.IsZero() || at.Before(sent)) {
				sent = at
			}
		}
		t.mu.Unlock()
		if !sent.IsZero() {
			t.hubTime(msg.Time, sent)
		}
	}
	if err := t.ob.Ack(ack.Seqs...); err != nil {
		t.log.Error("apply the hub's ack", "err", err)
		return
	}
	t.mu.Lock()
	for _, s := range ack.Seqs {
		delete(t.inflight, s)
	}
	t.mu.Unlock()
	select {
	case t.acked <- struct{}{}:
	default:
	}
}

// resetInflight forgets what was published: it will be published again.
func (t *Telemetry) resetInflight() {
	t.mu.Lock()
	clear(t.inflight)
	t.mu.Unlock()
}

// inflightState returns how many batches await an ack and since when the
// oldest has waited.
func (t *Telemetry) inflightState() (n int, oldest time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, at := range t.inflight {
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	return len(t.inflight), oldest
}

// Send publishes the unacknowledged batches of device id on client until
// ctx is done: after every (re)connect and after an overdue ack it starts
// again from the oldest.
func (t *Telemetry) Send(ctx context.Context, client *bus.Client, id string) {
	var dec entryDecoder
	var after uint64
	connects := uint64(0)
	for ctx.Err() == nil {
		if !client.Connected() {
			if err := client.WaitConnected(ctx); err != nil {
				return
			}
		}
		if c := client.Stats().Connects; c != connects {
			connects, after = c, 0
			t.resetInflight()
		}
		n, oldest := t.inflightState()
		if n > 0 && time.Since(oldest) > ackTimeout {
			t.log.Info("no ack from the hub in time; sending the unacknowledged samples again", "batches", n)
			after = 0
			t.resetInflight()
			n = 0
		}
		var entries []outbox.Entry
		if n < sendWindow {
			// Read LastSeq before Pending: if nothing after `after` is
			// pending, everything up to that LastSeq is sent or gone, and
			// waiting for a seq above it cannot miss an append (waiting
			// on an older `after` would wake at once, and spin).
			last := t.ob.Stats().LastSeq
			var err error
			entries, err = t.ob.Pending(after, sendWindow-n)
			if err != nil {
				t.log.Error("read the outbox", "err", err)
			} else if len(entries) == 0 {
				after = max(after, last)
			}
		}
		if len(entries) == 0 {
			// With a full window, only an ack (or the timeout) helps.
			t.wait(ctx, after, n < sendWindow)
			continue
		}
		after = t.publish(ctx, client, id, &dec, entries)
	}
}

// publish sends entries in order and returns the seq to continue after: the
// last one, or 0 (start again from the oldest) when a publish failed.
func (t *Telemetry) publish(ctx context.Context, client *bus.Client, id string, dec *entryDecoder, entries []outbox.Entry) (after uint64) {
	topic := protocol.DeviceTopic(id, protocol.KindMetrics)
	dropped := t.ob.Stats().Dropped
	for _, e := range entries {
		after = e.Seq
		b, err := dec.decode(e.Data)
		if err != nil {
			// Cannot happen unless the entry was written by something
			// else; do not block the queue on it.
			t.log.Error("unreadable outbox entry dropped", "seq", e.Seq, "err", err)
			_ = t.ob.Ack(e.Seq)
			continue
		}
		msg, err := protocol.Encode(id, time.Now(), &protocol.Metrics{Epoch: t.ob.Epoch(), Seq: e.Seq, Dropped: dropped, Time: b.Time, Points: b.Points})
		if err != nil {
			t.log.Error("outbox entry is not a valid batch; dropped", "seq", e.Seq, "err", err)
			_ = t.ob.Ack(e.Seq)
			continue
		}
		t.mu.Lock()
		t.inflight[e.Seq] = time.Now()
		t.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = client.Publish(pctx, bus.Message{Topic: topic, Payload: msg, QoS: 1})
		cancel()
		if err != nil {
			// Lost connection or a slow broker: start again from the
			// oldest once connected.
			t.log.Debug("publish samples", "seq", e.Seq, "err", err)
			t.resetInflight()
			return 0
		}
	}
	return after
}

// wait sleeps until an ack, a new batch (if newBatch), or a second passes.
func (t *Telemetry) wait(ctx context.Context, after uint64, newBatch bool) {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	var appended <-chan struct{}
	if newBatch {
		appended = t.ob.Wait(after)
	}
	select {
	case <-ctx.Done():
	case <-appended:
	case <-t.acked:
	case <-timer.C:
	}
}
