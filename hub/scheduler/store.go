package scheduler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/alicia-home/alicia/internal/store"
)

// Version is one immutable version of a job.
type Version struct {
	Number uint64 `json:"version"`
	// Hash is the SHA-256 of the job's JSON, in hex.
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
	// Deleted marks the version that deleted the job.
	Deleted bool `json:"deleted,omitempty"`
	Job     Job  `json:"job"`
}

// state is what the scheduler keeps of a job between runs, saved with
// synced writes.
type state struct {
	// Done is the instant up to which the job's fires have been handled
	// (run, skipped or claimed): the next fire is after it.
	Done time.Time `json:"done"`
	// Paused jobs do not fire; resuming sets Done to the resume time.
	Paused bool `json:"paused,omitempty"`
}

// Run statuses.
const (
	RunRunning = "running" // claimed; the action is being done (or resumes after a restart)
	RunOK      = "ok"
	RunFailed  = "failed"
	RunSkipped = "skipped" // not run: missed past its grace, overlap forbidden, policy skip
	RunQueued  = "queued"  // the command waits for its offline device (see the audit log)
)

// Run is one run of a job, its history entry.
type Run struct {
	// ID is "<job>.<unix seconds of Scheduled>" ("…-m<6 hex digits>" for
	// manual runs).
	ID      string `json:"id"`
	Job     string `json:"job"`
	Version uint64 `json:"version"`
	// Scheduled is the fire time; Started and Ended when the action ran.
	Scheduled time.Time `json:"scheduled"`
	Started   time.Time `json:"started,omitzero"`
	Ended     time.Time `json:"ended,omitzero"`
	// Cause is why it ran: schedule, missed (after downtime) or manual.
	Cause    string `json:"cause"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	// Result says what the action did: the command's ID and status, the
	// webhook's HTTP status, the configuration version written.
	Result string `json:"result,omitempty"`
}

// MaxRuns is how many runs a job's history keeps.
const MaxRuns = 100

// keyspaces of the scheduler.
type keyspaces struct {
	heads, versions, states, runs store.Keyspace
}

func openKeyspaces(db *store.DB) keyspaces {
	return keyspaces{heads: db.Keyspace("job_head"), versions: db.Keyspace("job_version"), states: db.Keyspace("job_state"), runs: db.Keyspace("job_run")}
}

func versionKey(id string, n uint64) string { return fmt.Sprintf("%s/%020d", id, n) }

// runKey orders a job's runs by fire time, then ID.
func runKey(r Run) string {
	return fmt.Sprintf("%s/%020d/%s", r.Job, r.Scheduled.UnixNano(), r.ID)
}

// head is a job's latest version number (and whether it was deleted).
type head struct {
	Number  uint64 `json:"version"`
	Deleted bool   `json:"deleted,omitempty"`
}

func jobHash(j Job) (string, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func putJSON(tx *store.Tx, k store.Keyspace, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(k, key, b)
}

func getJSON(tx *store.Tx, k store.Keyspace, key string, v any) error {
	b, err := tx.Get(k, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", k.Name(), key, err)
	}
	return nil
}

// writeVersion stores v as the job's next version if the job is at
// version ifVersion (0: the job must not exist, or be deleted), with st as
// its state, in one synced transaction.
func (k keyspaces) writeVersion(tx *store.Tx, v *Version, ifVersion uint64, st *state) error {
	var h head
	switch err := getJSON(tx, k.heads, v.Job.ID, &h); {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	}
	cur := h.Number
	if h.Deleted && ifVersion == 0 {
		cur = 0 // a deleted job is created again over If-None-Match: *
	}
	if cur != ifVersion {
		if h.Number == 0 || h.Deleted {
			return fmt.Errorf("scheduler: job %s does not exist: %w", v.Job.ID, ErrNotFound)
		}
		return fmt.Errorf("scheduler: job %s is at version %d, not %d: %w", v.Job.ID, h.Number, ifVersion, ErrConflict)
	}
	v.Number = h.Number + 1
	if err := putJSON(tx, k.versions, versionKey(v.Job.ID, v.Number), v); err != nil {
		return err
	}
	if err := putJSON(tx, k.heads, v.Job.ID, head{Number: v.Number, Deleted: v.Deleted}); err != nil {
		return err
	}
	if st == nil {
		return tx.Delete(k.states, v.Job.ID)
	}
	return putJSON(tx, k.states, v.Job.ID, st)
}

// putRun stores r, and drops the job's oldest runs past MaxRuns when r is
// new.
func (k keyspaces) putRun(tx *store.Tx, r Run, isNew bool) error {
	if err := putJSON(tx, k.runs, runKey(r), r); err != nil {
		return err
	}
	if !isNew {
		return nil
	}
	var keys []string
	if err := tx.ScanPrefix(k.runs, r.Job+"/", func(key string, _ []byte) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		return err
	}
	for i := 0; i < len(keys)-MaxRuns; i++ {
		if err := tx.Delete(k.runs, keys[i]); err != nil {
			return err
		}
	}
	return nil
}
