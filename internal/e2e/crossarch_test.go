package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrossArchAgents runs the arm64 and armv7 agents of the release
// (scripts/package.sh, as `make release` builds them) under qemu-user
// against a hub on this machine, and checks that each registers with the
// right architecture and goes online. (TestReleaseArtifacts runs the
// armv6 one's --version.)
func TestCrossArchAgents(t *testing.T) {
	bin := binaries(t)
	rel := release(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr, "--mqtts-addr", "127.0.0.1:0", "--no-mdns")
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)

	for _, c := range []struct {
		label, goarch, qemu, wantArch string
	}{
		{"arm64", "arm64", "qemu-aarch64-static", "arm64"},
		{"armhf", "arm", "qemu-arm-static", "arm/v7"},
	} {
		t.Run(c.wantArch, func(t *testing.T) {
			qemu, err := exec.LookPath(c.qemu)
			if err != nil {
				missing(t, c.qemu+" (package qemu-user-static)")
			}
			agent := filepath.Join(rel, "alicia-agent-linux-"+c.label)
			out, err := exec.Command(qemu, agent, "--version").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "linux/"+c.goarch) {
				t.Fatalf("%s %s --version = %q, %v", c.qemu, agent, out, err)
			}
			name := "qemu-" + strings.ReplaceAll(c.wantArch, "/", "")
			state := filepath.Join(dir, name)
			// qemu is 10-50x slower: generous heartbeat and keep-alive.
			startProc(t, name, qemu, agent, "--state-dir", state, "--hub", httpAddr, "--join-token", api.joinToken(1),
				"--name", name, "--heartbeat", "2s", "--keepalive", "10s")
			var id string
			deadline := time.Now().Add(60 * time.Second)
			for id == "" && time.Now().Before(deadline) {
				for _, d := range api.devices() {
					if d.Name == name {
						id = d.ID
					}
				}
				time.Sleep(100 * time.Millisecond) // polling for the enrolment
			}
			if id == "" {
				t.Fatalf("%s did not enrol within 60s", name)
			}
			api.waitStatus(id, "online", "", 60*time.Second)
			d := api.devices()[id]
			if d.Facts == nil || d.Facts.Arch != c.wantArch {
				t.Errorf("registered facts %+v, want arch %s", d.Facts, c.wantArch)
			}
			t.Log(fmt.Sprintf("%s agent under %s registered as %s", c.wantArch, c.qemu, id))
		})
	}
}
