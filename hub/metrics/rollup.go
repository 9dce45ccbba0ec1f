package metrics

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/store"
)

// Rollups: every sample also lands in a per-minute and a per-hour bucket
// (min, max, sum, count) that outlive the raw samples, so long ranges stay
// cheap to query and history survives the raw retention.
//
// Ingest marks (device, minute) dirty in the batch's transaction. Rollup
// recomputes each dirty minute from the raw samples once it is over (and
// again if late samples arrive, as after an outage), writes the minute
// buckets, marks the hour dirty, and recomputes dirty hours from the minute
// buckets. The marks are removed in the transaction that writes the
// buckets; a sample that lands meanwhile conflicts with it, and the
// transaction is retried.

// Rollup resolutions and their default retention.
const (
	Minute = time.Minute
	Hour   = time.Hour
	// DefaultMinuteRetention keeps per-minute buckets for 30 days.
	DefaultMinuteRetention = 30 * 24 * time.Hour
	// DefaultHourRetention keeps per-hour buckets for a year.
	DefaultHourRetention = 365 * 24 * time.Hour
	// rollupDelay is how long after its end a minute is rolled up, so the
	// usual late samples (a batch in flight) are in.
	rollupDelay = 10 * time.Second
)

// bucket is a rollup value: 32 bytes, min, max and sum as float64 and
// count as uint64, big-endian.
type bucket struct {
	min, max, sum float64
	count         uint64
}

func (b *bucket) add(v float64) {
	if b.count == 0 {
		b.min, b.max = v, v
	} else {
		b.min, b.max = math.Min(b.min, v), math.Max(b.max, v)
	}
	b.sum += v
	b.count++
}

func (b *bucket) merge(o bucket) {
	if o.count == 0 {
		return
	}
	if b.count == 0 {
		*b = o
		return
	}
	b.min, b.max = math.Min(b.min, o.min), math.Max(b.max, o.max)
	b.sum += o.sum
	b.count += o.count
}

func (b bucket) encode() []byte {
	var out [32]byte
	binary.BigEndian.PutUint64(out[0:], math.Float64bits(b.min))
	binary.BigEndian.PutUint64(out[8:], math.Float64bits(b.max))
	binary.BigEndian.PutUint64(out[16:], math.Float64bits(b.sum))
	binary.BigEndian.PutUint64(out[24:], b.count)
	return out[:]
}

func decodeBucket(key string, v []byte) (time.Time, bucket, error) {
	i := strings.LastIndexByte(key, '/')
	ms, err := strconv.ParseUint(key[i+1:], 16, 64)
	if err != nil || len(v) != 32 {
		return time.Time{}, bucket{}, fmt.Errorf("metrics: corrupt rollup %q (%d bytes)", key, len(v))
	}
	return time.UnixMilli(int64(ms)).UTC(), bucket{
		min:   math.Float64frombits(binary.BigEndian.Uint64(v[0:])),
		max:   math.Float64frombits(binary.BigEndian.Uint64(v[8:])),
		sum:   math.Float64frombits(binary.BigEndian.Uint64(v[16:])),
		count: binary.BigEndian.Uint64(v[24:]),
	}, nil
}

// markDirty records in tx that device dev has new samples in the minute of t.
func (s *Store) markDirty(tx *store.Tx, dev string, t time.Time) error {
	return tx.Put(s.dirtyMin, dev+"/"+msKey(t.Truncate(Minute)), nil)
}

