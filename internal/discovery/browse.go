package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/grandcat/zeroconf"
)

// browseSession is how long one zeroconf browser runs before Browse replaces
// it with a fresh one. zeroconf reports an instance only once per browser
// (unless a goodbye came first), so this bounds how long a change announced
// without a goodbye (a hub that crashed and came back elsewhere) stays unseen.
const browseSession = 30 * time.Second

// Backoff between failed browser starts.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Candidate is one instance of a service seen on the LAN. Nothing in it is
// authenticated: anyone on the LAN can announce anything.
type Candidate struct {
	// Instance is the instance name, unescaped ("Alicia hub 3f9a").
	Instance string
	// Addrs are the announced addresses, IPv4 first, each sorted.
	Addrs []net.IP
	// Port is the SRV port.
	Port int
	// TXT holds the TXT record; keys are lower case.
	TXT map[string]string
	// Seen is when this version of the candidate was received.
	Seen time.Time
}

// same reports whether c and d announce the same thing (Seen aside).
func (c Candidate) same(d Candidate) bool {
	return c.Instance == d.Instance && c.Port == d.Port && maps.Equal(c.TXT, d.TXT) &&
		slices.EqualFunc(c.Addrs, d.Addrs, net.IP.Equal)
}

// Browse browses for service (such as ServiceType) on every multicast
// interface until ctx is done, then returns nil. It calls found, on Browse's
// own goroutine, for every candidate that is new or differs from what was
// last reported under its instance name (addresses, port or TXT); found should
// return quickly. Browse keeps going through errors: it restarts zeroconf's
// browser every 30 s and after failures with a backoff, and logs problems on
// log (nil means slog.Default()), once each. It returns an error only for an
// invalid service type.
//
// Browse opens sockets and lists interfaces only on its own goroutine.
func Browse(ctx context.Context, service string, found func(Candidate), log *slog.Logger) error {
	return browse(ctx, service, found, log, browseSession)
}

// Watch is Browse that reports every sighting, changed or not: each
// instance still announced is reported again in every session (about every
// 30 s), so a caller can expire what is no longer seen.
func Watch(ctx context.Context, service string, seen func(Candidate), log *slog.Logger) error {
	return browseWith(ctx, service, seen, log, browseSession, true)
}

// browse is Browse with the session length as a parameter, for tests.
func browse(ctx context.Context, service string, found func(Candidate), log *slog.Logger, session time.Duration) error {
	return browseWith(ctx, service, found, log, session, false)
}

func browseWith(ctx context.Context, service string, found func(Candidate), log *slog.Logger, session time.Duration, every bool) error {
	if err := validateService(service); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	b := &browser{
		service: service,
		session: session,
		found:   found,
		known:   make(map[string]Candidate),
		every:   every,
		log:     log.With("component", "discovery", "service", service),
	}
	backoff := minBackoff
	for ctx.Err() == nil {
		err := b.run(ctx)
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			backoff = minBackoff
			if !b.degraded {
				b.reported = "" // a healthy session ran: log the next problem again
			}
			continue
		}
		b.note(slog.LevelWarn, err.Error(), "mdns browsing failed; will retry", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

type browser struct {
	service  string
	session  time.Duration
	found    func(Candidate)
	known    map[string]Candidate // last reported, by instance
	every    bool                 // report every sighting, not only changes
	log      *slog.Logger
	reported string // last problem logged
	degraded bool   // the last browser runs over IPv6 only
}

// note logs msg once until a different key is noted; key "" resets.
func (b *browser) note(level slog.Level, key, msg string, args ...any) {
	if key == b.reported {
		return
	}
	b.reported = key
	if key != "" {
		b.log.Log(context.Background(), level, msg, args...)
	}
}

// run runs one zeroconf browser for b.session. It returns nil when
// the session ran its course or ctx is done, an error when the browser could
// not start or stopped early.
func (b *browser) run(ctx context.Context) error {
	r, err := b.resolver()
	b.degraded = err == nil && r.ipv6only
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, b.session)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 16)
	if err := r.Browse(sctx, b.service, "local.", entries); err != nil {
		// zeroconf cancelled its own context; its main loop closes entries
		// and the sockets.
		for range entries {
		}
		return fmt.Errorf("discovery: browse %s: %w", b.service, err)
	}
	// zeroconf closes entries when sctx is done or its periodic query fails;
	// until then its main loop blocks on this channel, so always drain it.
	for e := range entries {
		c := candidateFrom(e, time.Now())
		if old, ok := b.known[c.Instance]; ok && old.same(c) && !b.every {
			continue
		}
		b.known[c.Instance] = c
		b.found(c)
	}
	if sctx.Err() == nil {
		return fmt.Errorf("discovery: browse %s: zeroconf's browser stopped", b.service)
	}
	return nil
}

