package prom

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
)

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

// scrape serves the exposition of the given devices and samples and
// returns its text.
func scrape(t *testing.T, cfg metrics.Config, devices []registry.Device, batches []metrics.Batch, now time.Time) string {
	t.Helper()
	return scrapeWith(t, cfg, devices, nil, batches, now)
}

// scrapeWith is scrape with the integrations ints.
func scrapeWith(t *testing.T, cfg metrics.Config, devices []registry.Device, ints []string, batches []metrics.Batch, now time.Time) string {
	t.Helper()
	db, err := store.Open(store.Options{Dir: t.TempDir(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.Now = func() time.Time { return now }
	ms, err := metrics.Open(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Ingest(batches); err != nil {
		t.Fatal(err)
	}
	in := metrics.NewIngester(ms, metrics.IngesterConfig{})
	h := Handler(Sources{
		Devices: func() []registry.Device { return devices }, Metrics: ms, Ingest: in, StoreSize: db.Size,
		Integrations: func() []string { return ints },
		Broker:       func() (int64, int64, int64, uint64, uint64) { return 3, 100, 90, 2, 1 },
		Rejected:     func() uint64 { return 5 },
		Limited:      func() uint64 { return 4 },
		Dropped: func() []Dropped {
			return []Dropped{{"mqtt", "connect_timeout", 4}, {"mqtt", "tls_handshake_failed", 0}, {"http", "first_byte_timeout", 2}}
		},
		Now: func() time.Time { return now },
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d:\n%s", rec.Code, body)
	}
	return string(body)
}

func batch(seq uint64, at time.Time, points ...protocol.Point) *protocol.Metrics {
	return &protocol.Metrics{Epoch: "ep", Seq: seq, Time: at, Points: points}
}

func TestExposition(t *testing.T) {
	devices := []registry.Device{
		{ID: "dkitchen", Name: "kitchen-pi", Status: registry.StatusOnline, Labels: map[string]string{"room": "kitchen", "home.floor": "1"}},
		{ID: "dgarage", Name: "garage-pi", Status: registry.StatusOffline}, // no labels: "" for room
		{ID: "dpending", Name: "new", Status: registry.StatusPending},
	}
	now := t0.Add(time.Minute)
	batches := []metrics.Batch{
		{Device: "dkitchen", Metrics: batch(1, t0, protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: 0.25},
			protocol.Point{Name: "disk_read_bytes_total", Labels: map[string]string{"disk": "mmcblk0"}, Value: 4096},
			protocol.Point{Name: "go_goroutines", Value: 7}, // would clash with the hub's own family
		)},
		{Device: "dgarage", Metrics: batch(1, t0, protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: 0.5})},
		{Device: "dgarage", Metrics: batch(2, t0.Add(-time.Hour), protocol.Point{Name: "temperature_celsius", Labels: map[string]string{"sensor": "cpu_thermal"}, Value: 50})},
		{Device: "dpending", Metrics: batch(1, t0, protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: 0.9})},
	}
	out := scrape(t, metrics.Config{}, devices, batches, now)
	for _, want := range []string{
		`cpu_usage_ratio{cpu="total",device="dkitchen",device_name="kitchen-pi",home_floor="1",room="kitchen"} 0.25`,
		`cpu_usage_ratio{cpu="total",device="dgarage",device_name="garage-pi",home_floor="",room=""} 0.5`,
		"# TYPE cpu_usage_ratio gauge",
		"# TYPE disk_read_bytes_total counter",
		`disk_read_bytes_total{device="dkitchen",device_name="kitchen-pi",disk="mmcblk0",home_floor="1",room="kitchen"} 4096`,
		`alicia_device_up{device="dkitchen",device_name="kitchen-pi",home_floor="1",room="kitchen"} 1`,
		`alicia_device_up{device="dgarage",device_name="garage-pi",home_floor="",room=""} 0`,
		`alicia_hub_devices{status="pending"} 1`,
		`alicia_hub_broker_clients 3`,
		`alicia_hub_rejected_messages_total 5`,
		`alicia_hub_rate_limited_messages_total 4`,
		`alicia_device_series{device="dkitchen",device_name="kitchen-pi",home_floor="1",room="kitchen"} 3`,
		`alicia_hub_dropped_connections_total{listener="mqtt",reason="connect_timeout"} 4`,
		`alicia_hub_dropped_connections_total{listener="mqtt",reason="tls_handshake_failed"} 0`,
		`alicia_hub_dropped_connections_total{listener="http",reason="first_byte_timeout"} 2`,
		`alicia_hub_store_size_bytes{part="lsm"}`,
		"go_goroutines ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s\n--- exposition ---\n%s", want, out)
		}
	}
	for _, unwanted := range []string{`device="dpending"`, "temperature_celsius", `go_goroutines{device=`} {
		if strings.Contains(out, unwanted) {
			t.Errorf("exposition contains %s (pending device, stale sample, or a clash with the hub's own families)", unwanted)
		}
	}
	promtool(t, out)
}

