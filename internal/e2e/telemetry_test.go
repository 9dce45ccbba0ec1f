package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
)

// outage is how long the hub stays down in TestTelemetrySurvivesHubOutage;
// ALICIA_OUTAGE (a Go duration) overrides it, e.g. 60s for the acceptance
// check.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("ALICIA_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ALICIA_OUTAGE=%q: %v", v, err)
		}
		return d
	}
	return 8 * time.Second
}

type rangeResp struct {
	Series []struct {
		Points []struct {
			T time.Time `json:"t"`
			V float64   `json:"v"`
		} `json:"points"`
	} `json:"series"`
}

// TestTelemetrySurvivesHubOutage runs an agent that samples every second
// while the hub is stopped (SIGTERM), then killed (SIGKILL), each for the
// outage; after restarts every collected batch is at the hub exactly once
// or still in the agent's outbox, and every second of both outages is
// stored.
func TestTelemetrySurvivesHubOutage(t *testing.T) {
	bin := binaries(t)
	down := outage(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hubArgs := []string{"--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", freeAddr(t), "--no-mdns"}
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), hubArgs...)
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	state := filepath.Join(dir, "agent")
	agent := startProc(t, "agent", filepath.Join(bin, "alicia-agent"), "--state-dir", state, "--hub", httpAddr,
		"--join-token", api.joinToken(1), "--name", "sampler", "--heartbeat", "1s", "--keepalive", "2s", "--sample-interval", "1s")
	id := enrolledID(t, state, agent)
	api.waitStatus(id, "online", "", 10*time.Second)

	count := func() (int, []time.Time) {
		var r rangeResp
		q := url.Values{"name": {"agent_outbox_batches"}, "from": {"2000-01-01T00:00:00Z"}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339)}}
		if st := api.do("GET", "/api/v1/devices/"+id+"/metrics?"+q.Encode(), nil, &r); st != 200 || len(r.Series) != 1 {
			return 0, nil
		}
		var ts []time.Time
		for _, p := range r.Series[0].Points {
			ts = append(ts, p.T)
		}
		return len(ts), ts
	}
	// waitCaughtUp waits until the hub has the agent's batches up to the
	// last few seconds.
	waitCaughtUp := func(what string) {
		t.Helper()
		deadline := time.Now().Add(down + 30*time.Second)
		for {
			if _, ts := count(); len(ts) > 0 && time.Since(ts[len(ts)-1]) < 3*time.Second {
				return
			}
			if time.Now().After(deadline) {
				n, _ := count()
				t.Fatalf("%s: the hub has %d batches and not the last seconds'\n--- agent ---\n%s", what, n, agent.out)
			}
			time.Sleep(100 * time.Millisecond) // polling the hub
		}
	}
	waitCaughtUp("before the outages")

	var outages [][2]time.Time
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		start := time.Now()
		hub.stop(sig)
		time.Sleep(down) // the outage itself: the agent keeps sampling into its outbox
		hub = startProc(t, fmt.Sprintf("hub (after %v)", sig), filepath.Join(bin, "alicia-hub"), hubArgs...)
		waitHealthy(t, httpAddr, hub)
		outages = append(outages, [2]time.Time{start, time.Now()})
		took := time.Now()
		waitCaughtUp(fmt.Sprintf("after a %s outage (%v)", down, sig))
		t.Logf("hub down %s (%v): the agent's backlog was stored %s after the restart", down, sig, time.Since(took).Round(10*time.Millisecond))
	}

	checkLiveExposition(t, httpAddr, id)
	// Idle after the restarts (outbox drained, sampling once a second): the
	// sender must sleep, not spin. A spinning agent burns a whole core.
	before := procCPU(t, agent.cmd.Process.Pid)
	time.Sleep(3 * time.Second) // measuring idle CPU over a fixed window
	if used := procCPU(t, agent.cmd.Process.Pid) - before; used > time.Second {
		t.Errorf("the idle agent used %s of CPU in 3 s", used)
	} else {
		t.Logf("idle agent: %s of CPU in 3 s", used)
	}
	agent.stop(syscall.SIGTERM)
	ob, err := outbox.Open(outbox.Options{Path: filepath.Join(state, "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	st := ob.Stats()
	ob.Close()
	n, ts := count()
	t.Logf("agent collected %d batches; the hub stored %d; %d still in the outbox, %d dropped", st.LastSeq, n, st.Depth, st.Dropped)
	if st.Dropped != 0 {
		t.Errorf("the outbox dropped %d batches", st.Dropped)
	}
	// Every batch is either stored once at the hub or still waiting.
	if uint64(n)+uint64(st.Depth) != st.LastSeq {
		t.Errorf("stored %d + waiting %d != collected %d", n, st.Depth, st.LastSeq)
	}
	if st.Depth > 3 {
		t.Errorf("%d batches still waiting after the hub caught up", st.Depth)
	}
	// No duplicates, no gaps: one point per second.
	for i := 1; i < len(ts); i++ {
		if gap := ts[i].Sub(ts[i-1]); gap <= 0 || gap > 1500*time.Millisecond {
			t.Errorf("points %d and %d are %s apart (%s, %s), want about 1 s", i-1, i, gap, ts[i-1], ts[i])
		}
	}
	for _, o := range outages {
		in := 0
		for _, p := range ts {
			if p.After(o[0]) && p.Before(o[1]) {
				in++
			}
		}
		if want := int(o[1].Sub(o[0]).Seconds()) - 1; in < want {
			t.Errorf("outage %s–%s: %d points stored, want at least %d", o[0].Format("15:04:05"), o[1].Format("15:04:05"), in, want)
		}
	}
	if strings.Contains(agent.out.String(), "samples not stored") {
		t.Errorf("the agent failed to store samples:\n%s", agent.out)
	}
}

// enrolledID waits until the agent p with state directory state has
// enrolled (its device ID is in credentials.json) and returns the ID.
func enrolledID(t *testing.T, state string, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(state, "credentials.json")); err == nil {
			if i := strings.Index(string(b), `"device_id": "`); i >= 0 {
				rest := string(b)[i+len(`"device_id": "`):]
				return rest[:strings.IndexByte(rest, '"')]
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for enrolment
	}
	t.Fatalf("%s did not enrol:\n%s", p.name, p.out)
	return ""
}

// checkLiveExposition scrapes the running hub's /metrics (open on
// loopback), has the real promtool check it, and looks for the device's
// samples under its device label.
func checkLiveExposition(t *testing.T, httpAddr, id string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{`memory_used_bytes{device="` + id + `",device_name="sampler"}`, `alicia_device_up{device="` + id + `",device_name="sampler"} 1`, "alicia_hub_metrics_batches_total "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	path, err := exec.LookPath("promtool")
	if err != nil {
		missing(t, "promtool")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the live /metrics: %v\n%s", err, out)
	}
}

// procCPU returns the user+system CPU time of process pid so far.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may contain spaces): state is
	// field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ticks int64
	for _, i := range []int{14 - 3, 15 - 3} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
