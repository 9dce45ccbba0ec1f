package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rolloutView is the part of a rollout (GET /api/v1/rollouts/{id}) the
// tests look at.
type rolloutView struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	Reason        string `json:"reason"`
	ToVersion     uint64 `json:"to_version"`
	RevertVersion uint64 `json:"revert_version"`
	Batch         int    `json:"batch"`
	Failures      int    `json:"failures"`
	Devices       []struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Batch    int    `json:"batch"`
		FromHash string `json:"from_hash"`
		ToHash   string `json:"to_hash"`
		Reason   string `json:"reason"`
	} `json:"devices"`
}

func (r rolloutView) active() bool { return r.State == "running" || r.State == "paused" }

// rolloutFleet is a hub with n real agents, all online, and a default
// agent document (version 1) that every agent has applied.
type rolloutFleet struct {
	bin, httpAddr, hubDir string
	hubArgs               []string
	hub                   *proc
	api                   *apiClient
	ids                   []string
	oldHash               string // the hash of version 1's effective config
}

func startRolloutFleet(t *testing.T, n int, v1 string) *rolloutFleet {
	t.Helper()
	f := &rolloutFleet{bin: binaries(t), httpAddr: freeAddr(t)}
	dir := t.TempDir()
	f.hubDir = filepath.Join(dir, "hub")
	f.hubArgs = []string{"--data-dir", f.hubDir, "--http-addr", f.httpAddr, "--mqtt-addr", freeAddr(t), "--mqtts-addr", freeAddr(t), "--no-mdns"}
	f.hub = startProc(t, "hub", filepath.Join(f.bin, "alicia-hub"), f.hubArgs...)
	waitHealthy(t, f.httpAddr, f.hub)
	f.api = newAPIClient(t, f.httpAddr, f.hubDir)
	token := f.api.joinToken(n)
	for i := range n {
		name := "r" + string(rune('1'+i))
		state := filepath.Join(dir, name)
		a := startProc(t, name, filepath.Join(f.bin, "alicia-agent"), "--state-dir", state, "--hub", f.httpAddr, "--join-token", token,
			"--name", name, "--heartbeat", "500ms", "--keepalive", "2s")
		f.ids = append(f.ids, enrolledID(t, state, a))
	}
	for _, id := range f.ids {
		f.api.waitStatus(id, "online", "", 10*time.Second)
	}
	putConfig(t, f.api, "/api/v1/config/agent/default", `{"content":`+v1+`}`)
	f.oldHash = f.waitConverged(t, "", 10*time.Second)
	return f
}

// waitConverged waits until every device has desired = applied (= want,
// if not empty) and returns that hash.
func (f *rolloutFleet) waitConverged(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var hash, last string
		ok := true
		for _, id := range f.ids {
			desired, applied, state, reason := deviceConfig(t, f.api, id)
			if desired == "" || desired != applied || state != "applied" || want != "" && desired != want || hash != "" && desired != hash {
				ok = false
				last = id + ": desired " + desired + ", applied " + applied + ", state " + state + " " + reason
				break
			}
			hash = desired
		}
		if ok {
			return hash
		}
		if time.Now().After(deadline) {
			t.Fatalf("devices not converged on %q after %s; %s", want, timeout, last)
		}
		time.Sleep(50 * time.Millisecond) // polling the device views
	}
}

// startRollout PUTs a new version of the default agent document with a
// rollout strategy, and returns the rollout.
func (f *rolloutFleet) startRollout(t *testing.T, ifMatch, body string) rolloutView {
	t.Helper()
	req, _ := http.NewRequest("PUT", f.api.base+"/api/v1/config/agent/default", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.api.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", ifMatch)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PUT with a rollout: %d %s", resp.StatusCode, b)
	}
	var r rolloutView
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&r); err != nil || r.ID == "" {
		t.Fatalf("PUT with a rollout: answer %s: %v", b, err)
	}
	return r
}

// rollout reads a rollout; ok is false when the hub does not answer (it
// may be down or restarting).
func (f *rolloutFleet) rollout(id string) (r rolloutView, ok bool) {
	req, _ := http.NewRequest("GET", f.api.base+"/api/v1/rollouts/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+f.api.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
		return r, false
	}
	return r, true
}