// TestHostileLabelValues scrapes devices whose name and labels (stored
// before the registry refused them, or sent by the device) hold quotes,
// markup, bidirectional controls and an invalid byte: the scrape works,
// every value is escaped for the text format, and no bidi control or
// invalid byte reaches Prometheus.
func TestHostileLabelValues(t *testing.T) {
	devices := []registry.Device{{ID: "dkitchen", Name: `kitchen "pi" \ <b>&</b>` + "\u202Egpj", Status: registry.StatusOnline,
		Labels: map[string]string{"room": "hall\xff", "floor": "\u2066one\u2069"}}}
	batches := []metrics.Batch{{Device: "dkitchen", Metrics: batch(1, t0,
		protocol.Point{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/mnt/\u202Eevil"}, Value: 0.5})}}
	out := scrape(t, metrics.Config{}, devices, batches, t0.Add(time.Minute))
	for _, want := range []string{
		`alicia_device_up{device="dkitchen",device_name="kitchen \"pi\" \\ <b>&</b>\uFFFDgpj",floor="\uFFFDone\uFFFD",room="hall\uFFFD"} 1`,
		`filesystem_used_ratio{device="dkitchen",device_name="kitchen \"pi\" \\ <b>&</b>\uFFFDgpj",floor="\uFFFDone\uFFFD",mount="/mnt/\uFFFDevil",room="hall\uFFFD"} 0.5`,
	} {
		want = strings.ReplaceAll(want, `\uFFFD`, "\uFFFD")
		if !strings.Contains(out, want) {
			t.Errorf("missing %s\n--- exposition ---\n%s", want, out)
		}
	}
	for _, raw := range []string{"\u202E", "\u2066", "\u2069", "\xff"} {
		if strings.Contains(out, raw) {
			t.Errorf("exposition holds %q raw", raw)
		}
	}
	promtool(t, out)
}

// promtool runs `promtool check metrics` on the exposition: the real
// Prometheus tool must accept it.
func promtool(t *testing.T, exposition string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed; .ci/run installs the Debian package prometheus")
		}
		t.Skip("promtool is not installed (Debian package prometheus)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// A device past its series limit: its catalog size and refusals are
// exposed per device and in total; the hub's own limit flag is not
// exposed as a device family.
func TestExpositionOfSeriesLimit(t *testing.T) {
	devices := []registry.Device{{ID: "dflood", Name: "flood-pi", Status: registry.StatusOnline}}
	pts := []protocol.Point{{Name: "a", Value: 1}, {Name: "b", Value: 2}, {Name: "c", Value: 3}, {Name: "d", Value: 4}}
	out := scrape(t, metrics.Config{MaxSeriesPerDevice: 2}, devices, []metrics.Batch{{Device: "dflood", Metrics: batch(1, t0, pts...)}}, t0)
	for _, want := range []string{
		`alicia_device_series{device="dflood",device_name="flood-pi"} 2`,
		`alicia_device_series_refused_total{device="dflood",device_name="flood-pi"} 2`,
		`alicia_hub_metrics_series_refused_total 2`,
		`alicia_hub_metrics_rollup_failures_total 0`,
		`alicia_hub_metrics_rollups_total{resolution="minute"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s\n--- exposition ---\n%s", want, out)
		}
	}
	if strings.Contains(out, metrics.SeriesLimitedName+"{") {
		t.Errorf("the hub's %s flag is exposed as a device sample", metrics.SeriesLimitedName)
	}
	promtool(t, out)
}

// An integration's series are exposed with integration="<name>", never
// with a device's labels, whatever labels it pushed; a device's cannot
// pass for an integration's either.
func TestIntegrationExposition(t *testing.T) {
	devices := []registry.Device{{ID: "dkitchen", Name: "kitchen-pi", Status: registry.StatusOnline, Labels: map[string]string{"room": "kitchen"}}}
	now := t0.Add(time.Minute)
	batches := []metrics.Batch{
		{Device: "dkitchen", Metrics: batch(1, t0, protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total", "integration": "power"}, Value: 0.25})},
		{Device: "int-power", Metrics: batch(1, t0,
			protocol.Point{Name: "grid_power_watts", Labels: map[string]string{"phase": "1"}, Value: 230.5},
			protocol.Point{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total", "device": "dkitchen", "device_name": "kitchen-pi"}, Value: 0.75},
		)},
		{Device: "int-gone", Metrics: batch(1, t0, protocol.Point{Name: "grid_power_watts", Value: 1})},
	}
	out := scrapeWith(t, metrics.Config{}, devices, []string{"power"}, batches, now)
	for _, want := range []string{
		`grid_power_watts{integration="power",phase="1"} 230.5`,
		`cpu_usage_ratio{cpu="total",device="",device_name="",integration="power",room=""} 0.75`,
		`cpu_usage_ratio{cpu="total",device="dkitchen",device_name="kitchen-pi",integration="",room="kitchen"} 0.25`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "gone") || strings.Count(out, "\ngrid_power_watts{") != 1 {
		t.Errorf("an integration not listed is exposed:\n%s", out)
	}
}
