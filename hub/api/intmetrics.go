package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

// IntegrationMetrics stores the metrics integrations push over REST.
type IntegrationMetrics interface {
	// Push stores a validated batch of source (an integration's
	// username) before it returns: through the metrics ingester (dedup by
	// epoch and seq, per-source series limit), under the same per-source
	// rate limit as the source's MQTT messages. ErrRateLimited: over the
	// limit; metrics.ErrBusy: the ingest queue is full.
	Push(ctx context.Context, source string, m *protocol.Metrics) error
}

// ErrRateLimited refuses a push over its source's rate limit (429).
var ErrRateLimited = errors.New("over this integration's rate limit: retry in a second")

// MetricsPush is the body of POST /api/v1/integrations/{name}/metrics.
type MetricsPush struct {
	// Time is when the samples were taken; default now.
	Time   time.Time        `json:"time,omitzero"`
	Points []protocol.Point `json:"points"`
}

// RESTEpoch is the epoch of the batches pushed over REST: their seq is
// derived from the Idempotency-Key header, or random without one.
const RESTEpoch = "rest"

// maxPushBody is the largest metrics push accepted (MaxPoints points of
// some 400 bytes).
const maxPushBody = 1 << 20

// maxIdempotencyKey is the longest Idempotency-Key accepted.
const maxIdempotencyKey = 256

// pushMetrics stores the points an integration of kind metrics pushes,
// authenticated with its own account (HTTP Basic, int-<name> and its
// password); answers 204 once they are on disk.
func (s *server) pushMetrics(w http.ResponseWriter, r *http.Request) {
	if !secure(r) {
		writeProblem(w, http.StatusForbidden, insecureDetail)
		return
	}
	name := r.PathValue("name")
	user, pw, ok := r.BasicAuth()
	short, _ := strings.CutPrefix(user, integrations.UsernamePrefix)
	acc, authOK := s.cfg.Integrations.Check(short, []byte(pw))
	if !ok || !authOK || user != acc.Username {
		w.Header().Set("WWW-Authenticate", `Basic realm="alicia"`)
		writeProblem(w, http.StatusUnauthorized, "missing or invalid credentials: send HTTP Basic int-<name>:<password> of an integration account of kind metrics")
		return
	}
	if acc.Name != name {
		writeProblem(w, http.StatusForbidden, fmt.Sprintf("account %s may push only to /api/v1/integrations/%s/metrics", acc.Username, acc.Name))
		return
	}
	if acc.Kind != integrations.KindMetrics {
		writeProblem(w, http.StatusForbidden, fmt.Sprintf("account %s is of kind %s: only an account of kind %s pushes metrics", acc.Username, acc.Kind, integrations.KindMetrics))
		return
	}
	body, ok := readBody(w, r, maxPushBody, false)
	if !ok {
		return
	}
	var req MetricsPush
	if err := strictUnmarshal(body, &req); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	m := &protocol.Metrics{Epoch: RESTEpoch, Time: req.Time, Points: req.Points}
	if m.Time.IsZero() {
		m.Time = s.cfg.Now().UTC()
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key: longer than %d bytes", maxIdempotencyKey))
		return
	}
	m.Seq = pushSeq(key)
	if err := m.Validate(); err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return
	}
	err := s.cfg.IntegrationMetrics.Push(r.Context(), acc.Username, m)
	switch {
	case errors.Is(err, ErrRateLimited):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusTooManyRequests, err.Error())
		return
	case errors.Is(err, metrics.ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pushSeq is the seq of a pushed batch: from the SHA-256 of its
// Idempotency-Key (a retry with the same key is stored once), or random.
func pushSeq(key string) uint64 {
	var b [8]byte
	if key != "" {
		h := sha256.Sum256([]byte(key))
		copy(b[:], h[:])
	} else {
		_, _ = rand.Read(b[:])
	}
	return binary.BigEndian.Uint64(b[:]) | 1 // never 0
}

// integrationMetrics answers a range query over an integration's series,
// with the parameters of a device's (GET /api/v1/devices/{id}/metrics).
func (s *server) integrationMetrics(w http.ResponseWriter, r *http.Request) {
	acc, err := s.cfg.Integrations.Get(r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rq, ok := s.rangeParams(w, r)
	if !ok {
		return
	}
	s.writeRange(w, r, metrics.Query{Device: acc.Username, Name: rq.name, Labels: rq.labels, From: rq.from, To: rq.to, Step: rq.step})
}
