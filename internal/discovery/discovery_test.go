package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/discovery/discoverytest"
	"github.com/alicia-home/alicia/internal/netnstest"
)

func TestMain(m *testing.M) {
	// zeroconf's Server.probe sleeps up to ~3.5 s after RegisterProxy and is
	// not waited for by Shutdown (server.go probe); everything else must end.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/grandcat/zeroconf.(*Server).probe"))
}

// ---- unit tests: names and TXT records ----

// packUnpackTXT sends TXT strings through miekg/dns as zeroconf does.
func packUnpackTXT(t *testing.T, txt []string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.Response = true
	m.Answer = []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: "x._alicia-hub._tcp.local.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 120},
		Txt: txt,
	}}
	buf, err := m.Pack()
	if err != nil {
		t.Fatalf("pack %q: %v", txt, err)
	}
	var back dns.Msg
	if err := back.Unpack(buf); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return back.Answer[0].(*dns.TXT).Txt
}

func TestTXTRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		txt  map[string]string
	}{
		{"hub", map[string]string{"v": "1", "id": "hub-3f9a", "fp": "sha256:" + strings.Repeat("ab", 32)}},
		{"empty", map[string]string{}},
		{"empty value", map[string]string{"flag": ""}},
		{"specials", map[string]string{"x": `a "quoted" \ value = with \065 and é`, "ctl": "\x01\x7f\xff"}},
		{"max", map[string]string{"k": strings.Repeat("z", maxTXTString-2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateTXT(tc.txt); err != nil {
				t.Fatal(err)
			}
			got := parseTXT(packUnpackTXT(t, encodeTXT(tc.txt)))
			if diff := cmp.Diff(tc.txt, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("TXT changed on the wire (-sent +received):\n%s", diff)
			}
		})
	}
}

func TestParseTXT(t *testing.T) {
	got := parseTXT([]string{"v=1", "", "Flag", "V=2", `k=a\061b\\c`, "=novalue", `q=\"x\"`})
	want := map[string]string{"v": "1", "flag": "", "k": `a=b\c`, "q": `"x"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseTXT (-want +got):\n%s", diff)
	}
}

func TestInstanceEscaping(t *testing.T) {
	for _, inst := range []string{"Alicia hub 3f9a", `odd. '@;()"\ name`, "Küche é", "ctl\x01\x7f"} {
		name := escapeLabel(inst) + "._alicia-hub._tcp.local."
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeSRV)
		buf, err := m.Pack()
		if err != nil {
			t.Fatalf("%q: pack: %v", inst, err)
		}
		var back dns.Msg
		if err := back.Unpack(buf); err != nil {
			t.Fatal(err)
		}
		// zeroconf's responder compares the unpacked question with its name.
		if got := back.Question[0].Name; got != name {
			t.Errorf("%q: unpacked name %q, want %q", inst, got, name)
		}
		if got := unescape(strings.TrimSuffix(back.Question[0].Name, "._alicia-hub._tcp.local.")); got != inst {
			t.Errorf("unescape(...) = %q, want %q", got, inst)
		}
	}
}

