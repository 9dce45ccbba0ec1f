package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
)

// Job is a job's definition: what one version of it says.
type Job struct {
	// ID names the job in URLs, run IDs and the audit log ("scheduler:<id>").
	ID string `json:"id"`
	// Name is a display name; default the ID.
	Name    string           `json:"name,omitempty"`
	Trigger schedule.Trigger `json:"trigger"`
	Action  Action           `json:"action"`
	// Missed says what a fire missed while the hub was down (or its clock
	// untrusted) becomes: skip, run_once (the latest, the default) or
	// run_all (each, at most MissedLimit, oldest first). Fires older than
	// Grace are skipped under every policy.
	Missed      string            `json:"missed,omitempty"`
	MissedLimit int               `json:"missed_limit,omitempty"`
	Grace       schedule.Duration `json:"grace,omitzero"`
	// Overlap says what a fire does while the job's previous run still
	// runs: forbid (skip it, the default), allow, or replace (end the
	// previous run).
	Overlap string `json:"overlap,omitempty"`
	// Jitter delays each run by a stable amount in [0, Jitter) derived
	// from the job's ID, so that jobs due at the same time spread out.
	Jitter schedule.Duration `json:"jitter,omitzero"`
	// Priority orders runs due at the same time: higher first.
	Priority int `json:"priority,omitempty"`
	// Deadline bounds a run, retries included. Default 1m.
	Deadline schedule.Duration `json:"deadline,omitzero"`
	// Retries is how many times a failed action is tried again, with
	// backoff, within the deadline. Default 3 (nil); 0 tries once.
	Retries *int `json:"retries,omitempty"`
	// Disabled jobs do not fire.
	Disabled bool `json:"disabled,omitempty"`
	// OnDevice gives a command job to its device, which fires it from its
	// own clock (the hub does not): it runs while the hub or the network
	// is down, and its runs reach the hub when the device is back.
	OnDevice bool `json:"on_device,omitempty"`
}

// Action is what a run does: exactly one of its fields is set.
type Action struct {
	Command *CommandAction `json:"command,omitempty"`
	Webhook *WebhookAction `json:"webhook,omitempty"`
	Publish *PublishAction `json:"publish,omitempty"`
	Config  *ConfigAction  `json:"config,omitempty"`
}

// CommandAction sends a device a command through the hub's command service
// (checked against the device's hardware, audited as "scheduler:<job>").
type CommandAction struct {
	Device string                 `json:"device"`
	Action string                 `json:"action"`
	Params protocol.CommandParams `json:"params"`
	// QueueTTL is the rule for a device offline at fire time: 0 (the
	// default) fails the run; more queues the command that long.
	QueueTTL schedule.Duration `json:"queue_ttl,omitzero"`
	// Timeout bounds the wait for the device's result. Default 5s.
	Timeout schedule.Duration `json:"timeout,omitzero"`
}

// WebhookAction POSTs to a URL. The request carries the run's ID as
// Idempotency-Key, so a receiver can tell a retry from a new run.
type WebhookAction struct {
	URL string `json:"url"`
	// Body is sent as is (JSON); default {"job":…,"run":…,"scheduled":…}.
	Body json.RawMessage `json:"body,omitempty"`
}

// PublishAction publishes an MQTT message on the hub's bus, on a topic
// outside the hub's and the devices' own (nothing under alicia/ or $).
type PublishAction struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     byte   `json:"qos,omitempty"`
	Retain  bool   `json:"retain,omitempty"`
}

// ConfigAction makes a configuration document's content that of one of
// its versions (a rollback, by the job): "at 22:00 the quiet settings".
type ConfigAction struct {
	Kind    string `json:"kind"`
	Scope   string `json:"scope"`
	Version uint64 `json:"version"`
}

// Policies.
const (
	MissedSkip    = "skip"
	MissedRunOnce = "run_once"
	MissedRunAll  = "run_all"

	OverlapForbid  = "forbid"
	OverlapAllow   = "allow"
	OverlapReplace = "replace"
)

// Defaults and limits.
const (
	DefaultMissedLimit = 10
	MaxMissedLimit     = 100
	DefaultGrace       = time.Hour
	DefaultDeadline    = time.Minute
	MaxDeadline        = 24 * time.Hour
	DefaultRetries     = 3
	MaxRetries         = 10
	MaxJitter          = time.Hour
	MaxPriority        = 100
)

// jobID is a valid job ID: short enough that a run's command IDs
// ("<job>.<unix>.<attempt>") are valid protocol IDs.
var jobID = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// ErrInvalid matches every *InvalidError.
var ErrInvalid = errors.New("invalid job")

// InvalidError is a job that cannot be stored: Field names what is wrong
// (a JSON path such as "trigger.cron" or "action.command.device").
type InvalidError struct {
	Field string
	Err   error
}

func (e *InvalidError) Error() string { return fmt.Sprintf("job: %s: %v", e.Field, e.Err) }
func (e *InvalidError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Err: fmt.Errorf(format, args...)}
}

