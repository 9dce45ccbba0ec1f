package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallScriptDetection runs scripts/install.sh --detect with fake
// uname and dpkg commands: each machine gets the package it can run
// (ARMv6 apart from ARMv7, a 32-bit userland on a 64-bit CPU gets the
// 32-bit package), and unsupported systems are refused saying why.
func TestInstallScriptDetection(t *testing.T) {
	script, err := filepath.Abs("../../scripts/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	var uid = "0"
	run := func(kernel, machine, dpkgArch string, args ...string) (string, error) {
		t.Helper()
		bin := t.TempDir()
		fake := func(name, body string) {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		fake("uname", `case "$1" in -s) echo `+kernel+`;; -m) echo `+machine+`;; *) echo `+kernel+`;; esac`)
		if dpkgArch != "" {
			fake("dpkg", `[ "$1" = --print-architecture ] && echo `+dpkgArch)
		}
		fake("id", `echo `+uid)
		cmd := exec.Command("/bin/sh", append([]string{script}, args...)...)
		// Only the fakes and the basic tools: no dpkg or rpm of the host.
		tools := t.TempDir()
		for _, tool := range []string{"cat", "grep", "awk", "sort", "tail", "mktemp", "rm", "basename", "ls"} {
			p, err := exec.LookPath(tool)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p, filepath.Join(tools, tool)); err != nil {
				t.Fatal(err)
			}
		}
		cmd.Env = []string{"PATH=" + bin + ":" + tools}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, tc := range []struct {
		machine, dpkg string
		hub           bool
		want          string // the detected "<package> <label> <format>", or an error's text
	}{
		{"x86_64", "amd64", false, "alicia-agent amd64 deb"},
		{"aarch64", "arm64", false, "alicia-agent arm64 deb"},
		{"aarch64", "armhf", false, "alicia-agent armhf deb"}, // 32-bit Raspberry Pi OS on a Pi 4
		{"armv7l", "armhf", false, "alicia-agent armhf deb"},
		{"armv6l", "armhf", false, "alicia-agent armv6 deb"}, // Pi Zero: Raspberry Pi OS says armhf, the CPU is ARMv6
		{"armv7l", "armel", false, "alicia-agent armel deb"},
		{"armv5tel", "armel", false, "alicia-agent armel deb"},
		{"riscv64", "riscv64", false, "alicia-agent riscv64 deb"},
		{"i686", "i386", false, "alicia-agent i386 deb"},
		{"x86_64", "amd64", true, "alicia-hub amd64 deb"},
		{"armv7l", "armhf", true, "the hub needs a 64-bit system"},
		{"mips", "mipsel", false, "machine mips is not supported"},
		{"x86_64", "", false, "neither dpkg nor rpm is installed"},
	} {
		args := []string{"--detect"}
		if tc.hub {
			args = append(args, "--hub-package")
		}
		out, err := run("Linux", tc.machine, tc.dpkg, args...)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s (dpkg %q, hub %v): %q (%v), want %q", tc.machine, tc.dpkg, tc.hub, out, err, tc.want)
		}
		if strings.HasPrefix(tc.want, "alicia-") != (err == nil) {
			t.Errorf("%s: exit error %v for %q", tc.machine, err, out)
		}
	}
	if out, err := run("Darwin", "arm64", "", "--detect"); err == nil || !strings.Contains(out, "Darwin is not supported") {
		t.Errorf("on Darwin: %q %v", out, err)
	}
	if out, err := run("Linux", "x86_64", "amd64"); err == nil || !strings.Contains(out, "usage:") {
		t.Errorf("without --from: %q %v, want the usage", out, err)
	}
	if out, err := run("Linux", "x86_64", "amd64", "--from", "/nonexistent", "--bogus"); err == nil || !strings.Contains(out, "unknown argument --bogus") {
		t.Errorf("unknown argument: %q %v", out, err)
	}
	uid = "1000"
	if out, err := run("Linux", "x86_64", "amd64", "--from", t.TempDir()); err == nil || !strings.Contains(out, "run it as root") {
		t.Errorf("not root: %q %v", out, err)
	}
}
