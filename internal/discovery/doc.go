// Package discovery announces the hub on the LAN with mDNS/DNS-SD
// (_alicia-hub._tcp) and browses for it, on top of github.com/grandcat/zeroconf;
// the hub and the agent (and their tests) may import it.
//
// mDNS is only a hint: anyone on the LAN can announce the service type, with
// any TXT record. Browse reports every candidate, each with its TXT keys (the
// hub announces "v", "id" and "fp", the SHA-256 fingerprint of its CA public
// key), and the caller decides which one to trust, by fingerprint.
//
// Announcer.Run, Browse and Lookup open their sockets and list the network
// interfaces only on the goroutine that calls them, never on goroutines of
// their own (zeroconf binds its sockets synchronously in RegisterProxy and
// NewResolver). So tests may run them inside a network namespace with
// netnstest.Host.Do.
//
// Known limits of zeroconf that shape this package:
//   - Its browser delivers each instance name once and never reports that
//     one changed or went away, unless a goodbye (TTL 0) arrived first. Browse
//     therefore restarts its browser every 30 s and reports candidates that
//     are new or changed. An Announcer that sees its addresses change sends a
//     goodbye before re-announcing, so such a move is seen within seconds; a
//     move whose goodbye was lost (link down, crash) within 30 s more.
//   - Two hosts announcing the same instance name are one entry to it; a
//     browser sees one of them per session.
//   - If IPv4 multicast is unavailable it silently serves IPv6 only; the
//     Announcer checks IPv4 itself first and fails loudly with ErrNoMulticast.
package discovery
