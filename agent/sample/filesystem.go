package sample

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
)

// filesystemCollector reports the usage of each mounted real filesystem.
// The mount table comes from gopsutil (ProcRoot/1/mountinfo, else
// ProcRoot/self/mountinfo); the usage from statfs, which may block for
// minutes on a dead network filesystem, so each call runs in its own
// goroutine under a timeout.
type filesystemCollector struct {
	proc    string
	statfs  func(string) (FSStat, error)
	timeout time.Duration
	// excludeTypes and excludeMounts match the mounts left out.
	excludeTypes, excludeMounts *regexp.Regexp

	// mu guards busy.
	mu   sync.Mutex
	busy map[string]time.Time // mount points whose statfs has not returned, and since when
}

func newFilesystemCollector(proc string, statfs func(string) (FSStat, error), timeout time.Duration, excludeTypes, excludeMounts *regexp.Regexp) *filesystemCollector {
	return &filesystemCollector{proc: proc, statfs: statfs, timeout: timeout, excludeTypes: excludeTypes, excludeMounts: excludeMounts, busy: map[string]time.Time{}}
}

// statFS is the default Config.StatFS. gopsutil's UsageStat.Free is the
// space available to unprivileged users (f_bavail), not f_bfree.
func statFS(path string) (FSStat, error) {
	u, err := disk.UsageWithContext(context.Background(), path)
	if err != nil {
		return FSStat{}, err
	}
	return FSStat{Size: u.Total, Used: u.Used, Avail: u.Free, Inodes: u.InodesTotal, InodesFree: u.InodesFree}, nil
}

var _ collector = (*filesystemCollector)(nil)

func (c *filesystemCollector) collect(ctx context.Context, b *batch) error {
	parts, err := disk.PartitionsWithContext(ctx, true)
	if err != nil {
		return fmt.Errorf("mount table: %w", err)
	}
	if len(parts) == 0 { // there is always a root: the table was unreadable
		return fmt.Errorf("mount table: empty: %w", errors.Join(
			cmp.Or(readError(filepath.Join(c.proc, "1", "mountinfo")), errors.New("1/mountinfo: no mounts")),
			cmp.Or(readError(filepath.Join(c.proc, "self", "mountinfo")), errors.New("self/mountinfo: no mounts"))))
	}
	mounts := c.realMounts(parts)
	if len(mounts) == 0 {
		return skipf("no real filesystems among the %d mounts (pseudo, sandbox and excluded ones are left out)", len(parts))
	}
	for i, r := range c.statAll(ctx, mounts) {
		m := mounts[i]
		labels := []string{"mount", m.Mountpoint, "source", m.Device, "fstype", m.Fstype}
		b.add("filesystem_readonly", boolValue(slices.Contains(m.Opts, "ro")), labels...)
		if r.err != nil {
			b.problem(fmt.Errorf("statfs %s: %w", m.Mountpoint, r.err))
			b.add("filesystem_device_error", 1, labels...)
			continue
		}
		st := r.st
		b.add("filesystem_device_error", 0, labels...)
		b.add("filesystem_size_bytes", float64(st.Size), labels...)
		b.add("filesystem_used_bytes", float64(st.Used), labels...)
		b.add("filesystem_available_bytes", float64(st.Avail), labels...)
		if st.Used+st.Avail > 0 {
			b.add("filesystem_used_ratio", float64(st.Used)/float64(st.Used+st.Avail), labels...)
		}
		if st.Inodes > 0 && st.InodesFree <= st.Inodes {
			b.add("filesystem_inodes_used_ratio", float64(st.Inodes-st.InodesFree)/float64(st.Inodes), labels...)
		}
	}
	return nil
}

// realMounts keeps the mounts worth reporting, in mount-table order: none
// of the excluded types or mount points (by default pseudo, image and
// container filesystems), no bind mounts of subdirectories, and only the
// topmost of several mounts on one mount point.
func (c *filesystemCollector) realMounts(parts []disk.PartitionStat) []disk.PartitionStat {
	out := make([]disk.PartitionStat, 0, len(parts))
	for _, p := range parts {
		if c.excludeTypes.MatchString(p.Fstype) || c.excludeMounts.MatchString(p.Mountpoint) || slices.Contains(p.Opts, "bind") {
			continue
		}
		out = slices.DeleteFunc(out, func(q disk.PartitionStat) bool { return q.Mountpoint == p.Mountpoint })
		out = append(out, p)
	}
	return out
}

// statResult is the usage of one mount, or why there is none.
type statResult struct {
	st  FSStat
	err error
}

// statAll runs statfs on every mount concurrently and waits for the answers
// until the mount timeout or ctx, whichever is first. A mount whose earlier
// statfs has not returned is not asked again: at most one goroutine per
// mount is ever stuck in the kernel.
func (c *filesystemCollector) statAll(ctx context.Context, mounts []disk.PartitionStat) []statResult {
	type answer struct {
		i int
		statResult
	}
	res := make([]statResult, len(mounts))
	asked := make([]bool, len(mounts))
	answers := make(chan answer, len(mounts)) // late answers never block on it
	pending := 0
	now := time.Now()
	c.mu.Lock()
	for i, m := range mounts {
		mp := m.Mountpoint
		if since, ok := c.busy[mp]; ok {
			res[i].err = fmt.Errorf("not asked: an earlier statfs has not returned since %s", since.UTC().Format(time.RFC3339))
			continue
		}
		c.busy[mp] = now
		asked[i] = true
		pending++
		go func() {
			st, err := c.statfs(mp)
			c.mu.Lock()
			delete(c.busy, mp)
			c.mu.Unlock()
			answers <- answer{i, statResult{st, err}}
		}()
	}
	c.mu.Unlock()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	var gaveUp error
	for pending > 0 && gaveUp == nil {
		select {
		case a := <-answers:
			res[a.i] = a.statResult
			asked[a.i] = false
			pending--
		case <-timer.C:
			gaveUp = fmt.Errorf("no answer within %v (a hung network filesystem?); not asked again until it answers", c.timeout)
		case <-ctx.Done():
			gaveUp = fmt.Errorf("no answer before the collection ended: %w", ctx.Err())
		}
	}
	for i := range res {
		if asked[i] { // still waiting
			res[i].err = gaveUp
		}
	}
	return res
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
