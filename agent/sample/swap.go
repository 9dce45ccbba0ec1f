package sample

import (
	"context"

	"github.com/shirou/gopsutil/v4/mem"
)

// swapCollector reports swap space from /proc/meminfo. gopsutil's
// SwapMemory takes the totals from sysinfo(2), which ignores ProcRoot, so
// this reads SwapTotal and SwapFree through VirtualMemory instead.
type swapCollector struct {
	meminfo string // path, for messages
}

var _ collector = swapCollector{}

func (c swapCollector) collect(ctx context.Context, b *batch) error {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return withPath(c.meminfo, err)
	}
	if vm.Total == 0 { // unreadable: not the same as no swap
		return noMemTotal(c.meminfo)
	}
	if vm.SwapTotal == 0 {
		return skipf("no swap configured (SwapTotal is 0 in %s)", c.meminfo)
	}
	b.add("swap_total_bytes", float64(vm.SwapTotal))
	b.add("swap_used_bytes", float64(vm.SwapTotal-min(vm.SwapFree, vm.SwapTotal)))
	return nil
}
