package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

// env is a Store on a real badger store in a temporary directory.
type env struct {
	t   *testing.T
	dir string
	db  *store.DB
	s   *Store
	cfg Config
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	if cfg.Now == nil {
		// A fixed clock: the samples at t0 stay within the raw retention.
		cfg.Now = func() time.Time { return t0.Add(time.Hour) }
	}
	e := &env{t: t, dir: t.TempDir(), cfg: cfg}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	db, err := store.Open(store.Options{Dir: e.dir, MinFreeBytes: -1})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { db.Close() })
	s, err := Open(db, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.db, e.s = db, s
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// batch is a batch of epoch "ep1" collected at t with a cpu and a memory point.
func batch(seq uint64, t time.Time, cpu float64) *protocol.Metrics {
	return &protocol.Metrics{Epoch: "ep1", Seq: seq, Time: t, Points: []protocol.Point{
		{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: cpu},
		{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "0"}, Value: cpu / 2},
		{Name: "memory_used_bytes", Value: 1000 + cpu},
	}}
}

func (e *env) ingest(bs ...Batch) []bool {
	e.t.Helper()
	fresh, err := e.s.Ingest(bs)
	if err != nil {
		e.t.Fatalf("Ingest: %v", err)
	}
	return fresh
}

func (e *env) rangeQ(q Query) []Series {
	e.t.Helper()
	got, err := e.s.Range(q)
	if err != nil {
		e.t.Fatalf("Range(%+v): %v", q, err)
	}
	return got
}

