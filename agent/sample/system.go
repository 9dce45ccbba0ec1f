package sample

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/load"
)

// systemCollector reports uptime, boot time and process counts. Uptime and
// boot time are read here from ProcRoot/uptime and the btime line of
// ProcRoot/stat: gopsutil's host.Uptime asks sysinfo(2), ignoring ProcRoot,
// and its host.BootTime derives the boot time from the clock and the
// uptime in containers, after a virtualization probe cached for the whole
// process.
type systemCollector struct {
	proc string
}

var _ collector = systemCollector{}

func (c systemCollector) collect(ctx context.Context, b *batch) error {
	var errs []error
	if up, err := readParsed(filepath.Join(c.proc, "uptime"), parseUptime); err != nil {
		errs = append(errs, err)
	} else {
		b.add("system_uptime_seconds", up)
	}
	if bt, err := readParsed(filepath.Join(c.proc, "stat"), parseBootTime); err != nil {
		errs = append(errs, err)
	} else {
		b.add("system_boot_time_seconds", bt)
	}
	if misc, err := load.MiscWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("process counts: %w", withPath(c.proc, err)))
	} else {
		b.add("system_processes", float64(misc.ProcsTotal))
		b.add("system_processes_running", float64(misc.ProcsRunning))
		b.add("system_processes_blocked", float64(misc.ProcsBlocked))
	}
	if len(errs) == 3 {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		b.problem(err)
	}
	return nil
}

// readParsed reads the file at path and parses it.
func readParsed(path string, parse func(string) (float64, error)) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := parse(string(data))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// parseUptime returns the first field of /proc/uptime: seconds since boot.
func parseUptime(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("uptime %q is not a number of seconds", f[0])
	}
	return v, nil
}

// parseBootTime returns the btime line of /proc/stat: the boot time in
// seconds since the Unix epoch.
func parseBootTime(s string) (float64, error) {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(line, "btime ")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("btime %q is not a number of seconds", strings.TrimSpace(rest))
		}
		return float64(v), nil
	}
	return 0, errors.New("no btime line")
}
