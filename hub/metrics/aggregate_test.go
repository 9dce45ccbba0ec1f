package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// household stores cpu_usage_ratio{cpu="total"} (and a cpu="0" series on
// g1) of five devices, samples every 30 s from t0 to t0+90s:
//
//	g1 room=garage   10 30 | 50 70   (cpu="0": 1000 throughout)
//	g2 room=garage   40 40 | 80 80
//	k1 room=kitchen 100 100 |
//	n1 (no room)      5  - |  5  -
//	a1 room=attic    only memory_used_bytes
//
// and returns them as Members.
func household(t *testing.T, e *env) []Member {
	t.Helper()
	cpu := func(v float64) protocol.Point {
		return protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: v}
	}
	values := map[string][]float64{"g1": {10, 30, 50, 70}, "g2": {40, 40, 80, 80}, "k1": {100, 100}, "n1": {5, -1, 5}}
	var bs []Batch
	for dev, vs := range values {
		for i, v := range vs {
			if v < 0 {
				continue
			}
			pts := []protocol.Point{cpu(v)}
			if dev == "g1" {
				pts = append(pts, protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "0"}, Value: 1000})
			}
			bs = append(bs, Batch{dev, &protocol.Metrics{Epoch: "ep", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * 30 * time.Second), Points: pts}})
		}
	}
	bs = append(bs, Batch{"a1", &protocol.Metrics{Epoch: "ep", Seq: 1, Time: t0, Points: []protocol.Point{{Name: "memory_used_bytes", Value: 1}}}})
	e.ingest(bs...)
	return []Member{
		{Device: "g1", Labels: map[string]string{"room": "garage", "role": "server"}},
		{Device: "g2", Labels: map[string]string{"room": "garage"}},
		{Device: "k1", Labels: map[string]string{"room": "kitchen"}},
		{Device: "n1"},
		{Device: "a1", Labels: map[string]string{"room": "attic"}},
	}
}

