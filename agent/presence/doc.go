// Package presence keeps a device visible on the hub's bus for the life of
// one MQTT connection: the Last Will, the birth messages, the heartbeats
// and the goodbye. Only the agent's composition root (agent/agentd)
// imports it.
//
// # Messages
//
// Before each connection attempt the connection gets a new session name,
// carried by its Will: a retained "offline" status, reason "lost", on
// alicia/v1/devices/<id>/status. After each connect (birth) it publishes,
// retained and at QoS 1, the registration (with the facts read again: the
// boot time changes) and an "online" status naming the same session. While
// connected it sends a heartbeat (QoS 0, not retained) every interval,
// counting from 1 and carrying the seconds since Run began. When the
// connection closes cleanly, the retained goodbye ("offline", reason
// "shutdown", no session) is published before the DISCONNECT.
//
// # Stale Wills
//
// The broker may publish the Will of a connection that was already
// replaced (a half-open socket declared dead late). The hub ignores it by
// its session; for every other subscriber the agent, seeing its own
// retained status turn "offline"/"lost" with another session while it is
// connected, publishes its "online" again.
//
// # Crashes
//
// Nothing is stored. A killed agent (kill -9, power loss) stops answering
// keep-alives; the broker publishes its Will within 1.5 keep-alive
// intervals, and the retained status says "offline", reason "lost". The
// next start publishes "online" with a new session, which also overrides a
// Will the broker publishes late.
package presence
