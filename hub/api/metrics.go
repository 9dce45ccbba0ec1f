package api

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Metrics is the hub's time-series store as the API uses it.
type Metrics interface {
	Range(q metrics.Query) ([]metrics.Series, error)
	Latest(device string) []metrics.Sample
	DeleteDevice(device string) error
	// Aggregate answers a query over many devices (GET
	// /api/v1/metrics/query).
	Aggregate(q metrics.AggregateQuery) (metrics.Aggregation, error)
}

// DefaultMetricsWindow is the range of a metrics query without "from".
const DefaultMetricsWindow = time.Hour

// MetricsRange answers GET /api/v1/devices/{id}/metrics.
type MetricsRange struct {
	From   time.Time        `json:"from"`
	To     time.Time        `json:"to"`
	Step   string           `json:"step,omitempty"`
	Series []metrics.Series `json:"series"`
}

// deviceMetrics answers a range query over one device's series:
// name (required), from and to (RFC 3339; default the last hour), step (a
// Go duration; buckets with min, max, average and count) and label=k=v
// (repeatable; every label must match).
func (s *server) deviceMetrics(w http.ResponseWriter, r *http.Request) {
	id, ok := s.knownDevice(w, r)
	if !ok {
		return
	}
	rq, ok := s.rangeParams(w, r)
	if !ok {
		return
	}
	s.writeRange(w, r, metrics.Query{Device: id, Name: rq.name, Labels: rq.labels, From: rq.from, To: rq.to, Step: rq.step})
}

// writeRange answers the range query mq of one source's series.
func (s *server) writeRange(w http.ResponseWriter, r *http.Request, mq metrics.Query) {
	series, err := s.cfg.Metrics.Range(mq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := MetricsRange{From: mq.From, To: mq.To, Series: series}
	if mq.Step > 0 {
		resp.Step = mq.Step.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

// rangeParams are the parameters a device query and a household query
// share.
type rangeParams struct {
	name     string
	labels   map[string]string
	from, to time.Time
	step     time.Duration // 0 if not given
}

// rangeParams reads name, from, to, step and label, or answers 400 naming
// the parameter.
func (s *server) rangeParams(w http.ResponseWriter, r *http.Request) (rangeParams, bool) {
	q := r.URL.Query()
	rq := rangeParams{name: q.Get("name")}
	if err := protocol.ValidateMetricName(rq.name); err != nil {
		writeProblem(w, http.StatusBadRequest, "name: "+err.Error()+" (the metric to read, e.g. name=cpu_usage_ratio; GET …/metrics/latest lists them)")
		return rq, false
	}
	now := s.cfg.Now().UTC()
	rq.to = now
	for _, f := range []struct {
		key string
		dst *time.Time
	}{{"to", &rq.to}, {"from", &rq.from}} {
		if v := q.Get(f.key); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeProblem(w, http.StatusBadRequest, fmt.Sprintf("%s: %q is not an RFC 3339 time (e.g. 2026-11-27T06:00:00Z)", f.key, v))
				return rq, false
			}
			*f.dst = t
		}
	}
	if q.Get("from") == "" {
		rq.from = rq.to.Add(-DefaultMetricsWindow)
	}
	if rq.to.Before(rq.from) {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("to (%s) is before from (%s)", rq.to.Format(time.RFC3339), rq.from.Format(time.RFC3339)))
		return rq, false
	}
	if v := q.Get("step"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("step: %q is not a duration of at least 1ms (e.g. 1m)", v))
			return rq, false
		}
		rq.step = d
	}
	for _, l := range q["label"] {
		k, v, found := strings.Cut(l, "=")
		if !found {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("label: %q: want NAME=VALUE (e.g. label=mount=/)", l))
			return rq, false
		}
		if err := protocol.ValidateLabelName(k); err != nil {
			writeProblem(w, http.StatusBadRequest, "label: "+err.Error())
			return rq, false
		}
		if rq.labels == nil {
			rq.labels = map[string]string{}
		}
		rq.labels[k] = v
	}
	return rq, true
}

// latestMetrics answers GET /api/v1/devices/{id}/metrics/latest.
func (s *server) latestMetrics(w http.ResponseWriter, r *http.Request) {
	id, ok := s.knownDevice(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Metrics.Latest(id))
}

// knownDevice validates the {id} path value and answers 404 for a device
// the registry does not know.
func (s *server) knownDevice(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := deviceID(w, r)
	if !ok {
		return "", false
	}
	if _, err := s.devices.Get(id); err != nil {
		s.writeError(w, r, err)
		return "", false
	}
	return id, true
}
