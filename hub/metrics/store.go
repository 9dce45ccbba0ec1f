package metrics

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

// DefaultRetention is how long raw samples are kept.
const DefaultRetention = 7 * 24 * time.Hour

// MaxQueryPoints bounds the points of one series a query returns; ask for
// a step to get more time in fewer points.
const MaxQueryPoints = 20000

// Config configures a Store.
type Config struct {
	// Retention of raw samples and dedup marks. Default DefaultRetention.
	Retention time.Duration
	// MinuteRetention and HourRetention keep the rollups. Defaults
	// DefaultMinuteRetention and DefaultHourRetention.
	MinuteRetention, HourRetention time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store holds device samples. It is safe for concurrent use.
type Store struct {
	db        *store.DB
	series    store.Keyspace
	raw       store.Keyspace
	seen      store.Keyspace
	drop      store.Keyspace
	rollMin   store.Keyspace
	rollHour  store.Keyspace
	dirtyMin  store.Keyspace
	dirtyHour store.Keyspace
	retention time.Duration

	minuteRetention, hourRetention time.Duration
	now                            func() time.Time

	// budget is the most entries (points and marks) put in one
	// transaction; halved when badger finds a transaction too big.
	budget atomic.Int64

	mu      sync.RWMutex
	devices map[string]*device // by device ID
}

// device is the in-memory catalog and latest values of one device.
type device struct {
	series  map[string]*series // by sid
	dropped Dropped
}

type series struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// latest sample, zero Time if none
	t time.Time
	v float64
}

// Dropped is the latest outbox drop count an agent reported.
type Dropped struct {
	Epoch   string `json:"epoch"`
	Dropped uint64 `json:"dropped"`
}

// initialBudget is the first guess at how many entries fit in a
// transaction (with the store's 8 MiB memtables, about 4000 do).
const initialBudget = 3000

