package discovery

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/discovery/discoverytest"
	"github.com/alicia-home/alicia/internal/netnstest"
)

// TestLookupFindsEarlierResponders: a responder that is not ours announces
// _alicia-hub._tcp and has finished announcing before the browser starts, so
// the browser learns of it only from the answer to its query, which carries
// SRV, TXT and addresses as additional records. python-zeroconf (Home
// Assistant's library) adds an NSEC record, malformed before its 0.129, when
// the host has no IPv6 address; python-zeroconf with an IPv6 link-local
// address and avahi (which adds its own) check that such an address is
// reported with the zone of the agent's interface, and dialled.
func TestLookupFindsEarlierResponders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		responder string
		linkLocal bool // the service's addresses include the peer's IPv6 link-local
	}{
		{"python-zeroconf IPv4 only", "python-zeroconf", false},
		{"python-zeroconf with IPv6 link-local", "python-zeroconf", true},
		{"avahi", "avahi", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lan := netnstest.New(t)
			peer := lan.AddHost("peer", "198.18.0.20/24")
			agent := lan.AddHost("agent", "198.18.0.11/24")
			txt := hubTXT(strings.Repeat("9d", 32))
			svc := discoverytest.Service{
				Instance: "Alicia hub " + tc.responder, Type: ServiceType, Port: 8470, TXT: txt,
				Host:  lan.Prefix() + "-peer",
				Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.20")},
			}
			wantAddrs := slices.Clone(svc.Addrs)
			if tc.linkLocal {
				ll := discoverytest.LinkLocal(t, peer)
				svc.Addrs = append(svc.Addrs, ll)
				wantAddrs = append(wantAddrs, ll.WithZone(agent.Interface()))
			}
			if tc.responder == "python-zeroconf" {
				discoverytest.PythonZeroconf(t, peer, svc)
			} else {
				discoverytest.StartAvahi(t, peer, svc.Host).Publish(svc)
			}

			start := time.Now()
			var got Candidate
			err := agent.Do(func() (err error) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				got, err = Lookup(ctx, ServiceType, func(c Candidate) bool { return c.TXT["fp"] == txt["fp"] })
				return err
			})
			if err != nil {
				t.Fatalf("Lookup of the hub announced by %s (started first): %v", tc.responder, err)
			}
			t.Logf("%s's service found %v after the browser started", tc.responder, time.Since(start).Round(time.Millisecond))
			want := Candidate{Instance: svc.Instance, Addrs: wantAddrs, Port: 8470, TXT: txt, Seen: got.Seen}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("candidate (-want +got):\n%s", diff)
			}
			dialAll(t, peer, agent, got)
		})
	}
}

// dialAll listens on c.Port on peer and dials every address of c from
// agent, as the agent does (net.JoinHostPort(addr.String(), port)).
func dialAll(t *testing.T, peer, agent *netnstest.Host, c Candidate) {
	t.Helper()
	var ln net.Listener
	if err := peer.Do(func() (err error) {
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(c.Port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, a := range c.Addrs {
		addr := net.JoinHostPort(a.String(), strconv.Itoa(c.Port))
		// A new link-local address is usable once duplicate address
		// detection is done (about a second): retry until then.
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			err = agent.Do(func() error {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					conn.Close()
				}
				return err
			})
			if err == nil || errors.Is(err, syscall.EINVAL) {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling for DAD to finish
		}
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
		}
	}
}