// resolver opens a zeroconf resolver for IPv4, or else IPv6 with a warning.
// It never asks for both at once: zeroconf's NewResolver leaks the IPv4
// socket when IPv6 fails (client.go newClient), and the hub always announces
// over IPv4 (it refuses to run without), with its IPv6 addresses in the same
// packets.
func (b *browser) resolver() (resolver, error) {
	r, err4 := zeroconf.NewResolver(zeroconf.SelectIPTraffic(zeroconf.IPv4))
	if err4 == nil {
		return resolver{Resolver: r}, nil
	}
	r, err6 := zeroconf.NewResolver(zeroconf.SelectIPTraffic(zeroconf.IPv6))
	if err6 == nil {
		b.note(slog.LevelWarn, "v6only:"+err4.Error(),
			"mdns over IPv4 unavailable, browsing over IPv6 only; a hub announcing over IPv4 only will not be found",
			"err", err4, "fix", "check that an interface with IPv4 is up and that nothing holds UDP port 5353 exclusively (`ss -ulpn 'sport = :5353'`)")
		return resolver{Resolver: r, ipv6only: true}, nil
	}
	return resolver{}, fmt.Errorf("discovery: %w: ipv4: %w; ipv6: %w", ErrNoMulticast, err4, err6)
}

// resolver is a zeroconf resolver and the IP version it uses.
type resolver struct {
	*zeroconf.Resolver
	ipv6only bool
}

// candidateFrom converts a zeroconf entry, whose names and TXT strings are in
// miekg/dns presentation form.
func candidateFrom(e *zeroconf.ServiceEntry, now time.Time) Candidate {
	var addrs []net.IP
	for _, ip := range slices.Concat(e.AddrIPv4, e.AddrIPv6) {
		if !slices.ContainsFunc(addrs, ip.Equal) {
			addrs = append(addrs, ip)
		}
	}
	slices.SortFunc(addrs, func(a, b net.IP) int {
		a4, b4 := a.To4(), b.To4()
		switch {
		case a4 != nil && b4 == nil:
			return -1
		case a4 == nil && b4 != nil:
			return 1
		case a4 != nil:
			return bytes.Compare(a4, b4)
		}
		return bytes.Compare(a.To16(), b.To16())
	})
	return Candidate{
		Instance: unescape(e.Instance),
		Addrs:    addrs,
		Port:     e.Port,
		TXT:      parseTXT(e.Text),
		Seen:     now,
	}
}

// Lookup browses for service until match (nil matches anything) accepts a
// candidate and returns it, or until ctx is done and returns an error wrapping
// ctx's error. It logs on slog.Default().
func Lookup(ctx context.Context, service string, match func(Candidate) bool) (Candidate, error) {
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got Candidate
	ok := false
	err := Browse(bctx, service, func(c Candidate) {
		if !ok && (match == nil || match(c)) {
			got, ok = c, true
			cancel()
		}
	}, nil)
	switch {
	case ok:
		return got, nil
	case err != nil:
		return Candidate{}, err
	}
	return Candidate{}, fmt.Errorf("discovery: lookup %s: %w", service, ctx.Err())
}
