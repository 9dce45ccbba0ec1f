package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/protocol"
)

// household enrols devices with room labels, stores an hour of samples
// of each (one a minute from t0: cpu_usage_ratio{cpu="total"} and
// filesystem_available_bytes{mount="/"}), revokes the last, and returns the
// IDs by name.
func (h *harness) household(t *testing.T) map[string]string {
	t.Helper()
	devs := []struct {
		name, room string
		cpu, free  float64
	}{
		{"garage-pi", "garage", 0.25, 10e9},
		{"garage-nas", "garage", 0.75, 500e9},
		{"kitchen", "kitchen", 0.5, 2e9},
		{"hall", "hall", 0.5, 30e9},
		{"office", "office", 0.5, 8e9},
		{"loose", "", 1, 1e9},     // no room label
		{"old", "garage", 0, 1e6}, // revoked: in no answer
	}
	ids := map[string]string{}
	var bs []metrics.Batch
	for _, d := range devs {
		id := h.enroll(t, d.name).DeviceID
		ids[d.name] = id
		if d.room != "" {
			h.adminDo(t, "PATCH", "/api/v1/devices/"+id, map[string]any{"labels": map[string]string{"room": d.room}}).mustStatus(t, http.StatusOK)
		}
		for i := range 60 {
			bs = append(bs, metrics.Batch{Device: id, Metrics: &protocol.Metrics{Epoch: "ep", Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Minute),
				Points: []protocol.Point{
					{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: d.cpu},
					{Name: "filesystem_available_bytes", Labels: map[string]string{"mount": "/"}, Value: d.free},
				}}})
		}
	}
	if _, err := h.metrics.Ingest(bs); err != nil {
		t.Fatal(err)
	}
	h.adminDo(t, "POST", "/api/v1/devices/"+ids["old"]+"/revoke", nil).mustStatus(t, http.StatusOK)
	h.clock.Advance(time.Hour)
	return ids
}

