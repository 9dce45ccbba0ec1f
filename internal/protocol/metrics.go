package protocol

import (
	"fmt"
	"math"
	"time"
)

// Metrics is one collection of a device's samples, published (QoS 1, not
// retained) on alicia/v1/devices/{id}/metrics. The agent keeps every batch
// in its durable outbox until the hub acknowledges (Epoch, Seq) on
// alicia/v1/devices/{id}/ack after committing it, so a batch may arrive
// more than once; the hub keeps the first and acknowledges every copy.
type Metrics struct {
	// Epoch names the agent's outbox: sequence numbers are unique within
	// it. A new outbox (a wiped state directory) starts a new epoch.
	Epoch string `json:"epoch"`
	// Seq numbers the batches of the epoch, from 1, in collection order.
	Seq uint64 `json:"seq"`
	// Dropped counts the batches the outbox has dropped since the epoch
	// began (oldest first, when it was full).
	Dropped uint64 `json:"dropped,omitempty"`
	// Time is when the samples were collected.
	Time time.Time `json:"time"`
	// Points are the samples.
	Points []Point `json:"points"`
}

// Point is one sample: a metric name, its labels and a value.
type Point struct {
	// Name follows Prometheus naming: [a-zA-Z_][a-zA-Z0-9_]*, with the
	// unit as a suffix (cpu_usage_ratio, memory_used_bytes, …).
	Name string `json:"name"`
	// Labels tell series of one name apart (cpu="0", mount="/").
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// Limits of a Metrics batch.
const (
	MaxPoints        = 2048
	MaxMetricNameLen = 128
	MaxLabels        = 16
	MaxLabelNameLen  = 64
	MaxLabelValueLen = 256
	MaxEpochLen      = 64
	MaxAckSeqs       = 1024
)

// MessageType implements Payload.
func (*Metrics) MessageType() Type { return TypeMetrics }

// Validate implements Payload.
func (m *Metrics) Validate() error {
	if err := checkToken("epoch", m.Epoch, MaxEpochLen); err != nil {
		return err
	}
	if m.Seq == 0 {
		return fieldError("seq", fmt.Errorf("must be at least 1"))
	}
	if m.Time.IsZero() {
		return fieldError("time", fmt.Errorf("required"))
	}
	if m.Time.Before(time.Unix(0, 0)) {
		return fieldError("time", fmt.Errorf("%s is before 1970", m.Time.Format(time.RFC3339)))
	}
	if len(m.Points) == 0 {
		return fieldError("points", fmt.Errorf("required: at least one point"))
	}
	if len(m.Points) > MaxPoints {
		return fieldError("points", fmt.Errorf("%d points, limit %d", len(m.Points), MaxPoints))
	}
	for i := range m.Points {
		if err := m.Points[i].validate(fmt.Sprintf("points[%d]", i)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Point) validate(field string) error {
	if err := ValidateMetricName(p.Name); err != nil {
		return fieldError(field+".name", err)
	}
	if len(p.Labels) > MaxLabels {
		return fieldError(field+".labels", fmt.Errorf("%d labels, limit %d", len(p.Labels), MaxLabels))
	}
	for k, v := range p.Labels {
		if err := ValidateLabelName(k); err != nil {
			return fieldError(field+".labels", err)
		}
		if err := checkText(field+".labels."+k, v, 0, MaxLabelValueLen); err != nil {
			return err
		}
	}
	if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
		return fieldError(field+".value", fmt.Errorf("not a finite number"))
	}
	return nil
}

// ValidateMetricName checks a metric name: 1 to MaxMetricNameLen bytes of
// [a-zA-Z0-9_], not starting with a digit (Prometheus names without ':').
func ValidateMetricName(s string) error {
	if s == "" || len(s) > MaxMetricNameLen {
		return fmt.Errorf("metric name %q: must be 1 to %d bytes", s, MaxMetricNameLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return fmt.Errorf("metric name %q: byte %d (%q) not allowed; use [a-zA-Z_][a-zA-Z0-9_]*", s, i, c)
		}
	}
	return nil
}

// ValidateLabelName checks a label name as ValidateMetricName does, and
// refuses the "__" prefix Prometheus reserves.
func ValidateLabelName(s string) error {
	if len(s) > MaxLabelNameLen {
		return fmt.Errorf("label name %q: longer than %d bytes", s[:MaxLabelNameLen], MaxLabelNameLen)
	}
	if err := ValidateMetricName(s); err != nil {
		return fmt.Errorf("label name %q: use [a-zA-Z_][a-zA-Z0-9_]*", s)
	}
	if len(s) >= 2 && s[:2] == "__" {
		return fmt.Errorf("label name %q: the \"__\" prefix is reserved", s)
	}
	return nil
}

// checkToken validates an identifier-like field: 1 to max bytes of
// [A-Za-z0-9._-].
func checkToken(field, v string, max int) error {
	if v == "" || len(v) > max {
		return fieldError(field, fmt.Errorf("must be 1 to %d bytes", max))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fieldError(field, fmt.Errorf("byte %d (%q) not allowed; use [A-Za-z0-9._-]", i, c))
		}
	}
	return nil
}

// MetricsAck is published by the hub (QoS 1, not retained) on
// alicia/v1/devices/{id}/ack once the batches it names are committed to
// the hub's store (or were already there). The agent then deletes them
// from its outbox.
type MetricsAck struct {
	Epoch string   `json:"epoch"`
	Seqs  []uint64 `json:"seqs"`
}

// MessageType implements Payload.
func (*MetricsAck) MessageType() Type { return TypeMetricsAck }

// Validate implements Payload.
func (a *MetricsAck) Validate() error {
	if err := checkToken("epoch", a.Epoch, MaxEpochLen); err != nil {
		return err
	}
	if len(a.Seqs) == 0 || len(a.Seqs) > MaxAckSeqs {
		return fieldError("seqs", fmt.Errorf("want 1 to %d sequence numbers, got %d", MaxAckSeqs, len(a.Seqs)))
	}
	for i, s := range a.Seqs {
		if s == 0 {
			return fieldError(fmt.Sprintf("seqs[%d]", i), fmt.Errorf("must be at least 1"))
		}
	}
	return nil
}
