package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

func TestAlertRules(t *testing.T) {
	h := newHarness(t)
	resp := h.adminDo(t, "GET", "/api/v1/alerts/rules", nil)
	resp.mustStatus(t, http.StatusOK)
	rules := decode[RuleList](t, resp).Rules
	ids := map[string]bool{}
	for _, r := range rules {
		ids[r.ID] = true
	}
	for _, want := range []string{"cpu_temperature", "disk_full", "memory_high", "no_data"} {
		if !ids[want] {
			t.Errorf("default rule %s missing from %v", want, ids)
		}
	}
	h.adminDo(t, "GET", "/api/v1/alerts/rules/disk_full", nil).mustStatus(t, http.StatusOK)
	h.adminDo(t, "GET", "/api/v1/alerts/rules/nope", nil).mustProblem(t, http.StatusNotFound)

	rule := `{"name":"Hot garage","kind":"threshold","metric":"temperature_celsius","op":">","threshold":60,"for":"1m","resolve_margin":2,"severity":"warning","devices":{"room":"garage"},"suggestion":"{device_name} is at {value} °C"}`
	resp = h.adminDo(t, "PUT", "/api/v1/alerts/rules/garage_hot", rule)
	resp.mustStatus(t, http.StatusCreated)
	if r := decode[health.Rule](t, resp); r.ID != "garage_hot" || r.For != time.Minute || !r.Enabled {
		t.Errorf("created rule = %+v", r)
	}
	h.adminDo(t, "PUT", "/api/v1/alerts/rules/garage_hot", strings.Replace(rule, `"threshold":60`, `"threshold":65`, 1)).mustStatus(t, http.StatusOK)
	for _, tt := range []struct{ body, detail string }{
		{strings.Replace(rule, `"op":">"`, `"op":"=>"`, 1), "op"},
		{strings.Replace(rule, `"for":"1m"`, `"for":"-1m"`, 1), "for"},
		{strings.Replace(rule, `"metric":"temperature_celsius"`, `"metric":"temp-c"`, 1), "metric"},
		{strings.Replace(rule, `"name"`, `"expr":"1+1","name"`, 1), "expr"},
		{strings.Replace(rule, `{device_name}`, `{{.Value}}`, 1), "suggestion"},
		{`{"id":"other","kind":"absence","for":"5m"}`, "differs"},
		{`not json`, "invalid"},
	} {
		if d := h.adminDo(t, "PUT", "/api/v1/alerts/rules/garage_hot", tt.body).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, tt.detail) {
			t.Errorf("%s: detail %q does not mention %q", tt.body, d, tt.detail)
		}
	}
	h.adminDo(t, "DELETE", "/api/v1/alerts/rules/garage_hot", nil).mustStatus(t, http.StatusNoContent)
	h.adminDo(t, "DELETE", "/api/v1/alerts/rules/garage_hot", nil).mustProblem(t, http.StatusNotFound)
	h.send(t, request{method: "GET", target: "/api/v1/alerts/rules"}).mustProblem(t, http.StatusUnauthorized)
}

func TestTrendRules(t *testing.T) {
	h := newHarness(t)
	rule := `{"name":"Heating fast","kind":"trend","metric":"temperature_celsius","match":{"sensor":"cpu_thermal"},"op":">","threshold":70,` +
		`"window":"1h","horizon":"6h","for":"5m","resolve_margin":0.5,"severity":"warning","suggestion":"{device_name} reaches {threshold} °C in {eta}"}`
	resp := h.adminDo(t, "PUT", "/api/v1/alerts/rules/heating", rule)
	resp.mustStatus(t, http.StatusCreated)
	if r := decode[health.Rule](t, resp); r.Kind != health.KindTrend || r.Window != time.Hour || r.Horizon != 6*time.Hour {
		t.Errorf("created rule = %+v, want a trend with window 1h and horizon 6h", r)
	}
	rate := `{"name":"Cooling","kind":"rate","metric":"temperature_celsius","op":"<","threshold":-5,"window":"10m","for":"1m","severity":"warning"}`
	h.adminDo(t, "PUT", "/api/v1/alerts/rules/cooling", rate).mustStatus(t, http.StatusCreated)
	for _, tt := range []struct{ body, detail string }{
		{strings.Replace(rule, `,"horizon":"6h"`, ``, 1), `horizon: "0s" must be positive`},
		{strings.Replace(rule, `"window":"1h"`, `"window":"1 hour"`, 1), `window: "1 hour" is not a duration`},
		{strings.Replace(rule, `"op":">"`, `"op":">="`, 1), `op: ">=" is not one of >, <`},
		{strings.Replace(rate, `"window":"10m"`, `"window":"10m","horizon":"1h"`, 1), `horizon: only for trend rules`},
		{strings.Replace(rate, `"kind":"rate"`, `"kind":"threshold"`, 1), `window: only for trend and rate rules`},
	} {
		if d := h.adminDo(t, "PUT", "/api/v1/alerts/rules/bad", tt.body).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, tt.detail) {
			t.Errorf("%s: detail %q does not mention %q", tt.body, d, tt.detail)
		}
	}
	h.adminDo(t, "GET", "/api/v1/alerts/rules/bad", nil).mustProblem(t, http.StatusNotFound)
}

