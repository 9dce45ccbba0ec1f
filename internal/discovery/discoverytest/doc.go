// Package discoverytest runs mDNS responders that are not ours —
// python-zeroconf (Home Assistant's library) and avahi — on hosts of a
// netnstest LAN, for interop tests of the discovery package, the hub and the
// agent. Any package's tests may import it; production code must not.
//
// A responder function returns only once the responder has finished
// announcing, so a browser started afterwards can learn of the service only
// by asking: the case of a service that was up before the browser.
//
// Each needs programs from Debian (python3-zeroconf; avahi-daemon,
// avahi-utils and dbus). When one is missing the test is skipped with a
// message naming the package, or fails if the environment variable CI is set
// (.ci/run installs them).
package discoverytest
