package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// An integration account of kind metrics pushes points with its own
// credentials, and only to itself; they are stored before the answer,
// once per Idempotency-Key, and are queryable; its series limit holds.
func TestPushIntegrationMetrics(t *testing.T) {
	h := newHarness(t)
	create := func(name, kind string) IntegrationCredentials {
		t.Helper()
		r := h.adminDo(t, "POST", "/api/v1/integrations", map[string]string{"name": name, "kind": kind})
		r.mustStatus(t, http.StatusCreated)
		return decode[IntegrationCredentials](t, r)
	}
	power, solar, ha := create("power", "metrics"), create("solar", "metrics"), create("ha", "homeassistant")
	body := map[string]any{"points": []map[string]any{{"name": "grid_power_watts", "labels": map[string]string{"phase": "1"}, "value": 230.5}}}
	push := func(target, auth string, body any, header map[string]string) response {
		t.Helper()
		return h.send(t, request{method: "POST", target: target, auth: auth, body: body, header: header})
	}
	const target = "/api/v1/integrations/power/metrics"
	for _, c := range []struct {
		name, target, auth string
		body               any
		want               int
		detail             string
	}{
		{"no credentials", target, "", body, 401, "HTTP Basic"},
		{"wrong password", target, basic(power.Username, power.Password+"x"), body, 401, ""},
		{"the admin token", target, "Bearer " + h.admin, body, 401, ""},
		{"name without the prefix", target, basic("power", power.Password), body, 401, ""},
		{"another account", target, basic(solar.Username, solar.Password), body, 403, "solar"},
		{"an account of another kind", "/api/v1/integrations/ha/metrics", basic(ha.Username, ha.Password), body, 403, "homeassistant"},
		{"invalid point", target, basic(power.Username, power.Password), map[string]any{"points": []map[string]any{{"name": "ok", "value": 1}, {"name": "9bad", "value": 1}}}, 400, "points[1].name"},
		{"no points", target, basic(power.Username, power.Password), map[string]any{"points": []any{}}, 400, "points"},
		{"unknown field", target, basic(power.Username, power.Password), map[string]any{"points": []any{}, "device": "d1"}, 400, "device"},
	} {
		r := push(c.target, c.auth, c.body, nil)
		if r.status != c.want || !strings.Contains(string(r.body), c.detail) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, r.status, r.body, c.want, c.detail)
		}
	}
	query := func(name string, label string) []metrics.Series {
		t.Helper()
		target := "/api/v1/integrations/power/metrics?name=" + name
		if label != "" {
			target += "&label=" + label
		}
		r := h.adminDo(t, "GET", target, nil)
		r.mustStatus(t, http.StatusOK)
		return decode[MetricsRange](t, r).Series
	}
	if got := query("grid_power_watts", ""); len(got) != 0 {
		t.Fatalf("refused pushes stored something: %+v", got)
	}
	// Twice with one Idempotency-Key: stored once.
	for range 2 {
		push(target, basic(power.Username, power.Password), body, map[string]string{"Idempotency-Key": "reading-1"}).mustStatus(t, http.StatusNoContent)
	}
	got := query("grid_power_watts", "")
	if len(got) != 1 || len(got[0].Points) != 1 || got[0].Points[0].Value != 230.5 || got[0].Labels["phase"] != "1" {
		t.Fatalf("after the push: %+v", got)
	}
	// Nothing of it under another source.
	r := h.adminDo(t, "GET", "/api/v1/integrations/solar/metrics?name=grid_power_watts", nil)
	if s := decode[MetricsRange](t, r).Series; len(s) != 0 {
		t.Errorf("solar has power's series: %+v", s)
	}
	if r := h.adminDo(t, "GET", "/api/v1/integrations/nobody/metrics?name=x", nil); r.status != http.StatusNotFound {
		t.Errorf("query of an unknown integration: %d", r.status)
	}
	// Over the rate limit: 429 with Retry-After.
	h.pushLimited.Store(true)
	if r := push(target, basic(power.Username, power.Password), body, nil); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("over the rate limit: %d %v", r.status, r.header)
	}
	h.pushLimited.Store(false)
	// The per-source series limit (metrics.DefaultMaxSeriesPerDevice)
	// holds: of MaxPoints new series, those past it are refused.
	pts := make([]map[string]any, protocol.MaxPoints)
	for i := range pts {
		pts[i] = map[string]any{"name": "many", "labels": map[string]string{"i": fmt.Sprint(i)}, "value": i}
	}
	push(target, basic(power.Username, power.Password), map[string]any{"points": pts}, nil).mustStatus(t, http.StatusNoContent)
	if got := query("many", "i=0"); len(got) != 1 {
		t.Errorf("first series: %+v", got)
	}
	if got := query("many", fmt.Sprintf("i=%d", protocol.MaxPoints-1)); len(got) != 0 {
		t.Errorf("a series past the limit of %d was stored: %+v", metrics.DefaultMaxSeriesPerDevice, got)
	}
	// Deleting the account deletes its series.
	h.adminDo(t, "DELETE", "/api/v1/integrations/power", nil).mustStatus(t, http.StatusNoContent)
	if got := h.metrics.Latest(power.Username); len(got) != 0 {
		t.Errorf("series left after the account was deleted: %d", len(got))
	}
	if r := push(target, basic(power.Username, power.Password), body, nil); r.status != http.StatusUnauthorized {
		t.Errorf("push of a deleted account: %d", r.status)
	}
}
