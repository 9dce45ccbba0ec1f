package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/cliconfig"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a getenv over a fixed map, so the tests do not see the caller's
// ALICIA_* variables.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// joinToken returns a well-formed join token: a secret and the fingerprint
// of a new hub CA.
func joinToken(t *testing.T) string {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return identity.FormatJoinToken("alicia_join_x", ca.Fingerprint())
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run --version: %v", err)
	}
	want := regexp.MustCompile(`^alicia-agent ` + regexp.QuoteMeta(buildinfo.Version) +
		` \(commit ` + regexp.QuoteMeta(buildinfo.Commit) + `, built .+, go1\.\d+\S* \w+/\w+\)\n$`)
	if !want.MatchString(stdout.String()) {
		t.Errorf("stdout = %q, want a match of %s", stdout.String(), want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--help"}, env(nil), &stdout, &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help: %v, want flag.ErrHelp (exit status 0)", err)
	}
	for _, f := range []string{"-state-dir", "-hub", "-join-token", "-hal", "-config", "-net-exclude", "-net-include-virtual", "-fs-exclude-types", "-fs-exclude-mounts"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage does not mention %s:\n%s", f, stderr.String())
		}
	}
}

func TestRunErrors(t *testing.T) {
	stateDir, envStateDir := t.TempDir(), t.TempDir()
	unknownKey := writeFile(t, "agent.yaml", "hub: hub.local\nhubb: typo.local\n")
	badBoard := writeFile(t, "board.conf", "relay: GPIO17 out\nfan: GPIO18 sideways\n")
	absentBoard := writeFile(t, "absent.conf", "x: GPIO99 out\n")
	hub := closedAddr(t)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
		code    int // the exit code Main would use; 0: 1
	}{
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: []string{"-bogus"}},
		{name: "stray argument", args: []string{"--state-dir", stateDir, "extra"}, wantErr: []string{`"extra"`}},
		{name: "hal unknown", args: []string{"--state-dir", stateDir, "--hal", "gpio"}, wantErr: []string{`hal "gpio"`, "want auto, none, sim or periph"}},
		{name: "hal from env", args: []string{"--state-dir", stateDir}, env: map[string]string{"ALICIA_HAL": "bogus"}, wantErr: []string{`hal "bogus"`}},
		{name: "bad board file", args: []string{"--state-dir", stateDir, "--hal", "sim", "--board-file", badBoard}, wantErr: []string{badBoard + ":2:", `direction "sideways"`}},
		{name: "board file names absent hardware", args: []string{"--state-dir", stateDir, "--hal", "sim", "--board-file", absentBoard}, wantErr: []string{"GPIO99 is not on this board"}},
		// The simulated board and a real one without hardware start; the
		// agent then stops for want of a token.
		{name: "hal sim", args: []string{"--state-dir", stateDir, "--hub", hub, "--hal", "sim"}, wantErr: []string{"--join-token"}, code: ExitNotEnrolled},
		{name: "hal periph without hardware", args: []string{"--state-dir", stateDir, "--hub", hub, "--hal", "periph"}, wantErr: []string{"--join-token"}, code: ExitNotEnrolled},
		{name: "log level from env", args: []string{"--state-dir", stateDir}, env: map[string]string{"ALICIA_LOG_LEVEL": "bogus"}, wantErr: []string{`log level "bogus"`}},
		{name: "log level flag", args: []string{"--state-dir", stateDir, "--log-level", "loud"}, wantErr: []string{`log level "loud"`}},
		{name: "config unknown key", args: []string{"--config", unknownKey}, wantErr: []string{unknownKey, "line 2", `"hubb"`}},
		{name: "config from env", env: map[string]string{"ALICIA_CONFIG": unknownKey}, wantErr: []string{unknownKey, "line 2"}},
		{name: "bad heartbeat env", args: []string{"--state-dir", stateDir}, env: map[string]string{"ALICIA_HEARTBEAT": "often"}, wantErr: []string{"ALICIA_HEARTBEAT"}},
		{name: "heartbeat out of range", args: []string{"--state-dir", stateDir, "--heartbeat", "10ms"}, wantErr: []string{"heartbeat interval 10ms"}},
		{name: "empty state dir", args: []string{"--state-dir="}, wantErr: []string{"--state-dir"}},
		{name: "net exclude not a regexp", args: []string{"--state-dir", stateDir, "--net-exclude", "eth(0"}, wantErr: []string{"-net-exclude", "missing closing )"}},
		{name: "fs types not a regexp, from env", args: []string{"--state-dir", stateDir}, env: map[string]string{"ALICIA_FS_EXCLUDE_TYPES": "[tmpfs"}, wantErr: []string{"ALICIA_FS_EXCLUDE_TYPES", "missing closing ]"}},
		{name: "filters reach the agent", args: []string{"--state-dir", stateDir, "--hub", hub, "--net-exclude", "^wlan", "--net-include-virtual", "--fs-exclude-types=", "--fs-exclude-mounts", "^/mnt/"},
			wantErr: []string{"--join-token"}, code: ExitNotEnrolled},
		{name: "hub is a URL", args: []string{"--state-dir", stateDir, "--hub", "http://hub.local"}, wantErr: []string{"not a URL"}},
		// The flags reach the agent: it starts, and stops for want of a token
		// (exit code 78, which the unit does not restart).
		{name: "not enrolled", args: []string{"--state-dir", stateDir, "--hub", hub}, wantErr: []string{"--join-token"}, code: ExitNotEnrolled},
		{name: "not enrolled, from env", env: map[string]string{"ALICIA_STATE_DIR": envStateDir, "ALICIA_HUB": hub}, wantErr: []string{"--join-token"}, code: ExitNotEnrolled},
		// The token reaches the agent, which wants the hub's CA fingerprint in it.
		{name: "join token without fingerprint", args: []string{"--state-dir", stateDir, "--hub", hub, "--join-token", "alicia_join_x"}, wantErr: []string{"join token does not name the hub's CA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, env(tc.env), &stdout, &stderr)
			if err == nil {
				t.Fatalf("run(%q) succeeded, want an error", tc.args)
			}
			msg := err.Error() + "\n" + stderr.String() // the flag package prints its errors too
			if want := max(tc.code, 1); cliconfig.ExitCode(err) != want {
				t.Errorf("run(%q): exit code %d, want %d", tc.args, cliconfig.ExitCode(err), want)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("run(%q): %v\nstderr: %s\nwant %q in the error", tc.args, err, stderr.String(), want)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
	// The "not enrolled" cases got as far as creating the identity.
	for _, dir := range []string{stateDir, envStateDir} {
		if _, err := os.Stat(filepath.Join(dir, "identity.key")); err != nil {
			t.Errorf("the agent did not use its state directory: %v", err)
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout, stderr bytes.Buffer
	// Cancelled before it starts, the agent still loads its identity and
	// then gives up at once.
	err := run(ctx, []string{"--state-dir", t.TempDir(), "--hub", closedAddr(t), "--join-token", joinToken(t)}, env(nil), &stdout, &stderr)
	if err != nil {
		t.Errorf("run with a cancelled context: %v, want nil (a clean stop)", err)
	}
}

// TestTuneGC: the agent lowers GOGC to gcPercent, but not when the
// environment sets GOGC.
func TestTuneGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	tuneGC(env(nil))
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, gcPercent)
	}
	tuneGC(env(map[string]string{"GOGC": "100"}))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 in the environment: GC percent %d, want it left at 100", got)
	}
}

// TestRegexpFlag: a filter flag holds its expression; an empty value
// leaves nothing out (it matches no interface, type or mount point).
func TestRegexpFlag(t *testing.T) {
	var re *regexp.Regexp
	set := regexpFlag(&re)
	if err := set("^(veth|docker)"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"veth12": true, "docker0": true, "eth0": false} {
		if got := re.MatchString(name); got != want {
			t.Errorf("%q matches %q: %v, want %v", re, name, got, want)
		}
	}
	if err := set(""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eth0", "tmpfs", "/", "/run/user/1000"} {
		if re.MatchString(name) {
			t.Errorf("the empty filter matches %q", name)
		}
	}
	if err := set("(("); err == nil {
		t.Error("an invalid expression was accepted")
	}
}
