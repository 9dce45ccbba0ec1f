package sample

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/shirou/gopsutil/v4/load"
)

// cpuCollector reports CPU usage from the difference between two readings of
// /proc/stat (so nothing on the first collection), and the load averages.
type cpuCollector struct {
	proc string

	// mu guards prev.
	mu   sync.Mutex
	prev []cpuTicks // the previous reading: all CPUs first, then each core
}

// cpuTicks are one CPU line of /proc/stat, in ticks.
type cpuTicks struct {
	name  string // "cpu" for all CPUs, else "cpu0", "cpu1", …
	total uint64 // every state; guest time is already in user and nice
	busy  uint64 // total − idle − iowait
}

func newCPUTicks(name string, user, nice, system, idle, iowait, irq, softirq, steal uint64) cpuTicks {
	t := cpuTicks{name: name, total: user + nice + system + idle + iowait + irq + softirq + steal}
	if idle+iowait < t.total {
		t.busy = t.total - idle - iowait
	}
	return t
}

var _ collector = (*cpuCollector)(nil)

func (c *cpuCollector) collect(ctx context.Context, b *batch) error {
	cur, err := readCPUTicks(ctx, filepath.Join(c.proc, "stat"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	prev := c.prev
	c.prev = cur
	c.mu.Unlock()
	for i, t := range cur {
		p, ok := findTicks(prev, i, t.name)
		if !ok {
			continue // first collection, or a core that came online since
		}
		r, ok := usageRatio(p, t)
		if !ok {
			continue
		}
		cpu := "total"
		if i > 0 {
			cpu = strings.TrimPrefix(t.name, "cpu")
		}
		b.add("cpu_usage_ratio", r, "cpu", cpu)
	}
	avg, err := loadAvg(ctx)
	if err != nil {
		b.problem(fmt.Errorf("load average: %w", withPath(filepath.Join(c.proc, "loadavg"), err)))
		return nil
	}
	b.add("load1", avg.Load1)
	b.add("load5", avg.Load5)
	b.add("load15", avg.Load15)
	return nil
}

// loadAvg reads the load averages. gopsutil indexes the fields of loadavg
// without checking how many there are; a short file must not take the
// CPU usage down with it.
func loadAvg(ctx context.Context) (avg *load.AvgStat, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed (gopsutil: %v)", p)
		}
	}()
	return load.AvgWithContext(ctx)
}

// findTicks finds the reading of the CPU called name in prev, where it
// usually sits at index i.
func findTicks(prev []cpuTicks, i int, name string) (cpuTicks, bool) {
	if i < len(prev) && prev[i].name == name {
		return prev[i], true
	}
	for _, p := range prev {
		if p.name == name {
			return p, true
		}
	}
	return cpuTicks{}, false
}

// usageRatio is the busy share of the time between two readings; false when
// no tick passed (or the counters went backwards).
func usageRatio(prev, cur cpuTicks) (float64, bool) {
	if cur.total <= prev.total {
		return 0, false
	}
	dt := cur.total - prev.total
	if cur.busy <= prev.busy { // iowait may decrease, making busy jump back
		return 0, true
	}
	db := cur.busy - prev.busy
	if db >= dt {
		return 1, true
	}
	return float64(db) / float64(dt), true
}
