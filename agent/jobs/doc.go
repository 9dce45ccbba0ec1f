// Package jobs runs the device's own schedules: the jobs the hub marks
// "on the device" (protocol.DeviceSchedule, the configuration kind
// "schedule") fire from the device's clock and act on its hardware, so
// that "06:30 relay on" happens while the hub or the Wi-Fi is down. Only
// the agent's composition root (agent/agentd) imports it.
//
// # What it owns
//
// A Runner holds the device's jobs (Parse checks a schedule whole against
// the device's hardware; SetJobs puts it in effect at once), the state
// file jobs.json (written atomically: temp file, fsync, rename) and the
// job outbox jobs.db (agent/outbox: bbolt, fsync per append and ack).
//
// # Fires
//
// Each job has Done, the instant up to which its fires are handled, kept
// in jobs.json. About once a second (sooner when a fire is due) the
// Runner claims every job's fires in (Done, now] under the hub's rules
// (hub/scheduler): of the fires due at one pass only the latest, handled
// at most 10 s late, is on time; the others are missed and the job's
// policy says what they become: skip records one skipped run, run_once
// runs the latest, run_all runs each (at most missed_limit, oldest
// skipped). Fires older than the job's grace are skipped under every
// policy (counted once, not listed). A fire while the job's previous run
// is still executing is skipped. A new job, or one whose trigger or place
// changed, fires from the moment it is set; an unchanged one keeps Done,
// so what it missed while the agent was down follows its policy.
//
// A run executes the job's command on the hardware with the command ID
// "<run>.<attempt>" (the run ID is "<job>.<unix seconds of the fire>"),
// within a deadline (30 s plus a pulse's duration), tried again after 1 s
// and 2 s when it failed (not when the hardware refused it as invalid).
//
// # Clock
//
// Calendar jobs (cron, at, sun) fire only while the clock is trustworthy:
// the kernel says it is synchronised (Config.ClockOK, internal/clocksync),
// or the device's clock agreed with the hub's at the last comparison: the
// envelope time of the hub's acknowledgements (job acks here, metrics acks
// through HubTime) against the time the acknowledged message was sent.
// What the hub taught holds for the process's life unless a later
// comparison disagrees; it is not saved, since a device without a
// real-time clock restarts at a wrong time. Interval jobs do not wait.
// The log says once when calendar jobs start waiting and once when they
// fire again; what they missed meanwhile follows their policy.
//
// # Delivery
//
// An ended run (ok, failed or skipped) is appended to the job outbox and
// stays there until the hub acknowledges it (JobAck, after its synced
// store); the sender publishes the unacknowledged runs QoS 1 while
// connected, again after every reconnect and when no ack came for 15 s.
// The hub stores a run once by its ID, so resending is harmless.
//
// # Crashes
//
// A fire is claimed before it executes: Done moves on and the run is
// saved in jobs.json as running in one atomic write, then the command
// runs. Whatever happens next, a fire never executes twice: a run found
// running at the next start (kill -9, power loss, or the agent stopping
// while it executed) is ended as failed "interrupted by a restart" and
// not executed again, since the command may have acted and the hardware
// forgets command IDs across restarts. An ended run moves from jobs.json
// to the outbox (outbox first; the sender never reads the outbox while a
// run is in both), so a crash in between is found at start and the run
// is not queued twice. A fire not yet claimed at a crash is a missed fire
// at the next start. A damaged jobs.json is moved aside (its jobs fire
// afresh from the next schedule; missed fires are lost); a damaged
// outbox is moved aside by OpenOutbox (its unsent runs are lost). Both
// are logged.
package jobs
