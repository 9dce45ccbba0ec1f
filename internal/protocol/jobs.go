package protocol

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// On-device schedules. A job the household marks "on the device" is given
// to its device in the configuration kind "schedule" (KindSchedule), whose
// content is a DeviceSchedule; the agent fires it from its own clock, so
// that it runs while the hub or the network is down, keeps each run in a
// durable outbox, and sends it as a JobRun, which the hub acknowledges
// with a JobAck once it is stored.

// KindSchedule is the configuration kind carrying a device's own jobs.
const KindSchedule = "schedule"

// DeviceSchedule is the content of a device's "schedule" configuration.
type DeviceSchedule struct {
	Jobs []DeviceJob `json:"jobs"`
}

// DeviceJob is one job a device runs by itself: a trigger and a command
// to its own hardware.
type DeviceJob struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	// Trigger is an internal/schedule Trigger (cron, every, at, sun with
	// the hub's location in Where).
	Trigger json.RawMessage `json:"trigger"`
	// Where is the home's latitude and longitude, for a sun trigger.
	Where *[2]float64 `json:"where,omitempty"`
	// Action and Params are the command, as Command has them.
	Action string        `json:"action"`
	Params CommandParams `json:"params"`
	// Missed, MissedLimit and GraceS are the missed-run policy, as the
	// hub's scheduler has it (skip, run_once, run_all).
	Missed      string `json:"missed"`
	MissedLimit int    `json:"missed_limit"`
	GraceS      int64  `json:"grace_s"`
}

// Statuses of a JobRun.
const (
	JobRunOK      = "ok"
	JobRunFailed  = "failed"
	JobRunSkipped = "skipped"
)

// JobRun is a run of an on-device job, published QoS 1 on the device's
// KindJobRun topic from the agent's job outbox (Epoch, Seq as Metrics has
// them), until the hub acknowledges it.
type JobRun struct {
	Epoch     string    `json:"epoch"`
	Seq       uint64    `json:"seq"`
	Job       string    `json:"job"`
	Version   uint64    `json:"version"`
	Run       string    `json:"run"`
	Scheduled time.Time `json:"scheduled"`
	Started   time.Time `json:"started,omitzero"`
	Ended     time.Time `json:"ended"`
	// Cause is schedule or missed.
	Cause    string `json:"cause"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
	Result   string `json:"result,omitempty"`
}

// jobRunID is a run ID: "<job>.<unix seconds>".
var jobRunID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}\.[0-9]{1,12}$`)

// MessageType implements Payload.
func (*JobRun) MessageType() Type { return TypeJobRun }

// Validate implements Payload.
func (r *JobRun) Validate() error {
	if err := checkToken("epoch", r.Epoch, MaxEpochLen); err != nil {
		return err
	}
	if r.Seq == 0 {
		return fieldError("seq", fmt.Errorf("want 1 or more"))
	}
	if !jobRunID.MatchString(r.Run) || r.Job == "" || len(r.Run) <= len(r.Job) || r.Run[:len(r.Job)+1] != r.Job+"." {
		return fieldError("run", fmt.Errorf("%q: want <job>.<unix seconds> of job %q", r.Run, r.Job))
	}
	if r.Scheduled.IsZero() || r.Ended.IsZero() {
		return fieldError("scheduled", fmt.Errorf("scheduled and ended are required"))
	}
	switch r.Cause {
	case "schedule", "missed":
	default:
		return fieldError("cause", fmt.Errorf("%q: want schedule or missed", r.Cause))
	}
	switch r.Status {
	case JobRunOK, JobRunFailed, JobRunSkipped:
	default:
		return fieldError("status", fmt.Errorf("%q: want ok, failed or skipped", r.Status))
	}
	if r.Attempts < 0 || r.Attempts > 100 {
		return fieldError("attempts", fmt.Errorf("%d: want 0 to 100", r.Attempts))
	}
	if err := checkText("error", r.Error, 0, 1024); err != nil {
		return err
	}
	return checkText("result", r.Result, 0, 1024)
}

// JobAck is the hub's acknowledgement of stored JobRuns, on the device's
// KindJobAck topic: the agent may then forget them.
type JobAck struct {
	Epoch string   `json:"epoch"`
	Seqs  []uint64 `json:"seqs"`
}

// MessageType implements Payload.
func (*JobAck) MessageType() Type { return TypeJobAck }

// Validate implements Payload.
func (a *JobAck) Validate() error {
	m := MetricsAck(*a)
	return m.Validate()
}