func TestHostNames(t *testing.T) {
	for in, want := range map[string]string{
		"Alicia hub 3f9a":         "alicia-hub-3f9a",
		"  --Küche!! ":            "k-che",
		"ééé":                     defaultHost,
		strings.Repeat("ab-", 40): strings.Repeat("ab-", 21)[:62],
	} {
		if got := hostFromInstance(in); got != want {
			t.Errorf("hostFromInstance(%q) = %q, want %q", in, got, want)
		}
		if _, err := hostFQDN(hostFromInstance(in)); err != nil {
			t.Errorf("derived host of %q is invalid: %v", in, err)
		}
	}
	for in, want := range map[string]string{
		"hub": "hub.local.", "hub.local": "hub.local.", "hub.LOCAL.": "hub.local.", "a.b": "a.b.local.",
		"": "", "-hub": "", "hub_1": "", "hub..x": "", ".local": "",
	} {
		got, err := hostFQDN(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("hostFQDN(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestNewAnnouncerValidation(t *testing.T) {
	ok := Announcement{Instance: "Alicia hub 1", Port: 8470, TXT: map[string]string{"v": "1"}}
	for _, tc := range []struct {
		name    string
		edit    func(*Announcement)
		wantErr string
	}{
		{"ok", func(*Announcement) {}, ""},
		{"no TXT", func(a *Announcement) { a.TXT = nil }, ""},
		{"utf8 instance", func(a *Announcement) { a.Instance = "Küche (Hub) é" }, ""},
		{"host given", func(a *Announcement) { a.Host = "kitchen-hub.local" }, ""},
		{"empty instance", func(a *Announcement) { a.Instance = "" }, "empty"},
		{"long instance", func(a *Announcement) { a.Instance = strings.Repeat("x", 64) }, "longer than 63"},
		{"control char", func(a *Announcement) { a.Instance = "a\nb" }, "control"},
		{"bad utf8", func(a *Announcement) { a.Instance = "a\xffb" }, "UTF-8"},
		{"trailing dot", func(a *Announcement) { a.Instance = "hub." }, "begins or ends"},
		{"leading space", func(a *Announcement) { a.Instance = " hub" }, "begins or ends"},
		{"port 0", func(a *Announcement) { a.Port = 0 }, "port"},
		{"port too big", func(a *Announcement) { a.Port = 65536 }, "port"},
		{"empty key", func(a *Announcement) { a.TXT = map[string]string{"": "x"} }, "empty"},
		{"key with =", func(a *Announcement) { a.TXT = map[string]string{"a=b": "x"} }, "without '='"},
		{"key non-ascii", func(a *Announcement) { a.TXT = map[string]string{"é": "x"} }, "printable ASCII"},
		{"keys differ in case", func(a *Announcement) { a.TXT = map[string]string{"fp": "1", "FP": "2"} }, "case"},
		{"entry 256 bytes", func(a *Announcement) { a.TXT = map[string]string{"k": strings.Repeat("z", 254)} }, "longer than 255"},
		{"record too big", func(a *Announcement) {
			a.TXT = map[string]string{}
			for i := range 6 {
				a.TXT[fmt.Sprint("k", i)] = strings.Repeat("z", 250)
			}
		}, "longer than 1300"},
		{"bad host", func(a *Announcement) { a.Host = "my_hub" }, "host name"},
		{"negative poll", func(a *Announcement) { a.PollInterval = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.edit(&a)
			_, err := NewAnnouncer(a, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if err := Browse(t.Context(), "alicia-hub._tcp", func(Candidate) {}, nil); err == nil {
		t.Error("Browse accepted a service type without a leading underscore")
	}
}

// ---- mDNS on a LAN of network namespaces ----

// logSink collects log output and copies it to the test log.
type logSink struct {
	t       testing.TB
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // receives after writes, coalesced
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	s.t.Log(strings.TrimSpace(string(p)))
	select {
	case s.written <- struct{}{}:
	default:
	}
	return len(p), nil
}

// waitFor waits until the log contains substr.
func (s *logSink) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !strings.Contains(s.String(), substr) {
		select {
		case <-s.written:
		case <-deadline.C:
			t.Fatalf("log did not show %q within %v", substr, timeout)
		}
	}
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(t testing.TB, name string) (*slog.Logger, *logSink) {
	s := &logSink{t: t, written: make(chan struct{}, 1)}
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_host", name), s
}

// announce runs an Announcer inside h's namespace until the returned stop is
// called (or the test ends) and returns Run's error from stop.
func announce(t *testing.T, h *netnstest.Host, a Announcement) (stop func() error) {
	t.Helper()
	stop, _ = announceLog(t, h, a)
	return stop
}

// announceLog is announce that also returns the announcer's log.
func announceLog(t *testing.T, h *netnstest.Host, a Announcement) (stop func() error, log *logSink) {
	t.Helper()
	logger, log := newLogger(t, h.Name())
	ann, err := NewAnnouncer(a, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Do(func() error { return ann.Run(ctx) }) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("announcer did not stop within 10 s")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("announcer on %s: %v", h.Name(), err)
		}
	})
	return stop, log
}

// browseOn runs Browse inside h's namespace until the test ends and returns
// the candidates it reports. session 0 means Browse's default.
func browseOn(t *testing.T, h *netnstest.Host, session time.Duration) <-chan Candidate {
	t.Helper()
	log, _ := newLogger(t, h.Name())
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Candidate, 64)
	done := make(chan error, 1)
	go func() {
		done <- h.Do(func() error {
			if session == 0 {
				session = browseSession
			}
			return browse(ctx, ServiceType, func(c Candidate) {
				select {
				case ch <- c:
				case <-ctx.Done():
				}
			}, log, session)
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Browse on %s: %v", h.Name(), err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Browse on %s did not return within 10 s of cancel", h.Name())
		}
	})
	return ch
}

// waitFor reads candidates until ok accepts one, failing after timeout.
func waitFor(t *testing.T, ch <-chan Candidate, timeout time.Duration, what string, ok func(Candidate) bool) Candidate {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var seen []string
	for {
		select {
		case c := <-ch:
			if ok(c) {
				return c
			}
			seen = append(seen, fmt.Sprintf("%+v", c))
		case <-deadline.C:
			t.Fatalf("no candidate %s within %v; saw:\n%s", what, timeout, strings.Join(seen, "\n"))
		}
	}
}

func addrsAre(c Candidate, ips ...string) bool {
	if len(c.Addrs) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if c.Addrs[i] != netip.MustParseAddr(ip) {
			return false
		}
	}
	return true
}

func hubTXT(fp string) map[string]string {
	return map[string]string{"v": "1", "id": "hub-" + fp[:4], "fp": "sha256:" + fp}
}

func TestAnnounceAndBrowse(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")

	txt := hubTXT(strings.Repeat("a1", 32))
	txt["note"] = `a "quoted" \ value = é`
	want := Candidate{Instance: "Alicia hub (test) é", Addrs: []netip.Addr{netip.MustParseAddr(hub.IP().String())}, Port: 8470, TXT: txt}
	start := time.Now()
	announce(t, hub, Announcement{Instance: want.Instance, Port: want.Port, TXT: txt})
	got := waitFor(t, browseOn(t, agent, 0), 10*time.Second, "from the hub", func(c Candidate) bool { return c.Instance == want.Instance })
	t.Logf("found after %v", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}), cmpopts.IgnoreFields(Candidate{}, "Seen")); diff != "" {
		t.Errorf("candidate (-want +got):\n%s", diff)
	}
	if got.Seen.Before(start) || got.Seen.After(time.Now()) {
		t.Errorf("Seen = %v, not during the test", got.Seen)
	}

	// Lookup, by fingerprint.
	var c Candidate
	if err := agent.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err = Lookup(ctx, ServiceType, func(c Candidate) bool { return c.TXT["fp"] == txt["fp"] })
		return err
	}); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if !addrsAre(c, "198.18.0.1") || c.Port != 8470 {
		t.Errorf("Lookup = %+v", c)
	}
}

