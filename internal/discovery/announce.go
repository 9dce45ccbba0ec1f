package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/grandcat/zeroconf"
	"golang.org/x/net/ipv4"
)

// ServiceType is the DNS-SD service type the hub announces.
const ServiceType = "_alicia-hub._tcp"

// DefaultPollInterval is how often an Announcer looks for changed interfaces
// and addresses when Announcement.PollInterval is zero. zeroconf has no
// netlink support, so polling is how a new address is noticed.
const DefaultPollInterval = 3 * time.Second

// probeWindow bounds how long after RegisterProxy zeroconf's Server.probe
// still sends announcements: two probes with random waits below 250 ms, an
// announcement, 1 s, the second announcement (server.go probe).
const probeWindow = 2 * time.Second

// ErrNoMulticast is wrapped by the errors of Announcer.Run (and reported by
// Browse's log) when IPv4 mDNS is impossible on this machine: UDP port 5353
// cannot be bound for multicast.
var ErrNoMulticast = errors.New("IPv4 mDNS unavailable (UDP port 5353 cannot be bound for multicast)")

// mdnsGroup and mdnsBind are what zeroconf uses for IPv4 (connection.go).
var (
	mdnsGroup = net.IPv4(224, 0, 0, 251)
	mdnsBind  = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: 5353}
)

// Announcement describes what an Announcer announces. Instance, Port and the
// TXT keys are required by the hub's contract (v, id, fp); the rest has
// defaults.
type Announcement struct {
	// Instance is the service instance name, e.g. "Alicia hub 3f9a": one DNS
	// label (1-63 bytes of UTF-8, no control characters, no leading or
	// trailing space or dot). Include something unique such as the hub id:
	// zeroconf does no conflict resolution.
	Instance string
	// Port is the TCP port announced in the SRV record (1-65535).
	Port int
	// TXT holds the TXT record's keys and values (RFC 6763 6): printable
	// ASCII keys without '=', each key=value at most 255 bytes.
	TXT map[string]string
	// Host is the announced host name (the SRV target, answered with this
	// machine's addresses), with or without ".local". The default is derived
	// from Instance ("Alicia hub 3f9a" → "alicia-hub-3f9a.local"), so hosts
	// that share the machine's host name, like test namespaces, still differ.
	Host string
	// Interfaces limits the announcement to these interfaces (matched by
	// name; they are looked up again on every poll). Nil means every
	// interface that is up, multicast-capable and not a loopback.
	Interfaces []net.Interface
	// PollInterval is how often interfaces and addresses are checked for
	// changes; zero means DefaultPollInterval.
	PollInterval time.Duration
}

// Announcer announces one service instance with mDNS. Create it with
// NewAnnouncer and call Run once.
type Announcer struct {
	instance string // as given, for logs
	label    string // escaped for zeroconf
	port     int
	txt      []string
	host     string // FQDN, e.g. "alicia-hub-3f9a.local."
	ifnames  []string
	poll     time.Duration
	log      *slog.Logger
}

