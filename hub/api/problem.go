package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/enrol"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/hub/spec"
)

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// writeProblem answers with an application/problem+json error.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// internalDetail is the detail of every 500: the cause is in the hub's
// log, not for the client.
const internalDetail = "internal error; see the hub's log"

// errorAnswers is the one table from the errors of the hub's services to
// problems, first match (errors.Is) first. An empty detail means the
// error's own text, which those services write for the client. An error
// no row matches is the hub's own failure: logged, and answered 500 with
// internalDetail.
var errorAnswers = []struct {
	target error
	status int
	detail string
	log    slog.Level // logNone: not logged
}{
	// First: an invalid job can wrap another service's error (a config
	// action naming a version that does not exist: spec.ErrNotFound), and
	// is still the request's fault, not a missing resource.
	{target: scheduler.ErrInvalid, status: http.StatusBadRequest, log: logNone}, // the detail names the field
	{target: enrol.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: enrol.ErrBadToken, status: http.StatusForbidden, log: slog.LevelWarn}, // a refused join token is worth a line
	{target: enrol.ErrRefused, status: http.StatusForbidden, log: logNone},
	{target: enrol.ErrConflict, status: http.StatusConflict, log: logNone},
	{target: enrol.ErrTooMany, status: http.StatusTooManyRequests, log: logNone},
	{target: enrol.ErrNoBroker, status: http.StatusServiceUnavailable, detail: noBrokerDetail, log: logNone},
	{target: enrol.ErrNoCA, status: http.StatusServiceUnavailable, detail: noCADetail, log: logNone},
	{target: enrol.ErrTokensUnavailable, status: http.StatusServiceUnavailable, log: slog.LevelError},
	{target: enrol.ErrBroker, status: http.StatusBadGateway, log: slog.LevelError},
	{target: enrol.ErrInternal, status: http.StatusInternalServerError, detail: internalDetail, log: slog.LevelError},
	{target: registry.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: registry.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: registry.ErrNotAccepted, status: http.StatusConflict, log: logNone}, // approve or reject of a device not pending
	{target: health.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: health.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: command.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: command.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: command.ErrOffline, status: http.StatusConflict, log: logNone},
	{target: integrations.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: integrations.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: integrations.ErrExists, status: http.StatusConflict, log: logNone},
	{target: metrics.ErrTooManyPoints, status: http.StatusUnprocessableEntity, log: logNone},
	{target: metrics.ErrTooManySeries, status: http.StatusUnprocessableEntity, log: logNone},
	{target: metrics.ErrInvalidQuery, status: http.StatusBadRequest, log: logNone}, // the detail names the parameter
	{target: spec.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: spec.ErrUnknownKind, status: http.StatusNotFound, log: logNone},
	{target: spec.ErrConflict, status: http.StatusPreconditionFailed, log: logNone},
	{target: spec.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: spec.ErrSchema, status: http.StatusBadRequest, log: logNone}, // the detail names each pointer and rule
	{target: rollout.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: rollout.ErrBusy, status: http.StatusConflict, log: logNone}, // a write of a kind being rolled out
	{target: rollout.ErrFinished, status: http.StatusConflict, log: logNone},
	{target: rollout.ErrInvalid, status: http.StatusBadRequest, log: logNone},
	{target: scheduler.ErrNotFound, status: http.StatusNotFound, log: logNone},
	{target: scheduler.ErrConflict, status: http.StatusPreconditionFailed, log: logNone},
}

// logNone marks an answer that is not logged.
const logNone slog.Level = math.MinInt

// writeError answers err as a problem, by errorAnswers. An *enrol.Error is
// judged by its Kind alone, whatever its cause wraps.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ee *enrol.Error
	enrolErr := errors.As(err, &ee)
	for _, a := range errorAnswers {
		if enrolErr && a.target != ee.Kind || !enrolErr && !errors.Is(err, a.target) {
			continue
		}
		if a.log != logNone {
			msg := "request refused"
			if a.status >= 500 {
				msg = "request failed"
			}
			s.log.Log(r.Context(), a.log, msg, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", a.status, "err", err)
		}
		detail := a.detail
		if detail == "" {
			detail = clientDetail(err)
		}
		writeProblem(w, a.status, detail)
		return
	}
	s.internalError(w, r, err)
}

// internalError logs err, the hub's own failure, and answers 500 without
// its text.
func (s *server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", http.StatusInternalServerError, "err", err)
	writeProblem(w, http.StatusInternalServerError, internalDetail)
}

// clientDetail is the text of an error meant for the client.
func clientDetail(err error) string {
	var ee *enrol.Error
	if errors.As(err, &ee) {
		return ee.Detail // without the cause
	}
	var ve *health.ValidationError
	if errors.As(err, &ve) {
		return ve.Error() // without the engine's context
	}
	return err.Error()
}
