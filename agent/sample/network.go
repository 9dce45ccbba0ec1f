package sample

import (
	"context"

	psnet "github.com/shirou/gopsutil/v4/net"
)

// networkCollector reports the counters of each network interface but lo
// from /proc/net/dev.
type networkCollector struct {
	netdev string // path, for messages
}

var _ collector = networkCollector{}

func (c networkCollector) collect(ctx context.Context, b *batch) error {
	nics, err := psnet.IOCountersWithContext(ctx, true)
	if err != nil {
		return withPath(c.netdev, err)
	}
	n := 0
	for _, s := range nics {
		if s.Name == "lo" {
			continue
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
		return skipf("no network interfaces but lo in %s", c.netdev)
	}
	return nil
}