// Open loads the series catalog and the latest values from db.
func Open(db *store.DB, cfg Config) (*Store, error) {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinuteRetention <= 0 {
		cfg.MinuteRetention = DefaultMinuteRetention
	}
	if cfg.HourRetention <= 0 {
		cfg.HourRetention = DefaultHourRetention
	}
	s := &Store{db: db, series: db.Keyspace("mseries"), raw: db.Keyspace("mraw"), seen: db.Keyspace("mseen"), drop: db.Keyspace("mdrop"),
		rollMin: db.Keyspace("mroll1m"), rollHour: db.Keyspace("mroll1h"), dirtyMin: db.Keyspace("mdirty1m"), dirtyHour: db.Keyspace("mdirty1h"),
		retention: cfg.Retention, minuteRetention: cfg.MinuteRetention, hourRetention: cfg.HourRetention, now: cfg.Now, devices: map[string]*device{}}
	s.budget.Store(initialBudget)
	err := s.series.Scan(func(key string, val []byte) error {
		dev, sid, ok := strings.Cut(key, "/")
		if !ok {
			return fmt.Errorf("series key %q: want <device>/<sid>", key)
		}
		var sr series
		if err := json.Unmarshal(val, &sr); err != nil {
			return fmt.Errorf("series %q: %w", key, err)
		}
		s.device(dev).series[sid] = &sr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: load series: %w", err)
	}
	err = s.drop.Scan(func(key string, val []byte) error {
		var d Dropped
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("drop count %q: %w", key, err)
		}
		s.device(key).dropped = d
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: load drop counts: %w", err)
	}
	// The latest value of each series is its last raw key.
	err = db.View(func(tx *store.Tx) error {
		for id, d := range s.devices {
			for sid, sr := range d.series {
				k, v, err := tx.Last(s.raw, id+"/"+sid+"/")
				if errors.Is(err, store.ErrNotFound) {
					continue // expired
				}
				if err != nil {
					return err
				}
				t, val, err := decodePoint(k, v)
				if err != nil {
					return err
				}
				sr.t, sr.v = t, val
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: load latest values: %w", err)
	}
	return s, nil
}

// device returns the entry of id, creating it. s.mu must be held for
// writing (or Open must be running).
func (s *Store) device(id string) *device {
	d := s.devices[id]
	if d == nil {
		d = &device{series: map[string]*series{}}
		s.devices[id] = d
	}
	return d
}

// seriesID is the sid of a series: 16 hex digits of SHA-256 over its
// canonical form.
func seriesID(name string, labels map[string]string) string {
	h := sha256.New()
	h.Write([]byte(name))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// hex16 encodes v as 16 lowercase hex digits, so that byte order is numeric order.
func hex16(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

func msKey(t time.Time) string { return hex16(uint64(t.UnixMilli())) }

func encodeValue(v float64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(v))
	return b[:]
}

// decodePoint decodes a raw key's time and its value.
func decodePoint(key string, val []byte) (time.Time, float64, error) {
	i := strings.LastIndexByte(key, '/')
	ms, err := strconv.ParseUint(key[i+1:], 16, 64)
	if err != nil || len(val) != 8 {
		return time.Time{}, 0, fmt.Errorf("metrics: corrupt sample %q (%d bytes)", key, len(val))
	}
	return time.UnixMilli(int64(ms)).UTC(), math.Float64frombits(binary.BigEndian.Uint64(val)), nil
}

// Batch is one device's metrics batch to ingest.
type Batch struct {
	Device  string
	Metrics *protocol.Metrics
}

// Ingest stores batches and reports, for each, whether it was new (false:
// a duplicate, already stored). Batches must have passed protocol
// validation. Each batch is committed whole, with its dedup mark, in a
// synced transaction shared with as many other batches as fit; new series
// are added to the catalog first. On error the returned slice covers the
// batches committed before the failure (a prefix of batches), which may be
// acknowledged; the rest were not stored.
func (s *Store) Ingest(batches []Batch) ([]bool, error) {
	if err := s.catalog(batches); err != nil {
		return nil, fmt.Errorf("metrics: ingest: %w", err)
	}
	fresh := make([]bool, len(batches))
	for start := 0; start < len(batches); {
		budget := int(s.budget.Load())
		end, entries := start, 0
		for end < len(batches) {
			n := len(batches[end].Metrics.Points) + 3 // points, the marks, the drop count
			if end > start && entries+n > budget {
				break
			}
			entries += n
			end++
		}
		err := s.commit(batches[start:end], fresh[start:end])
		if errors.Is(err, store.ErrTxnTooBig) && end-start > 1 {
			// Fewer batches per transaction from now on.
			s.budget.Store(int64(max(entries/2, 1)))
			continue
		}
		if err != nil {
			return fresh[:start], fmt.Errorf("metrics: ingest: %w", err)
		}
		start = end
	}
	return fresh, nil
}

// catalog adds the batches' new series to the catalog, in transactions of
// at most catalogChunk entries. A series without samples is harmless, so
// this runs before, and apart from, the samples' commit.
func (s *Store) catalog(batches []Batch) error {
	type entry struct {
		dev, sid string
		sr       *series
	}
	var added []entry
	seen := map[string]bool{}
	s.mu.RLock()
	for _, b := range batches {
		d := s.devices[b.Device]
		for _, p := range b.Metrics.Points {
			sid := seriesID(p.Name, p.Labels)
			if (d != nil && d.series[sid] != nil) || seen[b.Device+"/"+sid] {
				continue
			}
			seen[b.Device+"/"+sid] = true
			added = append(added, entry{b.Device, sid, &series{Name: p.Name, Labels: maps.Clone(p.Labels)}})
		}
	}
	s.mu.RUnlock()
	for c := range slices.Chunk(added, catalogChunk) {
		err := s.db.Update(func(tx *store.Tx) error {
			for _, a := range c {
				v, err := json.Marshal(a.sr)
				if err != nil {
					return err
				}
				if err := tx.Put(s.series, a.dev+"/"+a.sid, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.mu.Lock()
		for _, a := range c {
			if d := s.device(a.dev); d.series[a.sid] == nil {
				d.series[a.sid] = a.sr
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// catalogChunk bounds the catalog entries written per transaction.
const catalogChunk = 1000

// commit stores batches (whose series are in the catalog) in one synced
// transaction, setting fresh[i] for the new ones; then updates the latest
// values.
func (s *Store) commit(batches []Batch, fresh []bool) error {
	err := s.db.Update(func(tx *store.Tx) error {
		marks := map[string]bool{}
		for i, b := range batches {
			m := b.Metrics
			mark := b.Device + "/" + m.Epoch + "/" + hex16(m.Seq)
			fresh[i] = false
			if marks[mark] {
				continue // the same batch twice in one group
			}
			_, err := tx.Get(s.seen, mark)
			if err == nil {
				continue
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			marks[mark] = true
			fresh[i] = true
			if err := tx.PutTTL(s.seen, mark, nil, s.retention); err != nil {
				return err
			}
			ts := msKey(m.Time)
			if err := s.markDirty(tx, b.Device, m.Time); err != nil {
				return err
			}
			for _, p := range m.Points {
				if err := tx.PutTTL(s.raw, b.Device+"/"+seriesID(p.Name, p.Labels)+"/"+ts, encodeValue(p.Value), s.retention); err != nil {
					return err
				}
			}
			if m.Dropped > 0 {
				v, err := json.Marshal(Dropped{Epoch: m.Epoch, Dropped: m.Dropped})
				if err != nil {
					return err
				}
				if err := tx.Put(s.drop, b.Device, v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range batches {
		if !fresh[i] {
			continue
		}
		d := s.device(b.Device)
		for _, p := range b.Metrics.Points {
			if sr := d.series[seriesID(p.Name, p.Labels)]; sr != nil && !b.Metrics.Time.Before(sr.t) {
				sr.t, sr.v = b.Metrics.Time, p.Value
			}
		}
		if b.Metrics.Dropped > 0 {
			d.dropped = Dropped{Epoch: b.Metrics.Epoch, Dropped: b.Metrics.Dropped}
		}
	}
	return nil
}

// Sample is a series' latest value.
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Time   time.Time         `json:"time"`
	Value  float64           `json:"value"`
}

// Latest returns the latest value of every series of a device, ordered by
// name and labels.
func (s *Store) Latest(dev string) []Sample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.devices[dev]
	if d == nil {
		return []Sample{}
	}
	out := make([]Sample, 0, len(d.series))
	for _, sr := range d.series {
		if sr.t.IsZero() {
			continue
		}
		out = append(out, Sample{Name: sr.Name, Labels: nonNil(sr.Labels), Time: sr.t, Value: sr.v})
	}
	slices.SortFunc(out, func(a, b Sample) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(labelString(a.Labels), labelString(b.Labels)))
	})
	return out
}

// Dropped returns the latest outbox drop count device dev reported.
func (s *Store) Dropped(dev string) Dropped {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d := s.devices[dev]; d != nil {
		return d.dropped
	}
	return Dropped{}
}

// Devices lists the devices with stored series.
func (s *Store) Devices() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.devices))
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// labelString renders labels canonically, for ordering.
func labelString(l map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
		b.WriteByte(',')
	}
	return b.String()
}

// Query selects series of one device.
type Query struct {
	Device string
	// Name is the metric name; required.
	Name string
	// Labels must all match (a series may have more).
	Labels map[string]string
	// From and To bound the sample times, both included.
	From, To time.Time
	// Step, if positive, aggregates the samples into buckets of Step
	// (aligned to the Unix epoch): min, max, average and count.
	Step time.Duration
}

// Point is a sample, or a bucket of samples when the query has a step.
type Point struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"` // the sample, or the bucket's average
	Min   *float64  `json:"min,omitempty"`
	Max   *float64  `json:"max,omitempty"`
	Count int       `json:"count,omitempty"`
}

// Series is one series' points.
type Series struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Points []Point           `json:"points"`
}

// ErrTooManyPoints is returned when a series has more than MaxQueryPoints
// points in the range (with the step, if any).
var ErrTooManyPoints = errors.New("too many points")

// Range returns the matching series with their points in [From, To], in
// time order; series without points in the range are left out.
func (s *Store) Range(q Query) ([]Series, error) {
	if q.To.Before(q.From) {
		return nil, fmt.Errorf("metrics: range: to %s is before from %s", q.To, q.From)
	}
	type match struct {
		sid string
		sr  series
	}
	var ms []match
	s.mu.RLock()
	if d := s.devices[q.Device]; d != nil {
		for sid, sr := range d.series {
			if sr.Name != q.Name {
				continue
			}
			ok := true
			for k, v := range q.Labels {
				if sr.Labels[k] != v {
					ok = false
					break
				}
			}
			if ok {
				ms = append(ms, match{sid, series{Name: sr.Name, Labels: nonNil(sr.Labels)}})
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(ms, func(a, b match) int { return cmp.Compare(labelString(a.sr.Labels), labelString(b.sr.Labels)) })
	// With a step, the part of the range older than the raw samples comes
	// from the rollups (per hour for steps of whole hours, else per
	// minute); the split is aligned to the step so no bucket mixes both.
	var horizon time.Time
	if q.Step > 0 {
		horizon = s.now().Add(-s.retention + time.Hour).Truncate(q.Step).Add(q.Step)
	}
	out := []Series{}
	err := s.db.View(func(tx *store.Tx) error {
		for _, m := range ms {
			prefix := q.Device + "/" + m.sid + "/"
			var pts []Point
			var cur *Point
			var b bucket
			flush := func() {
				if cur != nil {
					lo, hi := b.min, b.max
					cur.Value, cur.Min, cur.Max, cur.Count = b.sum/float64(b.count), &lo, &hi, int(b.count)
					pts = append(pts, *cur)
					cur = nil
				}
			}
			add := func(t time.Time, o bucket) error {
				bt := t.Truncate(q.Step)
				if cur == nil || !cur.Time.Equal(bt) {
					flush()
					cur, b = &Point{Time: bt}, bucket{}
				}
				b.merge(o)
				return tooMany(len(pts), m.sr)
			}
			from := q.From
			if q.Step > 0 && from.Before(horizon) {
				src, res := s.rollMin, Minute
				if q.Step%Hour == 0 {
					src, res = s.rollHour, Hour
				}
				end := minTime(q.To.Add(time.Millisecond), horizon)
				err := tx.ScanRange(src, prefix+msKey(from.Truncate(res)), prefix+msKey(end), func(k string, v []byte) error {
					t, rb, err := decodeBucket(k, v)
					if err != nil {
						return err
					}
					return add(t, rb)
				})
				if err != nil {
					return err
				}
				from = horizon
			}
			if !from.After(q.To) {
				err := tx.ScanRange(s.raw, prefix+msKey(from), prefix+hex16(uint64(q.To.UnixMilli())+1), func(k string, v []byte) error {
					t, val, err := decodePoint(k, v)
					if err != nil {
						return err
					}
					if q.Step <= 0 {
						pts = append(pts, Point{Time: t, Value: val})
						return tooMany(len(pts), m.sr)
					}
					var one bucket
					one.add(val)
					return add(t, one)
				})
				if err != nil {
					return err
				}
			}
			flush()
			if len(pts) > 0 {
				out = append(out, Series{Name: m.sr.Name, Labels: m.sr.Labels, Points: pts})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: range: %w", err)
	}
	return out, nil
}

func tooMany(n int, sr series) error {
	if n > MaxQueryPoints {
		return fmt.Errorf("%w: more than %d in the range for %s%s: narrow the range or give a larger step", ErrTooManyPoints, MaxQueryPoints, sr.Name, labelString(sr.Labels))
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// DeleteDevice removes a device's catalog and drop count and forgets its
// latest values; its raw samples and marks expire with the retention.
func (s *Store) DeleteDevice(dev string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devices[dev]
	if d == nil {
		return nil
	}
	err := s.db.Update(func(tx *store.Tx) error {
		for sid := range d.series {
			if err := tx.Delete(s.series, dev+"/"+sid); err != nil {
				return err
			}
		}
		return tx.Delete(s.drop, dev)
	})
	if err != nil {
		return fmt.Errorf("metrics: delete %s: %w", dev, err)
	}
	delete(s.devices, dev)
	return nil
}
