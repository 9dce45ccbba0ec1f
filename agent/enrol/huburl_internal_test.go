package enrol

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
)

// TestHubURL: the addresses discovery reports (IPv6 link-local ones with a
// zone) become URLs that net/http parses back to the same dial address.
func TestHubURL(t *testing.T) {
	for _, tc := range []struct {
		hub, want, dial string
	}{
		{"198.18.0.1:8470", "https://198.18.0.1:8470", "198.18.0.1:8470"},
		{"hub.local", "https://hub.local:8470", "hub.local:8470"},
		{"[2001:db8::1]:9000", "https://[2001:db8::1]:9000", "[2001:db8::1]:9000"},
		{"[fe80::1%eth0]:8470", "https://[fe80::1%25eth0]:8470", "[fe80::1%eth0]:8470"},
		{"fe80::1%eth0", "https://[fe80::1%25eth0]:8470", "[fe80::1%eth0]:8470"},
		// As the agent forms it from a discovered candidate.
		{net.JoinHostPort(netip.MustParseAddr("fe80::1").WithZone("al1h2").String(), strconv.Itoa(8470)), "https://[fe80::1%25al1h2]:8470", "[fe80::1%al1h2]:8470"},
	} {
		got, err := hubURL(tc.hub)
		if err != nil || got != tc.want {
			t.Errorf("hubURL(%q) = %q, %v; want %q", tc.hub, got, err, tc.want)
			continue
		}
		req, err := http.NewRequest(http.MethodGet, got+"/api/v1/bootstrap", nil)
		if err != nil {
			t.Errorf("hubURL(%q) = %q: net/http refuses it: %v", tc.hub, got, err)
			continue
		}
		if req.URL.Host != tc.dial {
			t.Errorf("hubURL(%q): net/http would dial %q, want %q", tc.hub, req.URL.Host, tc.dial)
		}
	}
}

// TestZoneLike: a broker URL on an IPv6 link-local address gets the zone of
// the hub address the agent used, and nothing else changes.
func TestZoneLike(t *testing.T) {
	for _, tc := range []struct {
		broker, hub, want string
	}{
		{"mqtts://[fe80::1]:8883", "[fe80::1%eth0]:8470", "mqtts://[fe80::1%25eth0]:8883"},
		{"mqtts://[fe80::2]", "[fe80::1%eth0]:8470", "mqtts://[fe80::2%25eth0]"},
		{"mqtts://[fe80::1%25wlan0]:8883", "[fe80::1%eth0]:8470", "mqtts://[fe80::1%25wlan0]:8883"},
		{"mqtts://198.18.0.1:8883", "[fe80::1%eth0]:8470", "mqtts://198.18.0.1:8883"},
		{"mqtts://[2001:db8::1]:8883", "[fe80::1%eth0]:8470", "mqtts://[2001:db8::1]:8883"},
		{"mqtts://[fe80::1]:8883", "198.18.0.1:8470", "mqtts://[fe80::1]:8883"},
		{"mqtts://[fe80::1]:8883", "[fe80::1]:8470", "mqtts://[fe80::1]:8883"},
		{"mqtts://[fe80::1]:8883", "", "mqtts://[fe80::1]:8883"},
	} {
		got := zoneLike(tc.broker, tc.hub)
		if got != tc.want {
			t.Errorf("zoneLike(%q, %q) = %q, want %q", tc.broker, tc.hub, got, tc.want)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Errorf("zoneLike(%q, %q) = %q: %v", tc.broker, tc.hub, got, err)
		} else if want, _ := url.Parse(tc.want); u.Host != want.Host {
			t.Errorf("zoneLike(%q, %q): host %q, want %q", tc.broker, tc.hub, u.Host, want.Host)
		}
	}
}