// The default disk_filling rule reads the metrics store's samples and
// fires before the disk is 90 % full, with the projected time.
func TestTrendAlert(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "garage-pi").DeviceID
	start := h.clock.Now()
	var seq uint64
	// 60 % full, filling by 2 % an hour: 90 % in 15 h.
	for h.clock.Now().Sub(start) < 4*time.Hour {
		at := h.clock.Advance(30 * time.Second)
		seq++
		v := 0.6 + 0.02*at.Sub(start).Hours()
		b := metrics.Batch{Device: id, Metrics: &protocol.Metrics{Epoch: "ep", Seq: seq, Time: at,
			Points: []protocol.Point{{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"}, Value: v}}}}
		if _, err := h.metrics.Ingest([]metrics.Batch{b}); err != nil {
			t.Fatal(err)
		}
		h.health.Evaluate(at)
	}
	got := decode[Alerts](t, h.adminDo(t, "GET", "/api/v1/alerts", nil))
	if len(got.Active) != 1 || got.Active[0].Rule != "disk_filling" {
		t.Fatalf("active alerts = %+v, want disk_filling", got.Active)
	}
	a := got.Active[0]
	if want := start.Add(15 * time.Hour); a.ProjectedAt.Sub(want).Abs() > 15*time.Minute {
		t.Errorf("projected_at = %v, want %v", a.ProjectedAt, want)
	}
	if !strings.HasPrefix(a.Summary, "disk / on garage-pi full in ~1") || a.Value >= 0.9 {
		t.Errorf("alert = %+v, want \"disk / on garage-pi full in ~1x h\" below 90 %%", a)
	}
}

func TestAlertsList(t *testing.T) {
	h := newHarness(t)
	id := h.enroll(t, "garage-pi").DeviceID
	full := func(seq uint64, at time.Time, v float64) metrics.Batch {
		return metrics.Batch{Device: id, Metrics: &protocol.Metrics{Epoch: "ep", Seq: seq, Time: at,
			Points: []protocol.Point{{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"}, Value: v}}}}
	}
	// The disk stays 95 % full for longer than the default rule's 5 minutes.
	for i := range 8 {
		h.clock.Advance(time.Minute)
		if _, err := h.metrics.Ingest([]metrics.Batch{full(uint64(i+1), h.clock.Now(), 0.95)}); err != nil {
			t.Fatal(err)
		}
		h.health.Evaluate(h.clock.Now())
	}
	resp := h.adminDo(t, "GET", "/api/v1/alerts", nil)
	resp.mustStatus(t, http.StatusOK)
	got := decode[Alerts](t, resp)
	if len(got.Active) != 1 || got.Active[0].Rule != "disk_full" || got.Active[0].Device != id ||
		!strings.Contains(got.Active[0].Summary, "disk / on garage-pi is 95") {
		t.Fatalf("active alerts = %+v", got.Active)
	}
	if resp := h.adminDo(t, "GET", "/api/v1/alerts?device=dother", nil); len(decode[Alerts](t, resp).Active) != 0 {
		t.Error("the device filter let another device's alert through")
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		h.adminDo(t, "GET", "/api/v1/alerts?"+q, nil).mustProblem(t, http.StatusBadRequest)
	}
	// Cleaned up: below the margin it resolves into the history.
	h.clock.Advance(time.Minute)
	if _, err := h.metrics.Ingest([]metrics.Batch{full(100, h.clock.Now(), 0.5)}); err != nil {
		t.Fatal(err)
	}
	h.health.Evaluate(h.clock.Now())
	got = decode[Alerts](t, h.adminDo(t, "GET", "/api/v1/alerts?limit=5", nil))
	if len(got.Active) != 0 || len(got.History) != 1 || got.History[0].State != "resolved" {
		t.Errorf("after cleanup: %+v", got)
	}
}
