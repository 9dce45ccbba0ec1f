package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// wide is a batch of n series named <name>_<i> (a device flooding new
// series), at t.
func wide(seq uint64, t time.Time, name string, n int) *protocol.Metrics {
	m := &protocol.Metrics{Epoch: "ep1", Seq: seq, Time: t}
	for i := range n {
		m.Points = append(m.Points, protocol.Point{Name: fmt.Sprintf("%s_%d", name, i), Value: float64(i)})
	}
	return m
}

func TestSeriesLimitRefusesNewSeries(t *testing.T) {
	clk := testkit.NewClock(t0)
	e := newEnv(t, Config{MaxSeriesPerDevice: 10, Now: clk.Now})
	// dev-a sends 8 series, then 5 more new ones and 2 known: 2 of the new
	// ones fit.
	e.ingest(Batch{"dev-a", wide(1, t0, "a", 8)})
	b2 := wide(2, t0.Add(time.Second), "a", 13)
	if fresh := e.ingest(Batch{"dev-a", b2}, Batch{"dev-b", batch(1, t0, 1)}); !fresh[0] || !fresh[1] {
		t.Fatalf("fresh = %v: a batch with refused series must still be stored (and acknowledged)", fresh)
	}
	if st := e.s.SeriesStats("dev-a"); st.Series != 10 || st.Refused != 3 {
		t.Errorf("dev-a SeriesStats = %+v, want 10 series, 3 refused", st)
	}
	if n := e.s.Stats().SeriesRefused.Load(); n != 3 {
		t.Errorf("Stats().SeriesRefused = %d, want 3", n)
	}
	// The refused series are not stored nor queryable; the others are.
	if got := e.rangeQ(Query{Device: "dev-a", Name: "a_12", From: t0, To: t0.Add(time.Hour)}); len(got) != 0 {
		t.Errorf("refused series a_12 = %+v, want nothing", got)
	}
	if got := e.rangeQ(Query{Device: "dev-a", Name: "a_9", From: t0, To: t0.Add(time.Hour)}); len(got) != 1 || len(got[0].Points) != 1 {
		t.Errorf("accepted series a_9 = %+v, want one point", got)
	}
	latest := func(dev string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range e.s.Latest(dev) {
			m[s.Name] = s.Value
		}
		return m
	}
	if got := latest("dev-a"); len(got) != 11 || got[SeriesLimitedName] != 1 {
		t.Errorf("Latest(dev-a) = %v, want 10 series and %s = 1", got, SeriesLimitedName)
	}
	// The other device is untouched and has no limit sample.
	if got := latest("dev-b"); len(got) != 2 {
		t.Errorf("Latest(dev-b) = %v, want its 2 names only", got)
	}
	// The flag falls back to 0 once nothing was refused for a while.
	clk.Set(t0.Add(SeriesLimitedFor + time.Minute))
	if got := latest("dev-a"); got[SeriesLimitedName] != 0 {
		t.Errorf("%s after %s = %v, want 0", SeriesLimitedName, SeriesLimitedFor, got[SeriesLimitedName])
	}
	// The limit holds across a restart (the catalog reloads).
	e.reopen()
	e.ingest(Batch{"dev-a", wide(3, t0.Add(2*time.Second), "z", 1)})
	if st := e.s.SeriesStats("dev-a"); st.Series != 10 || st.Refused != 1 {
		t.Errorf("after a restart, SeriesStats = %+v, want 10 series, 1 refused", st)
	}
}

func TestSeriesLimitEvictsIdleSeries(t *testing.T) {
	clk := testkit.NewClock(t0)
	e := newEnv(t, Config{MaxSeriesPerDevice: 4, Retention: time.Hour, Now: clk.Now})
	e.ingest(Batch{"dev-a", wide(1, t0, "old", 4)})
	// Two days later: the old series had no sample for longer than the
	// retention and make room.
	clk.Set(t0.Add(48 * time.Hour))
	e.ingest(Batch{"dev-a", wide(2, clk.Now(), "new", 3)})
	if st := e.s.SeriesStats("dev-a"); st.Series != 3 || st.Refused != 0 {
		t.Errorf("SeriesStats = %+v, want the 3 new series (old ones evicted), none refused", st)
	}
	if n := e.s.Stats().SeriesEvicted.Load(); n != 4 {
		t.Errorf("SeriesEvicted = %d, want 4", n)
	}
	e.reopen()
	if st := e.s.SeriesStats("dev-a"); st.Series != 3 {
		t.Errorf("after a restart, %d series, want 3 (evictions are stored)", st.Series)
	}
}

