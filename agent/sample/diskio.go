package sample

import (
	"context"
	"regexp"

	"github.com/shirou/gopsutil/v4/disk"
)

// ignoredDisks are the devices left out of disk I/O: partitions (their disk
// counts their I/O), loop, ram, zram and floppy devices. node_exporter's
// default, plus mmcblk partitions and sdaa-style names.
var ignoredDisks = regexp.MustCompile(`^(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$`)

// diskIOCollector reports the I/O counters of each disk from
// /proc/diskstats. gopsutil leaves out devices whose counters are all zero,
// and looks up each device's serial number and label under /dev and
// /run/udev on every call (which this collector does not use).
type diskIOCollector struct {
	diskstats string // path, for messages
}

var _ collector = diskIOCollector{}

func (c diskIOCollector) collect(ctx context.Context, b *batch) error {
	counters, err := disk.IOCountersWithContext(ctx)
	if err != nil {
		return withPath(c.diskstats, err)
	}
	n := 0
	for name, d := range counters {
		if ignoredDisks.MatchString(name) {
			continue
		}
		n++
		b.add("disk_reads_completed_total", float64(d.ReadCount), "disk", name)
		b.add("disk_writes_completed_total", float64(d.WriteCount), "disk", name)
		b.add("disk_read_bytes_total", float64(d.ReadBytes), "disk", name)
		b.add("disk_written_bytes_total", float64(d.WriteBytes), "disk", name)
		b.add("disk_io_time_seconds_total", float64(d.IoTime)/1000, "disk", name)
	}
	if n == 0 {
		if len(counters) == 0 {
			if err := readError(c.diskstats); err != nil {
				return err
			}
		}
		return skipf("no disks with I/O in %s (partitions, loop, ram and zram devices are not reported)", c.diskstats)
	}
	return nil
}