func TestHubMoves(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")

	announce(t, hub, Announcement{Instance: "Alicia hub move", Port: 8470, TXT: hubTXT("b2b2b2b2"), PollInterval: 200 * time.Millisecond})
	ch := browseOn(t, agent, 0)
	waitFor(t, ch, 10*time.Second, "at 198.18.0.1", func(c Candidate) bool { return addrsAre(c, "198.18.0.1") })

	start := time.Now()
	hub.SetAddr("198.18.0.2/24")
	c := waitFor(t, ch, 10*time.Second, "at the new address 198.18.0.2 only", func(c Candidate) bool { return addrsAre(c, "198.18.0.2") })
	t.Logf("new address reported %v after the move", time.Since(start).Round(time.Millisecond))
	if c.TXT["fp"] != "sha256:b2b2b2b2" {
		t.Errorf("moved candidate lost its TXT: %v", c.TXT)
	}
}

// TestHubReturnsWithoutGoodbye: the hub's link goes down, it gets another
// address and comes back; its goodbye was lost, so Browse must report the
// changed candidate from the hub's next announcement or answer alone (the
// browser zeroconf had reported an instance once per session).
func TestHubReturnsWithoutGoodbye(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")

	_, log := announceLog(t, hub, Announcement{Instance: "Alicia hub lost", Port: 8470, TXT: hubTXT("abababab"), PollInterval: 200 * time.Millisecond})
	const session = 3 * time.Second
	ch := browseOn(t, agent, session)
	waitFor(t, ch, 10*time.Second, "at 198.18.0.1", func(c Candidate) bool { return addrsAre(c, "198.18.0.1") })

	hub.LinkDown()
	// The announcer notices and withdraws; its goodbye cannot leave the host.
	log.waitFor(t, `reason="no usable address"`, 10*time.Second)
	hub.SetAddr("198.18.0.3/24")
	start := time.Now()
	hub.LinkUp()
	waitFor(t, ch, session+10*time.Second, "at 198.18.0.3", func(c Candidate) bool { return addrsAre(c, "198.18.0.3") })
	t.Logf("new address reported %v after the link came back (browser session %v)", time.Since(start).Round(time.Millisecond), session)
}

