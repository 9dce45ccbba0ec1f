package sample

import (
	"context"
	"fmt"

	"github.com/shirou/gopsutil/v4/cpu"
)

// readCPUTicks reads the line for all CPUs, then one per core. gopsutil's
// ExLinux reports raw ticks and read errors; its portable cpu.Times turns
// ticks into float seconds and an unreadable file into an empty result.
func readCPUTicks(ctx context.Context, statPath string) ([]cpuTicks, error) {
	ex := cpu.NewExLinux()
	all, err := ex.TimesWithContext(ctx, false)
	if err != nil {
		return nil, withPath(statPath, err)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%s: no cpu line", statPath)
	}
	cores, err := ex.TimesWithContext(ctx, true)
	if err != nil {
		return nil, withPath(statPath, err)
	}
	out := make([]cpuTicks, 0, 1+len(cores))
	for _, t := range append(all[:1:1], cores...) {
		name := t.CPU
		if name == "cpu-total" {
			name = "cpu"
		}
		out = append(out, newCPUTicks(name, t.User, t.Nice, t.System, t.Idle, t.Iowait, t.Irq, t.Softirq, t.Steal))
	}
	return out, nil
}
