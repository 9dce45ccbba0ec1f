package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Household-wide queries: one metric over the series of many devices,
// bucketed at a step exactly as a device's stepped Range (raw samples, or
// rollups for the part older than the raw retention), then either
// combined per bucket by an operation within groups of devices that share
// label values, or ranked by each series' average over the range (top-N).
// The store does not know device labels: the caller passes the devices
// with theirs (AggregateQuery.Devices).

// Op is the operation of an AggregateQuery.
type Op string

// The operations. Each series first has one point per step bucket (its
// samples' average, minimum, maximum and count); an operation combines,
// per bucket, the points of the group's series that have one there.
const (
	OpAvg      Op = "avg"      // mean of the series' bucket averages: each series weighs the same
	OpMin      Op = "min"      // least of the series' bucket minimums
	OpMax      Op = "max"      // greatest of the series' bucket maximums
	OpSum      Op = "sum"      // sum of the series' bucket averages
	OpCount    Op = "count"    // number of series with a point in the bucket
	OpQuantile Op = "quantile" // the Quantile of the series' bucket averages (linear interpolation)
	OpTopK     Op = "topk"     // the K series with the greatest (or least) average over the range
)

// ops lists the operations, for error messages.
var ops = []Op{OpAvg, OpMin, OpMax, OpSum, OpCount, OpQuantile, OpTopK}

// Orders of a top-N ranking.
const (
	OrderDesc = "desc" // greatest first (the default)
	OrderAsc  = "asc"  // least first: bottom-N
)

// Bounds of an aggregate query, in the spirit of MaxQueryPoints: a query
// covers at most MaxAggregateDevices devices and MaxAggregateSeries
// series, reads at most MaxAggregatePoints series buckets (series ×
// buckets in the range) and has at most MaxQueryPoints buckets.
const (
	MaxAggregateDevices = 1000
	MaxAggregateSeries  = 5000
	MaxAggregatePoints  = 2_000_000
	// MaxTopK bounds K; DefaultTopK is K when zero.
	MaxTopK     = 100
	DefaultTopK = 10
)

// defaultSteps are the steps DefaultStep chooses from, and
// defaultBuckets the most buckets it aims for.
var defaultSteps = []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 6 * time.Hour, 24 * time.Hour}

const defaultBuckets = 1000

// DefaultStep is the step of an aggregate query without one: the smallest
// of 1m, 5m, 15m, 1h, 6h and 24h that cuts [from, to] into at most 1,000
// buckets (24h if none does).
func DefaultStep(from, to time.Time) time.Duration {
	for _, st := range defaultSteps {
		if buckets(from, to, st) <= defaultBuckets {
			return st
		}
	}
	return defaultSteps[len(defaultSteps)-1]
}

// buckets is the number of step buckets (aligned as Range aligns them)
// that [from, to] touches.
func buckets(from, to time.Time, step time.Duration) int {
	return int(to.Truncate(step).Sub(from.Truncate(step))/step) + 1
}

// Member is a device an aggregate query covers, with its labels (the
// registry's, not the series').
type Member struct {
	Device string
	Labels map[string]string
}

// AggregateQuery is one metric over many devices.
type AggregateQuery struct {
	// Devices are the devices to cover, each once; at most
	// MaxAggregateDevices.
	Devices []Member
	// Name is the metric name; required.
	Name string
	// Labels must all match a series' labels (a series may have more).
	Labels map[string]string
	// From and To bound the range, both included.
	From, To time.Time
	// Step is the bucket width, aligned like Range's; zero means
	// DefaultStep. At most MaxQueryPoints buckets.
	Step time.Duration
	// Op is the operation; required.
	Op Op
	// Quantile, with OpQuantile only, is in (0, 1).
	Quantile float64
	// By are the device labels to group by; a device without one of
	// them is in the group whose value for it is "". None: one group of
	// every device. Not with OpTopK.
	By []string
	// K, with OpTopK only, is how many series to rank: 1 to MaxTopK;
	// zero means DefaultTopK.
	K int
	// Order, with OpTopK only, is OrderDesc (the default) or OrderAsc.
	Order string
}

// Group is the result of an operation over one group of devices: those
// whose labels in By have the values in Labels.
type Group struct {
	// Labels are the By labels' values ("" for devices without one).
	Labels map[string]string `json:"labels"`
	// Devices is how many of the query's devices are in the group,
	// Series how many of their series had points in the range.
	Devices int `json:"devices"`
	Series  int `json:"series"`
	// Points are the buckets where at least one series had a point, in
	// time order; empty when no series had one.
	Points []AggPoint `json:"points"`
}

// AggPoint is one bucket of a group.
type AggPoint struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"`
	// Series is how many series had a point in the bucket.
	Series int `json:"series"`
}

