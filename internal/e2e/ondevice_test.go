package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOnDeviceJobRunsWithoutTheHub: a job marked on_device reaches its
// device as its schedule; with the hub stopped the agent fires it from its
// own clock on its hardware, and after the hub restarts the runs done
// while it was away are in the job's history.
func TestOnDeviceJobRunsWithoutTheHub(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr, mqttsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hubArgs := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", mqttsAddr, "--no-mdns", "--clock", "trust"}
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	state := filepath.Join(dir, "kitchen")
	// The agent trusts its own clock (this machine's kernel clock is not
	// NTP-synchronised; a device's clock is otherwise trusted once it
	// agrees with the hub's).
	agent := startProc(t, "kitchen agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr, "--join-token", api.joinToken(1),
		"--name", "kitchen-pi", "--no-mdns", "--hal", "sim", "--heartbeat", "500ms", "--keepalive", "2s", "--clock", "trust")
	dev := enrolledID(t, state, agent)
	api.waitStatus(dev, "online", "", 15*time.Second)

	st, body := api.doRaw("POST", "/api/v1/jobs", map[string]any{
		"id": "porch-light", "on_device": true, "trigger": map[string]any{"cron": "*/3 * * * * *", "zone": "Europe/Berlin"},
		"action": map[string]any{"command": map[string]any{"device": dev, "action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}}},
	})
	if st != 201 {
		t.Fatalf("POST job: %d %s", st, body)
	}
	// The device applies its schedule like a configuration.
	var sched kindState
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var d struct {
			Config map[string]kindState `json:"config"`
		}
		api.do("GET", "/api/v1/devices/"+dev, nil, &d)
		if sched = d.Config["schedule"]; sched.State == "applied" && sched.Applied == sched.Desired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device's schedule: %+v after 10 s, want applied", sched)
		}
	}
	// A run reaches the hub while it is up.
	waitRuns := func(what string, cond func(schedRun) bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			for _, r := range api.jobRuns("porch-light") {
				if cond(r) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no run %s in 20 s: %+v", what, api.jobRuns("porch-light"))
			}
		}
	}
	waitRuns("while the hub is up", func(r schedRun) bool { return r.Status == "ok" && r.Cause == "device schedule" })

	before := strings.Count(agent.out.String(), "job run done")
	hub.stop(syscall.SIGTERM)
	stopped := time.Now()
	// The agent goes on firing: its log shows two more runs with the hub
	// stopped.
	for deadline := time.Now().Add(15 * time.Second); strings.Count(agent.out.String(), "job run done") < before+2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent ran nothing with the hub stopped:\n%s", lastLines(agent.out.String(), 40))
		}
	}
	restarted := time.Now()
	hub = startProc(t, "hub (again)", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	waitRuns("done while the hub was stopped", func(r schedRun) bool {
		return r.Status == "ok" && r.Scheduled.After(stopped.Add(time.Second)) && r.Scheduled.Before(restarted)
	})
	var away []string
	for _, r := range api.jobRuns("porch-light") {
		if r.Scheduled.After(stopped) && r.Scheduled.Before(restarted) {
			away = append(away, r.Scheduled.UTC().Format("15:04:05")+" "+r.Status)
		}
	}
	t.Logf("runs the device did while the hub was stopped (%s → %s), in the hub's history %s after its restart: %q",
		stopped.UTC().Format("15:04:05.0"), restarted.UTC().Format("15:04:05.0"), time.Since(restarted).Round(time.Millisecond), away)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
