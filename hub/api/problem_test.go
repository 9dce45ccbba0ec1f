package api

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/enrol"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
)

// TestWriteError checks the one table from errors to problems: the status
// of each kind, the detail the client sees, and what is logged.
func TestWriteError(t *testing.T) {
	secret := errors.New("open /var/lib/alicia/store/000042.vlog: no space left on device")
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantDetail string
		wantLog    string // substring; "" = nothing logged
	}{
		{"registry not found", fmt.Errorf("registry: d1: %w", registry.ErrNotFound), 404, "registry: d1: device not found", ""},
		{"not pending", decisionError("d1", fmt.Errorf("registry: d1 is revoked: %w", registry.ErrNotAccepted)), 409,
			"device d1 is not pending: registry: d1 is revoked: device not accepted", ""},
		{"rule validation", fmt.Errorf("health: put rule r: %w", &health.ValidationError{Field: "for", Msg: "too long"}), 400,
			(&health.ValidationError{Field: "for", Msg: "too long"}).Error(), ""},
		{"command offline", fmt.Errorf("%w: d1", command.ErrOffline), 409, "device is offline: d1", ""},
		{"enrol: bad token", &enrol.Error{Kind: enrol.ErrBadToken, Detail: "invalid join token", Err: secret}, 403, "invalid join token", "no space left"},
		{"enrol: no broker", &enrol.Error{Kind: enrol.ErrNoBroker, Detail: "none"}, 503, noBrokerDetail, ""},
		{"enrol: no CA", &enrol.Error{Kind: enrol.ErrNoCA, Detail: "none"}, 503, noCADetail, ""},
		{"enrol: broker", &enrol.Error{Kind: enrol.ErrBroker, Detail: "could not create the device's broker account: refused"}, 502,
			"could not create the device's broker account: refused", "refused"},
		// An enrolment error is judged by its kind, not by what its cause wraps.
		{"enrol: internal, wrapping not found", &enrol.Error{Kind: enrol.ErrInternal, Detail: "could not look up the device",
			Err: fmt.Errorf("%w: %w", registry.ErrNotFound, secret)}, 500, internalDetail, "no space left"},
		{"unknown", fmt.Errorf("registry: put d1: %w", secret), 500, internalDetail, "no space left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			s := &server{log: slog.New(slog.NewTextHandler(&log, nil))}
			rec := httptest.NewRecorder()
			s.writeError(rec, httptest.NewRequest("GET", "/api/v1/x", nil), tt.err)
			resp := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
			if got := resp.mustProblem(t, tt.wantStatus); got != tt.wantDetail {
				t.Errorf("detail %q, want %q", got, tt.wantDetail)
			}
			if tt.wantLog == "" && log.Len() != 0 || !strings.Contains(log.String(), tt.wantLog) {
				t.Errorf("log %q, want it to contain %q", log.String(), tt.wantLog)
			}
		})
	}
}

// TestInternalErrorsAreNotEchoed: a failure of the hub's own store answers
// 500 with a generic detail; the store's error (paths, sizes) stays in the
// log.
func TestInternalErrorsAreNotEchoed(t *testing.T) {
	dir := t.TempDir()
	h := openHarness(t, dir, store.Options{})
	enr := h.enroll(t, "pi")
	tok := h.joinToken(t, `{"uses":1}`)
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	h = openHarness(t, dir, store.Options{MinFreeBytes: math.MaxInt64})
	tests := []struct {
		name           string
		method, target string
		body           any
		admin          bool
	}{
		{"rename", "PATCH", "/api/v1/devices/" + enr.DeviceID, `{"name":"new"}`, true},
		{"delete", "DELETE", "/api/v1/devices/" + enr.DeviceID, nil, true},
		{"create join token", "POST", "/api/v1/join-tokens", nil, true},
		{"enrol", "POST", "/api/v1/enroll", enrolment(newKey(t), tok, "new"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request{method: tt.method, target: tt.target, body: tt.body}
			if tt.admin {
				r.auth = "Bearer " + h.admin
			}
			if got := h.send(t, r).mustProblem(t, http.StatusInternalServerError); got != internalDetail {
				t.Errorf("detail %q, want %q", got, internalDetail)
			}
		})
	}
}
