// Package enrol gets and keeps the agent's credentials for the hub: it
// enrols once with a join token or pairs with the hub found on the LAN,
// learns the hub's current broker addresses at each start, finds the hub
// again on the LAN when it moved, and renews the device's client
// certificate. Only the agent's composition root (agent/agentd) imports it.
//
// # The credentials file
//
// Store is <state-dir>/credentials.json (mode 0600): the device and hub
// IDs, the hub's API address, the broker URLs and password, the pinned CA
// fingerprint and the client certificate. It is the only writer of that
// file, under one lock, and writes it whole through internal/atomicfile
// (temporary file, fsync, rename, fsync of the directory), so a crash at
// any moment leaves the old credentials or the new ones, never a torn
// file; the store keeps in memory only what it has written. A file that
// cannot be read back (not JSON, incomplete, without a pinned CA, or of
// another identity key) stops the agent with an error that names it and
// says how to enrol again; it is never overwritten silently.
//
// # Trust
//
// A join token names the hub's CA by its key fingerprint; pairing learns
// the CA from the TLS handshake of the one hub that answers and pins it.
// From then on every HTTPS request and MQTT-over-TLS connection must chain
// to that CA: a host that does not is refused before anything secret is
// sent (pki.ErrWrongHub), and a hub that answers with another hub ID is
// refused too. mDNS is only a hint: a candidate must announce the pinned
// fingerprint and prove it over TLS. Broker URLs from the hub are used only
// if each is MQTT over TLS or plain MQTT on this machine, so the broker
// password never crosses the network in clear.
//
// # Crashes and restarts
//
// An enrolment or pairing interrupted before the credentials are saved is
// done again at the next start (a join token with uses left, or a new
// pairing request that the hub matches to the same key). A renewal
// interrupted after the hub issued the certificate but before it was saved
// is done again at the next start (the hub issues another). A device whose
// hub is unreachable at start keeps the saved broker addresses; timing uses
// the hub's clock once heard, since a board without a real-time clock may
// start in 1970.
package enrol
