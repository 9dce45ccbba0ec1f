package metrics

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestRollups(t *testing.T) {
	clk := testkit.NewClock(t0)
	e := newEnv(t, Config{Now: clk.Now})
	// 10:59:00 … 11:01:50 every 10 s, value = seconds since start: three
	// minutes across an hour boundary.
	start := time.Date(2026, 11, 27, 10, 59, 0, 0, time.UTC)
	var bs []Batch
	for i := range 18 {
		bs = append(bs, Batch{"dev-a", &protocol.Metrics{Epoch: "ep1", Seq: uint64(i + 1), Time: start.Add(time.Duration(i) * 10 * time.Second),
			Points: []protocol.Point{{Name: "x", Value: float64(i * 10)}}}})
	}
	e.ingest(bs...)

	// The last minute is not over (with its delay) yet: two minutes, and
	// the 10:00 hour, which is over.
	if m, h, err := e.s.Rollup(start.Add(3*time.Minute + rollupDelay - time.Millisecond)); err != nil || m != 2 || h != 1 {
		t.Fatalf("Rollup before the last minute ended = %d minutes, %d hours, %v; want 2, 1", m, h, err)
	}
	if m, h, err := e.s.Rollup(start.Add(2 * time.Hour)); err != nil || m != 1 || h != 1 {
		t.Fatalf("Rollup later = %d minutes, %d hours, %v; want 1, 1 (the 11:00 hour)", m, h, err)
	}
	if m, h, err := e.s.Rollup(start.Add(2 * time.Hour)); err != nil || m != 0 || h != 0 {
		t.Fatalf("Rollup again = %d, %d, %v; want nothing left", m, h, err)
	}

	// Eight days later the raw samples are past retention: a stepped query
	// is answered from the rollups, with the same figures.
	f := func(v float64) *float64 { return &v }
	q := Query{Device: "dev-a", Name: "x", From: start, To: start.Add(3 * time.Minute), Step: time.Minute}
	wantMinutes := []Point{
		{Time: start, Value: 25, Min: f(0), Max: f(50), Count: 6},
		{Time: start.Add(time.Minute), Value: 85, Min: f(60), Max: f(110), Count: 6},
		{Time: start.Add(2 * time.Minute), Value: 145, Min: f(120), Max: f(170), Count: 6},
	}
	clk.Set(start.Add(time.Hour))
	if diff := cmp.Diff(wantMinutes, e.rangeQ(q)[0].Points); diff != "" {
		t.Errorf("from raw samples (-want +got):\n%s", diff)
	}
	clk.Set(start.Add(8 * 24 * time.Hour))
	got := e.rangeQ(q)
	if len(got) != 1 {
		t.Fatalf("from rollups: %+v", got)
	}
	if diff := cmp.Diff(wantMinutes, got[0].Points); diff != "" {
		t.Errorf("from minute rollups (-want +got):\n%s", diff)
	}
	hq := Query{Device: "dev-a", Name: "x", From: start.Truncate(time.Hour), To: start.Add(2 * time.Hour), Step: time.Hour}
	wantHours := []Point{
		{Time: start.Truncate(time.Hour), Value: 25, Min: f(0), Max: f(50), Count: 6},
		{Time: start.Add(time.Minute), Value: 115, Min: f(60), Max: f(170), Count: 12},
	}
	if diff := cmp.Diff(wantHours, e.rangeQ(hq)[0].Points); diff != "" {
		t.Errorf("from hour rollups (-want +got):\n%s", diff)
	}

	// A late sample (a replay after an outage) in a rolled-up minute: the
	// minute and its hour are recomputed.
	clk.Set(start.Add(time.Hour))
	e.ingest(Batch{"dev-a", &protocol.Metrics{Epoch: "ep1", Seq: 100, Time: start.Add(5 * time.Second), Points: []protocol.Point{{Name: "x", Value: 1000}}}})
	if m, h, err := e.s.Rollup(start.Add(2 * time.Hour)); err != nil || m != 1 || h != 1 {
		t.Fatalf("Rollup after a late sample = %d, %d, %v; want 1, 1", m, h, err)
	}
	clk.Set(start.Add(8 * 24 * time.Hour))
	if p := e.rangeQ(q)[0].Points[0]; p.Count != 7 || *p.Max != 1000 {
		t.Errorf("minute after the late sample = %+v, want 7 samples, max 1000", p)
	}
	if p := e.rangeQ(hq)[0].Points[0]; p.Count != 7 {
		t.Errorf("hour after the late sample = %+v, want 7 samples", p)
	}
}
