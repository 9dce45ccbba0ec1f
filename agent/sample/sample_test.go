package sample

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // in the error; "" for none
	}{
		{"zero value", Config{}, ""},
		{"subset", Config{Enabled: []string{Memory, Thermal}}, ""},
		{"unknown collector", Config{Enabled: []string{CPU, "gpu"}}, `unknown collector "gpu"; known collectors: cpu, memory, swap, filesystem, diskio, network, thermal, system, self`},
		{"negative timeout", Config{Timeout: -time.Second}, "timeout -1s is negative"},
		{"negative mount timeout", Config{MountTimeout: -time.Second}, "mount timeout -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := New(tc.cfg); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestEnabledChoosesCollectors(t *testing.T) {
	all, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := statNames(all.Stats()); !cmp.Equal(got, Collectors()) {
		t.Errorf("nil Enabled runs %v, want all %v", got, Collectors())
	}
	some, err := New(Config{Enabled: []string{Self, Memory, Self}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statNames(some.Stats()), []string{Memory, Self}; !cmp.Equal(got, want) {
		t.Errorf("Enabled [self memory self] runs %v, want %v", got, want)
	}
}

func statNames(st []CollectorStats) []string {
	var out []string
	for _, s := range st {
		out = append(out, s.Name)
	}
	return out
}

func TestLabelValue(t *testing.T) {
	for _, in := range []string{
		"/mnt/usb disk",
		"/mnt/new\nline\ttab\x7f",
		"/mnt/\xff\xfebad utf8",
		strings.Repeat("é", 200), // 400 bytes
		strings.Repeat("x", 300),
	} {
		got := labelValue(in)
		p := protocol.Point{Name: "x", Labels: map[string]string{"mount": got}}
		m := protocol.Metrics{Epoch: "e", Seq: 1, Time: time.Unix(1, 0), Points: []protocol.Point{p}}
		if err := m.Validate(); err != nil {
			t.Errorf("labelValue(%q) = %q: %v", in, got, err)
		}
		if !utf8.ValidString(got) || len(got) > protocol.MaxLabelValueLen {
			t.Errorf("labelValue(%q) = %q", in, got)
		}
	}
	if got := labelValue("/mnt/usb disk"); got != "/mnt/usb disk" {
		t.Errorf("a plain value changed: %q", got)
	}
	if got := labelValue("a\nb\x00c"); got != "a b c" {
		t.Errorf("control characters: %q, want %q", got, "a b c")
	}
}

func TestBatch(t *testing.T) {
	var b batch
	b.add("b_metric", 1, "z", "1", "a", "2")
	b.add("a_metric", 2)
	b.add("a_metric_bytes", 3)
	b.add("b_metric", 4, "a", "1")
	b.add("b_metric", 5, "a", "2", "z", "1") // the first b_metric again, labels in another order
	b.add("c_metric", nan())
	got := b.finish()
	var keys []string
	for _, p := range got {
		keys = append(keys, printableKey(p.key))
	}
	want := []string{"a_metric", "a_metric_bytes", `b_metric{a="1"}`, `b_metric{a="2",z="1"}`}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if got[3].Value != 1 {
		t.Errorf("repeated series kept value %v, want the first (1)", got[3].Value)
	}
	if err := errors.Join(b.problems...); err == nil || !strings.Contains(err.Error(), `b_metric{a="2",z="1"}: repeated series`) || !strings.Contains(err.Error(), "c_metric: value NaN is not a finite number") {
		t.Errorf("problems = %v", err)
	}
}

func nan() float64 { var zero float64; return zero / zero }

// fakeCollector returns what its function returns.
type fakeCollector func(ctx context.Context, b *batch) error

func (f fakeCollector) collect(ctx context.Context, b *batch) error { return f(ctx, b) }

// samplerWith returns a Sampler running the given collectors, named after
// real ones.
func samplerWith(t *testing.T, logger *slog.Logger, cs map[string]collector) *Sampler {
	t.Helper()
	s, err := New(Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	s.runners = nil
	for _, name := range Collectors() {
		if c, ok := cs[name]; ok {
			s.runners = append(s.runners, newRunner(name, c))
		}
	}
	return s
}

func TestPanicFailsOneCollector(t *testing.T) {
	s := samplerWith(t, nil, map[string]collector{
		CPU: fakeCollector(func(context.Context, *batch) error {
			var m map[string]int
			m["x"] = 1 // a bug in a reader
			return nil
		}),
		Memory: fakeCollector(func(_ context.Context, b *batch) error { b.add("memory_total_bytes", 1); return nil }),
	})
	points, rep := s.Collect(context.Background())
	if r := reportFor(t, rep, CPU); r.Status != StatusFailed || r.Err == nil || !strings.Contains(r.Err.Error(), "panic: assignment to entry in nil map") {
		t.Errorf("cpu report = %+v, want failed with the panic", r)
	}
	if len(points) != 1 || reportFor(t, rep, Memory).Status != StatusOK {
		t.Errorf("the other collector suffered: %v, %+v", points, rep)
	}
}

func TestStatsAndLogs(t *testing.T) {
	var mu sync.Mutex
	fail := true
	logs := newRecordingHandler()
	s := samplerWith(t, slog.New(logs), map[string]collector{
		Memory: fakeCollector(func(_ context.Context, b *batch) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return errors.New("meminfo: broken")
			}
			b.add("memory_total_bytes", 1)
			return nil
		}),
		Swap: fakeCollector(func(context.Context, *batch) error { return skipf("no swap") }),
		Thermal: fakeCollector(func(_ context.Context, b *batch) error {
			b.add("temperature_celsius", 40, "sensor", "a")
			b.problem(errors.New("sensor b: unreadable"))
			return nil
		}),
	})
	for range 3 {
		s.Collect(context.Background())
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	for range 2 {
		s.Collect(context.Background())
	}
	st := s.Stats()
	for i := range st {
		st[i].Duration = 0
	}
	want := []CollectorStats{
		{Name: Memory, Runs: 5, Failures: 3},
		{Name: Swap, Runs: 5, Skips: 5},
		{Name: Thermal, Runs: 5, Partial: 5},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	// Each change of outcome is logged once, not every collection.
	wantLogs := []string{
		`WARN collector failed collector=memory err=meminfo: broken`,
		`INFO collector skipped collector=swap reason=no swap`,
		`WARN collector partly failed collector=thermal err=sensor b: unreadable`,
		`INFO collector recovered collector=memory`,
	}
	if diff := cmp.Diff(wantLogs, logs.lines()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

// recordingHandler keeps "LEVEL message k=v…" lines.
type recordingHandler struct {
	attrs []slog.Attr
	sink  *logSink
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func newRecordingHandler() *recordingHandler { return &recordingHandler{sink: &logSink{}} }

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	for _, a := range h.attrs {
		line += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	h.sink.lines = append(h.sink.lines, line)
	return nil
}

func (h *recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordingHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), as...), sink: h.sink}
}

func (h *recordingHandler) WithGroup(string) slog.Handler { return h }

func (h *recordingHandler) lines() []string {
	h.sink.mu.Lock()
	defer h.sink.mu.Unlock()
	return append([]string(nil), h.sink.lines...)
}

func TestCollectWithDoneContext(t *testing.T) {
	var ran atomic.Bool
	s := samplerWith(t, nil, map[string]collector{
		Memory: fakeCollector(func(_ context.Context, b *batch) error {
			ran.Store(true)
			b.add("memory_total_bytes", 1)
			return nil
		}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	points, rep := s.Collect(ctx)
	if r := reportFor(t, rep, Memory); r.Status != StatusFailed || r.Err == nil || r.Err.Error() != "not started: context canceled" || len(points) != 0 || ran.Load() {
		t.Errorf("with a done context: %+v, %d points, ran %v", r, len(points), ran.Load())
	}
	points, rep = s.Collect(context.Background())
	if r := reportFor(t, rep, Memory); r.Status != StatusOK || len(points) != 1 {
		t.Errorf("next collection: %+v, %d points", r, len(points))
	}
}

func TestMaxPoints(t *testing.T) {
	s := samplerWith(t, nil, map[string]collector{
		Network: fakeCollector(func(_ context.Context, b *batch) error {
			for i := range protocol.MaxPoints + 100 {
				b.add("network_receive_bytes_total", float64(i), "interface", strings.Repeat("v", i%7)+string(rune('a'+i%26))+strings.Repeat("x", i/26))
			}
			return nil
		}),
	})
	points, rep := s.Collect(context.Background())
	if len(points) != protocol.MaxPoints || rep.Dropped != 100 {
		t.Fatalf("%d points, %d dropped; want %d and 100", len(points), rep.Dropped, protocol.MaxPoints)
	}
	m := protocol.Metrics{Epoch: "e", Seq: 1, Time: time.Unix(1, 0), Points: points}
	if err := m.Validate(); err != nil {
		t.Error(err)
	}
}
