package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBackupRestore: "alicia-hub backup" of a running hub with an agent,
// restored with "alicia-hub restore" onto a fresh data dir, serves the same
// hub ID, CA, devices and configuration, and the agent comes back online
// with its credentials alone (no join token).
func TestBackupRestore(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	hubBin := filepath.Join(bin, "alicia-hub")
	httpAddr, mqttAddr, mqttsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	hubArgs := func(dataDir string) []string {
		return []string{"--data-dir", dataDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", mqttsAddr, "--no-mdns"}
	}
	oldDir := filepath.Join(dir, "hub")
	hub := startProc(t, "hub", hubBin, hubArgs(oldDir)...)
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, oldDir)
	state := filepath.Join(dir, "agent")
	agentArgs := []string{"--state-dir", state, "--hub", httpAddr, "--name", "pi", "--heartbeat", "500ms", "--keepalive", "2s"}
	agent := startProc(t, "agent", filepath.Join(bin, "alicia-agent"), append(agentArgs, "--join-token", api.joinToken(1))...)
	id := enrolledID(t, state, agent)
	api.waitStatus(id, "online", "", 10*time.Second)
	putConfig(t, api, "/api/v1/config/agent/default", `{"content":{"sample_interval":"30s"},"comment":"before the backup"}`)

	type hubState struct {
		Bootstrap map[string]any
		Devices   []string
		Config    json.RawMessage
	}
	stateOf := func(api *apiClient) hubState {
		t.Helper()
		var s hubState
		if st := api.do("GET", "/api/v1/bootstrap", nil, &s.Bootstrap); st != 200 {
			t.Fatalf("bootstrap: %d", st)
		}
		delete(s.Bootstrap, "time")
		for d := range api.devices() {
			s.Devices = append(s.Devices, d)
		}
		slices.Sort(s.Devices)
		st, body := api.doRaw("GET", "/api/v1/config/agent/default", nil)
		if st != 200 {
			t.Fatalf("GET config: %d %s", st, body)
		}
		s.Config = json.RawMessage(body)
		return s
	}
	before := stateOf(api)
	if before.Bootstrap["ca_fingerprint"] == "" || len(before.Devices) != 1 {
		t.Fatalf("hub state before the backup: %+v", before)
	}

	file := filepath.Join(dir, "hub.backup")
	start := time.Now()
	out, err := exec.Command(hubBin, "backup", "--data-dir", oldDir, "--http-addr", httpAddr, "--to", file).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("alicia-hub backup: %v\n%s", err, out)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup of the hub: %d bytes in %s (%s)", fi.Size(), took.Round(time.Millisecond), strings.TrimSpace(string(out)))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}

	// The machine is lost: the hub and the agent stop; a new data dir.
	hub.stop(syscall.SIGTERM)
	agent.stop(syscall.SIGTERM)
	newDir := filepath.Join(dir, "new-machine", "hub")
	if out, err := exec.Command(hubBin, "restore", "--from", file, "--data-dir", newDir).CombinedOutput(); err != nil {
		t.Fatalf("alicia-hub restore: %v\n%s", err, out)
	}
	hub = startProc(t, "restored hub", hubBin, hubArgs(newDir)...)
	waitHealthy(t, httpAddr, hub)
	restored := newAPIClient(t, httpAddr, newDir)
	if restored.token != api.token {
		t.Error("the restored admin token differs")
	}
	// Its credentials alone: the same device ID online proves no new
	// enrolment happened.
	startProc(t, "agent (again)", filepath.Join(bin, "alicia-agent"), agentArgs...)
	restored.waitStatus(id, "online", "", 20*time.Second)
	if diff := cmp.Diff(before, stateOf(restored)); diff != "" {
		t.Errorf("the restored hub differs (-before +after):\n%s", diff)
	}
}

// putConfig creates a configuration document (If-None-Match: *).
func putConfig(t *testing.T, api *apiClient, path, body string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", api.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-None-Match", "*")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d", path, resp.StatusCode)
	}
}
