package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kindState is a device's configuration of one kind as the registry shows
// it (confsync.KindState).
type kindState struct {
	Desired string `json:"desired"`
	Applied string `json:"applied"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

// agentConfig returns device id's configuration state of kind agent.
func (c *apiClient) agentConfig(id string) kindState {
	c.t.Helper()
	var d struct {
		Config map[string]kindState `json:"config"`
	}
	if st := c.do("GET", "/api/v1/devices/"+id, nil, &d); st != 200 {
		c.t.Fatalf("GET device %s: %d", id, st)
	}
	return d.Config["agent"]
}

// waitConfig polls device id's agent configuration until cond holds and
// returns how long that took.
func (c *apiClient) waitConfig(id string, timeout time.Duration, what string, cond func(kindState) bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	var last kindState
	for time.Since(start) < timeout {
		if last = c.agentConfig(id); cond(last) {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond) // polling the registry
	}
	c.t.Fatalf("device %s: agent config %+v after %s, want %s", id, last, timeout, what)
	return 0
}

// sampleGap returns the median time between device id's samples of
// agent_outbox_batches (one per collection) since from.
func (c *apiClient) sampleGap(id string, from time.Time) (time.Duration, int) {
	c.t.Helper()
	var r struct {
		Series []struct {
			Points []struct {
				T time.Time `json:"t"`
			} `json:"points"`
		} `json:"series"`
	}
	q := url.Values{"name": {"agent_outbox_batches"}, "from": {from.UTC().Format(time.RFC3339Nano)}, "to": {time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)}}
	if st := c.do("GET", "/api/v1/devices/"+id+"/metrics?"+q.Encode(), nil, &r); st != 200 || len(r.Series) > 1 {
		c.t.Fatalf("metrics of %s: %d, %d series", id, st, len(r.Series))
	}
	if len(r.Series) == 0 {
		return 0, 0
	}
	pts := r.Series[0].Points
	if len(pts) < 2 {
		return 0, len(pts)
	}
	gaps := make([]time.Duration, 0, len(pts)-1)
	for i := 1; i < len(pts); i++ {
		gaps = append(gaps, pts[i].T.Sub(pts[i-1].T))
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2], len(pts)
}

// TestConfigOnRealAgents: one REST call changes the sample interval of
// the garage's agents; each online one applies it (desired = applied in
// the registry) within 5 s and samples at the new interval; one that was
// offline converges when it returns; a rollback brings the old interval
// back; a configuration that cuts an agent off from the hub is reverted by
// the agent itself, and the hub shows why.
func TestConfigOnRealAgents(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr, mqttsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", mqttsAddr, "--no-mdns")
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)
	join := api.joinToken(3)

	type agent struct {
		name, state, id string
		args            []string
		p               *proc
	}
	agents := map[string]*agent{}
	for _, name := range []string{"garage-1", "garage-2", "attic"} {
		a := &agent{name: name, state: filepath.Join(dir, name)}
		a.args = []string{"--state-dir", a.state, "--hub", httpAddr, "--name", name, "--no-mdns", "--heartbeat", "500ms", "--keepalive", "2s",
			"--sample-interval", "10s", "--config-confirm-window", "3s"}
		a.p = startProc(t, name, filepath.Join(bin, "alicia-agent"), append(a.args, "--join-token", join)...)
		a.id = enrolledID(t, a.state, a.p)
		api.waitStatus(a.id, "online", "", 15*time.Second)
		agents[name] = a
	}
	for _, name := range []string{"garage-1", "garage-2"} {
		if st, body := api.doRaw("PATCH", "/api/v1/devices/"+agents[name].id, map[string]any{"labels": map[string]string{"room": "garage"}}); st != 200 {
			t.Fatalf("label %s: %d %s", name, st, body)
		}
	}
	// A hub-wide default: every agent applies it.
	putConfig(t, api, "/api/v1/config/agent/default", `{"content":{"log_level":"info"}}`)
	for _, a := range agents {
		api.waitConfig(a.id, 10*time.Second, "applied", func(k kindState) bool { return k.State == "applied" && k.Applied == k.Desired })
	}
	atticHash := api.agentConfig(agents["attic"].id).Desired

	// garage-2 is away during the change.
	g2 := agents["garage-2"]
	g2.p.stop(syscall.SIGTERM)
	api.waitStatus(g2.id, "offline", "", 10*time.Second)

	garage := "/api/v1/config/agent/selector:room=garage"
	putConfig(t, api, garage, `{"content":{"sample_interval":"10s"},"comment":"as the flags say"}`)
	g1 := agents["garage-1"]
	api.waitConfig(g1.id, 10*time.Second, "v1 applied", func(k kindState) bool {
		return k.State == "applied" && k.Applied == k.Desired && k.Desired != atticHash
	})
	v1Hash := api.agentConfig(g1.id).Desired

	// The change: one call.
	changed := time.Now()
	if st := configWrite(t, api, garage, "If-Match", `"1"`, map[string]any{"content": map[string]any{"sample_interval": "1s", "heartbeat": "2s"}, "comment": "the garage freezes"}); st != 200 {
		t.Fatalf("PUT: %d", st)
	}
	took := api.waitConfig(g1.id, 5*time.Second, "the new interval applied within 5 s", func(k kindState) bool {
		return k.State == "applied" && k.Applied == k.Desired && k.Desired != v1Hash
	})
	t.Logf("garage-1 applied the new sample interval %s after the PUT", took.Round(time.Millisecond))
	v2Hash := api.agentConfig(g1.id).Desired
	if k := api.agentConfig(agents["attic"].id); k.Desired != atticHash || k.Applied != atticHash {
		t.Errorf("attic (not in the garage): %+v, want its configuration unchanged", k)
	}
	// Its registration says the new heartbeat (the hub judges lateness by it).
	var hb int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && hb != 2000; time.Sleep(25 * time.Millisecond) {
		var d struct {
			HeartbeatMS int64 `json:"heartbeat_ms"`
		}
		api.do("GET", "/api/v1/devices/"+g1.id, nil, &d)
		hb = d.HeartbeatMS
	}
	if hb != 2000 {
		t.Errorf("garage-1's heartbeat_ms %d after the change, want 2000", hb)
	}
	// Its telemetry follows: samples one second apart.
	var gap time.Duration
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var n int
		if gap, n = api.sampleGap(g1.id, changed.Add(time.Second)); n >= 5 {
			break
		}
	}
	t.Logf("garage-1's samples after the change: median gap %s", gap.Round(time.Millisecond))
	if gap < 700*time.Millisecond || gap > 1500*time.Millisecond {
		t.Errorf("median gap between samples %s, want about 1 s", gap)
	}

	// garage-2 comes back and converges.
	back := time.Now()
	g2.p = startProc(t, "garage-2 (back)", filepath.Join(bin, "alicia-agent"), g2.args...)
	api.waitStatus(g2.id, "online", "", 15*time.Second)
	api.waitConfig(g2.id, 10*time.Second, "converged", func(k kindState) bool { return k.State == "applied" && k.Applied == v2Hash && k.Desired == v2Hash })
	t.Logf("garage-2 applied it %s after it was started again", time.Since(back).Round(time.Millisecond))

	// Undo in one call: version 3 is version 1's content.
	req, _ := http.NewRequest("POST", api.base+garage+"/rollback", strings.NewReader(`{"version":1,"comment":"too chatty"}`))
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", `"2"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("rollback: %d", resp.StatusCode)
	}
	for _, a := range []*agent{g1, g2} {
		api.waitConfig(a.id, 10*time.Second, "the old configuration back", func(k kindState) bool {
			return k.State == "applied" && k.Applied == v1Hash && k.Desired == v1Hash
		})
	}
	var hist []struct {
		Number  int    `json:"number"`
		Hash    string `json:"hash"`
		Author  string `json:"author"`
		Comment string `json:"comment"`
	}
	if st := api.do("GET", garage+"/versions", nil, &hist); st != 200 || len(hist) != 3 {
		t.Fatalf("history: %d, %d versions, want 3", st, len(hist))
	}
	slices.SortFunc(hist, func(a, b struct {
		Number  int    `json:"number"`
		Hash    string `json:"hash"`
		Author  string `json:"author"`
		Comment string `json:"comment"`
	}) int {
		return a.Number - b.Number
	})
	if hist[2].Hash != hist[0].Hash || hist[2].Author == "" {
		t.Errorf("history %+v: want version 3 = version 1's content, with an author", hist)
	}

	// A broker nobody answers at, for the attic alone: the agent applies
	// it, cannot reach the hub, and goes back by itself.
	attic := agents["attic"]
	cut := time.Now()
	putConfig(t, api, "/api/v1/config/agent/device:"+attic.id, fmt.Sprintf(`{"content":{"broker_url":"mqtts://%s"},"comment":"a typo"}`, freeAddr(t)))
	api.waitConfig(attic.id, 20*time.Second, "reverted by the device", func(k kindState) bool { return k.State == "reverted" })
	k := api.agentConfig(attic.id)
	t.Logf("attic reverted it and said so %s after the PUT: %q", time.Since(cut).Round(time.Millisecond), k.Reason)
	if !strings.Contains(k.Reason, "could not be reached") || k.Applied != atticHash {
		t.Errorf("attic: %+v, want reverted with the reason and its old configuration applied", k)
	}
	api.waitStatus(attic.id, "online", "", 10*time.Second)
	if !strings.Contains(attic.p.out.String(), "configuration reverted") {
		t.Errorf("the attic agent's log does not say it reverted")
	}
}
