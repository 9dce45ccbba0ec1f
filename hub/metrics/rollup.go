package metrics

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
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
// buckets. A mark is removed only if no sample landed while its buckets
// were computed (see rollupOne).

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
// how many minutes and hours it rolled up. A rollup that fails is counted
// (Stats().RollupFailures), keeps its mark to be retried at the next pass,
// and does not stop the others: one device's trouble never stops the
// history of the rest. The error joins the failures' errors.
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
	var errs []error
	fail := func(err error) {
		s.stats.RollupFailures.Add(1)
		if len(errs) < maxRollupErrors {
			errs = append(errs, err)
		}
	}
	mins, err := collect(s.dirtyMin, Minute)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range mins {
		if err := s.rollupOne(m.key, m.dev, m.start, Minute); err != nil {
			fail(err)
			continue
		}
		minutes++
		s.stats.MinutesRolled.Add(1)
	}
	hrs, err := collect(s.dirtyHour, Hour)
	if err != nil {
		return minutes, hours, errors.Join(append(errs, err)...)
	}
	for _, m := range hrs {
		if err := s.rollupOne(m.key, m.dev, m.start, Hour); err != nil {
			fail(err)
			continue
		}
		hours++
		s.stats.HoursRolled.Add(1)
	}
	return minutes, hours, errors.Join(errs...)
}

// maxRollupErrors bounds the errors one Rollup pass returns (they are all
// counted).
const maxRollupErrors = 5

// rollupChunk bounds the buckets written per transaction: one device's
// minute may hold as many buckets as the device has series.
const rollupChunk = 1000

// rollupOne recomputes the buckets of every series of dev in [start,
// start+width) and removes the dirty mark. Minute buckets come from one
// scan of the minute's rows, hour buckets from each series' minute
// buckets. The buckets are written in transactions of at most rollupChunk,
// so that no device's series count can make a transaction too big. A
// sample committed meanwhile must not be missed, so the mark is first
// claimed (its value set to a random token) and removed at the end only if
// it still holds the token: ingest rewrites it empty with each new sample,
// and then the mark stays for the next pass, which recomputes the buckets
// from all the rows (buckets are recomputed whole, so redoing one is
// harmless).
func (s *Store) rollupOne(markKey, dev string, start time.Time, width time.Duration) error {
	wrap := func(err error) error {
		return fmt.Errorf("metrics: roll up %s %s at %s: %w", dev, width, start.Format(time.RFC3339), err)
	}
	dirty, dst, retention := s.dirtyMin, s.rollMin, s.minuteRetention
	if width == Hour {
		dirty, dst, retention = s.dirtyHour, s.rollHour, s.hourRetention
	}
	token, claimed, err := s.claimMark(dirty, markKey)
	if err != nil || !claimed {
		if err != nil {
			return wrap(err)
		}
		return nil // done by someone else
	}
	if testHookClaimed != nil {
		testHookClaimed()
	}
	var puts []bucketPut
	err = s.db.View(func(tx *store.Tx) error {
		var err error
		if width == Minute {
			puts, err = s.minuteBuckets(tx, dev, start, start.Add(width))
		} else {
			puts, err = s.hourBuckets(tx, dev, start, start.Add(width))
		}
		return err
	})
	if err != nil {
		return wrap(err)
	}
	for c := range slices.Chunk(puts, rollupChunk) {
		err := s.db.Update(func(tx *store.Tx) error {
			for _, p := range c {
				if err := tx.PutTTL(dst, p.key, p.b.encode(), retention); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return wrap(err)
		}
	}
	if err := s.releaseMark(dirty, markKey, token, dev, start, width); err != nil {
		return wrap(err)
	}
	return nil
}

// bucketPut is a rollup bucket to write at its key.
type bucketPut struct {
	key string
	b   bucket
}

// claimMark sets the dirty mark key to a random token, unless it is gone;
// it reports whether it claimed it.
func (s *Store) claimMark(dirty store.Keyspace, key string) (token []byte, claimed bool, err error) {
	token = make([]byte, 8)
	rand.Read(token)
	err = s.db.Update(func(tx *store.Tx) error {
		claimed = false
		if _, err := tx.Get(dirty, key); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		}
		claimed = true
		return tx.Put(dirty, key, token)
	})
	return token, claimed, err
}

// releaseMark marks the hour of a rolled-up minute dirty, and removes the
// mark key if it still holds token: a sample that landed meanwhile
// rewrote it, and then the mark stays for the next pass.
func (s *Store) releaseMark(dirty store.Keyspace, key string, token []byte, dev string, start time.Time, width time.Duration) error {
	return s.db.Update(func(tx *store.Tx) error {
		if width == Minute {
			if err := tx.Put(s.dirtyHour, dev+"/"+msKey(start.Truncate(Hour)), nil); err != nil {
				return err
			}
		}
		v, err := tx.Get(dirty, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(v, token) {
			return nil // new samples: the next pass does it again
		}
		return tx.Delete(dirty, key)
	})
}

// hourBuckets returns the hour bucket of every series of dev in the
// catalog, merged from its minute buckets of [start, end).
func (s *Store) hourBuckets(tx *store.Tx, dev string, start, end time.Time) ([]bucketPut, error) {
	var sids []sid
	if d := s.lookup(dev); d != nil {
		d.mu.Lock()
		sids = slices.Collect(maps.Keys(d.series))
		d.mu.Unlock()
	}
	var puts []bucketPut
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
			return nil, err
		}
		if b.count > 0 {
			puts = append(puts, bucketPut{prefix + msKey(start), b})
		}
	}
	return puts, nil
}

// testHookClaimed, if set by a test, runs after rollupOne claimed a mark.
var testHookClaimed func()

// minuteBuckets returns the minute bucket of every series of dev with
// samples in the rows of [start, end).
func (s *Store) minuteBuckets(tx *store.Tx, dev string, start, end time.Time) ([]bucketPut, error) {
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
		return nil, err
	}
	puts := make([]bucketPut, 0, len(buckets))
	for id, b := range buckets {
		puts = append(puts, bucketPut{dev + "/" + id.String() + "/" + msKey(start), *b})
	}
	return puts, nil
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
