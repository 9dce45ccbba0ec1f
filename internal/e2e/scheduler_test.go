package e2e

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// schedRun is a run as GET /api/v1/jobs/{id}/runs lists it.
type schedRun struct {
	ID        string    `json:"id"`
	Scheduled time.Time `json:"scheduled"`
	Cause     string    `json:"cause"`
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	Error     string    `json:"error"`
	Result    string    `json:"result"`
}

func (c *apiClient) jobRuns(id string) []schedRun {
	c.t.Helper()
	var rs []schedRun
	if st := c.do("GET", "/api/v1/jobs/"+id+"/runs", nil, &rs); st != 200 {
		c.t.Fatalf("runs of %s: %d", id, st)
	}
	return rs
}

// auditBy returns the commands in the audit log sent by actor.
func (c *apiClient) auditBy(actor string) []commandRecord {
	c.t.Helper()
	var audit struct {
		Commands []commandRecord `json:"commands"`
	}
	if st := c.do("GET", "/api/v1/audit?"+url.Values{"limit": {"500"}}.Encode(), nil, &audit); st != 200 {
		c.t.Fatalf("audit: %d", st)
	}
	var out []commandRecord
	for _, r := range audit.Commands {
		if r.Actor == actor {
			out = append(out, r)
		}
	}
	return out
}

// startSchedHub starts the hub binary (trusting its clock: this machine's
// kernel clock is not NTP-synchronised) and a simulated-board agent.
func startSchedHub(t *testing.T, dir string) (hubArgs []string, hub *proc, api *apiClient, dev string) {
	bin := binaries(t)
	httpAddr, mqttAddr, mqttsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hubArgs = []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", mqttsAddr, "--no-mdns", "--clock", "trust"}
	hub = startProc(t, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	api = newAPIClient(t, httpAddr, hubDir)
	state := filepath.Join(dir, "kitchen")
	agent := startProc(t, "kitchen agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr, "--join-token", api.joinToken(1),
		"--name", "kitchen-pi", "--no-mdns", "--hal", "sim", "--heartbeat", "500ms", "--keepalive", "2s")
	dev = enrolledID(t, state, agent)
	api.waitStatus(dev, "online", "", 15*time.Second)
	return hubArgs, hub, api, dev
}

// TestScheduledRelayEveryMinute: the acceptance's job, "every minute,
// relay on kitchen device", posted once; within 70 s the audit log shows
// its command, sent by scheduler:<job>, done by the real agent.
func TestScheduledRelayEveryMinute(t *testing.T) {
	_, _, api, dev := startSchedHub(t, t.TempDir())
	posted := time.Now()
	st, body := api.doRaw("POST", "/api/v1/jobs", map[string]any{
		"id": "kitchen-relay", "trigger": map[string]any{"cron": "* * * * *", "zone": "Europe/Berlin"},
		"action":  map[string]any{"command": map[string]any{"device": dev, "action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}}},
		"comment": "every minute, relay on",
	})
	if st != 201 {
		t.Fatalf("POST job: %d %s", st, body)
	}
	var recs []commandRecord
	for deadline := posted.Add(70 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if recs = api.auditBy("scheduler:kitchen-relay"); len(recs) > 0 && recs[0].Status == "ok" {
			break
		}
	}
	if len(recs) == 0 || recs[0].Status != "ok" {
		t.Fatalf("no command ok from scheduler:kitchen-relay in the audit log within 70 s: %+v", recs)
	}
	t.Logf("the audit shows %s from scheduler:kitchen-relay %s after the POST", recs[0].ID, time.Since(posted).Round(time.Millisecond))
	rs := api.jobRuns("kitchen-relay")
	if len(rs) != 1 || rs[0].Status != "ok" || !strings.HasPrefix(recs[0].ID, rs[0].ID+".") || rs[0].Scheduled.Second() != 0 {
		t.Errorf("runs %+v, want one ok run at a whole minute whose command is %s", rs, recs[0].ID)
	}
}

// TestSchedulerKilledAcrossFireTimes: the hub is killed (SIGKILL) while a
// five-second job runs; the fires it misses while down become exactly one
// run (run_once) after the restart, and no run ever sends its command
// twice.
func TestSchedulerKilledAcrossFireTimes(t *testing.T) {
	dir := t.TempDir()
	hubArgs, hub, api, dev := startSchedHub(t, dir)
	st, body := api.doRaw("POST", "/api/v1/jobs", map[string]any{
		"id": "pulse", "trigger": map[string]any{"cron": "*/5 * * * * *", "zone": "UTC"}, "missed": "run_once",
		"action": map[string]any{"command": map[string]any{"device": dev, "action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}}},
	})
	if st != 201 {
		t.Fatalf("POST job: %d %s", st, body)
	}
	ok := func() int {
		n := 0
		for _, r := range api.jobRuns("pulse") {
			if r.Status == "ok" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); ok() < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no two runs in 20 s: %+v", api.jobRuns("pulse"))
		}
	}
	killed := time.Now()
	hub.stop(syscall.SIGKILL)
	time.Sleep(17 * time.Second) // down across three fire times, the first more than 10 s before the restart
	restarted := time.Now()
	hub = startProc(t, "hub (again)", filepath.Join(binaries(t), "alicia-hub"), hubArgs...)
	waitHealthy(t, strings.TrimPrefix(api.base, "http://"), hub)
	api.waitStatus(dev, "online", "", 15*time.Second)
	// Two fires after the restart, so that the backlog surely was handled.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		n := 0
		for _, r := range api.jobRuns("pulse") {
			if r.Scheduled.After(restarted.Add(time.Second)) && r.Status == "ok" {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs after the restart: %+v", api.jobRuns("pulse"))
		}
	}
	var backlog []string
	ran := map[string]bool{}
	for _, r := range api.jobRuns("pulse") {
		if ran[r.ID] {
			t.Errorf("run %s listed twice", r.ID)
		}
		ran[r.ID] = true
		if r.Scheduled.After(killed) && !r.Scheduled.After(restarted) && r.Status != "skipped" {
			backlog = append(backlog, fmt.Sprintf("%s %s %s", r.Scheduled.Format("15:04:05"), r.Cause, r.Status))
		}
	}
	t.Logf("fires while the hub was down (%s → %s) that ran: %q", killed.Format("15:04:05.0"), restarted.Format("15:04:05.0"), backlog)
	if len(backlog) != 1 {
		t.Errorf("%d runs for the fires missed while the hub was down, want exactly 1 (run_once)", len(backlog))
	}
	// Every command the job sent is one run's attempt, once.
	seen := map[string]bool{}
	for _, c := range api.auditBy("scheduler:pulse") {
		run := c.ID[:strings.LastIndexByte(c.ID, '.')]
		if seen[c.ID] || !ran[run] {
			t.Errorf("command %s: sent twice, or of no listed run", c.ID)
		}
		seen[c.ID] = true
	}
}
