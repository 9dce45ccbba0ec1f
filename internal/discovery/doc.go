// Package discovery announces the hub on the LAN with mDNS/DNS-SD
// (_alicia-hub._tcp, with github.com/grandcat/zeroconf's responder) and
// browses for it and for other services (with a small browser of its own on
// github.com/miekg/dns); the hub and the agent (and their tests) may import
// it.
//
// mDNS is only a hint: anyone on the LAN can announce the service type, with
// any TXT record. Browse reports every candidate, each with its TXT keys (the
// hub announces "v", "id" and "fp", the SHA-256 fingerprint of its CA public
// key), and the caller decides which one to trust, by fingerprint.
//
// Announcer.Run, Browse and Lookup open their sockets and list the network
// interfaces only on the goroutine that calls them, never on goroutines of
// their own (zeroconf binds its sockets synchronously in RegisterProxy). So
// tests may run them inside a network namespace with netnstest.Host.Do.
//
// # Browsing
//
// A browse session opens a UDP socket on port 5353 (shared with any
// responder on the machine), joins the IPv4 mDNS group on every interface
// that is up (IPv6 only if IPv4 is impossible, with a warning), sends a PTR
// query at once, after 1 s and then at doubling intervals, and reads the
// answers for 30 s; then a new session starts, so that interfaces that came
// up since are joined. Each response is read on its own: an instance is
// reported when one response carries its SRV record and an address of the
// SRV target (in any section: a responder answering a PTR query puts SRV,
// TXT and addresses in the additional section, RFC 6763 12), with the TXT
// record of that response or the last one seen in the session. Browse
// reports what is new or changed since it last reported the instance name,
// Watch every sighting. A goodbye (TTL 0) is not reported.
//
// Why not zeroconf's browser: it unpacks a response with dns.Msg.Unpack and
// drops the whole packet when any record fails, and python-zeroconf before
// 0.129 (Home Assistant's library; Debian 12 ships 0.47) adds an NSEC record
// with a malformed type bitmap to every answer for a host with IPv4 or IPv6
// addresses only. zeroconf therefore saw such a service only in the
// announcements it makes when it starts, never in the answers to its
// queries: a Home Assistant already running when the hub started stayed
// unseen. This browser skips a record it cannot parse and keeps the rest.
// zeroconf's browser also forgets the interface a packet came in on, which
// an IPv6 link-local address needs as its zone: candidates carry
// "fe80::…%eth0", with the name of the receiving interface, and
// net.JoinHostPort(addr.String(), port) dials it.
//
// Known limits that shape this package:
//   - Records are not cached across responses (apart from TXT): a responder
//     that sends SRV and addresses in separate packets, without both in any
//     one of them, is not reported, and no follow-up SRV or address query is
//     made.
//   - Two hosts announcing the same instance name are one entry: each
//     response replaces what was reported under the name.
//   - zeroconf's responder, if IPv4 multicast is unavailable, silently
//     serves IPv6 only; the Announcer checks IPv4 itself first and fails
//     loudly with ErrNoMulticast.
package discovery