// A device's lock is all that its series cost: while one device's entry is
// held (as by a long Latest), another device's batches are committed.
func TestOneDeviceDoesNotStallAnother(t *testing.T) {
	e := newEnv(t, Config{})
	e.ingest(Batch{"dev-a", batch(1, t0, 1)})
	d := e.s.lookup("dev-a")
	d.mu.Lock()
	done := make(chan error, 1)
	go func() {
		_, err := e.s.Ingest([]Batch{{"dev-b", batch(1, t0, 1)}})
		if err == nil {
			_ = e.s.Latest("dev-b")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		t.Error("ingest and Latest of dev-b blocked while dev-a's entry was held")
	}
	d.mu.Unlock()
}

// bigSeries is more series than one badger transaction takes as single
// entries with the store's 4 MiB memtables (about 6,000).
const bigSeries = 7000

func TestDeleteDeviceWithManySeries(t *testing.T) {
	e := newEnv(t, Config{MaxSeriesPerDevice: bigSeries})
	e.ingest(Batch{"dev-a", wide(1, t0, "s", bigSeries)})
	e.ingest(Batch{"dev-b", batch(1, t0, 1)})
	if err := e.s.DeleteDevice("dev-a"); err != nil {
		t.Fatalf("DeleteDevice of %d series: %v", bigSeries, err)
	}
	e.reopen()
	if st := e.s.SeriesStats("dev-a"); st.Series != 0 {
		t.Errorf("after a restart, dev-a has %d series, want none", st.Series)
	}
	if got := e.s.Devices(); fmt.Sprint(got) != "[dev-b]" {
		t.Errorf("Devices = %v, want [dev-b]", got)
	}
}

func TestRollupOfManySeries(t *testing.T) {
	clk := testkit.NewClock(t0)
	e := newEnv(t, Config{MaxSeriesPerDevice: bigSeries, Now: clk.Now})
	e.ingest(Batch{"dev-a", wide(1, t0, "s", bigSeries)}, Batch{"dev-b", batch(1, t0, 1)})
	m, h, err := e.s.Rollup(t0.Add(2 * time.Hour))
	if err != nil || m != 2 || h != 2 {
		t.Fatalf("Rollup = %d minutes, %d hours, %v; want 2, 2", m, h, err)
	}
	clk.Set(t0.Add(8 * 24 * time.Hour)) // raw samples expired: answered from rollups
	for _, q := range []Query{
		{Device: "dev-a", Name: "s_6999", Step: time.Minute},
		{Device: "dev-a", Name: "s_0", Step: time.Hour},
		{Device: "dev-b", Name: "memory_used_bytes", Step: time.Minute},
	} {
		q.From, q.To = t0, t0.Add(time.Hour)
		if got := e.rangeQ(q); len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].Count != 1 {
			t.Errorf("%s %s step %s from the rollups = %+v, want one bucket of one sample", q.Device, q.Name, q.Step, got)
		}
	}
}

// A rollup that fails (here, a damaged row of dev-a) is counted and
// retried, and the other devices' rollups go on.
func TestRollupFailureSkipsOnlyThatDevice(t *testing.T) {
	e := newEnv(t, Config{})
	e.ingest(Batch{"dev-a", batch(1, t0, 1)}, Batch{"dev-b", batch(1, t0, 1)})
	err := e.db.Update(func(tx *store.Tx) error {
		return tx.Put(e.s.rows, rowKey("dev-a", t0.Add(time.Second), "ep1", 99), []byte{0xff, 1, 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := e.s.Rollup(t0.Add(2 * time.Hour))
	if err == nil || !strings.Contains(err.Error(), "dev-a") {
		t.Errorf("Rollup error = %v, want one naming dev-a", err)
	}
	if m != 1 {
		t.Errorf("minutes rolled up = %d, want 1 (dev-b's)", m)
	}
	if n := e.s.Stats().RollupFailures.Load(); n != 1 {
		t.Errorf("RollupFailures = %d, want 1", n)
	}
	if n := e.s.Stats().MinutesRolled.Load(); n != 1 {
		t.Errorf("MinutesRolled = %d, want 1", n)
	}
	got := e.rangeQ(Query{Device: "dev-b", Name: "memory_used_bytes", From: t0, To: t0.Add(time.Hour), Step: time.Hour})
	if len(got) != 1 || len(got[0].Points) != 1 {
		t.Errorf("dev-b's hour = %+v, want one bucket", got)
	}
	// The failed minute is still marked: it is tried again.
	if _, err := e.s.dirtyMin.Get("dev-a/" + msKey(t0)); err != nil {
		t.Errorf("dev-a's dirty mark: %v, want it kept for a retry", err)
	}
}

// A sample that lands while a minute is being rolled up keeps the minute
// dirty, so the next pass counts it.
func TestRollupKeepsMarkOfSampleLandingMeanwhile(t *testing.T) {
	e := newEnv(t, Config{})
	e.ingest(Batch{"dev-a", wide(1, t0, "x", 1)})
	late := true
	testHookClaimed = func() {
		if late {
			late = false
			e.ingest(Batch{"dev-a", wide(2, t0.Add(30*time.Second), "x", 1)})
		}
	}
	t.Cleanup(func() { testHookClaimed = nil })
	if _, _, err := e.s.Rollup(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.s.Rollup(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	q := Query{Device: "dev-a", Name: "x_0", From: t0, To: t0.Add(time.Minute), Step: time.Minute}
	e.s.now = func() time.Time { return t0.Add(8 * 24 * time.Hour) }
	if got := e.rangeQ(q); len(got) != 1 || got[0].Points[0].Count != 2 {
		t.Errorf("minute from the rollups = %+v, want 2 samples (the late one counted)", got)
	}
}
