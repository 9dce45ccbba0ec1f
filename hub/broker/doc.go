// Package broker is the hub's embedded MQTT broker: a mochi-mqtt server on
// listeners the hub opens, with an authentication and ACL hook that refuses
// anonymous and unknown clients and confines each device to its own topics.
// Before mochi sees a connection, the listener completes its TLS handshake
// and reads its whole CONNECT within Config.ConnectTimeout and
// Config.MaxConnectSize (guard.go), so an unauthenticated client holds
// little, briefly, and is counted in Stats.Dropped when refused.
//
// Only the hub's composition root (hub/hubd) may import it; the agent never
// does (deps_test.go enforces this). When the hub runs against an external
// broker (--broker), this package is not used at all.
package broker
