package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/testkit"
)

// runningHub is a hub started with run on loopback ports.
type runningHub struct {
	httpAddr string
	log      *testkit.LogBuffer
	cancel   context.CancelFunc
	done     chan error
}

// startHub runs the hub on dataDir until it serves the API.
func startHub(t *testing.T, dataDir string) *runningHub {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &runningHub{log: &testkit.LogBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- run(ctx, []string{"--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0", "--no-mdns"},
			env(map[string]string{"ALICIA_DATA_DIR": dataDir}), &testkit.LogBuffer{}, h.log)
	}()
	t.Cleanup(func() { h.stop(t) })
	serving := regexp.MustCompile(`msg="hub serving" .*\bhttp=(\S+)`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := serving.FindStringSubmatch(h.log.String()); m != nil {
			h.httpAddr = m[1]
			return h
		}
		select {
		case err := <-h.done:
			h.done <- err
			t.Fatalf("the hub stopped: %v\nlog:\n%s", err, h.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub did not start serving\nlog:\n%s", h.log.String())
		}
	}
}

// stop stops the hub and waits for run to return (once; later calls do nothing).
func (h *runningHub) stop(t *testing.T) {
	t.Helper()
	if h.done == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("hub run: %v\nlog:\n%s", err, h.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the hub did not stop")
	}
	h.done = nil
}

// status is the answer's status code to GET /api/v1/devices with token.
func (h *runningHub) status(t *testing.T, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+"/api/v1/devices", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	return resp.StatusCode
}

func readTokenFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

const warnAdminFile = `level=WARN msg="the admin token file does not hold the working admin token`

// TestAdminTokenRotate: a lost admin.token is reported at start, and
// "alicia-hub admin-token rotate" makes a new one, refusing while the hub
// runs.
func TestAdminTokenRotate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	tokenPath := filepath.Join(dataDir, "admin.token")
	rotate := func(e map[string]string, args ...string) (string, error) {
		var stdout, stderr testkit.LogBuffer
		err := run(t.Context(), append([]string{"admin-token", "rotate"}, args...), env(e), &stdout, &stderr)
		return stdout.String(), err
	}

	h := startHub(t, dataDir)
	old := readTokenFile(t, tokenPath)
	if got := h.status(t, old); got != http.StatusOK {
		t.Fatalf("GET devices with the first token: %d", got)
	}
	if strings.Contains(h.log.String(), warnAdminFile) {
		t.Errorf("first start warns about the admin token file:\n%s", h.log.String())
	}
	// The running hub holds the store: rotation refuses and says what to do.
	_, err := rotate(map[string]string{"ALICIA_DATA_DIR": dataDir})
	if err == nil || !strings.Contains(err.Error(), "the hub is running on "+dataDir) || !strings.Contains(err.Error(), "stop it first") ||
		!strings.Contains(err.Error(), "pid") {
		t.Errorf("rotate while the hub runs = %v, want a refusal naming the data dir, the holding pid and what to do", err)
	}
	if got := readTokenFile(t, tokenPath); got != old {
		t.Error("a refused rotation changed the token file")
	}
	h.stop(t)

	// The token file is lost: the next start says so and how to fix it.
	if err := os.Remove(tokenPath); err != nil {
		t.Fatal(err)
	}
	h = startHub(t, dataDir)
	log := h.log.String()
	if !strings.Contains(log, warnAdminFile) || !strings.Contains(log, "is missing") || !strings.Contains(log, "admin-token rotate --data-dir "+dataDir) {
		t.Errorf("start without admin.token: no warning naming the cause and the fix:\n%s", log)
	}
	h.stop(t)

	// Rotation with the data dir from a config file, as the service passes it.
	cfg := writeFile(t, "hub.yaml", "data-dir: "+dataDir+"\nhttp-addr: 127.0.0.1:0\nlog-level: debug\n")
	out, err := rotate(nil, "--config", cfg)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if !strings.Contains(out, tokenPath) {
		t.Errorf("rotate printed %q, want the token file's path", out)
	}
	fi, err := os.Stat(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("rotated admin.token mode %v, want 0600", perm)
	}
	tok := readTokenFile(t, tokenPath)

	h = startHub(t, dataDir)
	if strings.Contains(h.log.String(), warnAdminFile) {
		t.Errorf("start after rotation warns about the admin token file:\n%s", h.log.String())
	}
	if got := h.status(t, tok); got != http.StatusOK {
		t.Errorf("GET devices with the rotated token: %d, want 200", got)
	}
	if got := h.status(t, old); got != http.StatusUnauthorized {
		t.Errorf("GET devices with the old token: %d, want 401", got)
	}
}

func TestAdminTokenRotateErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no action", []string{"admin-token"}, nil, "usage: alicia-hub admin-token rotate"},
		{"unknown action", []string{"admin-token", "show"}, nil, "usage: alicia-hub admin-token rotate"},
		{"no store", []string{"admin-token", "rotate", "--data-dir", "DIR"}, nil, "no hub store in"},
		{"no store from env", []string{"admin-token", "rotate"}, map[string]string{"ALICIA_DATA_DIR": "DIR"}, "no hub store in"},
		{"empty data dir", []string{"admin-token", "rotate", "--data-dir="}, nil, "--data-dir: empty"},
		{"stray argument", []string{"admin-token", "rotate", "now"}, nil, `"now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{}, tc.args...)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "DIR", dir)
			}
			e := map[string]string{}
			for k, v := range tc.env {
				e[k] = strings.ReplaceAll(v, "DIR", dir)
			}
			var stdout, stderr testkit.LogBuffer
			err := run(t.Context(), args, env(e), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", args, err, tc.wantErr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("run(%q) created the data directory", args)
			}
		})
	}
}

// TestAdminTokenRotateOtherOwner: root rotating the token of a hub that runs
// as its own user is refused, since the store's new files would be root's
// and the hub could no longer open them.
func TestAdminTokenRotateOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the data directory to another user")
	}
	dataDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dataDir, "store"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := rotateAdminToken(dataDir)
	if err == nil || !strings.Contains(err.Error(), "run this as that user") {
		t.Fatalf("rotate in a directory of uid 65534 = %v, want a refusal naming its owner", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "admin.token")); err == nil {
		t.Error("a refused rotation wrote admin.token")
	}
}
