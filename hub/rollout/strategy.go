package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Strategy says how a change reaches the devices it affects.
type Strategy struct {
	// Canary is the number of devices in the first batch (0: no canary,
	// the first batch is MaxParallel devices). Default 1.
	Canary int `json:"canary"`
	// MaxParallel is the number of devices in every later batch. Default 1.
	MaxParallel int `json:"max_parallel"`
	// MinHealthyTime is how long a device must stay healthy after it
	// applied the change before its batch counts as done. Default 30 s.
	MinHealthyTime Duration `json:"min_healthy_time"`
	// MaxFailures is how many devices may fail before the rollout stops.
	// Default 0.
	MaxFailures int `json:"max_failures"`
	// AutoRevert, when the rollout stops on failures, writes the old
	// version back (every changed device gets its old configuration);
	// without it the rollout is paused for the operator to resume or
	// cancel. Default true.
	AutoRevert bool `json:"auto_revert"`
	// ProgressDeadline is how long a released device has to apply the
	// change. Default 5 min.
	ProgressDeadline Duration `json:"progress_deadline"`
}

// DefaultStrategy is what a rollout request's left-out fields take.
var DefaultStrategy = Strategy{Canary: 1, MaxParallel: 1, MinHealthyTime: Duration(30 * time.Second), AutoRevert: true,
	ProgressDeadline: Duration(5 * time.Minute)}

// Limits of a Strategy's fields.
const (
	MaxBatch            = 1000
	MaxMinHealthyTime   = 24 * time.Hour
	MinProgressDeadline = time.Second
	MaxProgressDeadline = 24 * time.Hour
)

// Duration is a time.Duration written in JSON as Go writes durations
// ("30s", "5m").
type Duration time.Duration

// MarshalJSON writes d as "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a duration as a string, such as \"30s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want a duration such as \"30s\" or \"5m\"", s)
	}
	*d = Duration(v)
	return nil
}

// Validate names the first field out of its range.
func (s Strategy) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("rollout: %w: rollout.%s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	switch {
	case s.Canary < 0 || s.Canary > MaxBatch:
		return bad("canary", "%d out of range [0, %d]", s.Canary, MaxBatch)
	case s.MaxParallel < 1 || s.MaxParallel > MaxBatch:
		return bad("max_parallel", "%d out of range [1, %d]", s.MaxParallel, MaxBatch)
	case s.MinHealthyTime < 0 || time.Duration(s.MinHealthyTime) > MaxMinHealthyTime:
		return bad("min_healthy_time", "%s out of range [0s, %s]", time.Duration(s.MinHealthyTime), MaxMinHealthyTime)
	case s.MaxFailures < 0 || s.MaxFailures > MaxBatch:
		return bad("max_failures", "%d out of range [0, %d]", s.MaxFailures, MaxBatch)
	case time.Duration(s.ProgressDeadline) < MinProgressDeadline || time.Duration(s.ProgressDeadline) > MaxProgressDeadline:
		return bad("progress_deadline", "%s out of range [%s, %s]", time.Duration(s.ProgressDeadline), MinProgressDeadline, MaxProgressDeadline)
	}
	return nil
}

// DecodeStrategy reads a rollout request (a JSON object whose left-out
// fields take DefaultStrategy's values) strictly: unknown keys, wrong
// types and values out of range are an error wrapping ErrInvalid that
// names the field as rollout.<key>.
func DecodeStrategy(raw json.RawMessage) (Strategy, error) {
	s := DefaultStrategy
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return Strategy{}, fmt.Errorf("rollout: %w: rollout: want a JSON object such as {\"canary\":1,\"max_parallel\":2}", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return Strategy{}, fmt.Errorf("rollout: %w: rollout.%s: got a JSON %s, want %s", ErrInvalid, te.Field, te.Value, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return Strategy{}, fmt.Errorf("rollout: %w: rollout: %s (known: canary, max_parallel, min_healthy_time, max_failures, auto_revert, progress_deadline)",
				ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
		}
		// A Duration's own error does not say which field: find it.
		return Strategy{}, fmt.Errorf("rollout: %w: rollout: %s", ErrInvalid, durationField(raw, err))
	}
	return s, s.Validate()
}

// durationField names the duration field whose value err is about.
func durationField(raw json.RawMessage, err error) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) == nil {
		for _, f := range []string{"min_healthy_time", "progress_deadline"} {
			var d Duration
			if v, ok := m[f]; ok && d.UnmarshalJSON(v) != nil {
				return fmt.Sprintf("rollout.%s: %v", f, d.UnmarshalJSON(v))
			}
		}
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