func TestAggregate(t *testing.T) {
	e := newEnv(t, Config{})
	members := household(t, e)
	m0, m1 := t0, t0.Add(time.Minute)
	total := map[string]string{"cpu": "total"}
	room := func(r string) map[string]string { return map[string]string{"room": r} }
	pts := func(vs ...float64) []AggPoint { // value, series count per minute from t0
		var out []AggPoint
		for i := 0; i < len(vs); i += 2 {
			out = append(out, AggPoint{Time: t0.Add(time.Duration(i/2) * time.Minute), Value: vs[i], Series: int(vs[i+1])})
		}
		return out
	}
	byRoom := func(garage []AggPoint) []Group {
		return []Group{
			{Labels: room(""), Devices: 1, Series: 1, Points: pts(5, 1, 5, 1)},   // the device without the label
			{Labels: room("attic"), Devices: 1, Series: 0, Points: []AggPoint{}}, // an empty group
			{Labels: room("garage"), Devices: 2, Series: garage[0].Series, Points: garage},
			{Labels: room("kitchen"), Devices: 1, Series: 1, Points: pts(100, 1)},
		}
	}
	for _, tt := range []struct {
		name string
		q    AggregateQuery
		want Aggregation
	}{
		{"avg by room", AggregateQuery{Op: OpAvg, By: []string{"room"}, Labels: total},
			Aggregation{Step: time.Minute, Groups: byRoom(pts(30, 2, 70, 2))}},
		{"min by room: the least bucket minimum", AggregateQuery{Op: OpMin, By: []string{"room"}, Labels: total},
			Aggregation{Step: time.Minute, Groups: byRoom(pts(10, 2, 50, 2))}},
		{"max by room: the greatest bucket maximum", AggregateQuery{Op: OpMax, By: []string{"room"}, Labels: total},
			Aggregation{Step: time.Minute, Groups: byRoom(pts(40, 2, 80, 2))}},
		{"sum by room", AggregateQuery{Op: OpSum, By: []string{"room"}, Labels: total},
			Aggregation{Step: time.Minute, Groups: byRoom(pts(60, 2, 140, 2))}},
		{"count by room", AggregateQuery{Op: OpCount, By: []string{"room"}, Labels: total},
			Aggregation{Step: time.Minute, Groups: []Group{
				{Labels: room(""), Devices: 1, Series: 1, Points: pts(1, 1, 1, 1)},
				{Labels: room("attic"), Devices: 1, Series: 0, Points: []AggPoint{}},
				{Labels: room("garage"), Devices: 2, Series: 2, Points: pts(2, 2, 2, 2)},
				{Labels: room("kitchen"), Devices: 1, Series: 1, Points: pts(1, 1)},
			}}},
		{"median of every device", AggregateQuery{Op: OpQuantile, Quantile: 0.5, Labels: total},
			// m0: 5 20 40 100 → 30; m1: 5 60 80 → 60
			Aggregation{Step: time.Minute, Groups: []Group{{Labels: map[string]string{}, Devices: 5, Series: 4, Points: pts(30, 4, 60, 3)}}}},
		{"quantile 0.25 of every device", AggregateQuery{Op: OpQuantile, Quantile: 0.25, Labels: total},
			// m0: rank 0.75 between 5 and 20; m1: rank 0.5 between 5 and 60
			Aggregation{Step: time.Minute, Groups: []Group{{Labels: map[string]string{}, Devices: 5, Series: 4, Points: pts(16.25, 4, 32.5, 3)}}}},
		{"without the label matcher, every cpu series", AggregateQuery{Op: OpMax, By: []string{"room"}},
			Aggregation{Step: time.Minute, Groups: byRoom(pts(1000, 3, 1000, 3))}},
		{"grouped by two labels", AggregateQuery{Op: OpCount, By: []string{"room", "role"}, Labels: total, Devices: members[:2]},
			Aggregation{Step: time.Minute, Groups: []Group{
				{Labels: map[string]string{"room": "garage", "role": ""}, Devices: 1, Series: 1, Points: pts(1, 1, 1, 1)},
				{Labels: map[string]string{"room": "garage", "role": "server"}, Devices: 1, Series: 1, Points: pts(1, 1, 1, 1)},
			}}},
		{"no devices: no groups", AggregateQuery{Op: OpAvg, By: []string{"room"}, Devices: []Member{}},
			Aggregation{Step: time.Minute, Groups: []Group{}}},
		{"a step of 30s", AggregateQuery{Op: OpSum, Labels: total, Devices: members[:1], Step: 30 * time.Second},
			Aggregation{Step: 30 * time.Second, Groups: []Group{{Labels: map[string]string{}, Devices: 1, Series: 1, Points: []AggPoint{
				{Time: m0, Value: 10, Series: 1}, {Time: m0.Add(30 * time.Second), Value: 30, Series: 1},
				{Time: m1, Value: 50, Series: 1}, {Time: m1.Add(30 * time.Second), Value: 70, Series: 1}}}}}},
		{"top 2", AggregateQuery{Op: OpTopK, K: 2, Labels: total},
			Aggregation{Step: time.Minute, Top: []Ranked{
				{Device: "k1", Name: "cpu_usage_ratio", Labels: total, Value: 100, Count: 2},
				{Device: "g2", Name: "cpu_usage_ratio", Labels: total, Value: 60, Count: 4},
			}}},
		{"bottom 2", AggregateQuery{Op: OpTopK, K: 2, Order: OrderAsc, Labels: total},
			Aggregation{Step: time.Minute, Top: []Ranked{
				{Device: "n1", Name: "cpu_usage_ratio", Labels: total, Value: 5, Count: 2},
				{Device: "g1", Name: "cpu_usage_ratio", Labels: total, Value: 40, Count: 4},
			}}},
		{"top 10 of fewer series, over series not devices", AggregateQuery{Op: OpTopK, Devices: members[:1]},
			Aggregation{Step: time.Minute, Top: []Ranked{
				{Device: "g1", Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "0"}, Value: 1000, Count: 4},
				{Device: "g1", Name: "cpu_usage_ratio", Labels: total, Value: 40, Count: 4},
			}}},
		{"top of nothing", AggregateQuery{Op: OpTopK, Devices: members[4:]},
			Aggregation{Step: time.Minute, Top: []Ranked{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			q.Name, q.From, q.To = "cpu_usage_ratio", t0, t0.Add(90*time.Second)
			if q.Devices == nil {
				q.Devices = members
			}
			got, err := e.s.Aggregate(q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Aggregate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAggregateInvalid(t *testing.T) {
	e := newEnv(t, Config{})
	ok := AggregateQuery{Name: "x", Op: OpAvg, From: t0, To: t0.Add(time.Hour)}
	for _, tt := range []struct {
		name   string
		edit   func(*AggregateQuery)
		detail string
	}{
		{"no name", func(q *AggregateQuery) { q.Name = "" }, "name: required"},
		{"to before from", func(q *AggregateQuery) { q.To = t0.Add(-time.Second) }, "to (2026-11-27T05:59:59Z) is before from"},
		{"unknown op", func(q *AggregateQuery) { q.Op = "median" }, `op: "median": want one of avg, min, max, sum, count, quantile, topk`},
		{"no op", func(q *AggregateQuery) { q.Op = "" }, `op: ""`},
		{"negative step", func(q *AggregateQuery) { q.Step = -time.Minute }, "step: -1m0s"},
		{"step too small", func(q *AggregateQuery) { q.Step = 100 * time.Millisecond }, "step: 100ms is too small for the range: 36001 buckets"},
		{"quantile of 1", func(q *AggregateQuery) { q.Op, q.Quantile = OpQuantile, 1 }, "quantile: 1: want a number strictly between 0 and 1"},
		{"quantile of 0", func(q *AggregateQuery) { q.Op = OpQuantile }, "quantile: 0:"},
		{"quantile without op=quantile", func(q *AggregateQuery) { q.Quantile = 0.5 }, "quantile: only with op=quantile"},
		{"k too large", func(q *AggregateQuery) { q.Op, q.K = OpTopK, MaxTopK+1 }, "k: 101: want 1 to 100"},
		{"k negative", func(q *AggregateQuery) { q.Op, q.K = OpTopK, -1 }, "k: -1"},
		{"k without topk", func(q *AggregateQuery) { q.K = 5 }, "k: only with op=topk"},
		{"unknown order", func(q *AggregateQuery) { q.Op, q.Order = OpTopK, "up" }, `order: "up": want asc or desc`},
		{"order without topk", func(q *AggregateQuery) { q.Order = OrderAsc }, "order: only with op=topk"},
		{"by with topk", func(q *AggregateQuery) { q.Op, q.By = OpTopK, []string{"room"} }, "by: not with op=topk"},
		{"by twice", func(q *AggregateQuery) { q.By = []string{"room", "room"} }, `by: "room" twice`},
		{"by empty", func(q *AggregateQuery) { q.By = []string{""} }, "by: an empty label name"},
		{"a device twice", func(q *AggregateQuery) { q.Devices = []Member{{Device: "d"}, {Device: "d"}} }, `devices: "d" twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := ok
			tt.edit(&q)
			_, err := e.s.Aggregate(q)
			if !errors.Is(err, ErrInvalidQuery) || !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("Aggregate: %v; want ErrInvalidQuery with %q", err, tt.detail)
			}
		})
	}
	if _, err := e.s.Aggregate(ok); err != nil {
		t.Errorf("the valid query: %v", err)
	}
}

func TestAggregateLimits(t *testing.T) {
	e := newEnv(t, Config{})
	var many []Member
	for i := range MaxAggregateDevices + 1 {
		many = append(many, Member{Device: fmt.Sprintf("d%d", i)})
	}
	q := AggregateQuery{Name: "x", Op: OpAvg, From: t0, To: t0.Add(time.Hour), Devices: many}
	if _, err := e.s.Aggregate(q); !errors.Is(err, ErrTooManySeries) || !strings.Contains(err.Error(), "1001 devices, more than 1000") {
		t.Errorf("%d devices: %v, want ErrTooManySeries", len(many), err)
	}
	if _, err := e.s.Aggregate(AggregateQuery{Name: "x", Op: OpAvg, From: t0, To: t0.Add(time.Hour), Devices: many[:MaxAggregateDevices]}); err != nil {
		t.Errorf("%d devices: %v", MaxAggregateDevices, err)
	}

	// Series: three devices with 1,700 series each of one name (told
	// apart by a label).
	var bs []Batch
	for d := range 3 {
		m := &protocol.Metrics{Epoch: "ep", Seq: 1, Time: t0}
		for i := range 1700 {
			m.Points = append(m.Points, protocol.Point{Name: "x", Labels: map[string]string{"i": fmt.Sprint(i)}, Value: 1})
		}
		bs = append(bs, Batch{fmt.Sprintf("s%d", d), m})
	}
	e.ingest(bs...)
	three := []Member{{Device: "s0"}, {Device: "s1"}, {Device: "s2"}}
	q = AggregateQuery{Name: "x", Op: OpCount, From: t0, To: t0.Add(time.Hour), Devices: three}
	if _, err := e.s.Aggregate(q); !errors.Is(err, ErrTooManySeries) || !strings.Contains(err.Error(), "more than 5000 series of x on the 3 devices") {
		t.Errorf("5100 series: %v, want ErrTooManySeries", err)
	}
	q.Devices = three[:2]
	got, err := e.s.Aggregate(q)
	if err != nil || len(got.Groups) != 1 || got.Groups[0].Series != 3400 || got.Groups[0].Points[0].Value != 3400 {
		t.Errorf("3400 series: %+v, %v; want one group counting 3400", got.Groups, err)
	}

	// Points: 3400 series × 600 buckets of 1s is more than 2,000,000.
	q.To, q.Step = t0.Add(599*time.Second), time.Second
	if _, err := e.s.Aggregate(q); !errors.Is(err, ErrTooManyPoints) || !strings.Contains(err.Error(), "3400 series × 600 buckets of 1s") {
		t.Errorf("2,040,000 series buckets: %v, want ErrTooManyPoints", err)
	}
	q.To = t0.Add(587 * time.Second) // 588 buckets: 1,999,200
	if _, err := e.s.Aggregate(q); err != nil {
		t.Errorf("1,999,200 series buckets: %v", err)
	}
}

// TestAggregateRollupsAndRaw: a range that starts before the raw
// retention's horizon takes its old buckets from the rollups and the rest
// from the raw samples, the same split for every device.
func TestAggregateRollupsAndRaw(t *testing.T) {
	clk := testkit.NewClock(t0)
	e := newEnv(t, Config{Retention: 2 * time.Hour, Now: clk.Now})
	// Two devices, a sample a minute from t0 for three hours: a1 = 1,
	// a2 = 3 in the first hour, then 11 and 13, then 21 and 23.
	var bs []Batch
	for i := range 180 {
		at := t0.Add(time.Duration(i) * time.Minute)
		for d, base := range []float64{1, 3} {
			bs = append(bs, Batch{fmt.Sprintf("a%d", d+1), &protocol.Metrics{Epoch: "ep", Seq: uint64(i + 1), Time: at,
				Points: []protocol.Point{{Name: "x", Value: base + float64(i/60)*10}}}})
		}
	}
	e.ingest(bs...)
	members := []Member{{Device: "a1"}, {Device: "a2"}}
	// At t0+2h30m the horizon is t0+2h (now - retention + 1h, to the
	// next step): the first two hours come from the rollups.
	clk.Set(t0.Add(150 * time.Minute))
	q := AggregateQuery{Name: "x", Op: OpAvg, From: t0, To: t0.Add(3*time.Hour - time.Second), Step: time.Hour, Devices: members}
	hours := func(n int) []AggPoint {
		all := []AggPoint{{Time: t0, Value: 2, Series: 2}, {Time: t0.Add(time.Hour), Value: 12, Series: 2}, {Time: t0.Add(2 * time.Hour), Value: 22, Series: 2}}
		return all[3-n:]
	}
	agg := func() Aggregation {
		t.Helper()
		got, err := e.s.Aggregate(q)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// Before the rollups ran, only the raw hour.
	if diff := cmp.Diff([]Group{{Labels: map[string]string{}, Devices: 2, Series: 2, Points: hours(1)}}, agg().Groups); diff != "" {
		t.Errorf("before the rollups (-want +got):\n%s", diff)
	}
	if _, _, err := e.s.Rollup(clk.Now()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Group{{Labels: map[string]string{}, Devices: 2, Series: 2, Points: hours(3)}}, agg().Groups); diff != "" {
		t.Errorf("hour rollups and raw (-want +got):\n%s", diff)
	}
	// A 30-minute step takes minute rollups.
	q.Step = 30 * time.Minute
	got := agg().Groups[0].Points
	if len(got) != 6 || got[0].Value != 2 || got[3].Value != 12 || got[5].Value != 22 {
		t.Errorf("minute rollups and raw: %+v", got)
	}
	// Top-N over the mixed range: each series' average of its 180 samples.
	q = AggregateQuery{Name: "x", Op: OpTopK, From: t0, To: t0.Add(3*time.Hour - time.Second), Step: time.Hour, Devices: members}
	want := []Ranked{{Device: "a2", Name: "x", Labels: map[string]string{}, Value: 13, Count: 180}, {Device: "a1", Name: "x", Labels: map[string]string{}, Value: 11, Count: 180}}
	if diff := cmp.Diff(want, agg().Top); diff != "" {
		t.Errorf("top over rollups and raw (-want +got):\n%s", diff)
	}
}

func TestDefaultStep(t *testing.T) {
	for _, tt := range []struct {
		span time.Duration
		want time.Duration
	}{
		{time.Hour, time.Minute},
		{16 * time.Hour, time.Minute},
		{17 * time.Hour, 5 * time.Minute},
		{7 * 24 * time.Hour, 15 * time.Minute},
		{30 * 24 * time.Hour, time.Hour},
		{365 * 24 * time.Hour, 24 * time.Hour},
		{10 * 365 * 24 * time.Hour, 24 * time.Hour},
	} {
		if got := DefaultStep(t0, t0.Add(tt.span)); got != tt.want {
			t.Errorf("DefaultStep over %s = %s, want %s", tt.span, got, tt.want)
		}
	}
}

// BenchmarkAggregate: the average CPU by room of 100 devices (10 rooms)
// over an hour of raw samples every 10 s, in 1-minute steps.
func BenchmarkAggregate(b *testing.B) {
	db, err := store.Open(store.Options{Dir: b.TempDir(), MinFreeBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	s, err := Open(db, Config{Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		b.Fatal(err)
	}
	var members []Member
	for d := range 100 {
		dev := fmt.Sprintf("dev-%d", d)
		members = append(members, Member{Device: dev, Labels: map[string]string{"room": fmt.Sprintf("room-%d", d%10)}})
		var bs []Batch
		for i := range 360 {
			bs = append(bs, Batch{dev, batch(uint64(i+1), t0.Add(time.Duration(i)*10*time.Second), float64(i%100)/100)})
		}
		if _, err := s.Ingest(bs); err != nil {
			b.Fatal(err)
		}
	}
	q := AggregateQuery{Devices: members, Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, From: t0, To: t0.Add(time.Hour),
		Step: time.Minute, Op: OpAvg, By: []string{"room"}}
	b.ResetTimer()
	for b.Loop() {
		res, err := s.Aggregate(q)
		if err != nil || len(res.Groups) != 10 || len(res.Groups[0].Points) != 60 {
			b.Fatalf("%d groups, %v", len(res.Groups), err)
		}
	}
}
