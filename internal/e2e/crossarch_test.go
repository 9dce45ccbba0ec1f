package e2e

import (
	"cmp"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrossArchAgents runs the arm64, armv7 and riscv64 agents of the
// release (scripts/package.sh, as `make release` builds them) under
// qemu-user, and the i386 one natively (an amd64 kernel runs 32-bit x86;
// Go's 386 binaries crash under Debian 12's qemu-i386), against a hub on
// this machine, and checks that each registers with the right architecture
// and goes online. (TestReleaseArtifacts runs the armv6 one's --version.)
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
		{"riscv64", "riscv64", "qemu-riscv64-static", "riscv64"},
		{"i386", "386", "", "386"}, // natively
	} {
		t.Run(c.wantArch, func(t *testing.T) {
			agent := filepath.Join(rel, "alicia-agent-linux-"+c.label)
			run := func(args ...string) *exec.Cmd { return exec.Command(agent, args...) }
			if c.qemu != "" {
				qemu, err := exec.LookPath(c.qemu)
				if err != nil {
					missing(t, c.qemu+" (package qemu-user-static)")
				}
				run = func(args ...string) *exec.Cmd { return exec.Command(qemu, append([]string{agent}, args...)...) }
			} else if runtime.GOARCH != "amd64" {
				t.Skipf("the %s agent runs natively only on amd64, this is %s", c.label, runtime.GOARCH)
			}
			out, err := run("--version").CombinedOutput()
			if errors.Is(err, syscall.ENOEXEC) {
				missing(t, "32-bit x86 support in the kernel (CONFIG_IA32_EMULATION) to run the i386 agent")
			}
			if err != nil || !strings.Contains(string(out), "linux/"+c.goarch) {
				t.Fatalf("%s --version = %q, %v", strings.Join(run().Args, " "), out, err)
			}
			name := "agent-" + strings.ReplaceAll(c.wantArch, "/", "")
			state := filepath.Join(dir, name)
			// qemu is 10-50x slower: generous heartbeat and keep-alive.
			cmd := run("--state-dir", state, "--hub", httpAddr, "--join-token", api.joinToken(1),
				"--name", name, "--heartbeat", "2s", "--keepalive", "10s")
			startProc(t, name, cmd.Path, cmd.Args[1:]...)
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
			t.Log(fmt.Sprintf("%s agent (%s) registered as %s", c.wantArch, cmp.Or(c.qemu, "native"), id))
		})
	}
}
