package sample

import (
	"context"
	"fmt"

	"github.com/shirou/gopsutil/v4/mem"
)

// memoryCollector reports physical memory from /proc/meminfo.
type memoryCollector struct {
	meminfo string // path, for messages
}

var _ collector = memoryCollector{}

func (c memoryCollector) collect(ctx context.Context, b *batch) error {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return withPath(c.meminfo, err)
	}
	if vm.Total == 0 {
		return noMemTotal(c.meminfo)
	}
	// gopsutil computes Used as Total − Available in unsigned arithmetic;
	// keep a bogus Available above Total from wrapping around.
	avail := min(vm.Available, vm.Total)
	used := vm.Total - avail
	b.add("memory_total_bytes", float64(vm.Total))
	b.add("memory_available_bytes", float64(avail))
	b.add("memory_used_bytes", float64(used))
	b.add("memory_used_ratio", float64(used)/float64(vm.Total))
	return nil
}

// noMemTotal says why meminfo gave no total: it could not be read, or it
// lacks the line.
func noMemTotal(meminfo string) error {
	if err := readError(meminfo); err != nil {
		return err
	}
	return fmt.Errorf("%s: no MemTotal", meminfo)
}