// pollHeld reads every device's config state, then the rollout, and
// records in early each device the rollout still holds that was sent or
// runs anything but the old configuration. The device views are read
// first: a device held after them was held while they were read.
func (f *rolloutFleet) pollHeld(t *testing.T, id string, early map[string]string) (rolloutView, bool) {
	t.Helper()
	type view struct{ desired, applied string }
	views := map[string]view{}
	for _, dev := range f.ids {
		desired, applied, _, _ := deviceConfig(t, f.api, dev)
		views[dev] = view{desired, applied}
	}
	r, ok := f.rollout(id)
	if !ok {
		return r, false
	}
	for _, d := range r.Devices {
		v := views[d.ID]
		// "": the hub's sender has not made its first pass since it started.
		if d.State == "held" && (v.desired != "" && v.desired != f.oldHash || v.applied != f.oldHash) {
			early[d.ID] = fmt.Sprintf("desired %s, applied %s while held", v.desired, v.applied)
		}
	}
	return r, true
}

// TestRolloutCanaryRefusedStopsAndReverts: a change the hub's schema
// accepts but the real agent refuses (a board that does not parse) is
// rolled out with a canary; the canary rejects it, the rollout writes the
// old version back and ends "reverted", and the other devices never got
// the change: their desired and applied hashes stay the old one
// throughout.
func TestRolloutCanaryRefusedStopsAndReverts(t *testing.T) {
	f := startRolloutFleet(t, 3, `{"log_level":"info"}`)
	start := time.Now()
	r := f.startRollout(t, `"1"`, `{"content":{"log_level":"info","board":"this is not a board statement\n"},`+
		`"rollout":{"canary":1,"max_parallel":1,"max_failures":0,"auto_revert":true,"min_healthy_time":"1s","progress_deadline":"10s"}}`)
	if r.ToVersion != 2 || len(r.Devices) != 3 {
		t.Fatalf("rollout started at version %d with %d devices, want version 2 and 3 devices: %+v", r.ToVersion, len(r.Devices), r)
	}

	// Until the rollout ends, no device may run anything but the old
	// configuration, and only the canary may be sent the change.
	sentNew := map[string]string{} // device → a desired hash other than the old one
	deadline := start.Add(20 * time.Second)
	polls := 0
	for {
		got, ok := f.rollout(r.ID)
		if !ok {
			t.Fatalf("GET rollout %s failed", r.ID)
		}
		for _, id := range f.ids {
			desired, applied, _, _ := deviceConfig(t, f.api, id)
			if applied != f.oldHash {
				t.Fatalf("after %d polls: device %s applied %s, want the old %s throughout", polls, id, applied, f.oldHash)
			}
			if desired != f.oldHash {
				sentNew[id] = desired
			}
		}
		polls++
		if !got.active() {
			r = got
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout still %s 20 s after the PUT: %+v", got.State, got)
		}
		time.Sleep(50 * time.Millisecond) // polling the rollout and the device views
	}
	took := time.Since(start)
	t.Logf("PUT to rollout %s: %s (%d polls); reason: %s", r.State, took.Round(time.Millisecond), polls, r.Reason)

	if r.State != "reverted" || r.RevertVersion != 3 || r.Failures != 1 || r.Batch != 1 {
		t.Errorf("rollout ended %s (revert version %d, %d failures, %d batches), want reverted at version 3, 1 failure, 1 batch: %+v",
			r.State, r.RevertVersion, r.Failures, r.Batch, r)
	}
	canary := ""
	for _, d := range r.Devices {
		if d.Batch == 1 {
			canary = d.ID
		}
	}
	for id, h := range sentNew {
		if id != canary {
			t.Errorf("device %s (not the canary %q) was sent %s during the rollout, want the old %s throughout", id, canary, h, f.oldHash)
		}
	}
	for _, d := range r.Devices {
		switch {
		case d.ID == canary && (d.State != "failed" || !strings.Contains(d.Reason, "board")):
			t.Errorf("canary %s: %s %q, want failed naming the board", d.ID, d.State, d.Reason)
		case d.ID == canary:
			t.Logf("canary %s failed: %s", d.ID, d.Reason)
		case d.State != "held" || d.Batch != 0:
			t.Errorf("device %s: %s in batch %d, want held (never released)", d.ID, d.State, d.Batch)
		}
	}
	if canary == "" {
		t.Error("no device was released as the canary")
	}

	var latest struct {
		Version      uint64          `json:"version"`
		Author       string          `json:"author"`
		RolledBackTo uint64          `json:"rolled_back_to"`
		Content      json.RawMessage `json:"content"`
	}
	if st := f.api.do("GET", "/api/v1/config/agent/default", nil, &latest); st != 200 {
		t.Fatalf("GET the document: %d", st)
	}
	if latest.Version != 3 || latest.RolledBackTo != 1 || string(latest.Content) != `{"log_level":"info"}` || latest.Author != "rollout "+r.ID {
		t.Errorf("latest version %d by %q (rolled back to %d): %s; want version 3 by the rollout, version 1's content", latest.Version,
			latest.Author, latest.RolledBackTo, latest.Content)
	}
	f.waitConverged(t, f.oldHash, 10*time.Second)
	t.Logf("every device desired = applied = the old hash %.12s, %s after the PUT", f.oldHash, time.Since(start).Round(time.Millisecond))
}

