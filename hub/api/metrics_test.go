package api

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

// storeSamples stores n one-second batches of device id from t0 on:
// cpu_usage_ratio{cpu="total"} = i, and filesystem_used_ratio for two mounts.
func (h *harness) storeSamples(t *testing.T, id string, n int) {
	t.Helper()
	var bs []metrics.Batch
	for i := range n {
		bs = append(bs, metrics.Batch{Device: id, Metrics: &protocol.Metrics{Epoch: "ep", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second),
			Points: []protocol.Point{
				{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: float64(i)},
				{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"}, Value: 0.5},
				{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/boot"}, Value: 0.25},
			}}})
	}
	if _, err := h.metrics.Ingest(bs); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceMetrics(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "pi").DeviceID
	h.storeSamples(t, id, 120)
	h.clock.Advance(2 * time.Minute)
	get := func(query string) response {
		t.Helper()
		return h.adminDo(t, "GET", "/api/v1/devices/"+id+"/metrics?"+query, nil)
	}

	// Defaults: the last hour up to now.
	resp := get("name=cpu_usage_ratio")
	resp.mustStatus(t, http.StatusOK)
	got := decode[MetricsRange](t, resp)
	if !got.To.Equal(t0.Add(2*time.Minute)) || !got.From.Equal(t0.Add(2*time.Minute-time.Hour)) || len(got.Series) != 1 || len(got.Series[0].Points) != 120 {
		t.Fatalf("default range: from %s to %s, %d series", got.From, got.To, len(got.Series))
	}

	q := url.Values{"name": {"filesystem_used_ratio"}, "from": {t0.Add(10 * time.Second).Format(time.RFC3339)},
		"to": {t0.Add(19 * time.Second).Format(time.RFC3339)}, "step": {"5s"}, "label": {"mount=/"}}
	resp = get(q.Encode())
	resp.mustStatus(t, http.StatusOK)
	got = decode[MetricsRange](t, resp)
	f := func(v float64) *float64 { return &v }
	want := MetricsRange{From: t0.Add(10 * time.Second), To: t0.Add(19 * time.Second), Step: "5s", Series: []metrics.Series{{
		Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"}, Points: []metrics.Point{
			{Time: t0.Add(10 * time.Second), Value: 0.5, Min: f(0.5), Max: f(0.5), Count: 5},
			{Time: t0.Add(15 * time.Second), Value: 0.5, Min: f(0.5), Max: f(0.5), Count: 5},
		}}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stepped, labelled range (-want +got):\n%s", diff)
	}

	for _, tt := range []struct {
		query, detail string
	}{
		{"", "name"},
		{"name=cpu-usage", "name"},
		{"name=x&from=yesterday", "from"},
		{"name=x&to=2026-13-01T00:00:00Z", "to"},
		{"name=x&from=2026-03-01T13:00:00Z&to=2026-03-01T12:00:00Z", "before"},
		{"name=x&step=0s", "step"},
		{"name=x&step=soon", "step"},
		{"name=x&label=mount", "NAME=VALUE"},
		{"name=x&label=__name__=x", "reserved"},
	} {
		if d := get(tt.query).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, tt.detail) {
			t.Errorf("%q: detail %q does not mention %q", tt.query, d, tt.detail)
		}
	}
	h.adminDo(t, "GET", "/api/v1/devices/dunknown/metrics?name=x", nil).mustProblem(t, http.StatusNotFound)
	h.adminDo(t, "GET", "/api/v1/devices/a+b/metrics?name=x", nil).mustProblem(t, http.StatusBadRequest)
	h.send(t, request{method: "GET", target: "/api/v1/devices/" + id + "/metrics?name=x"}).mustProblem(t, http.StatusUnauthorized)
}

func TestDeviceMetricsTooManyPoints(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "pi").DeviceID
	var bs []metrics.Batch
	for i := range metrics.MaxQueryPoints + 1 {
		bs = append(bs, metrics.Batch{Device: id, Metrics: &protocol.Metrics{Epoch: "ep", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Points: []protocol.Point{{Name: "x", Value: 1}}}})
	}
	if _, err := h.metrics.Ingest(bs); err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("name=x&from=%s&to=%s", t0.Format(time.RFC3339), t0.Add(time.Minute).Format(time.RFC3339))
	if d := h.adminDo(t, "GET", "/api/v1/devices/"+id+"/metrics?"+q, nil).mustProblem(t, http.StatusUnprocessableEntity); !strings.Contains(d, "step") {
		t.Errorf("detail %q does not suggest a step", d)
	}
	h.adminDo(t, "GET", "/api/v1/devices/"+id+"/metrics?"+q+"&step=1s", nil).mustStatus(t, http.StatusOK)
}

func TestLatestMetricsAndDelete(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "pi").DeviceID
	h.storeSamples(t, id, 3)
	resp := h.adminDo(t, "GET", "/api/v1/devices/"+id+"/metrics/latest", nil)
	resp.mustStatus(t, http.StatusOK)
	last := t0.Add(2 * time.Second)
	want := []metrics.Sample{
		{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Time: last, Value: 2},
		{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"}, Time: last, Value: 0.5},
		{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/boot"}, Time: last, Value: 0.25},
	}
	if diff := cmp.Diff(want, decode[[]metrics.Sample](t, resp)); diff != "" {
		t.Errorf("latest (-want +got):\n%s", diff)
	}
	// Deleting the device forgets its series.
	h.adminDo(t, "DELETE", "/api/v1/devices/"+id, nil).mustStatus(t, http.StatusNoContent)
	if got := h.metrics.Latest(id); len(got) != 0 {
		t.Errorf("latest after delete: %v", got)
	}
	h.adminDo(t, "GET", "/api/v1/devices/"+id+"/metrics/latest", nil).mustProblem(t, http.StatusNotFound)
}

// TestPrometheusScrapeGuard: /metrics is open on the hub's own machine and
// needs the admin token over HTTPS from anywhere else.
func TestPrometheusScrapeGuard(t *testing.T) {
	h := newHarness(t)
	r := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	h.handler.ServeHTTP(r, req)
	if r.Code != http.StatusOK || r.Body.String() != "up 1\n" {
		t.Errorf("loopback scrape: %d %q", r.Code, r.Body)
	}
	for _, tt := range []struct {
		name   string
		tls    bool
		auth   string
		status int
	}{
		{"plain HTTP from the LAN", false, "Bearer " + h.admin, http.StatusForbidden},
		{"HTTPS without a token", true, "", http.StatusUnauthorized},
		{"HTTPS with a wrong token", true, "Bearer nope", http.StatusUnauthorized},
		{"HTTPS with the admin token", true, "Bearer " + h.admin, http.StatusOK},
	} {
		r := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = "198.18.0.11:5000"
		if tt.tls {
			req.TLS = &tls.ConnectionState{}
		}
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		h.handler.ServeHTTP(r, req)
		if r.Code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, r.Code, tt.status)
		}
	}
}
