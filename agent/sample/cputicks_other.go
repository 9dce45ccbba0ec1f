//go:build !linux

package sample

import (
	"context"
	"errors"
	"math"

	"github.com/shirou/gopsutil/v4/cpu"
)

// readCPUTicks reads the times for all CPUs, then one per core, in
// microseconds. The agent runs on Linux; this keeps the package building
// (and roughly working) on developers' machines.
func readCPUTicks(ctx context.Context, _ string) ([]cpuTicks, error) {
	all, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errors.New("cpu times: none reported")
	}
	cores, err := cpu.TimesWithContext(ctx, true)
	if err != nil {
		return nil, err
	}
	us := func(s float64) uint64 { return uint64(math.Round(s * 1e6)) }
	out := make([]cpuTicks, 0, 1+len(cores))
	for i, t := range append(all[:1:1], cores...) {
		name := t.CPU
		if i == 0 {
			name = "cpu"
		}
		out = append(out, newCPUTicks(name, us(t.User), us(t.Nice), us(t.System), us(t.Idle), us(t.Iowait), us(t.Irq), us(t.Softirq), us(t.Steal)))
	}
	return out, nil
}
