// Package agentd is the agent's composition root: it wires the device
// identity, the credentials (agent/enrol), the telemetry (agent/telemetry),
// the bus connection with its presence (agent/presence) and the hub's
// commands, and owns their lifecycle. Run loads or creates the identity,
// gets the credentials (enrolling or pairing once), opens the outbox, then
// runs one session per broker address in an errgroup until ctx is done,
// and returns only once every goroutine it started, the commands'
// included, has returned.
//
// The alicia-agent main package parses flags into a Config and calls Run;
// end-to-end tests run an Agent in-process the same way. Only those import
// it. It never imports hub packages or the broker (internal/archtest
// enforces this).
//
// Under a crash, each part keeps its own promise: the identity key and the
// credentials are written atomically (a crash leaves the old file or the
// new), the outbox keeps every appended batch until the hub acknowledges
// it, the device's own jobs (agent/jobs) claim each fire before executing
// it and keep each run in their outbox until the hub acknowledges it, and
// the broker publishes the device's Will.
package agentd
