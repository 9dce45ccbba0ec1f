package sample

import (
	"context"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// TestThisMachine collects from this machine's /proc and /sys, with the
// real statfs, and checks that the values are sane.
func TestThisMachine(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Collect(context.Background())
	points, rep := s.Collect(context.Background())
	for _, r := range rep.Collectors {
		t.Logf("%-10s %-7s %3d points %8v %v%s", r.Name, r.Status, r.Points, r.Duration.Round(time.Microsecond), r.Err, r.Reason)
		if r.Status == StatusFailed {
			t.Errorf("collector %s failed: %v", r.Name, r.Err)
		}
	}
	for _, name := range []string{CPU, Memory, System, Self} {
		if r := reportFor(t, rep, name); r.Status != StatusOK || r.Err != nil {
			t.Errorf("%s: %+v", name, r)
		}
	}
	got := values(points)
	if got["memory_total_bytes"] <= 0 || got["memory_used_ratio"] <= 0 || got["memory_used_ratio"] > 1 {
		t.Errorf("memory: total %v, used ratio %v", got["memory_total_bytes"], got["memory_used_ratio"])
	}
	if got["system_uptime_seconds"] <= 0 {
		t.Errorf("uptime %v", got["system_uptime_seconds"])
	}
	if bt := got["system_boot_time_seconds"]; bt <= 0 || bt > float64(time.Now().Unix()) {
		t.Errorf("boot time %v", bt)
	}
	if got["system_processes"] < 1 || got["agent_resident_memory_bytes"] <= 0 || got["agent_goroutines"] < 1 {
		t.Errorf("processes %v, agent rss %v, goroutines %v", got["system_processes"], got["agent_resident_memory_bytes"], got["agent_goroutines"])
	}
	if _, ok := got["load1"]; !ok {
		t.Error("no load1")
	}
	// At least one core besides the total (usage itself needs a tick to
	// pass between the collections, which a fast machine may not see).
	if prev := s.runners[0].c.(*cpuCollector).prev; len(prev) < 2 || prev[0].name != "cpu" || prev[0].total == 0 {
		t.Errorf("cpu readings: %+v", prev)
	}
	for k, v := range withPrefix(got, "cpu_usage_ratio") {
		if v < 0 || v > 1 {
			t.Errorf("%s = %v", k, v)
		}
	}
	m := protocol.Metrics{Epoch: "e", Seq: 1, Time: time.Now(), Points: points}
	if err := m.Validate(); err != nil {
		t.Errorf("this machine's collection is not valid for the protocol: %v", err)
	}
}

// BenchmarkCollect measures one full collection of this machine (real
// statfs included).
func BenchmarkCollect(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	points, _ := s.Collect(ctx)
	b.ReportAllocs()
	for b.Loop() {
		points, _ = s.Collect(ctx)
	}
	b.ReportMetric(float64(len(points)), "points/op")
}