// TestRolloutSurvivesHubKill: a good change rolled out one device at a
// time; the hub is killed (SIGKILL) after the first device was released
// and started again on the same data dir and ports: the rollout goes on
// from its record, ends "succeeded" within a bounded time, and every
// device runs the change.
func TestRolloutSurvivesHubKill(t *testing.T) {
	f := startRolloutFleet(t, 3, `{"sample_interval":"10s"}`)
	start := time.Now()
	r := f.startRollout(t, `"1"`, `{"content":{"sample_interval":"5s"},`+
		`"rollout":{"canary":1,"max_parallel":1,"max_failures":0,"auto_revert":true,"min_healthy_time":"3s","progress_deadline":"20s"}}`)
	if r.ToVersion != 2 || len(r.Devices) != 3 {
		t.Fatalf("rollout started at version %d with %d devices, want version 2 and 3 devices: %+v", r.ToVersion, len(r.Devices), r)
	}

	// Kill the hub once the canary applied the change (its batch is
	// saved), while the rollout still has devices held.
	// Throughout, the devices not released yet keep the old configuration.
	early := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	var before rolloutView
	for {
		got, ok := f.pollHeld(t, r.ID, early)
		if !ok {
			t.Fatalf("GET rollout %s failed", r.ID)
		}
		if !got.active() {
			t.Fatalf("rollout ended %s before the hub could be killed: %+v", got.State, got)
		}
		released, held := 0, 0
		for _, d := range got.Devices {
			switch d.State {
			case "verifying", "healthy":
				released++
			case "held":
				held++
			}
		}
		if released > 0 && held > 0 {
			before = got
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no device applied the change within 10 s: %+v", got)
		}
		time.Sleep(50 * time.Millisecond) // polling the rollout
	}
	killedAt := time.Now()
	f.hub.stop(syscall.SIGKILL)
	t.Logf("hub killed %s after the PUT, at batch %d", killedAt.Sub(start).Round(time.Millisecond), before.Batch)

	f.hub = startProc(t, "hub (restarted)", filepath.Join(f.bin, "alicia-hub"), f.hubArgs...)
	waitHealthy(t, f.httpAddr, f.hub)
	restarted := time.Now()
	got, ok := f.rollout(r.ID)
	if !ok {
		t.Fatalf("rollout %s not found after the restart", r.ID)
	}
	if got.Batch < before.Batch {
		t.Errorf("after the restart the rollout is at batch %d, before the kill %d", got.Batch, before.Batch)
	}

	// Three batches of at most progress_deadline + min_healthy_time each
	// bound it; with healthy agents it takes a few min_healthy_times.
	const bound = 30 * time.Second
	deadline = restarted.Add(bound)
	for {
		got, ok = f.pollHeld(t, r.ID, early)
		if ok && !got.active() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout still %s %s after the restart: %+v", got.State, bound, got)
		}
		time.Sleep(50 * time.Millisecond) // polling the rollout
	}
	t.Logf("hub back %s after the kill; rollout %s %s after the restart, %s after the PUT: %s", restarted.Sub(killedAt).Round(time.Millisecond),
		got.State, time.Since(restarted).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), got.Reason)
	if got.State != "succeeded" || got.Failures != 0 {
		t.Errorf("rollout ended %s with %d failures, want succeeded with none: %+v", got.State, got.Failures, got)
	}
	for id, what := range early {
		t.Errorf("device %s got the change before its batch: %s", id, what)
	}
	newHash := ""
	for _, d := range got.Devices {
		if d.State != "healthy" {
			t.Errorf("device %s ended %s (%s), want healthy", d.ID, d.State, d.Reason)
		}
		if newHash == "" {
			newHash = d.ToHash
		}
		if d.ToHash == "" || d.ToHash != newHash || d.ToHash == f.oldHash {
			t.Errorf("device %s released to %q, want the new hash %q", d.ID, d.ToHash, newHash)
		}
	}
	f.waitConverged(t, newHash, 10*time.Second)
	t.Logf("every device desired = applied = the new hash %.12s, %s after the PUT", newHash, time.Since(start).Round(time.Millisecond))
}
