package sample

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	psnet "github.com/shirou/gopsutil/v4/net"
)

// networkCollector reports the counters of each network interface from
// /proc/net/dev, but lo, the virtual interfaces (unless includeVirtual) and
// those exclude matches.
type networkCollector struct {
	netdev  string // path, for messages
	virtual string // SysRoot/devices/virtual/net, where the kernel lists virtual interfaces
	// exclude matches interface names to leave out; nil: none.
	exclude        *regexp.Regexp
	includeVirtual bool
}

var _ collector = networkCollector{}

func (c networkCollector) collect(ctx context.Context, b *batch) error {
	nics, err := psnet.IOCountersWithContext(ctx, true)
	if err != nil {
		return withPath(c.netdev, err)
	}
	n := 0
	for _, s := range nics {
		if s.Name == "lo" || (c.exclude != nil && c.exclude.MatchString(s.Name)) {
			continue
		}
		if !c.includeVirtual {
			virtual, err := c.isVirtual(s.Name)
			if err != nil {
				b.problem(err)
			}
			if virtual {
				continue
			}
		}
		n++
		b.add("network_receive_bytes_total", float64(s.BytesRecv), "interface", s.Name)
		b.add("network_transmit_bytes_total", float64(s.BytesSent), "interface", s.Name)
		b.add("network_receive_packets_total", float64(s.PacketsRecv), "interface", s.Name)
		b.add("network_transmit_packets_total", float64(s.PacketsSent), "interface", s.Name)
		b.add("network_receive_errs_total", float64(s.Errin), "interface", s.Name)
		b.add("network_transmit_errs_total", float64(s.Errout), "interface", s.Name)
		b.add("network_receive_drop_total", float64(s.Dropin), "interface", s.Name)
		b.add("network_transmit_drop_total", float64(s.Dropout), "interface", s.Name)
	}
	if n == 0 {
		return skipf("no network interfaces but lo, virtual or excluded ones in %s", c.netdev)
	}
	return nil
}

// isVirtual reports whether the kernel lists the interface name under
// devices/virtual/net (as /sys/class/net/<name> then links there). An
// interface it cannot tell about (no sysfs) counts as physical, with an
// error for anything but its absence.
func (c networkCollector) isVirtual(name string) (bool, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return false, nil // not a name sysfs could list
	}
	_, err := os.Lstat(filepath.Join(c.virtual, name))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}