func TestIngestDedupAndRange(t *testing.T) {
	e := newEnv(t, Config{})
	var bs []Batch
	for i := range 10 {
		bs = append(bs, Batch{"dev-a", batch(uint64(i+1), t0.Add(time.Duration(i)*time.Second), float64(i))})
	}
	fresh := e.ingest(bs[:6]...)
	if fmt.Sprint(fresh) != "[true true true true true true]" {
		t.Fatalf("first ingest fresh = %v", fresh)
	}
	// A resend of 4..6 with 7..10, and 8 twice in one group.
	fresh = e.ingest(append(append([]Batch{}, bs[3:]...), bs[7])...)
	if want := "[false false false true true true true false]"; fmt.Sprint(fresh) != want {
		t.Fatalf("second ingest fresh = %v, want %s", fresh, want)
	}
	got := e.rangeQ(Query{Device: "dev-a", Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, From: t0, To: t0.Add(time.Hour)})
	if len(got) != 1 || len(got[0].Points) != 10 {
		t.Fatalf("range = %+v, want one series of 10 points (each once)", got)
	}
	for i, p := range got[0].Points {
		if !p.Time.Equal(t0.Add(time.Duration(i)*time.Second)) || p.Value != float64(i) {
			t.Errorf("point %d = %+v, want t0+%ds = %d", i, p, i, i)
		}
	}
	// Bounds are inclusive; both cpu series without a label filter, ordered by labels.
	got = e.rangeQ(Query{Device: "dev-a", Name: "cpu_usage_ratio", From: t0.Add(2 * time.Second), To: t0.Add(4 * time.Second)})
	want := []Series{
		{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "0"}, Points: []Point{{Time: t0.Add(2 * time.Second), Value: 1}, {Time: t0.Add(3 * time.Second), Value: 1.5}, {Time: t0.Add(4 * time.Second), Value: 2}}},
		{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Points: []Point{{Time: t0.Add(2 * time.Second), Value: 2}, {Time: t0.Add(3 * time.Second), Value: 3}, {Time: t0.Add(4 * time.Second), Value: 4}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("range [t0+2s, t0+4s] (-want +got):\n%s", diff)
	}
	if got := e.rangeQ(Query{Device: "dev-b", Name: "cpu_usage_ratio", From: t0, To: t0.Add(time.Hour)}); len(got) != 0 {
		t.Errorf("another device's range = %+v, want none", got)
	}
	if got := e.rangeQ(Query{Device: "dev-a", Name: "nope", From: t0, To: t0.Add(time.Hour)}); len(got) != 0 {
		t.Errorf("unknown name = %+v, want none", got)
	}
	if _, err := e.s.Range(Query{Device: "dev-a", Name: "cpu_usage_ratio", From: t0.Add(time.Hour), To: t0}); err == nil {
		t.Error("a range that ends before it starts succeeded")
	}

	// Dedup survives a restart.
	e.reopen()
	if fresh := e.ingest(bs[0]); fresh[0] {
		t.Error("a batch stored before the restart is fresh again")
	}
}

func TestRangeStep(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 10 { // t0 … t0+9s, values 0 … 9
		e.ingest(Batch{"dev-a", batch(uint64(i+1), t0.Add(time.Duration(i)*time.Second), float64(i))})
	}
	got := e.rangeQ(Query{Device: "dev-a", Name: "memory_used_bytes", From: t0, To: t0.Add(time.Minute), Step: 4 * time.Second})
	f := func(v float64) *float64 { return &v }
	// Buckets aligned to the epoch: t0 is a multiple of 4 s.
	want := []Series{{Name: "memory_used_bytes", Labels: map[string]string{}, Points: []Point{
		{Time: t0, Value: 1001.5, Min: f(1000), Max: f(1003), Count: 4},
		{Time: t0.Add(4 * time.Second), Value: 1005.5, Min: f(1004), Max: f(1007), Count: 4},
		{Time: t0.Add(8 * time.Second), Value: 1008.5, Min: f(1008), Max: f(1009), Count: 2},
	}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("step 4s (-want +got):\n%s", diff)
	}
}

func TestLatestAndDroppedSurviveRestart(t *testing.T) {
	e := newEnv(t, Config{})
	b1 := batch(1, t0, 1)
	b2 := batch(2, t0.Add(time.Second), 2)
	b2.Dropped = 7
	e.ingest(Batch{"dev-a", b2})
	e.ingest(Batch{"dev-a", b1}) // older, arrives later (a replay): latest stays b2
	check := func(when string) {
		t.Helper()
		got := e.s.Latest("dev-a")
		want := []Sample{
			{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "0"}, Time: t0.Add(time.Second), Value: 1},
			{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Time: t0.Add(time.Second), Value: 2},
			{Name: "memory_used_bytes", Labels: map[string]string{}, Time: t0.Add(time.Second), Value: 1002},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: Latest (-want +got):\n%s", when, diff)
		}
		if d := e.s.Dropped("dev-a"); d != (Dropped{Epoch: "ep1", Dropped: 7}) {
			t.Errorf("%s: Dropped = %+v, want 7 in ep1", when, d)
		}
		if got := e.s.Devices(); fmt.Sprint(got) != "[dev-a]" {
			t.Errorf("%s: Devices = %v", when, got)
		}
	}
	check("before a restart")
	e.reopen()
	check("after a restart")
	if got := e.s.Latest("dev-x"); got == nil || len(got) != 0 {
		t.Errorf("Latest(unknown) = %#v, want an empty list", got)
	}

	if err := e.s.DeleteDevice("dev-a"); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if got := e.s.Latest("dev-a"); len(got) != 0 || len(e.s.Devices()) != 0 {
		t.Errorf("after DeleteDevice and a restart: latest %v, devices %v", got, e.s.Devices())
	}
}

func TestRetentionExpiresSamples(t *testing.T) {
	e := newEnv(t, Config{Retention: time.Second})
	e.ingest(Batch{"dev-a", batch(1, t0, 1)})
	q := Query{Device: "dev-a", Name: "memory_used_bytes", From: t0, To: t0}
	if got := e.rangeQ(q); len(got) != 1 {
		t.Fatalf("right after ingest: %+v", got)
	}
	// Expiry has whole-second resolution: poll.
	deadline := time.Now().Add(5 * time.Second)
	for len(e.rangeQ(q)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("samples still there 5 s after a 1 s retention")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The dedup mark expired with them.
	if fresh := e.ingest(Batch{"dev-a", batch(1, t0, 1)}); !fresh[0] {
		t.Error("a batch is a duplicate after its mark's retention")
	}
}

func TestRangeTooManyPoints(t *testing.T) {
	e := newEnv(t, Config{})
	var bs []Batch
	for i := range MaxQueryPoints + 1 {
		bs = append(bs, Batch{"dev-a", &protocol.Metrics{Epoch: "ep1", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Points: []protocol.Point{{Name: "x", Value: 1}}}})
	}
	for c := range slices.Chunk(bs, 5000) {
		e.ingest(c...)
	}
	_, err := e.s.Range(Query{Device: "dev-a", Name: "x", From: t0, To: t0.Add(time.Hour)})
	if !errors.Is(err, ErrTooManyPoints) {
		t.Fatalf("Range over %d points = %v, want ErrTooManyPoints", MaxQueryPoints+1, err)
	}
	got := e.rangeQ(Query{Device: "dev-a", Name: "x", From: t0, To: t0.Add(time.Hour), Step: time.Second})
	if len(got) != 1 || len(got[0].Points) != 21 || got[0].Points[0].Count != 1000 {
		t.Errorf("with a 1 s step: %d series, first %+v", len(got), got)
	}
}

// ackLog records the acks an Ingester publishes.
type ackLog struct {
	mu   sync.Mutex
	acks map[string][]uint64 // device → seqs
	ch   chan struct{}
}

func (a *ackLog) ack(_ context.Context, dev string, ack *protocol.MetricsAck) error {
	a.mu.Lock()
	a.acks[dev] = append(a.acks[dev], ack.Seqs...)
	a.mu.Unlock()
	select {
	case a.ch <- struct{}{}:
	default:
	}
	return nil
}

func (a *ackLog) seqs(dev string) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.acks[dev]...)
}