func TestGoodbyeOnStop(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")
	const instance = "Alicia hub bye"
	stop := announce(t, hub, Announcement{Instance: instance, Port: 8470, TXT: hubTXT("c3c3c3c3")})
	waitFor(t, browseOn(t, agent, 0), 10*time.Second, "from the hub", func(c Candidate) bool { return c.Instance == instance })

	// Listen to the raw mDNS traffic on the agent, then stop the announcer.
	var conn *net.UDPConn
	if err := agent.Do(func() error {
		ifi, err := net.InterfaceByName(agent.Interface())
		if err != nil {
			return err
		}
		conn, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: mdnsGroup, Port: 5353})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stopped := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	name := escapeLabel(instance) + "." + ServiceType + ".local."
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// ttls reads one response and returns the TTLs of its records about
	// the instance by type (nil for other packets).
	buf := make([]byte, 9000)
	ttls := func() (map[uint16]uint32, error) {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return nil, err
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || !m.Response {
			return nil, nil
		}
		var got map[uint16]uint32
		for _, rr := range m.Answer {
			h := rr.Header()
			if h.Name == name || h.Rrtype == dns.TypePTR && rr.(*dns.PTR).Ptr == name {
				if got == nil {
					got = map[uint16]uint32{}
				}
				got[h.Rrtype] = h.Ttl
			}
		}
		return got, nil
	}
	goodbye := map[uint16]uint32{dns.TypePTR: 0, dns.TypeSRV: 0, dns.TypeTXT: 0}
	for {
		got, err := ttls()
		if err != nil {
			t.Fatalf("no goodbye for %q within 5 s of stopping: %v", name, err)
		}
		if cmp.Equal(got, goodbye) {
			t.Logf("goodbye received %v after stop", time.Since(stopped).Round(time.Millisecond))
			break
		}
	}
	// Nothing announces it again after the goodbye.
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := ttls()
		if err != nil {
			break // deadline
		}
		if got != nil && !cmp.Equal(got, goodbye) {
			t.Errorf("announced again after the goodbye: TTLs by type %v", got)
		}
	}

	// Nobody answers for it any more.
	err := agent.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := Lookup(ctx, ServiceType, nil)
		if err == nil {
			return fmt.Errorf("still found after stop: %+v", c)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("Lookup: %v, want a deadline error", err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func TestRogueIsSeparateCandidate(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	rogue := lan.AddHost("rogue", "198.18.0.66/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")

	hubFP, rogueFP := "sha256:"+strings.Repeat("d4", 32), "sha256:"+strings.Repeat("e5", 32)
	announce(t, hub, Announcement{Instance: "Alicia hub d4d4", Port: 8470, TXT: map[string]string{"v": "1", "id": "hub-d4", "fp": hubFP}})
	announce(t, rogue, Announcement{Instance: "Alicia hub d4d5", Port: 8470, TXT: map[string]string{"v": "1", "id": "hub-d4", "fp": rogueFP}})

	ch := browseOn(t, agent, 0)
	byFP := map[string]Candidate{}
	waitFor(t, ch, 10*time.Second, "from both hub and rogue", func(c Candidate) bool {
		byFP[c.TXT["fp"]] = c
		return len(byFP) == 2
	})
	if c := byFP[hubFP]; !addrsAre(c, "198.18.0.1") {
		t.Errorf("hub's candidate = %+v", c)
	}
	if c := byFP[rogueFP]; !addrsAre(c, "198.18.0.66") {
		t.Errorf("rogue's candidate = %+v", c)
	}

	// A caller pinning the hub's fingerprint gets the hub.
	var c Candidate
	if err := agent.Do(func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err = Lookup(ctx, ServiceType, func(c Candidate) bool { return c.TXT["fp"] == hubFP })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !addrsAre(c, "198.18.0.1") {
		t.Errorf("Lookup by the hub's fp = %+v", c)
	}
}

func TestNoMulticastIsLoud(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	log, sink := newLogger(t, hub.Name())
	ann, err := NewAnnouncer(Announcement{Instance: "Alicia hub blocked", Port: 8470}, log)
	if err != nil {
		t.Fatal(err)
	}
	err = hub.Do(func() error {
		// A socket on 5353 that does not share the port (no SO_REUSEADDR),
		// as an exclusive mDNS responder would hold it.
		hog, err := net.ListenPacket("udp4", "0.0.0.0:5353")
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		defer hog.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return ann.Run(ctx)
	})
	if !errors.Is(err, ErrNoMulticast) {
		t.Fatalf("Run = %v, want an error wrapping ErrNoMulticast", err)
	}
	out := sink.String()
	for _, want := range []string{"level=WARN", "5353", "--hub", "address already in use"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestBrowseWithoutIPv4 holds UDP 5353 exclusively on the agent: Browse
// must say loudly that it falls back to IPv6 and still find the hub there.
func TestBrowseWithoutIPv4(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	agent := lan.AddHost("agent", "198.18.0.11/24")
	announce(t, hub, Announcement{Instance: "Alicia hub v6", Port: 8470, TXT: hubTXT("a6a6a6a6")})

	var hog net.PacketConn
	if err := agent.Do(func() (err error) {
		hog, err = net.ListenPacket("udp4", "0.0.0.0:5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	log, sink := newLogger(t, agent.Name())
	var got Candidate
	start := time.Now()
	err := agent.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var found bool
		err := browse(ctx, ServiceType, func(c Candidate) {
			if !found {
				got, found = c, true
				cancel()
			}
		}, log, browseSession)
		if !found {
			return fmt.Errorf("hub not found over IPv6 (Browse: %v)", err)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	} else {
		t.Logf("found over IPv6 after %v: %+v", time.Since(start).Round(time.Millisecond), got)
		if !addrsAre(got, "198.18.0.1") {
			t.Errorf("candidate over IPv6 = %+v, want the hub's IPv4 address", got)
		}
	}
	out := sink.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "IPv6 only") || strings.Count(out, "IPv6 only") != 1 {
		t.Errorf("want exactly one warning about browsing over IPv6 only; log:\n%s", out)
	}
}

// TestAvahiSeesHub checks the announcement with a real mDNS stack that is not
// ours: avahi-daemon on another host of the LAN, queried with avahi-browse.
func TestAvahiSeesHub(t *testing.T) {
	t.Parallel()
	lan := netnstest.New(t)
	hub := lan.AddHost("hub", "198.18.0.1/24")
	peer := lan.AddHost("peer", "198.18.0.20/24")
	txt := hubTXT(strings.Repeat("f6", 32))
	announce(t, hub, Announcement{Instance: "Alicia hub avahi", Port: 8470, TXT: txt})
	avahi := discoverytest.StartAvahi(t, peer, lan.Prefix()+"-peer")

	var last string
	deadline := time.Now().Add(20 * time.Second)
	pace := time.NewTicker(500 * time.Millisecond)
	defer pace.Stop()
	for ; time.Now().Before(deadline); <-pace.C {
		bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := avahi.Command(bctx, "avahi-browse", "-rpt", ServiceType).CombinedOutput()
		bcancel()
		last = fmt.Sprintf("%v\n%s", err, out)
		for _, line := range strings.Split(string(out), "\n") {
			// =;iface;IPv4;name;type;domain;host;address;port;"txt" ...
			f := strings.SplitN(line, ";", 10)
			if len(f) == 10 && f[0] == "=" && f[3] == `Alicia\032hub\032avahi` {
				if f[7] != "198.18.0.1" || f[8] != "8470" || f[6] != "alicia-hub-avahi.local" {
					t.Errorf("avahi resolved host %s address %s port %s, want alicia-hub-avahi.local 198.18.0.1 8470", f[6], f[7], f[8])
				}
				for k, v := range txt {
					if !strings.Contains(f[9], `"`+k+"="+v+`"`) {
						t.Errorf("avahi's TXT %s lacks %s=%s", f[9], k, v)
					}
				}
				return
			}
		}
	}
	t.Fatalf("avahi-browse did not resolve the hub within 20 s; last output: %s", last)
}
