package metrics

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
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
	// MaxSeriesPerDevice bounds the series of one device in the catalog.
	// A sample of a new series beyond it is refused (the rest of its batch
	// is stored and acknowledged), counted, and the device's
	// alicia_device_series_limited sample is 1 for SeriesLimitedFor, which
	// the default series_limit alert rule watches. Series with no sample
	// for the raw retention make room for new ones. Default
	// DefaultMaxSeriesPerDevice.
	MaxSeriesPerDevice int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxSeriesPerDevice is the default per-device series limit: about
// twenty times what an agent's host collectors send from a Raspberry Pi
// (about a hundred series), and room for a many-core server's per-CPU
// series and a device's own custom metrics.
const DefaultMaxSeriesPerDevice = 2000

// SeriesLimitedName is the name of the synthetic sample Latest adds to a
// device that has had series refused: 1 while it had one refused within
// SeriesLimitedFor, else 0.
const SeriesLimitedName = "alicia_device_series_limited"

// SeriesLimitedFor is how long a refused series keeps a device's
// SeriesLimitedName sample at 1.
const SeriesLimitedFor = 10 * time.Minute

// evictEvery bounds how often a device at its series limit looks for idle
// series to evict: the look is O(series of the device).
const evictEvery = time.Minute

// Store holds device samples. It is safe for concurrent use.
type Store struct {
	db        *store.DB
	series    store.Keyspace
	rows      store.Keyspace
	seen      store.Keyspace
	drop      store.Keyspace
	rollMin   store.Keyspace
	rollHour  store.Keyspace
	dirtyMin  store.Keyspace
	dirtyHour store.Keyspace
	retention time.Duration

	minuteRetention, hourRetention time.Duration
	maxSeries                      int
	now                            func() time.Time

	// budget is the most bytes (rows and marks, as estimated by
	// batchBytes) put in one transaction; halved when badger finds a
	// transaction too big.
	budget atomic.Int64

	// stats are the store's counters.
	stats StoreStats

	// catMu serializes catalog updates, so that a device's series limit
	// holds exactly. Taken before mu.
	catMu sync.Mutex

	// mu guards the devices map itself (not the entries: each has its own
	// lock). Lock order: catMu, then mu, then a device's mu; a device's mu
	// is never held while taking mu, and never two devices' at once. Every
	// section holding mu is O(1) or O(devices); work proportional to a
	// device's series happens under that device's lock only, so one
	// device's series cannot stall the others' ingest.
	mu      sync.RWMutex
	devices map[string]*device // by device ID
}

// StoreStats are the Store's counters.
type StoreStats struct {
	SeriesRefused  atomic.Uint64 // samples of new series refused by a device's series limit
	SeriesEvicted  atomic.Uint64 // idle series removed from the catalog to make room
	RollupFailures atomic.Uint64 // minute or hour rollups that failed (retried at the next pass)
	MinutesRolled  atomic.Uint64 // (device, minute) rollups done
	HoursRolled    atomic.Uint64 // (device, hour) rollups done
}

// device is the in-memory catalog and latest values of one device.
type device struct {
	// mu guards the fields below.
	mu      sync.Mutex
	series  map[sid]*series
	dropped Dropped
	// refused counts the samples of new series refused by the limit;
	// lastRefused is when the last was.
	refused     uint64
	lastRefused time.Time
	// lastEvict is when the device last looked for idle series.
	lastEvict time.Time
}

type series struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"` // never changed after creation: shared freely
	// latest sample, zero Time if none
	t time.Time
	v float64
	// seen is when the series last had a sample, or when the store
	// loaded it if that is unknown: series idle for the raw retention may
	// be evicted from the catalog.
	seen time.Time
}

// Dropped is the latest outbox drop count an agent reported.
type Dropped struct {
	Epoch   string `json:"epoch"`
	Dropped uint64 `json:"dropped"`
}

