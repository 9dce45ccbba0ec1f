package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// browseSession is how long one browser socket is used before Browse opens
// a fresh one, so that interfaces that came up since are joined.
const browseSession = 30 * time.Second

// Backoff between failed browser starts.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Queries of a session: the first at once, then after 1 s, doubling up to
// maxQueryInterval (RFC 6762 5.2).
const (
	firstQueryInterval = time.Second
	maxQueryInterval   = time.Minute
)

// Candidate is one instance of a service seen on the LAN. Nothing in it is
// authenticated: anyone on the LAN can announce anything.
type Candidate struct {
	// Instance is the instance name, unescaped ("Alicia hub 3f9a").
	Instance string
	// Addrs are the announced addresses, IPv4 first, each sorted. IPv6
	// link-local addresses carry the zone of the interface the
	// announcement came in on ("fe80::1%eth0"): dial
	// net.JoinHostPort(a.String(), port).
	Addrs []netip.Addr
	// Port is the SRV port.
	Port int
	// TXT holds the TXT record; keys are lower case.
	TXT map[string]string
	// Seen is when this version of the candidate was received.
	Seen time.Time
}

// same reports whether c and d announce the same thing (Seen aside).
func (c Candidate) same(d Candidate) bool {
	return c.Instance == d.Instance && c.Port == d.Port && maps.Equal(c.TXT, d.TXT) && slices.Equal(c.Addrs, d.Addrs)
}

// Browse browses for service (such as ServiceType) on every multicast
// interface until ctx is done, then returns nil. It calls found, on Browse's
// own goroutine, for every candidate that is new or differs from what was
// last reported under its instance name (addresses, port or TXT); found should
// return quickly. Browse keeps going through errors: it reopens its socket
// every 30 s and after failures with a backoff, and logs problems on log (nil
// means slog.Default()), once each. It returns an error only for an invalid
// service type.
//
// Browse opens sockets and lists interfaces only on its own goroutine.
func Browse(ctx context.Context, service string, found func(Candidate), log *slog.Logger) error {
	return browse(ctx, service, found, log, browseSession)
}

// Watch is Browse that reports every sighting, changed or not: each
// instance still announced is reported again with every response that
// carries it (every session queries at least 5 times), so a caller can expire
// what is no longer seen.
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
		log:     log.With("service", service),
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
	degraded bool   // the last session ran over IPv6 only
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

// run runs one session: it opens a socket, queries for b.service and reads
// responses for b.session. It returns nil when the session ran its course or
// ctx is done, an error when the socket could not be opened or reading
// from it failed.
func (b *browser) run(ctx context.Context) error {
	query, err := browseQuery(b.service)
	if err != nil {
		return fmt.Errorf("discovery: browse %s: pack query: %w", b.service, err)
	}
	sock, err := b.open()
	b.degraded = err == nil && sock.v6 != nil
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, b.session)
	defer cancel()

	packets := make(chan packet, 16)
	stop, stopped := make(chan struct{}), make(chan struct{})
	var rerr error
	go func() {
		defer close(stopped)
		rerr = sock.receive(packets, stop)
	}()
	defer func() {
		close(stop)
		sock.close()
		<-stopped
	}()

	sess := newSession(b.service)
	next := time.NewTimer(0)
	defer next.Stop()
	interval := firstQueryInterval
	partial := false // a partly unreadable response was logged
	unsent := false  // a failed query was logged
	for {
		select {
		case <-sctx.Done():
			return nil
		case <-stopped:
			return fmt.Errorf("discovery: browse %s: read: %w", b.service, rerr)
		case <-next.C:
			// A failed query is not the end of the session: answers to
			// others and announcements still arrive, and the next query may
			// pass (an IPv6 source address is unusable for about a second
			// after its interface comes up).
			if err := sock.send(query); err != nil && !unsent {
				unsent = true
				b.log.Debug("mdns query failed; will query again", "err", err)
			}
			next.Reset(interval)
			interval = min(2*interval, maxQueryInterval)
		case p := <-packets:
			rrs, skipped, err := responseRecords(p.data)
			if errors.Is(err, errNotResponse) {
				continue
			}
			if (err != nil || skipped > 0) && !partial {
				partial = true // once a session: an old responder sends such a packet every time
				b.log.Debug("mdns response partly unreadable; using the rest", "records_skipped", skipped, "err", err, "interface", sock.zone(p.ifindex))
			}
			for _, c := range sess.read(rrs, sock.zone(p.ifindex), time.Now()) {
				if old, ok := b.known[c.Instance]; ok && old.same(c) && !b.every {
					continue
				}
				b.known[c.Instance] = c
				b.found(c)
			}
		}
	}
}

// open opens a socket for IPv4, or else IPv6 with a warning. It never opens
// both: the hub always announces over IPv4 (it refuses to run without), with
// its IPv6 addresses in the same packets.
func (b *browser) open() (*mdnsSocket, error) {
	s, err4 := listenMDNS(false)
	if err4 == nil {
		return s, nil
	}
	s, err6 := listenMDNS(true)
	if err6 == nil {
		b.note(slog.LevelWarn, "v6only:"+err4.Error(),
			"mdns over IPv4 unavailable, browsing over IPv6 only; a hub announcing over IPv4 only will not be found",
			"err", err4, "fix", "check that an interface with IPv4 is up and that nothing holds UDP port 5353 exclusively (`ss -ulpn 'sport = :5353'`)")
		return s, nil
	}
	return nil, fmt.Errorf("discovery: %w: ipv4: %w; ipv6: %w", ErrNoMulticast, err4, err6)
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