func TestQueryMetrics(t *testing.T) {
	h := newHarness(t)
	ids := h.household(t)
	get := func(query string) response {
		t.Helper()
		return h.adminDo(t, "GET", "/api/v1/metrics/query?"+query, nil)
	}

	// avg cpu_usage_ratio by room over the last hour: one series per room,
	// and one for the device without the label.
	resp := get("name=cpu_usage_ratio&label=cpu=total&op=avg&by=room")
	resp.mustStatus(t, http.StatusOK)
	got := decode[MetricsQuery](t, resp)
	if !got.From.Equal(t0) || !got.To.Equal(t0.Add(time.Hour)) || got.Step != "1m0s" || got.Devices != 6 {
		t.Errorf("from %s to %s step %s over %d devices; want the last hour at 1m over the 6 accepted devices", got.From, got.To, got.Step, got.Devices)
	}
	type room struct {
		labels          map[string]string
		devices, series int
		points          int
		first           metrics.AggPoint
	}
	var rooms []room
	for _, g := range got.Groups {
		rooms = append(rooms, room{g.Labels, g.Devices, g.Series, len(g.Points), g.Points[0]})
	}
	p0 := func(v float64, n int) metrics.AggPoint { return metrics.AggPoint{Time: t0, Value: v, Series: n} }
	want := []room{
		{map[string]string{"room": ""}, 1, 1, 60, p0(1, 1)},
		{map[string]string{"room": "garage"}, 2, 2, 60, p0(0.5, 2)},
		{map[string]string{"room": "hall"}, 1, 1, 60, p0(0.5, 1)},
		{map[string]string{"room": "kitchen"}, 1, 1, 60, p0(0.5, 1)},
		{map[string]string{"room": "office"}, 1, 1, 60, p0(0.5, 1)},
	}
	if diff := cmp.Diff(want, rooms, cmp.AllowUnexported(room{})); diff != "" {
		t.Errorf("avg by room (-want +got):\n%s", diff)
	}

	// The selector narrows the devices; max over 5m steps.
	q := url.Values{"name": {"cpu_usage_ratio"}, "selector": {"room=garage"}, "op": {"max"}, "step": {"5m"},
		"from": {t0.Format(time.RFC3339)}, "to": {t0.Add(9 * time.Minute).Format(time.RFC3339)}}
	resp = get(q.Encode())
	resp.mustStatus(t, http.StatusOK)
	wantQ := MetricsQuery{From: t0, To: t0.Add(9 * time.Minute), Step: "5m0s", Name: "cpu_usage_ratio", Op: "max", Devices: 2,
		Groups: []metrics.Group{{Labels: map[string]string{}, Devices: 2, Series: 2, Points: []metrics.AggPoint{
			{Time: t0, Value: 0.75, Series: 2}, {Time: t0.Add(5 * time.Minute), Value: 0.75, Series: 2}}}}}
	if diff := cmp.Diff(wantQ, decode[MetricsQuery](t, resp)); diff != "" {
		t.Errorf("max in the garage (-want +got):\n%s", diff)
	}

	// The five devices with the least free disk.
	resp = get("name=filesystem_available_bytes&label=mount=/&op=topk&k=5&order=asc")
	resp.mustStatus(t, http.StatusOK)
	top := decode[MetricsQuery](t, resp)
	var names []string
	for _, r := range top.Top {
		if r.Device != ids[r.DeviceName] || r.Count != 60 || r.Labels["mount"] != "/" {
			t.Errorf("ranked %+v", r)
		}
		names = append(names, r.DeviceName)
	}
	if diff := cmp.Diff([]string{"loose", "kitchen", "office", "garage-pi", "hall"}, names); diff != "" || top.Top[0].Value != 1e9 || top.Groups != nil {
		t.Errorf("least free disk (-want +got):\n%s\nfirst %v, groups %v", diff, top.Top[0].Value, top.Groups)
	}
	// A selector that matches nothing: no groups, and no error.
	resp = get("name=cpu_usage_ratio&op=avg&by=room&selector=room=attic")
	resp.mustStatus(t, http.StatusOK)
	if got := decode[MetricsQuery](t, resp); got.Devices != 0 || got.Groups == nil || len(got.Groups) != 0 {
		t.Errorf("nothing selected: %+v", got)
	}

	hour := "&from=2026-03-01T12:00:00Z&to=2026-03-01T13:00:00Z"
	for _, tt := range []struct {
		query, detail string
	}{
		{"op=avg", "name"},
		{"name=cpu-usage&op=avg", "name"},
		{"name=x", `op: ""`},
		{"name=x&op=median", `op: "median"`},
		{"name=x&op=quantile", "quantile: 0"},
		{"name=x&op=quantile&quantile=1.5", "quantile: 1.5"},
		{"name=x&op=quantile&quantile=high", "quantile: \"high\""},
		{"name=x&op=avg&quantile=0.5", "quantile: only with op=quantile"},
		{"name=x&op=avg&selector=room", "selector \"room\""},
		{"name=x&op=avg&selector=", "selector"},
		{"name=x&op=avg&selector=Room=garage", "selector: label key \"Room\""},
		{"name=x&op=avg&step=1ms" + hour, "step: 1ms is too small for the range"},
		{"name=x&op=avg&step=0s", "step"},
		{"name=x&op=topk&k=0", "k: \"0\""},
		{"name=x&op=topk&k=101", "k: 101"},
		{"name=x&op=topk&k=five", "k: \"five\""},
		{"name=x&op=avg&k=5", "k: only with op=topk"},
		{"name=x&op=topk&order=up", `order: "up"`},
		{"name=x&op=topk&by=room", "by: not with op=topk"},
		{"name=x&op=avg&by=Room", `by: "Room"`},
		{"name=x&op=avg&by=room,", `by: ""`},
		{"name=x&op=avg&by=room&by=room", `by: "room" twice`},
		{"name=x&op=avg&label=mount", "label"},
		{"name=x&op=avg&from=yesterday", "from"},
	} {
		if d := get(tt.query).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, tt.detail) {
			t.Errorf("%q: detail %q does not mention %q", tt.query, d, tt.detail)
		}
	}
	h.send(t, request{method: "GET", target: "/api/v1/metrics/query?name=x&op=avg"}).mustProblem(t, http.StatusUnauthorized)
}
