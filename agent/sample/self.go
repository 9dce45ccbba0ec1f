package sample

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/shirou/gopsutil/v4/process"
)

// selfCollector reports the agent's own footprint: resident memory and CPU
// time from ProcRoot/<pid>/statm and stat (through gopsutil), goroutines
// from the runtime.
type selfCollector struct {
	proc string
}

var _ collector = selfCollector{}

func (c selfCollector) collect(ctx context.Context, b *batch) error {
	b.add("agent_goroutines", float64(runtime.NumGoroutine()))
	pid := selfPID(c.proc)
	// A bare Process: NewProcess would probe for the PID and work out the
	// start time, which costs a virtualization probe and a boot time read.
	p := &process.Process{Pid: pid}
	if mi, err := p.MemoryInfoWithContext(ctx); err != nil {
		b.problem(fmt.Errorf("resident memory: %w", err))
	} else {
		b.add("agent_resident_memory_bytes", float64(mi.RSS))
	}
	if t, err := p.TimesWithContext(ctx); err != nil {
		b.problem(fmt.Errorf("cpu time: %w", err))
	} else {
		b.add("agent_cpu_seconds_total", t.User+t.System)
	}
	return nil
}

// selfPID is this process's ID as ProcRoot numbers it: ProcRoot/self links
// to it. That holds too when the agent runs in a container and reads the
// host's /proc, where os.Getpid (the container's number) would name another
// process. It falls back to os.Getpid.
func selfPID(proc string) int32 {
	if target, err := os.Readlink(filepath.Join(proc, "self")); err == nil {
		if pid, err := strconv.ParseInt(target, 10, 32); err == nil && pid > 0 {
			return int32(pid)
		}
	}
	return int32(os.Getpid())
}
