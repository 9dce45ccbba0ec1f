// Package scheduler keeps the household's scheduled jobs ("every day at
// 06:30 turn on the kitchen relay") and runs them, honest about time. Only
// the hub's root (hub/hubd) and its REST API import it.
//
// # Jobs
//
// A job is a trigger (internal/schedule: cron, interval, once, sunrise or
// sunset, each calendar trigger in an IANA zone, under the product's DST
// rule) and an action: a device command through the command service
// (checked against the device's hardware, audited as "scheduler:<job>"), a
// webhook POST, an MQTT publish outside the hub's own topics, or making a
// configuration document's content that of one of its versions. Jobs are
// versioned like configuration: every write is an immutable version
// (number, hash, author, time, comment), compare-and-set, and a job is
// checked whole before it is stored: its trigger must parse and fire, its
// device exist and have the line the command names.
//
// # Fires, claimed once
//
// For each job the scheduler keeps Done, the instant up to which its fires
// are handled. When fires are due it claims them in one synced
// transaction: the runs are stored as running and Done moves on. Whatever
// happens next, a fire is claimed once: a run a crash cut short is found
// running at the next start and resumed with its own IDs (a command's ID
// is "<run>.<attempt>", which the command service and the agent apply
// once; a webhook carries the run's ID as Idempotency-Key); a fire not yet
// claimed is a missed fire at the next start.
//
// Of the fires due at one pass, only the latest, handled at most 10
// seconds late, is on time; the others are missed (the hub was down or
// stalled, or its clock untrusted), and the job's policy says what they
// become. skip
// records one skipped run; run_once (the default) runs the latest of them;
// run_all runs each, at most missed_limit, oldest first. Fires older than
// the job's grace (default one hour) are skipped under every policy.
//
// # Runs
//
// Runs due at once start in priority order (higher first, then oldest
// fire), at most Workers at a time and one command at a time per device:
// the popular 06:30 never reaches the broker or one device as a herd. A
// job's stable jitter delays its runs by the same amount every time. While
// a run of a job is in progress, its next fire is skipped (overlap forbid,
// the default), runs beside it (allow) or ends it (replace). A failed
// action is tried again with backoff (1 s, 2 s, 4 s… at most 30 s) up to
// retries times within the job's deadline; an action that cannot succeed
// (the device refused the command as invalid, a 4xx answer) is not. A
// device offline at fire time fails the run, unless the job sets queue_ttl:
// the command is then queued, and the run ends "queued" (the audit log has
// the rest). Each job keeps its last MaxRuns runs.
//
// # Time
//
// Calendar jobs (cron, once, sun) wait while the clock is not trustworthy
// (Config.ClockOK: the kernel's NTP state, see internal/clocksync); their
// status says so, and what they missed meanwhile follows the missed-run
// policy once the clock is trusted. Interval jobs do not wait.
package scheduler
