package metrics

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// IngesterConfig configures an Ingester.
type IngesterConfig struct {
	// Ack publishes an acknowledgement to a device, after the commit.
	Ack func(ctx context.Context, device string, ack *protocol.MetricsAck) error
	// QueueLen bounds the batches waiting for a commit; when it is full,
	// Submit refuses (the agent resends, as for a lost ack). Default 1024.
	QueueLen int
	// MaxGroupPoints bounds the points committed in one transaction.
	// Default 20000.
	MaxGroupPoints int
	Logger         *slog.Logger
}

// Ingester commits batches from the bus in groups (one synced transaction
// per group) and then acknowledges them. Create it with NewIngester and
// call Run once.
type Ingester struct {
	store *Store
	cfg   IngesterConfig
	queue chan queued
	log   *slog.Logger

	stats IngestStats
}

// queued is a batch waiting for a commit; done, if set, is told the
// outcome (and the batch is not acknowledged on the bus).
type queued struct {
	Batch
	done chan error
}

// ErrBusy refuses a batch when the ingest queue is full.
var ErrBusy = errors.New("metrics: the ingest queue is full, retry later")

// IngestStats are the Ingester's counters.
type IngestStats struct {
	Batches    atomic.Uint64 // committed new batches
	Points     atomic.Uint64 // points of new batches
	Duplicates atomic.Uint64 // batches already stored
	Refused    atomic.Uint64 // batches refused because the queue was full
	Failed     atomic.Uint64 // batches whose commit failed (not acknowledged)
	Commits    atomic.Uint64 // transactions
}

// NewIngester returns an Ingester for s.
func NewIngester(s *Store, cfg IngesterConfig) *Ingester {
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	if cfg.MaxGroupPoints <= 0 {
		cfg.MaxGroupPoints = 20000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Ingester{store: s, cfg: cfg, queue: make(chan queued, cfg.QueueLen), log: cfg.Logger}
}

// Stats returns the Ingester's counters.
func (in *Ingester) Stats() *IngestStats { return &in.stats }

// QueueDepth is the number of batches waiting for a commit.
func (in *Ingester) QueueDepth() int { return len(in.queue) }

// Submit queues a validated batch of device dev. It reports false when the
// queue is full: the batch is not acknowledged and its agent resends it.
func (in *Ingester) Submit(dev string, m *protocol.Metrics) bool {
	select {
	case in.queue <- queued{Batch: Batch{Device: dev, Metrics: m}}:
		return true
	default:
		in.stats.Refused.Add(1)
		return false
	}
}

// Store queues a validated batch of source dev and waits until it is
// committed (or found already stored: nil too), for a caller that answers
// only once its batch is on disk (an integration's REST push). It is not
// acknowledged on the bus. ErrBusy: the queue is full.
func (in *Ingester) Store(ctx context.Context, dev string, m *protocol.Metrics) error {
	done := make(chan error, 1)
	select {
	case in.queue <- queued{Batch: Batch{Device: dev, Metrics: m}, done: done}:
	default:
		in.stats.Refused.Add(1)
		return ErrBusy
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run commits and acknowledges queued batches until ctx is done.
func (in *Ingester) Run(ctx context.Context) error {
	var (
		items []queued
		group []Batch
	)
	lastErr := time.Time{}
	for {
		items, group = items[:0], group[:0]
		select {
		case <-ctx.Done():
			return nil
		case b := <-in.queue:
			items, group = append(items, b), append(group, b.Batch)
		}
		// Take what else is waiting, without waiting for more: under load
		// groups grow by themselves, and a lone batch is not delayed.
		points := len(group[0].Metrics.Points)
	drain:
		for points < in.cfg.MaxGroupPoints {
			select {
			case b := <-in.queue:
				items, group = append(items, b), append(group, b.Batch)
				points += len(b.Metrics.Points)
			default:
				break drain
			}
		}
		fresh, err := in.store.Ingest(group)
		if err != nil {
			in.stats.Failed.Add(uint64(len(group) - len(fresh)))
			// Not acknowledged: the agents keep these batches and resend.
			if time.Since(lastErr) > 10*time.Second {
				in.log.Error("metrics not stored (the agents keep them and resend)", "batches", len(group)-len(fresh), "err", err)
				lastErr = time.Now()
			}
		}
		// Those committed (all, or those before a failure) are counted,
		// then their Store callers answered, then acknowledged: a caller
		// woken sees the counters of its batch.
		group = group[:len(fresh)]
		if len(group) > 0 {
			in.stats.Commits.Add(1)
		}
		for i, b := range group {
			if fresh[i] {
				in.stats.Batches.Add(1)
				in.stats.Points.Add(uint64(len(b.Metrics.Points)))
			} else {
				in.stats.Duplicates.Add(1)
			}
		}
		for i, it := range items {
			if it.done == nil {
				continue
			}
			if i < len(fresh) {
				it.done <- nil
			} else {
				it.done <- err
			}
		}
		in.ack(ctx, items[:len(group)])
	}
}

// ack publishes the group's acknowledgements: one per device and epoch
// (split at protocol.MaxAckSeqs), except for the batches whose caller
// waits in Store.
func (in *Ingester) ack(ctx context.Context, group []queued) {
	type key struct{ dev, epoch string }
	seqs := map[key][]uint64{}
	var order []key
	for _, b := range group {
		if b.done != nil {
			continue
		}
		k := key{b.Device, b.Metrics.Epoch}
		if _, ok := seqs[k]; !ok {
			order = append(order, k)
		}
		seqs[k] = append(seqs[k], b.Metrics.Seq)
	}
	for _, k := range order {
		for c := range slices.Chunk(seqs[k], protocol.MaxAckSeqs) {
			in.publish(ctx, k.dev, &protocol.MetricsAck{Epoch: k.epoch, Seqs: c})
		}
	}
}

func (in *Ingester) publish(ctx context.Context, dev string, a *protocol.MetricsAck) {
	if err := in.cfg.Ack(ctx, dev, a); err != nil && ctx.Err() == nil {
		// The batches are stored; the agent resends and is acknowledged
		// as for a duplicate.
		in.log.Debug("metrics ack not sent", "device", dev, "err", err)
	}
}
