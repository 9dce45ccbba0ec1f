// Package netnstest builds a small LAN out of Linux network namespaces for
// tests: one bridge in a namespace of its own and one namespace per host,
// joined by veth pairs, with addresses in 198.18.0.0/15. Any package's tests
// may import it; production code must not.
//
// Nothing is created in the caller's own network namespace, so the machine's
// interfaces, routes and mDNS daemons never see the test traffic. Every
// namespace and interface name starts with a random per-LAN prefix
// ("al" and six hex digits), so parallel tests and leftovers of a crashed run
// cannot collide; t.Cleanup kills the processes still running in the LAN's
// namespaces and deletes the namespaces (and with them the bridge and the
// veth pairs), also when the test fails midway.
//
// It needs root and the ip command (iproute2); Host.SetHostname also needs
// unshare (util-linux). When one is missing, New skips the test with a message
// saying what is missing, or fails it if the environment variable CI is set.
//
// Code runs inside a host's namespace in two ways: Host.Command runs a program
// there (ip netns exec), and Host.Do runs a Go function there on a dedicated
// OS thread. Read Do's documentation for what does not follow a function into
// the namespace.
package netnstest
