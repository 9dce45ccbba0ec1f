package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/hub/backup"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
)

func TestBackup(t *testing.T) {
	h := newHarness(t)
	enr := h.enroll(t, "pi")
	for _, tc := range []struct {
		name   string
		req    request
		status int
	}{
		{"no token", request{method: "GET", target: "/api/v1/backup"}, http.StatusUnauthorized},
		{"plain HTTP from another machine", request{method: "GET", target: "/api/v1/backup", auth: "Bearer " + h.admin, remote: "192.0.2.7:50000"}, http.StatusForbidden},
		{"HTTPS from another machine", request{method: "GET", target: "/api/v1/backup", auth: "Bearer " + h.admin, remote: "192.0.2.7:50000", tls: true}, http.StatusOK},
		{"this machine", request{method: "GET", target: "/api/v1/backup", auth: "Bearer " + h.admin}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.send(t, tc.req)
			if tc.status != http.StatusOK {
				r.mustProblem(t, tc.status)
				return
			}
			r.mustStatus(t, http.StatusOK)
			if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="alicia-hub-`+testHubID+"-") {
				t.Errorf("Content-Disposition %q", cd)
			}
			// The body is the whole hub: the enrolled device and the CA.
			dataDir := filepath.Join(t.TempDir(), "hub")
			if _, err := backup.Restore(bytes.NewReader(r.body), dataDir); err != nil {
				t.Fatalf("restore the served backup: %v", err)
			}
			crt, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
			if err != nil || !bytes.Equal(crt, h.ca.CertPEM()) {
				t.Errorf("restored ca.crt differs from the hub's CA (%v)", err)
			}
			db, err := store.Open(store.Options{Dir: filepath.Join(dataDir, backup.StoreDir)})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			reg, err := registry.Open(db, registry.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.Get(enr.DeviceID); err != nil {
				t.Errorf("the restored store lacks device %s: %v", enr.DeviceID, err)
			}
		})
	}
}

func TestBackupFailure(t *testing.T) {
	h := newHarness(t)
	before := func(io.Writer) (int64, error) { return 0, errors.New("read pki/ca.key: permission denied") }
	h.backupFn.Store(&before)
	r := h.adminDo(t, "GET", "/api/v1/backup", nil)
	if d := r.mustProblem(t, http.StatusInternalServerError); strings.Contains(d, "ca.key") {
		t.Errorf("the 500 echoes the hub's error: %q", d)
	}
	// Once the body has started, a failure aborts the response instead
	// of ending it as if it were whole.
	midway := func(w io.Writer) (int64, error) {
		n, _ := w.Write([]byte("alicia-hub-backup 1\n"))
		return int64(n), errors.New("disk read error")
	}
	h.backupFn.Store(&midway)
	req := httptest.NewRequest("GET", "/api/v1/backup", nil)
	req.RemoteAddr = "127.0.0.1:41000"
	req.Header.Set("Authorization", "Bearer "+h.admin)
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Errorf("a failure mid-stream: recovered %v, want http.ErrAbortHandler", p)
		}
	}()
	h.handler.ServeHTTP(httptest.NewRecorder(), req)
}