func TestIngesterAcksAfterCommit(t *testing.T) {
	e := newEnv(t, Config{})
	log := &ackLog{acks: map[string][]uint64{}, ch: make(chan struct{}, 1)}
	var notStored []string
	var mu sync.Mutex
	in := NewIngester(e.s, IngesterConfig{Ack: func(ctx context.Context, dev string, ack *protocol.MetricsAck) error {
		// Every acknowledged batch must already be queryable.
		for _, seq := range ack.Seqs {
			got, err := e.s.Range(Query{Device: dev, Name: "memory_used_bytes", From: t0.Add(time.Duration(seq-1) * time.Second), To: t0.Add(time.Duration(seq-1) * time.Second)})
			if err != nil || len(got) != 1 {
				mu.Lock()
				notStored = append(notStored, fmt.Sprintf("%s/%d", dev, seq))
				mu.Unlock()
			}
		}
		return log.ack(ctx, dev, ack)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for i := range 50 {
		for _, dev := range []string{"dev-a", "dev-b"} {
			if !in.Submit(dev, batch(uint64(i+1), t0.Add(time.Duration(i)*time.Second), float64(i))) {
				t.Fatal("Submit refused with an empty queue")
			}
		}
	}
	in.Submit("dev-a", batch(3, t0.Add(2*time.Second), 2)) // a resend
	deadline := time.After(10 * time.Second)
	for len(log.seqs("dev-a")) < 51 || len(log.seqs("dev-b")) < 50 {
		select {
		case <-log.ch:
		case <-deadline:
			t.Fatalf("acks after 10 s: dev-a %d, dev-b %d", len(log.seqs("dev-a")), len(log.seqs("dev-b")))
		}
	}
	mu.Lock()
	if len(notStored) > 0 {
		t.Errorf("acknowledged before they were stored: %v", notStored)
	}
	mu.Unlock()
	st := in.Stats()
	if st.Batches.Load() != 100 || st.Duplicates.Load() != 1 || st.Points.Load() != 300 {
		t.Errorf("stats: batches %d, duplicates %d, points %d; want 100, 1, 300", st.Batches.Load(), st.Duplicates.Load(), st.Points.Load())
	}
}

func TestIngesterDoesNotAckAFailedCommit(t *testing.T) {
	e := newEnv(t, Config{})
	log := &ackLog{acks: map[string][]uint64{}, ch: make(chan struct{}, 1)}
	in := NewIngester(e.s, IngesterConfig{Ack: log.ack, QueueLen: 2})
	// Submit before Run: the queue fills and refuses the third.
	for i := range 3 {
		ok := in.Submit("dev-a", batch(uint64(i+1), t0, 1))
		if want := i < 2; ok != want {
			t.Fatalf("Submit %d = %v, want %v", i+1, ok, want)
		}
	}
	if in.Stats().Refused.Load() != 1 || in.QueueDepth() != 2 {
		t.Fatalf("refused %d, depth %d; want 1, 2", in.Stats().Refused.Load(), in.QueueDepth())
	}
	if err := e.db.Close(); err != nil { // every commit now fails
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for in.Stats().Failed.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the failed commit was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := log.seqs("dev-a"); len(got) != 0 {
		t.Errorf("acks after a failed commit: %v", got)
	}
}

// TestIngestSplitsTransactions: with small memtables a group does not fit
// in one transaction; Ingest splits it (keeping each batch whole) and
// stores everything once.
func TestIngestSplitsTransactions(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir(), MinFreeBytes: -1, MemTableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := Open(db, Config{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	var bs []Batch
	for i := range 20 {
		m := &protocol.Metrics{Epoch: "ep1", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second)}
		for p := range 500 {
			m.Points = append(m.Points, protocol.Point{Name: "x", Labels: map[string]string{"n": fmt.Sprint(p)}, Value: float64(i)})
		}
		bs = append(bs, Batch{"dev-a", m})
	}
	fresh, err := s.Ingest(bs)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	for i, f := range fresh {
		if !f {
			t.Errorf("batch %d not fresh", i+1)
		}
	}
	if b := s.budget.Load(); b >= initialBudget {
		t.Errorf("budget %d: the split never happened (test too weak)", b)
	}
	got, err := s.Range(Query{Device: "dev-a", Name: "x", Labels: map[string]string{"n": "499"}, From: t0, To: t0.Add(time.Minute)})
	if err != nil || len(got) != 1 || len(got[0].Points) != 20 {
		t.Fatalf("range of one series = %+v, %v; want 20 points", got, err)
	}
	if n := len(s.Latest("dev-a")); n != 500 {
		t.Errorf("%d series, want 500", n)
	}
}

// Store answers once the batch is stored (or was already), publishes no
// ack for it, and reports a failed commit.
func TestIngesterStore(t *testing.T) {
	e := newEnv(t, Config{MaxSeriesPerDevice: 2})
	log := &ackLog{acks: map[string][]uint64{}, ch: make(chan struct{}, 1)}
	in := NewIngester(e.s, IngesterConfig{Ack: log.ack, QueueLen: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for range 2 { // the second is a retry: stored once
		if err := in.Store(context.Background(), "int-power", batch(7, t0, 0.5)); err != nil {
			t.Fatalf("Store: %v", err)
		}
		got := e.rangeQ(Query{Device: "int-power", Name: "cpu_usage_ratio", From: t0, To: t0})
		if len(got) != 2 || len(got[0].Points) != 1 {
			t.Fatalf("after Store: %+v", got)
		}
	}
	// The per-source series limit (2) holds: memory_used_bytes is refused.
	if got := e.rangeQ(Query{Device: "int-power", Name: "memory_used_bytes", From: t0, To: t0}); len(got) != 0 {
		t.Errorf("a third series past the limit of 2 was stored: %+v", got)
	}
	if st := in.Stats(); st.Batches.Load() != 1 || st.Duplicates.Load() != 1 {
		t.Errorf("batches %d, duplicates %d; want 1, 1", st.Batches.Load(), st.Duplicates.Load())
	}
	if got := log.seqs("int-power"); len(got) != 0 {
		t.Errorf("acks published for Store's batches: %v", got)
	}
	if err := e.db.Close(); err != nil { // every commit now fails
		t.Fatal(err)
	}
	if err := in.Store(context.Background(), "int-power", batch(8, t0, 1)); err == nil {
		t.Error("Store with a closed store = nil")
	}
}