// NewAnnouncer validates a and prepares an Announcer; it does no I/O. A nil
// log means slog.Default().
func NewAnnouncer(a Announcement, log *slog.Logger) (*Announcer, error) {
	if err := validateInstance(a.Instance); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if a.Port < 1 || a.Port > 65535 {
		return nil, fmt.Errorf("discovery: port %d: want 1-65535", a.Port)
	}
	if err := validateTXT(a.TXT); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	host := a.Host
	if host == "" {
		host = hostFromInstance(a.Instance)
	}
	fqdn, err := hostFQDN(host)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if a.PollInterval < 0 {
		return nil, fmt.Errorf("discovery: poll interval %v is negative", a.PollInterval)
	}
	poll := a.PollInterval
	if poll == 0 {
		poll = DefaultPollInterval
	}
	var ifnames []string
	if a.Interfaces != nil {
		ifnames = []string{}
		for _, ifi := range a.Interfaces {
			ifnames = append(ifnames, ifi.Name)
		}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Announcer{
		instance: a.Instance,
		label:    escapeLabel(a.Instance),
		port:     a.Port,
		txt:      encodeTXT(a.TXT),
		host:     fqdn,
		ifnames:  ifnames,
		poll:     poll,
		log:      log.With("instance", a.Instance, "service", ServiceType),
	}, nil
}

// Run announces the instance until ctx is done, then withdraws it with
// goodbye packets (TTL 0) and returns nil. It re-announces (goodbye, then a
// fresh announcement) whenever the set of interfaces or addresses changes, and
// waits, announcing nothing, while there is no usable address. If UDP port
// 5353 cannot be bound for IPv4 multicast it logs a warning saying what to do
// and returns an error wrapping ErrNoMulticast. Call Run once.
//
// A withdrawal within 2 s of an announcement waits for the end of those 2 s
// (zeroconf announces from a goroutine that Shutdown does not stop), so Run
// may return up to 2 s after ctx is done.
//
// Run opens sockets and lists interfaces only on its own goroutine.
func (a *Announcer) Run(ctx context.Context) error {
	var (
		srv      *zeroconf.Server
		since    time.Time // when srv was registered
		current  string    // state announced by srv
		reported string    // last problem or state logged, to log each once
	)
	withdraw := func(why string) {
		if srv != nil {
			// zeroconf's announcing goroutine is not stopped by Shutdown; let
			// it finish its announcements so none follows the goodbye.
			if d := probeWindow - time.Since(since); d > 0 {
				time.Sleep(d)
			}
			srv.Shutdown() // sends the goodbye: all records with TTL 0
			srv = nil
			a.log.Info("mdns withdrawn", "reason", why)
		}
		current = ""
	}
	defer withdraw("stopping")
	note := func(level slog.Level, key, msg string, args ...any) {
		if reported != key {
			reported = key
			a.log.Log(ctx, level, msg, args...)
		}
	}

	tick := time.NewTicker(a.poll)
	defer tick.Stop()
	for {
		ifaces, ips, err := a.snapshot()
		key := stateKey(ifaces, ips)
		switch {
		case err != nil:
			note(slog.LevelWarn, "err:"+err.Error(), "mdns cannot list network interfaces; will retry", "err", err)
		case key == current:
		case len(ips) == 0:
			withdraw("no usable address")
			note(slog.LevelInfo, "noaddr", "mdns waiting for a network address to announce", "interfaces", a.ifnamesOrAll())
		default:
			withdraw("network changed")
			if err := checkIPv4Multicast(ifaces); err != nil {
				if errors.Is(err, ErrNoMulticast) {
					a.log.Warn("mDNS DISABLED: cannot bind UDP port 5353 for IPv4 multicast, so agents cannot find this hub by themselves",
						"err", err,
						"cause", "another program holds port 5353 without sharing it (SO_REUSEADDR), or the system forbids multicast sockets",
						"fix", "find the program with `ss -ulpn 'sport = :5353'` and stop it or let it share the port (avahi-daemon shares), or give agents --hub HOST:PORT, or run the hub with --no-mdns")
					return fmt.Errorf("discovery: announce %q: %w", a.instance, err)
				}
				note(slog.LevelWarn, "join:"+key, "mdns cannot join the IPv4 multicast group; not announcing, will retry",
					"err", err, "interfaces", ifaceNames(ifaces))
				break
			}
			srv, err = zeroconf.RegisterProxy(a.label, ServiceType, "local", a.port, a.host, ips, a.txt, ifaces)
			if err != nil {
				srv = nil
				note(slog.LevelWarn, "reg:"+key, "mdns announcement failed; will retry", "err", err)
				break
			}
			since = time.Now()
			current = key
			reported = ""
			a.log.Info("mdns announcing", "host", a.host, "port", a.port, "addrs", ips, "interfaces", ifaceNames(ifaces))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (a *Announcer) ifnamesOrAll() []string {
	if a.ifnames == nil {
		return []string{"all"}
	}
	return a.ifnames
}

// snapshot lists the interfaces to announce on (up, multicast, not loopback,
// with a usable address, limited to a.ifnames if set) and their addresses:
// IPv4 and non-link-local IPv6 (a link-local IPv6 address without its zone is
// of no use to a peer).
func (a *Announcer) snapshot() ([]net.Interface, []string, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, nil, err
	}
	var ifaces []net.Interface
	var ips []string
	for _, ifi := range all {
		if a.ifnames != nil && !slices.Contains(a.ifnames, ifi.Name) {
			continue
		}
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		var got []string
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipn.IP
			if ip.IsLoopback() || ip.IsMulticast() || ip.IsUnspecified() || ip.To4() == nil && ip.IsLinkLocalUnicast() {
				continue
			}
			got = append(got, ip.String())
		}
		if len(got) > 0 {
			ifaces = append(ifaces, ifi)
			ips = append(ips, got...)
		}
	}
	return ifaces, ips, nil
}

// stateKey identifies what would be announced; an interface that comes back
// with a new index counts as a change (zeroconf sends by index).
func stateKey(ifaces []net.Interface, ips []string) string {
	parts := make([]string, 0, len(ifaces)+1)
	for _, ifi := range ifaces {
		parts = append(parts, fmt.Sprintf("%s/%d", ifi.Name, ifi.Index))
	}
	slices.Sort(parts)
	sorted := slices.Sorted(slices.Values(ips))
	return strings.Join(parts, ",") + "|" + strings.Join(sorted, ",")
}

func ifaceNames(ifaces []net.Interface) []string {
	names := make([]string, len(ifaces))
	for i, ifi := range ifaces {
		names[i] = ifi.Name
	}
	return names
}

// checkIPv4Multicast does what zeroconf's joinUdp4Multicast does and reports
// the failure zeroconf would only print before serving IPv6 alone. A failed
// bind wraps ErrNoMulticast; failing to join the group on every interface is
// returned as a plain error (it can be a transient state of the interfaces).
func checkIPv4Multicast(ifaces []net.Interface) error {
	c, err := net.ListenUDP("udp4", mdnsBind) // Go sets SO_REUSEADDR on multicast addresses, as for zeroconf
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoMulticast, err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	var errs []error
	for _, ifi := range ifaces {
		err := p.JoinGroup(&ifi, &net.UDPAddr{IP: mdnsGroup})
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ifi.Name, err))
	}
	return fmt.Errorf("join %v: %w", mdnsGroup, errors.Join(errs...))
}
