package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/internal/testkit"
)

// TestConfigExportImport: "alicia-hub config export" of a running hub,
// imported with "alicia-hub config import" (dry run, then for real) into
// another, and again: unchanged.
func TestConfigExportImport(t *testing.T) {
	cmd := func(dataDir string, args ...string) (string, error) {
		var stdout, stderr testkit.LogBuffer
		err := run(t.Context(), args, env(map[string]string{"ALICIA_DATA_DIR": dataDir}), &stdout, &stderr)
		return stdout.String(), err
	}
	tmp := t.TempDir()
	fromDir, toDir, file := filepath.Join(tmp, "from"), filepath.Join(tmp, "to"), filepath.Join(tmp, "config.json")
	from := startHub(t, fromDir)
	to := startHub(t, toDir)
	// One document, written through the API.
	put := from.request(t, "PUT", "/api/v1/config/agent/default", readTokenFile(t, filepath.Join(fromDir, "admin.token")),
		`{"content":{"log_level":"debug"},"comment":"noisy"}`, map[string]string{"If-None-Match": "*"})
	if put != 201 {
		t.Fatalf("PUT: %d", put)
	}
	out, err := cmd(fromDir, "config", "export", "--hub", "http://"+from.httpAddr, "--to", file)
	if err != nil || !strings.Contains(out, "wrote "+file+": 1 documents, 1 versions") {
		t.Fatalf("export = %q, %v", out, err)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), `"comment": "noisy"`) {
		t.Fatalf("the export file: %v\n%s", err, b)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dry-run"}, "dry run, nothing written: would import 1 documents (1 versions), 0 unchanged"},
		{nil, "imported 1 documents (1 versions), 0 unchanged"},
		{nil, "unchanged agent default: 1 versions in the file, 1 here"},
	} {
		out, err := cmd(toDir, append([]string{"config", "import", "--hub", "http://" + to.httpAddr, "--from", file}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("import %v = %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}
	// Back into the first hub after a change there: a conflict.
	if code := from.request(t, "PUT", "/api/v1/config/agent/default", readTokenFile(t, filepath.Join(fromDir, "admin.token")),
		`{"content":{}}`, map[string]string{"If-Match": `"1"`}); code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	out, err = cmd(fromDir, "config", "import", "--hub", "http://"+from.httpAddr, "--from", file)
	if err == nil || !strings.Contains(err.Error(), "1 documents conflict") || !strings.Contains(out, "conflict  agent default") {
		t.Errorf("import over a changed document = %q, %v; want a conflict", out, err)
	}
	if _, err := cmd(fromDir, "config", "frobnicate"); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("config frobnicate = %v, want the usage", err)
	}
}

// request sends an admin request with a JSON body and returns the status.
func (h *runningHub) request(t *testing.T, method, path, token, body string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+h.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