// initialBudget is the first guess at how many bytes fit in a transaction:
// badger takes at most 15 % of a memtable (600 KiB with the store's 4 MiB
// memtables) in one, counting its own overheads.
const initialBudget = 512 << 10

// latestWindow is how far back from a device's newest row Open looks for
// the latest value of each series: a series silent for longer has no
// latest value after a restart (its samples stay queryable).
const latestWindow = time.Hour

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
	if cfg.MaxSeriesPerDevice <= 0 {
		cfg.MaxSeriesPerDevice = DefaultMaxSeriesPerDevice
	}
	s := &Store{db: db, series: db.Keyspace("mseries"), rows: db.Keyspace("mrows"), seen: db.Keyspace("mseen"), drop: db.Keyspace("mdrop"),
		rollMin: db.Keyspace("mroll1m"), rollHour: db.Keyspace("mroll1h"), dirtyMin: db.Keyspace("mdirty1m"), dirtyHour: db.Keyspace("mdirty1h"),
		retention: cfg.Retention, minuteRetention: cfg.MinuteRetention, hourRetention: cfg.HourRetention, maxSeries: cfg.MaxSeriesPerDevice,
		now: cfg.Now, devices: map[string]*device{}}
	s.budget.Store(initialBudget)
	loaded := cfg.Now()
	err := s.series.Scan(func(key string, val []byte) error {
		dev, hexID, ok := strings.Cut(key, "/")
		if !ok {
			return fmt.Errorf("series key %q: want <device>/<sid>", key)
		}
		id, err := parseSID(hexID)
		if err != nil {
			return fmt.Errorf("series key %q: %w", key, err)
		}
		sr := series{seen: loaded}
		if err := json.Unmarshal(val, &sr); err != nil {
			return fmt.Errorf("series %q: %w", key, err)
		}
		s.device(dev).series[id] = &sr
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
	err = db.View(func(tx *store.Tx) error {
		for id, d := range s.devices {
			if err := s.loadLatest(tx, id, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: load latest values: %w", err)
	}
	return s, nil
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// loadLatest sets the latest value of d's series from its rows, newest
// first, until every series has one or the rows are latestWindow older
// than the newest.
func (s *Store) loadLatest(tx *store.Tx, dev string, d *device) error {
	missing := len(d.series)
	var horizon time.Time
	err := tx.ScanRangeReverse(s.rows, dev+"/", dev+"0", func(k string, v []byte) error {
		t, err := rowTime(k)
		if err != nil {
			return err
		}
		if horizon.IsZero() {
			horizon = t.Add(-latestWindow)
		}
		if t.Before(horizon) {
			return errStop
		}
		r, err := decodeRow(k, v)
		if err != nil {
			return err
		}
		for i := range r.len() {
			p := r.at(i)
			if sr := d.series[p.sid]; sr != nil && sr.t.Before(t) {
				if sr.t.IsZero() {
					missing--
				}
				sr.t, sr.v = t, p.v
				if t.After(sr.seen) {
					sr.seen = t
				}
			}
		}
		if missing == 0 {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// lookup returns the entry of id, or nil.
func (s *Store) lookup(id string) *device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.devices[id]
}

// deviceEntry returns the entry of id, creating it.
func (s *Store) deviceEntry(id string) *device {
	if d := s.lookup(id); d != nil {
		return d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.device(id)
}

// device returns the entry of id, creating it. s.mu must be held for
// writing (or Open must be running).
func (s *Store) device(id string) *device {
	d := s.devices[id]
	if d == nil {
		d = &device{series: map[sid]*series{}}
		s.devices[id] = d
	}
	return d
}

// hex16 encodes v as 16 lowercase hex digits, so that byte order is numeric order.
func hex16(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

func msKey(t time.Time) string { return hex16(uint64(t.UnixMilli())) }

// Batch is one device's metrics batch to ingest.
type Batch struct {
	Device  string
	Metrics *protocol.Metrics
}

// Ingest stores batches and reports, for each, whether it was new (false:
// a duplicate, already stored). Batches must have passed protocol
// validation. Each batch is committed whole, with its dedup mark, in a
// synced transaction shared with as many other batches as fit; new series
// are added to the catalog first. Samples of new series beyond a device's
// series limit are left out of its row (counted in Stats). On error the
// returned slice covers the batches committed before the failure (a
// prefix of batches), which may be acknowledged; the rest were not stored.
func (s *Store) Ingest(batches []Batch) ([]bool, error) {
	sids := make([][]sid, len(batches))
	for i, b := range batches {
		sids[i] = make([]sid, len(b.Metrics.Points))
		for j, p := range b.Metrics.Points {
			sids[i][j] = seriesID(p.Name, p.Labels)
		}
	}
	refused, err := s.catalog(batches, sids)
	if err != nil {
		return nil, fmt.Errorf("metrics: ingest: %w", err)
	}
	fresh := make([]bool, len(batches))
	for start := 0; start < len(batches); {
		budget := int(s.budget.Load())
		end, size := start, 0
		for end < len(batches) {
			n := batchBytes(batches[end])
			if end > start && size+n > budget {
				break
			}
			size += n
			end++
		}
		err := s.commit(batches[start:end], sids[start:end], refused, fresh[start:end])
		if errors.Is(err, store.ErrTxnTooBig) && end-start > 1 {
			// Fewer batches per transaction from now on.
			s.budget.Store(int64(max(size/2, 1)))
			continue
		}
		if err != nil {
			return fresh[:start], fmt.Errorf("metrics: ingest: %w", err)
		}
		start = end
	}
	return fresh, nil
}

// batchBytes estimates what a batch adds to a transaction: its row and
// the keys and overheads of its row, marks and drop count.
func batchBytes(b Batch) int {
	return 1 + rowPointSize*len(b.Metrics.Points) + 4*(len(b.Device)+len(b.Metrics.Epoch)+64)
}

// devSID names a series of a device.
type devSID struct {
	dev string
	id  sid
}

// catalog adds the batches' new series to the catalog, in transactions of
// at most catalogChunk entries, and returns the series it refused because
// their device is at its series limit (nil if none). A series without
// samples is harmless, so this runs before, and apart from, the samples'
// commit.
func (s *Store) catalog(batches []Batch, sids [][]sid) (map[devSID]bool, error) {
	type entry struct {
		devSID
		sr *series
	}
	s.catMu.Lock()
	defer s.catMu.Unlock()
	var added []entry
	var refused map[devSID]bool
	seen := map[devSID]bool{}
	pending := map[string]int{} // entries of added, by device
	now := s.now()
	for i, b := range batches {
		var d *device
		for j, p := range b.Metrics.Points {
			k := devSID{b.Device, sids[i][j]}
			if seen[k] || refused[k] {
				continue
			}
			if d == nil {
				d = s.deviceEntry(b.Device)
			}
			d.mu.Lock()
			known := d.series[k.id] != nil
			n := len(d.series)
			d.mu.Unlock()
			if known {
				continue
			}
			if n+pending[b.Device] >= s.maxSeries && !s.evictIdle(b.Device, d, now) {
				if refused == nil {
					refused = map[devSID]bool{}
				}
				refused[k] = true
				continue
			}
			seen[k] = true
			pending[b.Device]++
			added = append(added, entry{k, &series{Name: p.Name, Labels: maps.Clone(p.Labels), seen: now}})
		}
	}
	for c := range slices.Chunk(added, catalogChunk) {
		err := s.db.Update(func(tx *store.Tx) error {
			for _, a := range c {
				v, err := json.Marshal(a.sr)
				if err != nil {
					return err
				}
				if err := tx.Put(s.series, a.dev+"/"+a.id.String(), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, a := range c {
			d := s.deviceEntry(a.dev)
			d.mu.Lock()
			if d.series[a.id] == nil {
				d.series[a.id] = a.sr
			}
			d.mu.Unlock()
		}
	}
	return refused, nil
}

// evictIdle removes from d's catalog the series with no sample for the raw
// retention (their samples have expired; their rollups stay on disk until
// their own retention, no longer named in queries), at most once per
// evictEvery. It reports whether it made room. s.catMu must be held.
func (s *Store) evictIdle(dev string, d *device, now time.Time) bool {
	d.mu.Lock()
	if now.Sub(d.lastEvict) < evictEvery {
		d.mu.Unlock()
		return false
	}
	d.lastEvict = now
	var idle []sid
	for id, sr := range d.series {
		if now.Sub(sr.seen) > s.retention {
			idle = append(idle, id)
		}
	}
	d.mu.Unlock()
	if len(idle) == 0 {
		return false
	}
	keys := make([]string, len(idle))
	for i, id := range idle {
		keys[i] = dev + "/" + id.String()
	}
	if err := s.deleteKeys(s.series, keys); err != nil {
		return false // the next look tries again
	}
	d.mu.Lock()
	for _, id := range idle {
		delete(d.series, id)
	}
	d.mu.Unlock()
	s.stats.SeriesEvicted.Add(uint64(len(idle)))
	return true
}

// deleteKeys deletes keys of ks in transactions of at most catalogChunk.
func (s *Store) deleteKeys(ks store.Keyspace, keys []string) error {
	for c := range slices.Chunk(keys, catalogChunk) {
		err := s.db.Update(func(tx *store.Tx) error {
			for _, k := range c {
				if err := tx.Delete(ks, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// catalogChunk bounds the catalog entries written per transaction.
const catalogChunk = 1000

// commit stores batches (whose series, sids, are in the catalog, but for
// those in refused) in one synced transaction, setting fresh[i] for the
// new ones; then updates the latest values and counts the refused samples.
func (s *Store) commit(batches []Batch, sids [][]sid, refused map[devSID]bool, fresh []bool) error {
	var nRefused map[string]int // by device, of the fresh batches
	err := s.db.Update(func(tx *store.Tx) error {
		nRefused = nil
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
			if err := s.markDirty(tx, b.Device, m.Time); err != nil {
				return err
			}
			pts := make([]rowPoint, 0, len(m.Points))
			for j, p := range m.Points {
				if refused[devSID{b.Device, sids[i][j]}] {
					if nRefused == nil {
						nRefused = map[string]int{}
					}
					nRefused[b.Device]++
					continue
				}
				pts = append(pts, rowPoint{sids[i][j], p.Value})
			}
			if err := tx.PutTTL(s.rows, rowKey(b.Device, m.Time, m.Epoch, m.Seq), encodeRow(pts), s.retention); err != nil {
				return err
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
	s.updateLatest(batches, sids, fresh, nRefused)
	return nil
}

// updateLatest records, after a commit, the latest values of the fresh
// batches, their drop counts and the samples refused by the series limit
// (nRefused, by device).
func (s *Store) updateLatest(batches []Batch, sids [][]sid, fresh []bool, nRefused map[string]int) {
	now := s.now()
	for i, b := range batches {
		if !fresh[i] {
			continue
		}
		d := s.deviceEntry(b.Device)
		t := b.Metrics.Time
		d.mu.Lock()
		for j, p := range b.Metrics.Points {
			if sr := d.series[sids[i][j]]; sr != nil && !t.Before(sr.t) {
				sr.t, sr.v = t, p.Value
				if t.After(sr.seen) {
					sr.seen = t
				}
			}
		}
		if b.Metrics.Dropped > 0 {
			d.dropped = Dropped{Epoch: b.Metrics.Epoch, Dropped: b.Metrics.Dropped}
		}
		if n := nRefused[b.Device]; n > 0 {
			d.refused += uint64(n)
			d.lastRefused = now
			s.stats.SeriesRefused.Add(uint64(n))
			delete(nRefused, b.Device) // counted once per device and commit
		}
		d.mu.Unlock()
	}
}

// Sample is a series' latest value.
type Sample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Time   time.Time         `json:"time"`
	Value  float64           `json:"value"`
}

// Latest returns the latest value of every series of a device, ordered by
// name and labels. A device that has had series refused by its limit also
// has a SeriesLimitedName sample, at the current time. The device's lock
// is held only to copy the values: the copies and the sort are done
// without it.
func (s *Store) Latest(dev string) []Sample {
	d := s.lookup(dev)
	if d == nil {
		return []Sample{}
	}
	now := s.now()
	type keyed struct {
		labels string // labelString of the sample's labels
		s      Sample
	}
	d.mu.Lock()
	all := make([]keyed, 0, len(d.series)+1)
	for _, sr := range d.series {
		if !sr.t.IsZero() {
			all = append(all, keyed{s: Sample{Name: sr.Name, Labels: sr.Labels, Time: sr.t, Value: sr.v}})
		}
	}
	refused, lastRefused := d.refused, d.lastRefused
	d.mu.Unlock()
	if refused > 0 {
		v := 0.0
		if now.Sub(lastRefused) < SeriesLimitedFor {
			v = 1
		}
		all = append(all, keyed{s: Sample{Name: SeriesLimitedName, Time: now, Value: v}})
	}
	for i := range all {
		all[i].s.Labels = nonNil(all[i].s.Labels)
		all[i].labels = labelString(all[i].s.Labels)
	}
	slices.SortFunc(all, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.s.Name, b.s.Name), cmp.Compare(a.labels, b.labels))
	})
	out := make([]Sample, len(all))
	for i := range all {
		out[i] = all[i].s
	}
	return out
}

// Dropped returns the latest outbox drop count device dev reported.
func (s *Store) Dropped(dev string) Dropped {
	if d := s.lookup(dev); d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.dropped
	}
	return Dropped{}
}

// SeriesStats are one device's catalog figures.
type SeriesStats struct {
	Series  int    // series in the catalog
	Refused uint64 // samples of new series refused by the limit since the hub started
}

// SeriesStats returns the catalog figures of device dev.
func (s *Store) SeriesStats(dev string) SeriesStats {
	if d := s.lookup(dev); d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		return SeriesStats{Series: len(d.series), Refused: d.refused}
	}
	return SeriesStats{}
}

// Stats returns the store's counters.
func (s *Store) Stats() *StoreStats { return &s.stats }

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
	accs := s.match(q)
	if len(accs) == 0 {
		return []Series{}, nil
	}
	if err := s.scan(q, accs, s.now()); err != nil {
		return nil, fmt.Errorf("metrics: range: %w", err)
	}
	return collect(accs), nil
}

// match returns an accumulator for each series of q.Device that q
// selects, ordered by labels.
func (s *Store) match(q Query) []*accumulator {
	var accs []*accumulator
	if d := s.lookup(q.Device); d != nil {
		d.mu.Lock()
		for id, sr := range d.series {
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
				accs = append(accs, &accumulator{id: id, sr: series{Name: sr.Name, Labels: sr.Labels}, step: q.Step})
			}
		}
		d.mu.Unlock()
	}
	for _, a := range accs {
		a.sr.Labels = nonNil(a.sr.Labels)
	}
	slices.SortFunc(accs, func(a, b *accumulator) int { return cmp.Compare(labelString(a.sr.Labels), labelString(b.sr.Labels)) })
	return accs
}

// scan adds to accs, series of q.Device, their points in q's range. With
// a step, the part of the range older than the raw samples at now comes
// from the rollups (per hour for steps of whole hours, else per minute);
// the split is aligned to the step so no bucket mixes both.
func (s *Store) scan(q Query, accs []*accumulator, now time.Time) error {
	from := q.From
	return s.db.View(func(tx *store.Tx) error {
		if q.Step > 0 {
			horizon := now.Add(-s.retention + time.Hour).Truncate(q.Step).Add(q.Step)
			if from.Before(horizon) {
				src, res := s.rollMin, Minute
				if q.Step%Hour == 0 {
					src, res = s.rollHour, Hour
				}
				end := minTime(q.To.Add(time.Millisecond), horizon)
				for _, a := range accs {
					prefix := q.Device + "/" + a.id.String() + "/"
					err := tx.ScanRange(src, prefix+msKey(from.Truncate(res)), prefix+msKey(end), func(k string, v []byte) error {
						t, rb, err := decodeBucket(k, v)
						if err != nil {
							return err
						}
						return a.add(t, rb)
					})
					if err != nil {
						return err
					}
				}
				from = horizon
			}
		}
		if from.After(q.To) {
			return nil
		}
		// One scan of the device's rows serves every matching series.
		return tx.ScanRange(s.rows, q.Device+"/"+msKey(from), q.Device+"/"+hex16(uint64(q.To.UnixMilli())+1), func(k string, v []byte) error {
			t, err := rowTime(k)
			if err != nil {
				return err
			}
			r, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			for _, a := range accs {
				if val, ok := r.find(a.id); ok {
					if err := a.addSample(t, val); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
}

// collect returns the series of accs that have points, after a scan.
func collect(accs []*accumulator) []Series {
	out := []Series{}
	for _, a := range accs {
		a.flush()
		if len(a.pts) > 0 {
			out = append(out, Series{Name: a.sr.Name, Labels: a.sr.Labels, Points: a.pts})
		}
	}
	return out
}

// accumulator collects the points of one series for Range: samples as
// they are, or buckets of step.
type accumulator struct {
	id   sid
	sr   series
	step time.Duration
	pts  []Point
	cur  *Point // the open bucket
	b    bucket
}

func (a *accumulator) addSample(t time.Time, v float64) error {
	if a.step <= 0 {
		a.pts = append(a.pts, Point{Time: t, Value: v})
		return tooMany(len(a.pts), a.sr)
	}
	var one bucket
	one.add(v)
	return a.add(t, one)
}

// add merges o, a bucket starting at t, into the step bucket of t.
func (a *accumulator) add(t time.Time, o bucket) error {
	bt := t.Truncate(a.step)
	if a.cur == nil || !a.cur.Time.Equal(bt) {
		a.flush()
		a.cur, a.b = &Point{Time: bt}, bucket{}
	}
	a.b.merge(o)
	return tooMany(len(a.pts), a.sr)
}

func (a *accumulator) flush() {
	if a.cur != nil {
		lo, hi := a.b.min, a.b.max
		a.cur.Value, a.cur.Min, a.cur.Max, a.cur.Count = a.b.sum/float64(a.b.count), &lo, &hi, int(a.b.count)
		a.pts = append(a.pts, *a.cur)
		a.cur = nil
	}
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
// latest values; its raw samples, marks and rollups expire with their
// retention. The catalog is deleted in transactions of catalogChunk keys,
// read from the store rather than from memory, so that entries left by an
// interrupted delete are found again.
func (s *Store) DeleteDevice(dev string) error {
	s.catMu.Lock()
	defer s.catMu.Unlock()
	s.mu.Lock()
	delete(s.devices, dev)
	s.mu.Unlock()
	for {
		var keys []string
		err := s.db.View(func(tx *store.Tx) error {
			return tx.ScanRange(s.series, dev+"/", dev+"0", func(k string, _ []byte) error {
				keys = append(keys, k)
				if len(keys) == catalogChunk {
					return errStop
				}
				return nil
			})
		})
		if err != nil && !errors.Is(err, errStop) {
			return fmt.Errorf("metrics: delete %s: %w", dev, err)
		}
		if len(keys) == 0 {
			break
		}
		if err := s.deleteKeys(s.series, keys); err != nil {
			return fmt.Errorf("metrics: delete %s: %w", dev, err)
		}
	}
	err := s.db.Update(func(tx *store.Tx) error { return tx.Delete(s.drop, dev) })
	if err != nil {
		return fmt.Errorf("metrics: delete %s: %w", dev, err)
	}
	return nil
}