// withDefaults returns j with its defaults filled in.
func (j Job) withDefaults() Job {
	if j.Missed == "" {
		j.Missed = MissedRunOnce
	}
	if j.MissedLimit == 0 {
		j.MissedLimit = DefaultMissedLimit
	}
	if j.Grace == 0 {
		j.Grace = schedule.Duration(DefaultGrace)
	}
	if j.Overlap == "" {
		j.Overlap = OverlapForbid
	}
	if j.Deadline == 0 {
		j.Deadline = schedule.Duration(DefaultDeadline)
	}
	if j.Retries == nil {
		r := DefaultRetries
		j.Retries = &r
	}
	if c := j.Action.Command; c != nil && c.Timeout == 0 {
		cc := *c
		cc.Timeout = schedule.Duration(5 * time.Second)
		j.Action.Command = &cc
	}
	return j
}

// validate checks what can be checked of j alone (the scheduler then
// checks its device and compiles its trigger with the hub's location).
func (j Job) validate() error {
	if !jobID.MatchString(j.ID) {
		return invalid("id", "%q: want 1 to 40 of a-z, 0-9, '_', '-', starting with a letter or digit", j.ID)
	}
	if len(j.Name) > 128 || strings.ContainsFunc(j.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid("name", "at most 128 printable characters")
	}
	if err := j.Trigger.Validate(); err != nil {
		return &InvalidError{Field: "trigger", Err: err}
	}
	switch j.Missed {
	case MissedSkip, MissedRunOnce, MissedRunAll:
	default:
		return invalid("missed", "%q: want skip, run_once or run_all", j.Missed)
	}
	if j.MissedLimit < 1 || j.MissedLimit > MaxMissedLimit {
		return invalid("missed_limit", "%d: want 1 to %d", j.MissedLimit, MaxMissedLimit)
	}
	if j.Grace < schedule.Duration(time.Second) || j.Grace > schedule.Duration(31*24*time.Hour) {
		return invalid("grace", "%s: want 1s to 744h", j.Grace)
	}
	switch j.Overlap {
	case OverlapForbid, OverlapAllow, OverlapReplace:
	default:
		return invalid("overlap", "%q: want forbid, allow or replace", j.Overlap)
	}
	if j.Jitter < 0 || j.Jitter > schedule.Duration(MaxJitter) {
		return invalid("jitter", "%s: want 0 to %s", j.Jitter, MaxJitter)
	}
	if j.Priority < -MaxPriority || j.Priority > MaxPriority {
		return invalid("priority", "%d: want %d to %d", j.Priority, -MaxPriority, MaxPriority)
	}
	if j.Deadline < schedule.Duration(time.Second) || j.Deadline > schedule.Duration(MaxDeadline) {
		return invalid("deadline", "%s: want 1s to %s", j.Deadline, MaxDeadline)
	}
	if *j.Retries < 0 || *j.Retries > MaxRetries {
		return invalid("retries", "%d: want 0 to %d", *j.Retries, MaxRetries)
	}
	if j.OnDevice && j.Action.Command == nil {
		return invalid("on_device", "only a command job runs on its device")
	}
	return j.Action.validate()
}

func (a Action) validate() error {
	n := 0
	for _, set := range []bool{a.Command != nil, a.Webhook != nil, a.Publish != nil, a.Config != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalid("action", "set exactly one of command, webhook, publish and config")
	}
	switch {
	case a.Command != nil:
		c := a.Command
		if err := protocol.ValidateID(c.Device); err != nil {
			return &InvalidError{Field: "action.command.device", Err: err}
		}
		if c.Action == "" {
			return invalid("action.command.action", "required (e.g. gpio.write)")
		}
		if c.QueueTTL < 0 || c.QueueTTL > schedule.Duration(24*time.Hour) {
			return invalid("action.command.queue_ttl", "%s: want 0 to 24h", c.QueueTTL)
		}
		if c.Timeout < schedule.Duration(100*time.Millisecond) || c.Timeout > schedule.Duration(2*time.Minute) {
			return invalid("action.command.timeout", "%s: want 100ms to 2m", c.Timeout)
		}
	case a.Webhook != nil:
		u, err := url.Parse(a.Webhook.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("action.webhook.url", "%q: want an http or https URL", a.Webhook.URL)
		}
		if len(a.Webhook.Body) > 0 && !json.Valid(a.Webhook.Body) {
			return invalid("action.webhook.body", "not JSON")
		}
		if len(a.Webhook.Body) > 64<<10 {
			return invalid("action.webhook.body", "%d bytes: at most 64 KiB", len(a.Webhook.Body))
		}
	case a.Publish != nil:
		p := a.Publish
		switch {
		case p.Topic == "" || len(p.Topic) > 256 || strings.ContainsAny(p.Topic, "+#\x00"):
			return invalid("action.publish.topic", "%q: want 1 to 256 bytes without wildcards", p.Topic)
		case strings.HasPrefix(p.Topic, "alicia/") || strings.HasPrefix(p.Topic, "$"):
			return invalid("action.publish.topic", "%q: topics under alicia/ and $ are the hub's and the devices' own", p.Topic)
		case p.QoS > 1:
			return invalid("action.publish.qos", "%d: want 0 or 1", p.QoS)
		case len(p.Payload) > 64<<10:
			return invalid("action.publish.payload", "%d bytes: at most 64 KiB", len(p.Payload))
		}
	case a.Config != nil:
		c := a.Config
		if c.Kind == "" || c.Scope == "" || c.Version == 0 {
			return invalid("action.config", "kind, scope and version are required")
		}
	}
	return nil
}
