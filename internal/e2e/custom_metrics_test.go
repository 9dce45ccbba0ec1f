package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCustomMetricPushedWhileHubDown: with the hub stopped, a device's
// script hands two custom metrics (a gauge marked for Home Assistant and a
// counter) to the agent with `alicia-agent push`; the agent stores them in
// its outbox with every collection, and once the hub is back every sample
// is in the store exactly once (one per batch, none twice), from the
// outage on, and in the hub's /metrics.
func TestCustomMetricPushedWhileHubDown(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hubArgs := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(t), "--no-mdns"}
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	state, textfiles := filepath.Join(dir, "agent"), filepath.Join(dir, "textfile")
	agent := startProc(t, "agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
		"--join-token", api.joinToken(1), "--name", "sampler", "--no-mdns", "--heartbeat", "1s", "--keepalive", "2s",
		"--sample-interval", "1s", "--textfile-dir", textfiles)
	id := enrolledID(t, state, agent)
	api.waitStatus(id, "online", "", 10*time.Second)

	hub.stop(syscall.SIGTERM)
	// The device's script, as a person would write it.
	script := exec.Command("sh", "-ec", `
alicia-agent push boiler_temperature_celsius=61.5 --label circuit=heating --ha-sensor --help-text "Water at the boiler's outlet."
alicia-agent push boiler_starts_total=7
`)
	script.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "ALICIA_TEXTFILE_DIR=" + textfiles}
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("the script: %v\n%s", err, out)
	}
	pushed := time.Now()
	time.Sleep(3 * time.Second) // the rest of the outage: the agent collects into its outbox
	hub = startProc(t, "hub (again)", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	restarted := time.Now()

	type series struct {
		Labels map[string]string `json:"labels"`
		Points []struct {
			T time.Time `json:"t"`
			V float64   `json:"v"`
		} `json:"points"`
	}
	query := func(name string, to time.Time) []series {
		var r struct {
			Series []series `json:"series"`
		}
		q := url.Values{"name": {name}, "from": {pushed.Add(-time.Minute).UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
		if st := api.do("GET", "/api/v1/devices/"+id+"/metrics?"+q.Encode(), nil, &r); st != 200 {
			t.Fatalf("query %s: %d", name, st)
		}
		return r.Series
	}
	// Wait until the hub has the boiler's samples from the outage and
	// from after the restart.
	var boiler []series
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) { // polling the hub
		boiler = query("boiler_temperature_celsius", time.Now().Add(time.Minute))
		if len(boiler) == 1 && len(boiler[0].Points) > 0 && boiler[0].Points[0].T.Before(restarted) &&
			boiler[0].Points[len(boiler[0].Points)-1].T.After(restarted.Add(time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub does not have the boiler's samples from the outage and after it: %+v\n--- agent ---\n%s", boiler, agent.out)
		}
	}
	s := boiler[0]
	if want := map[string]string{"circuit": "heating", "ha": "sensor"}; !equalLabels(s.Labels, want) {
		t.Errorf("labels %v, want %v", s.Labels, want)
	}
	first, last := s.Points[0].T, s.Points[len(s.Points)-1].T
	for i, p := range s.Points {
		if p.V != 61.5 {
			t.Errorf("point %d: %v, want 61.5", i, p.V)
		}
		if i > 0 && !p.T.After(s.Points[i-1].T) {
			t.Errorf("points %d and %d: %s then %s, a sample stored twice or out of order", i-1, i, s.Points[i-1].T, p.T)
		}
	}
	// Once: one sample per batch, as many as the agent's own samples of
	// those batches (agent_outbox_batches is in every batch).
	own := query("agent_outbox_batches", last)
	if len(own) != 1 {
		t.Fatalf("agent_outbox_batches: %d series, want 1", len(own))
	}
	var batches int
	for _, p := range own[0].Points {
		if !p.T.Before(first) {
			batches++
		}
	}
	if batches != len(s.Points) {
		t.Errorf("%d boiler samples from %s to %s, but %d batches then: want one sample per batch", len(s.Points), first.Format("15:04:05.000"), last.Format("15:04:05.000"), batches)
	}
	var during int
	for _, p := range s.Points {
		if p.T.Before(restarted) {
			during++
		}
	}
	if during < 2 {
		t.Errorf("%d samples collected while the hub was down, want at least 2", during)
	}
	starts := query("boiler_starts_total", last)
	if len(starts) != 1 || len(starts[0].Points) != len(s.Points) || starts[0].Points[0].V != 7 {
		t.Errorf("boiler_starts_total: %+v, want %d samples of 7", starts, len(s.Points))
	}
	t.Logf("pushed with the hub down; %d samples of each metric stored once (%d collected during the outage), the first %s after the push",
		len(s.Points), during, first.Sub(pushed).Round(time.Millisecond))

	// The hub's /metrics (open on loopback) has both, the counter typed.
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`boiler_temperature_celsius{circuit="heating",device="` + id + `",device_name="sampler",ha="sensor"} 61.5`,
		`boiler_starts_total{device="` + id + `",device_name="sampler"} 7`,
		"# TYPE boiler_starts_total counter",
		"# TYPE boiler_temperature_celsius gauge",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	checkLiveExposition(t, httpAddr, id)
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
