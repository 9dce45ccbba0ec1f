package enrol

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/alicia-home/alicia/internal/pki"
)

// Broker returns the broker URL to connect to with creds (override, if
// set, replaces the hub's URLs) and, for MQTT over TLS, the TLS
// configuration: the hub's CA pinned, and the client certificate in use.
func (e *Enroller) Broker(creds Credentials, override string) (string, *tls.Config, error) {
	u, err := pickBroker(creds.MQTTURLs, override)
	if err != nil {
		return "", nil, err
	}
	u = zoneLike(u, creds.Hub)
	if p, err := url.Parse(u); err != nil || !overTLS(p) {
		return u, nil, nil
	}
	if e.cert.Load() == nil {
		e.log.Warn("no client certificate saved: the hub's broker refuses devices without one over TLS; enrol again")
	}
	cfg := pki.PinnedClientConfig(creds.CAFingerprint, nil)
	cfg.GetClientCertificate = e.ClientCertificate
	return u, cfg, nil
}

// usableBrokers accepts broker URLs from the hub only if each is MQTT over
// TLS (verified against the pinned CA wherever it is, so the hub may move)
// or plain MQTT on this machine: the device's password never goes in clear
// over the network.
func usableBrokers(urls []string) error {
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("broker url %q: %w", s, err)
		}
		if !overTLS(u) && !onThisMachine(u) {
			return fmt.Errorf("broker url %q: plain MQTT to another machine", s)
		}
	}
	return nil
}

// pickBroker chooses the broker URL: the override if set, else the first
// MQTT-over-TLS URL, else a plain one only on this machine (a password must
// never cross the network in clear).
func pickBroker(urls []string, override string) (string, error) {
	candidates := urls
	if override != "" {
		candidates = []string{override}
	}
	for _, want := range []func(*url.URL) bool{overTLS, onThisMachine} {
		for _, s := range candidates {
			if u, err := url.Parse(s); err == nil && want(u) {
				return s, nil
			}
		}
	}
	return "", fmt.Errorf("no usable broker address in %q: plain MQTT is used only on this machine, and none is MQTT over TLS", candidates)
}

// overTLS reports whether u is MQTT over TLS.
func overTLS(u *url.URL) bool {
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		return true
	}
	return false
}

// onThisMachine reports whether u's host is a loopback address.
func onThisMachine(u *url.URL) bool {
	ip := net.ParseIP(u.Hostname())
	return (ip != nil && ip.IsLoopback()) || strings.EqualFold(u.Hostname(), "localhost")
}

// zoneLike gives the host of broker, if it is an IPv6 link-local address
// without a zone, the zone of hub (HOST:PORT, the address the agent reached
// the hub's API at) if that is a link-local address with one. The hub
// builds broker URLs from the Host header of the agent's request, which
// carries no zone (RFC 7230 has no syntax for it), and a link-local address
// dialled without one fails ("connect: invalid argument"). The zone names
// this machine's interface towards the hub, so it fits every link-local
// address of the hub.
func zoneLike(broker, hub string) string {
	h, _, err := net.SplitHostPort(hub)
	if err != nil {
		return broker
	}
	ha, err := netip.ParseAddr(h)
	if err != nil || ha.Zone() == "" || !ha.IsLinkLocalUnicast() {
		return broker
	}
	u, err := url.Parse(broker)
	if err != nil {
		return broker
	}
	ba, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ba.Is6() || !ba.IsLinkLocalUnicast() || ba.Zone() != "" {
		return broker
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort(ba.WithZone(ha.Zone()).String(), p)
	} else {
		u.Host = "[" + ba.WithZone(ha.Zone()).String() + "]"
	}
	return u.String()
}
