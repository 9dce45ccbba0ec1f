package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/testkit"
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

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run --version: %v", err)
	}
	want := regexp.MustCompile(`^alicia-hub ` + regexp.QuoteMeta(buildinfo.Version) +
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
	for _, f := range []string{"-data-dir", "-http-addr", "-mqtt-addr", "-broker", "-advertise-mqtt", "-config"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage does not mention %s:\n%s", f, stderr.String())
		}
	}
}

// TestRunErrors checks that bad settings are refused before the hub touches
// its data directory (every case names a fresh one and checks it stays
// absent; none falls back to the default /var/lib/alicia-hub).
func TestRunErrors(t *testing.T) {
	unknownKey := writeFile(t, "hub.yaml", "http-addr: 127.0.0.1:0\ndatadir: /tmp/x\n")
	emptyDataDir := writeFile(t, "empty.yaml", "data-dir: \"\"\n")
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
	}{
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: []string{"-bogus"}},
		{name: "stray argument", args: []string{"serve"}, wantErr: []string{`"serve"`}},
		{name: "log level from env", env: map[string]string{"ALICIA_LOG_LEVEL": "bogus"}, wantErr: []string{`log level "bogus"`}},
		{name: "log level flag", args: []string{"--log-level", "loud"}, wantErr: []string{`log level "loud"`}},
		{name: "config unknown key", args: []string{"--config", unknownKey}, wantErr: []string{unknownKey, "line 2", `"datadir"`}},
		{name: "config from env", env: map[string]string{"ALICIA_CONFIG": unknownKey}, wantErr: []string{unknownKey, "line 2"}},
		{name: "empty data dir flag", args: []string{"--data-dir="}, wantErr: []string{"--data-dir"}},
		// An empty variable counts as unset, so the file's empty value applies.
		{name: "empty data dir in config", args: []string{"--config", emptyDataDir}, env: map[string]string{"ALICIA_DATA_DIR": ""}, wantErr: []string{"--data-dir"}},
		{name: "mqtt addr", args: []string{"--mqtt-addr", "nonsense"}, wantErr: []string{`mqtt addr "nonsense"`}},
		{name: "mqtt addr from env", env: map[string]string{"ALICIA_MQTT_ADDR": "nonsense"}, wantErr: []string{`mqtt addr "nonsense"`}},
		{name: "http addr", args: []string{"--http-addr", "8470"}, wantErr: []string{`http addr "8470"`}},
		{name: "broker url", args: []string{"--broker", "http://broker.local"}, wantErr: []string{"http://broker.local"}},
		{name: "advertised url", args: []string{"--advertise-mqtt", "mqtt://a.local:1883,nonsense"}, wantErr: []string{"advertise mqtt", "nonsense"}},
		{name: "pprof on the LAN", args: []string{"--pprof-addr", ":6060"}, wantErr: []string{`pprof addr ":6060"`, "loopback"}},
		{name: "alert webhook scheme", args: []string{"--alert-webhook", "ftp://alerts.local/x"}, wantErr: []string{"alert webhook"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			e := map[string]string{"ALICIA_DATA_DIR": dataDir}
			for k, v := range tc.env {
				e[k] = v
			}
			// A case that wrongly starts the hub ends when ctx does.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var stdout, stderr testkit.LogBuffer
			err := run(ctx, tc.args, env(e), &stdout, &stderr)
			if err == nil {
				t.Fatalf("run(%q) succeeded, want an error", tc.args)
			}
			msg := err.Error() + "\n" + stderr.String() // the flag package prints its errors too
			for _, want := range tc.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("run(%q): %v\nstderr: %s\nwant %q in the error", tc.args, err, stderr.String(), want)
				}
			}
			if stdout.String() != "" {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			if _, err := os.Stat(dataDir); err == nil {
				t.Errorf("run(%q) created the data directory despite the error", tc.args)
			}
		})
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout bytes.Buffer // only written by --version
	var stderr testkit.LogBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0", "--no-mdns", "--pprof-addr", "127.0.0.1:0"},
			env(map[string]string{"ALICIA_DATA_DIR": dataDir, "ALICIA_LOG_LEVEL": "debug"}), &stdout, &stderr)
	}()

	// Wait for the admin token, then for the API to be served.
	serving := regexp.MustCompile(`msg="hub serving" .*\bhttp=(\S+)`)
	var httpAddr string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(15 * time.Second)
	for httpAddr == "" {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\nlog:\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("the hub did not start serving\nlog:\n%s", stderr.String())
		case <-tick.C:
		}
		if _, err := os.Stat(filepath.Join(dataDir, "admin.token")); err != nil {
			continue
		}
		if m := serving.FindStringSubmatch(stderr.String()); m != nil {
			httpAddr = m[1]
		}
	}
	fi, err := os.Stat(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("admin.token mode %v, want 0600", perm)
	}

	resp, err := http.Get("http://" + httpAddr + "/api/v1/bootstrap")
	if err != nil {
		t.Fatalf("GET bootstrap: %v", err)
	}
	var b struct {
		HubID    string   `json:"hub_id"`
		MQTTURLs []string `json:"mqtt_urls"`
	}
	err = json.NewDecoder(resp.Body).Decode(&b)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || b.HubID == "" || len(b.MQTTURLs) == 0 {
		t.Errorf("GET bootstrap: status %d, %+v, err %v; want 200 with a hub id and broker URLs", resp.StatusCode, b, err)
	}
	// Runtime profiles, when asked for, on their own loopback listener.
	pp := regexp.MustCompile(`msg="serving runtime profiles" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if pp == nil {
		t.Fatalf("no pprof listener logged:\n%s", stderr.String())
	}
	if resp, err := http.Get("http://" + pp[1] + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET pprof cmdline: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get("http://" + httpAddr + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the API port serves runtime profiles")
		}
	}
	http.DefaultClient.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v, want nil\nlog:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing (logs go to stderr)", stdout.String())
	}
	if !strings.Contains(stderr.String(), `msg="starting alicia-hub"`) {
		t.Errorf("no start-up line in the log:\n%s", stderr.String())
	}
}