// Ranked is a series in a top-N ranking.
type Ranked struct {
	Device string            `json:"device"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	// Value is the average of the series' samples over the range (of
	// its rollups' samples where the range is older than the raw
	// retention); Count is how many samples that is.
	Value float64 `json:"value"`
	Count int     `json:"count"`
}

// Aggregation is the answer to an AggregateQuery.
type Aggregation struct {
	// Step is the step used (the query's, or DefaultStep).
	Step time.Duration
	// Groups, for every operation but OpTopK, ordered by their labels:
	// one per distinct value of the By labels among the devices, even
	// if no series of theirs had points.
	Groups []Group
	// Top, for OpTopK, is at most K series, best first; ties are broken
	// by device, then labels.
	Top []Ranked
}

// ErrInvalidQuery is returned for an aggregate query that cannot be
// answered whatever the data (an unknown operation, a step too small for
// the range…); the error names the field.
var ErrInvalidQuery = errors.New("invalid query")

// ErrTooManySeries is returned when an aggregate query covers more than
// MaxAggregateDevices devices or MaxAggregateSeries series.
var ErrTooManySeries = errors.New("too many series")

// withDefaults returns q with its defaults filled in.
func (q AggregateQuery) withDefaults() AggregateQuery {
	if q.Step == 0 && !q.To.Before(q.From) {
		q.Step = DefaultStep(q.From, q.To)
	}
	if q.Op == OpTopK {
		if q.K == 0 {
			q.K = DefaultTopK
		}
		if q.Order == "" {
			q.Order = OrderDesc
		}
	}
	return q
}

// validate checks q (with its defaults); errors wrap ErrInvalidQuery and
// start with the field's name as the REST API spells it.
func (q AggregateQuery) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidQuery}, args...)...)
	}
	if q.Name == "" {
		return bad("name: required")
	}
	if q.To.Before(q.From) {
		return bad("to (%s) is before from (%s)", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	if !slices.Contains(ops, q.Op) {
		names := make([]string, len(ops))
		for i, o := range ops {
			names[i] = string(o)
		}
		return bad("op: %q: want one of %s", q.Op, strings.Join(names, ", "))
	}
	if q.Step <= 0 {
		return bad("step: %s: want a positive duration", q.Step)
	}
	if n := buckets(q.From, q.To, q.Step); n > MaxQueryPoints {
		return bad("step: %s is too small for the range: %d buckets from %s to %s, more than %d; give a larger step or a shorter range",
			q.Step, n, q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), MaxQueryPoints)
	}
	if q.Op == OpQuantile {
		if !(q.Quantile > 0 && q.Quantile < 1) {
			return bad("quantile: %v: want a number strictly between 0 and 1, e.g. 0.95", q.Quantile)
		}
	} else if q.Quantile != 0 {
		return bad("quantile: only with op=quantile")
	}
	if q.Op == OpTopK {
		if q.K < 1 || q.K > MaxTopK {
			return bad("k: %d: want 1 to %d", q.K, MaxTopK)
		}
		if q.Order != OrderAsc && q.Order != OrderDesc {
			return bad("order: %q: want %s or %s", q.Order, OrderAsc, OrderDesc)
		}
		if len(q.By) > 0 {
			return bad("by: not with op=topk, which ranks series, not groups")
		}
	} else {
		if q.K != 0 {
			return bad("k: only with op=topk")
		}
		if q.Order != "" {
			return bad("order: only with op=topk")
		}
	}
	for i, b := range q.By {
		if b == "" {
			return bad("by: an empty label name")
		}
		if slices.Contains(q.By[:i], b) {
			return bad("by: %q twice", b)
		}
	}
	seen := make(map[string]bool, len(q.Devices))
	for _, m := range q.Devices {
		if seen[m.Device] {
			return bad("devices: %q twice", m.Device)
		}
		seen[m.Device] = true
	}
	return nil
}

// Aggregate answers q: each device's series of q.Name matching q.Labels,
// bucketed at the step exactly as Range does (with one reading of the
// clock for every device, so they split raw samples and rollups at the
// same bucket), combined by q.Op per group of q.By, or ranked (OpTopK).
// A device is read, and its series combined, before the next is read:
// the memory held is the groups' buckets and one device's series.
func (s *Store) Aggregate(q AggregateQuery) (Aggregation, error) {
	q = q.withDefaults()
	if err := q.validate(); err != nil {
		return Aggregation{}, fmt.Errorf("metrics: aggregate: %w", err)
	}
	if len(q.Devices) > MaxAggregateDevices {
		return Aggregation{}, fmt.Errorf("metrics: aggregate: %w: %d devices, more than %d: narrow the selector", ErrTooManySeries, len(q.Devices), MaxAggregateDevices)
	}
	type selected struct {
		m    Member
		accs []*accumulator
	}
	sel := make([]selected, 0, len(q.Devices))
	total := 0
	rq := Query{Name: q.Name, Labels: q.Labels, From: q.From, To: q.To, Step: q.Step}
	for _, m := range q.Devices {
		rq.Device = m.Device
		accs := s.match(rq)
		total += len(accs)
		if total > MaxAggregateSeries {
			return Aggregation{}, fmt.Errorf("metrics: aggregate: %w: more than %d series of %s%s on the %d devices: narrow the selector or the labels",
				ErrTooManySeries, MaxAggregateSeries, q.Name, labelString(q.Labels), len(q.Devices))
		}
		sel = append(sel, selected{m, accs})
	}
	if nb := buckets(q.From, q.To, q.Step); total*nb > MaxAggregatePoints {
		return Aggregation{}, fmt.Errorf("metrics: aggregate: %w: %d series × %d buckets of %s is more than %d: give a larger step, a shorter range or a narrower selector",
			ErrTooManyPoints, total, nb, q.Step, MaxAggregatePoints)
	}

	now := s.now()
	out := Aggregation{Step: q.Step}
	groups := map[string]*groupAcc{}
	for _, d := range sel {
		var g *groupAcc
		if q.Op != OpTopK {
			g = groupOf(groups, q.By, d.m.Labels)
			g.devices++
		}
		if len(d.accs) == 0 {
			continue
		}
		rq.Device = d.m.Device
		if err := s.scan(rq, d.accs, now); err != nil {
			return Aggregation{}, fmt.Errorf("metrics: aggregate: %s: %w", d.m.Device, err)
		}
		for _, sr := range collect(d.accs) {
			if q.Op == OpTopK {
				out.Top = append(out.Top, rank(d.m.Device, sr))
				continue
			}
			g.series++
			for _, p := range sr.Points {
				g.add(p, q.Op == OpQuantile)
			}
		}
	}
	if q.Op == OpTopK {
		out.Top = top(out.Top, q.K, q.Order)
		return out, nil
	}
	out.Groups = make([]Group, 0, len(groups))
	for _, g := range groups {
		out.Groups = append(out.Groups, g.result(q.Op, q.Quantile))
	}
	slices.SortFunc(out.Groups, func(a, b Group) int { return cmp.Compare(labelString(a.Labels), labelString(b.Labels)) })
	return out, nil
}

// groupAcc accumulates a group's buckets.
type groupAcc struct {
	labels          map[string]string
	devices, series int
	cells           map[time.Time]*cell
}

// cell is one bucket of a group: its series' points combined so far.
type cell struct {
	n        int
	sum      float64
	min, max float64
	vals     []float64 // the averages, for OpQuantile only
}

// groupOf returns the group of a device with labels, creating it.
func groupOf(groups map[string]*groupAcc, by []string, labels map[string]string) *groupAcc {
	vals := make(map[string]string, len(by))
	var key strings.Builder
	for _, b := range by {
		vals[b] = labels[b]
		key.WriteString(labels[b])
		key.WriteByte(0) // label values are display text: no NUL
	}
	g := groups[key.String()]
	if g == nil {
		g = &groupAcc{labels: vals, cells: map[time.Time]*cell{}}
		groups[key.String()] = g
	}
	return g
}

// add merges a series' stepped point into its bucket.
func (g *groupAcc) add(p Point, keep bool) {
	c := g.cells[p.Time]
	if c == nil {
		c = &cell{min: math.Inf(1), max: math.Inf(-1)}
		g.cells[p.Time] = c
	}
	c.n++
	c.sum += p.Value
	c.min = math.Min(c.min, *p.Min)
	c.max = math.Max(c.max, *p.Max)
	if keep {
		c.vals = append(c.vals, p.Value)
	}
}

// result computes the group's points by op.
func (g *groupAcc) result(op Op, q float64) Group {
	out := Group{Labels: g.labels, Devices: g.devices, Series: g.series, Points: make([]AggPoint, 0, len(g.cells))}
	for _, t := range slices.SortedFunc(maps.Keys(g.cells), time.Time.Compare) {
		c := g.cells[t]
		var v float64
		switch op {
		case OpAvg:
			v = c.sum / float64(c.n)
		case OpMin:
			v = c.min
		case OpMax:
			v = c.max
		case OpSum:
			v = c.sum
		case OpCount:
			v = float64(c.n)
		case OpQuantile:
			v = quantile(c.vals, q)
		}
		out.Points = append(out.Points, AggPoint{Time: t, Value: v, Series: c.n})
	}
	return out
}

// quantile returns the q-quantile of vals (sorted in place) by linear
// interpolation between the closest ranks, as Prometheus's quantile does.
func quantile(vals []float64, q float64) float64 {
	slices.Sort(vals)
	rank := q * float64(len(vals)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(vals)-1)
	return vals[lo] + (vals[hi]-vals[lo])*(rank-float64(lo))
}

// rank summarizes a stepped series by the average of its samples.
func rank(dev string, sr Series) Ranked {
	var sum float64
	var n int
	for _, p := range sr.Points {
		sum += p.Value * float64(p.Count)
		n += p.Count
	}
	return Ranked{Device: dev, Name: sr.Name, Labels: sr.Labels, Value: sum / float64(n), Count: n}
}

// top sorts rs by order and keeps the first k.
func top(rs []Ranked, k int, order string) []Ranked {
	slices.SortFunc(rs, func(a, b Ranked) int {
		c := cmp.Compare(a.Value, b.Value)
		if order == OrderDesc {
			c = -c
		}
		return cmp.Or(c, cmp.Compare(a.Device, b.Device), cmp.Compare(labelString(a.Labels), labelString(b.Labels)))
	})
	if rs == nil {
		rs = []Ranked{}
	}
	return rs[:min(k, len(rs))]
}
