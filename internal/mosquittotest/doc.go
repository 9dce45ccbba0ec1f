// Package mosquittotest starts a real Mosquitto broker for tests, on a free
// loopback port with a generated configuration (no anonymous clients, a
// password file, optional TLS listener and ACL, no persistence), and stops
// it by PID; any package's tests may import it, production code must not.
//
// When mosquitto or mosquitto_passwd is not installed, tests calling it fail
// if the environment variable CI is set and are skipped otherwise.
package mosquittotest
