// Package confapply is the agent's side of the hub's configuration
// manager (hub/spec, hub/confsync): it receives the device's desired
// configuration, checks and applies it, and keeps the device reachable
// when a setting turns out bad.
//
// The hub publishes a retained protocol.Config on the device's config
// topic. For each kind the agent applies (an Applier per kind), a
// configuration whose hash differs from the one in effect is checked whole
// by its Applier, saved (temp file, fsync, rename), and put in effect
// live; the agent answers protocol.ConfigStatus "applied", or "rejected"
// with the reason, keeping what it had.
//
// Commit-confirmed, as `netplan try` and router configuration do: a
// configuration just applied is pending until the agent has reached the
// hub with it, that is until its "applied" report was acknowledged by the
// hub's broker over a connection made with it in effect (a new connection
// when the change is about how the agent reaches the hub, such as the
// broker URL). If that does not happen within the confirm window (default
// two minutes), the agent goes back by itself to the last configuration
// that was confirmed (its last-known-good, or its own flags when there is
// none), reconnects, and reports "reverted" with the reason. It does not
// apply that configuration again until the hub sends another one. The
// state survives restarts: an agent restarted with a pending configuration
// gives it a new window from its start.
package confapply
