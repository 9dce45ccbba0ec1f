package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The IPv6 mDNS group and the address browsers bind, as zeroconf binds them
// (connection.go); the IPv4 ones are mdnsGroup and mdnsBind.
var (
	mdnsGroup6 = net.ParseIP("ff02::fb")
	mdnsBind6  = &net.UDPAddr{IP: net.ParseIP("ff02::"), Port: 5353}
)

// mdnsSocket is a browser's UDP socket on port 5353, joined to the mDNS group
// of one IP version on every multicast interface that was up when it was
// opened. Go sets SO_REUSEADDR on it (a multicast bind address), so it shares
// the port with responders on the same machine.
type mdnsSocket struct {
	v4     *ipv4.PacketConn // one of v4 and v6 is set
	v6     *ipv6.PacketConn
	ifaces []net.Interface // joined, as listed when opened
}

// listenMDNS opens an IPv4 (or, with v6, an IPv6) socket and joins the group
// on every interface that is up and multicast-capable; it fails if none
// joins. It lists the interfaces and opens the socket on the calling
// goroutine.
func listenMDNS(v6 bool) (*mdnsSocket, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	s := &mdnsSocket{}
	var join func(*net.Interface) error
	var conn net.PacketConn
	if v6 {
		c, err := net.ListenUDP("udp6", mdnsBind6)
		if err != nil {
			return nil, err
		}
		conn, s.v6 = c, ipv6.NewPacketConn(c)
		_ = s.v6.SetMulticastHopLimit(255) // RFC 6762 11
		err = s.v6.SetControlMessage(ipv6.FlagInterface, true)
		join = func(ifi *net.Interface) error { return s.v6.JoinGroup(ifi, &net.UDPAddr{IP: mdnsGroup6}) }
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("ask for the receiving interface: %w", err)
		}
	} else {
		c, err := net.ListenUDP("udp4", mdnsBind)
		if err != nil {
			return nil, err
		}
		conn, s.v4 = c, ipv4.NewPacketConn(c)
		_ = s.v4.SetMulticastTTL(255)
		err = s.v4.SetControlMessage(ipv4.FlagInterface, true)
		join = func(ifi *net.Interface) error { return s.v4.JoinGroup(ifi, &net.UDPAddr{IP: mdnsGroup}) }
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("ask for the receiving interface: %w", err)
		}
	}
	var errs []error
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		if err := join(&ifi); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ifi.Name, err))
			continue
		}
		s.ifaces = append(s.ifaces, ifi)
	}
	if len(s.ifaces) == 0 {
		conn.Close()
		if len(errs) == 0 {
			return nil, errors.New("no interface is up and multicast-capable")
		}
		return nil, fmt.Errorf("join the mDNS group: %w", errors.Join(errs...))
	}
	return s, nil
}

// send multicasts b on every joined interface; it fails only if every
// interface fails.
func (s *mdnsSocket) send(b []byte) error {
	var errs []error
	for _, ifi := range s.ifaces {
		var err error
		if s.v6 != nil {
			_, err = s.v6.WriteTo(b, &ipv6.ControlMessage{IfIndex: ifi.Index}, &net.UDPAddr{IP: mdnsGroup6, Port: 5353})
		} else {
			_, err = s.v4.WriteTo(b, &ipv4.ControlMessage{IfIndex: ifi.Index}, &net.UDPAddr{IP: mdnsGroup, Port: 5353})
		}
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ifi.Name, err))
	}
	return errors.Join(errs...)
}

// read reads one packet into buf and returns its length and the index of the
// interface it came in on (0 if unknown).
func (s *mdnsSocket) read(buf []byte) (n, ifindex int, err error) {
	if s.v6 != nil {
		n, cm, _, err := s.v6.ReadFrom(buf)
		if cm != nil {
			ifindex = cm.IfIndex
		}
		return n, ifindex, err
	}
	n, cm, _, err := s.v4.ReadFrom(buf)
	if cm != nil {
		ifindex = cm.IfIndex
	}
	return n, ifindex, err
}

// zone is the zone of an IPv6 link-local address received on the interface
// with index ifindex: its name as listed when the socket was opened (looking
// it up now could happen in another network namespace), else the index.
func (s *mdnsSocket) zone(ifindex int) string {
	for _, ifi := range s.ifaces {
		if ifi.Index == ifindex {
			return ifi.Name
		}
	}
	if ifindex <= 0 {
		return ""
	}
	return strconv.Itoa(ifindex)
}

func (s *mdnsSocket) close() error {
	if s.v6 != nil {
		return s.v6.Close()
	}
	return s.v4.Close()
}

// packet is one datagram read by an mdnsSocket.
type packet struct {
	data    []byte
	ifindex int
}

// receive reads packets and sends them on out until reading fails (the socket
// was closed) or stop is closed.
func (s *mdnsSocket) receive(out chan<- packet, stop <-chan struct{}) error {
	buf := make([]byte, 65536)
	for {
		n, ifindex, err := s.read(buf)
		if err != nil {
			return err
		}
		select {
		case out <- packet{data: append([]byte(nil), buf[:n]...), ifindex: ifindex}:
		case <-stop:
			return nil
		}
	}
}

// browseQuery is the PTR query for service in .local: a multicast question
// (QM) with ID 0 and no known answers, so that every responder answers every
// query (RFC 6762 5.2, 7.1, 18.1).
func browseQuery(service string) ([]byte, error) {
	m := new(dns.Msg)
	m.SetQuestion(service+".local.", dns.TypePTR)
	m.Id = 0
	m.RecursionDesired = false
	return m.Pack()
}
