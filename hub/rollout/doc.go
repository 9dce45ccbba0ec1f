// Package rollout releases a change of a configuration document to the
// devices it affects in batches, watching each batch, and reverts it when
// too many fail. Only the hub's root (hub/hubd) and its REST API (hub/api)
// import it.
//
// # A rollout
//
// Start writes a new version of an existing document (hub/spec) with a
// Strategy. The affected devices are the accepted ones whose effective
// configuration of the kind changes. Before the write, every accepted
// device is held at the content it has: the config sender (hub/confsync,
// through Held) keeps sending it that instead of the new effective
// configuration; after the write, the holds of the devices the change
// leaves as they were are dropped. Then, one step every Poll:
//
//   - a batch is released: the canary batch (Canary devices) first, then
//     MaxParallel at a time, online devices before offline ones. Released
//     means its hold is dropped and the sender sends it the change. A
//     device offline (or gone) when its batch comes is released unwatched,
//     "skipped": it converges when it returns, and no rollout waits for it;
//   - a released device is "updating" until confsync says it applied the
//     change's hash, then "verifying" until it has been healthy (health
//     state online or degraded, and no alert fired since its release)
//     MinHealthyTime without a break, then "healthy";
//   - it "failed" if it rejected or reverted the change, if an alert fired
//     on it after its release, if it did not apply within
//     ProgressDeadline, or was not healthy within ProgressDeadline plus
//     MinHealthyTime;
//   - the next batch goes when no device is updating or verifying; when
//     none is held any more, the rollout "succeeded";
//   - more than MaxFailures failures stop it: with AutoRevert the old
//     version is written back (spec's Rollback, by "rollout <id>") and
//     every hold dropped, so every device the change reached gets its old
//     configuration back ("reverted"); without, it is paused for the
//     operator.
//
// Pause stops new batches (released devices are still watched, and a
// failure still reverts); Resume goes on; Cancel reverts as above
// ("cancelled"). While a rollout of a kind is running or paused, writes of
// that kind are refused (Guard, ErrBusy). Every wait has a deadline, so a
// running rollout always ends: its longest possible life is the number of
// batches times ProgressDeadline plus MinHealthyTime.
//
// # Durability and crashes
//
// A rollout is a JSON record and its holds are the held content, in the
// hub's store, written with synced transactions before anything they
// allow happens:
//
//	rollout/<id>               → JSON Rollout
//	rollout_hold/<id>/<device> → the content the device is held at
//
// Start saves the record and the holds, then writes the document; a hub
// killed between the two finds, at its next start, a record without a
// ToVersion: if the document is one version past FromVersion by the
// rollout's author the write was made and the rollout goes on, otherwise
// it ends "failed" with nothing changed. A batch's record (devices
// released, their holds deleted) is saved before the sender hears of it;
// a revert writes the document before its record, and a revert found
// already written after a restart is not written twice. Open loads the
// records and the holds of the running and paused rollouts before the
// sender's first pass; their devices' deadlines count from the persisted
// release times, so a restart neither resets nor lengthens them.
//
// # Events
//
// Each step goes to the hub's event stream as type "rollout"
// (events.Rollout) with data {step, rollout, kind, scope, state, batch,
// failures, …}: step is
// started, batch (with the released devices), device_failed (with the
// device and its reason), paused, resumed or finished.
package rollout