// Rollup rolls up every dirty minute that ended at least rollupDelay
// before now, and every dirty hour whose minutes are rolled up. It returns
// how many minutes and hours it rolled up.
func (s *Store) Rollup(now time.Time) (minutes, hours int, err error) {
	type mark struct {
		key, dev string
		start    time.Time
	}
	collect := func(ks store.Keyspace, width time.Duration) ([]mark, error) {
		var ms []mark
		err := ks.Scan(func(key string, _ []byte) error {
			dev, ts, ok := strings.Cut(key, "/")
			n, perr := strconv.ParseUint(ts, 16, 64)
			if !ok || perr != nil {
				return fmt.Errorf("metrics: corrupt rollup mark %q", key)
			}
			start := time.UnixMilli(int64(n)).UTC()
			if !start.Add(width + rollupDelay).After(now) {
				ms = append(ms, mark{key, dev, start})
			}
			return nil
		})
		return ms, err
	}
	mins, err := collect(s.dirtyMin, Minute)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range mins {
		if err := s.rollupOne(m.key, m.dev, m.start, Minute); err != nil {
			return minutes, hours, err
		}
		minutes++
	}
	hrs, err := collect(s.dirtyHour, Hour)
	if err != nil {
		return minutes, hours, err
	}
	for _, m := range hrs {
		if err := s.rollupOne(m.key, m.dev, m.start, Hour); err != nil {
			return minutes, hours, err
		}
		hours++
	}
	return minutes, hours, nil
}

// rollupOne recomputes the buckets of every series of dev in [start,
// start+width) and removes the dirty mark, in one transaction: a sample
// committed meanwhile (which rewrites the mark) makes it conflict and
// retry. Minute buckets come from one scan of the minute's rows, hour
// buckets from each series' minute buckets.
func (s *Store) rollupOne(markKey, dev string, start time.Time, width time.Duration) error {
	s.mu.RLock()
	var sids []sid
	if d := s.devices[dev]; d != nil {
		for id := range d.series {
			sids = append(sids, id)
		}
	}
	s.mu.RUnlock()
	dirty := s.dirtyMin
	if width == Hour {
		dirty = s.dirtyHour
	}
	end := start.Add(width)
	err := s.db.Update(func(tx *store.Tx) error {
		if _, err := tx.Get(dirty, markKey); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil // done by someone else
			}
			return err
		}
		if width == Minute {
			if err := s.rollupMinute(tx, dev, start, end); err != nil {
				return err
			}
			if err := tx.Put(s.dirtyHour, dev+"/"+msKey(start.Truncate(Hour)), nil); err != nil {
				return err
			}
		} else {
			for _, id := range sids {
				prefix := dev + "/" + id.String() + "/"
				var b bucket
				err := tx.ScanRange(s.rollMin, prefix+msKey(start), prefix+msKey(end), func(k string, v []byte) error {
					_, mb, err := decodeBucket(k, v)
					if err != nil {
						return err
					}
					b.merge(mb)
					return nil
				})
				if err != nil {
					return err
				}
				if b.count > 0 {
					if err := tx.PutTTL(s.rollHour, prefix+msKey(start), b.encode(), s.hourRetention); err != nil {
						return err
					}
				}
			}
		}
		return tx.Delete(dirty, markKey)
	})
	if err != nil {
		return fmt.Errorf("metrics: roll up %s %s at %s: %w", dev, width, start.Format(time.RFC3339), err)
	}
	return nil
}

// rollupMinute writes in tx the minute bucket of every series of dev with
// samples in the rows of [start, end).
func (s *Store) rollupMinute(tx *store.Tx, dev string, start, end time.Time) error {
	buckets := map[sid]*bucket{}
	err := tx.ScanRange(s.rows, dev+"/"+msKey(start), dev+"/"+msKey(end), func(k string, v []byte) error {
		r, err := decodeRow(k, v)
		if err != nil {
			return err
		}
		for i := range r.len() {
			p := r.at(i)
			b := buckets[p.sid]
			if b == nil {
				b = &bucket{}
				buckets[p.sid] = b
			}
			b.add(p.v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id, b := range buckets {
		if err := tx.PutTTL(s.rollMin, dev+"/"+id.String()+"/"+msKey(start), b.encode(), s.minuteRetention); err != nil {
			return err
		}
	}
	return nil
}

// RunRollups rolls up every interval until ctx is done.
func (s *Store) RunRollups(ctx context.Context, interval time.Duration, now func() time.Time, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := s.Rollup(now()); err != nil && onErr != nil {
			onErr(err)
		}
	}
}
