package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/internal/testkit"
)

// hubID is the hub ID a running hub logged.
func (h *runningHub) hubID(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`msg="hub serving" hub_id=(\S+)`).FindStringSubmatch(h.log.String())
	if m == nil {
		t.Fatalf("no hub ID in the log:\n%s", h.log.String())
	}
	return m[1]
}

// TestBackupRestore: "alicia-hub backup" of a running hub, restored with
// "alicia-hub restore" into a new data dir, is the same hub (ID, CA, admin
// token); restore refuses a hub's data dir and a damaged file.
func TestBackupRestore(t *testing.T) {
	cmd := func(dataDir string, args ...string) (string, error) {
		var stdout, stderr testkit.LogBuffer
		err := run(t.Context(), args, env(map[string]string{"ALICIA_DATA_DIR": dataDir}), &stdout, &stderr)
		return stdout.String(), err
	}
	tmp := t.TempDir()
	dataDir, file := filepath.Join(tmp, "data"), filepath.Join(tmp, "hub.backup")
	h := startHub(t, dataDir)
	id, token := h.hubID(t), readTokenFile(t, filepath.Join(dataDir, "admin.token"))
	out, err := cmd(dataDir, "backup", "--hub", "http://"+h.httpAddr, "--to", file)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if !strings.Contains(out, "wrote "+file) {
		t.Errorf("backup said %q", out)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup file has mode %v, want 0600", fi.Mode().Perm())
	}
	h.stop(t)
	if _, err := cmd(dataDir, "backup", "--hub", "http://"+h.httpAddr, "--to", filepath.Join(tmp, "down.backup")); err == nil || !strings.Contains(err.Error(), "is the hub running?") {
		t.Errorf("backup of a stopped hub = %v, want a hint that it is not running", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "down.backup")); err == nil {
		t.Error("a failed backup left its file")
	}

	// Never over a hub; never from a damaged file.
	if _, err := cmd(dataDir, "restore", "--from", file); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore over the hub = %v, want a refusal", err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(tmp, "cut.backup")
	if err := os.WriteFile(cut, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tmp, "bad")
	if _, err := cmd(bad, "restore", "--from", cut); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("restore of a truncated backup = %v, want it named truncated", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a failed restore created %s", bad)
	}

	restored := filepath.Join(tmp, "restored")
	if _, err := cmd(restored, "restore", "--from", file); err != nil {
		t.Fatalf("restore: %v", err)
	}
	h2 := startHub(t, restored)
	if got := h2.hubID(t); got != id {
		t.Errorf("the restored hub's ID is %s, want %s", got, id)
	}
	if got := h2.status(t, token); got != http.StatusOK {
		t.Errorf("the old admin token on the restored hub: %d", got)
	}
	for _, f := range []string{"pki/ca.key", "pki/ca.crt"} {
		a, _ := os.ReadFile(filepath.Join(dataDir, f))
		b, _ := os.ReadFile(filepath.Join(restored, f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("restored %s differs from the original", f)
		}
	}
}
