package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/internal/store"
	"github.com/google/go-cmp/cmp"
)

// hubDir makes a data directory with a store holding one key and the
// hub's files; it returns the open store.
func hubDir(t *testing.T) (string, *store.DB) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(store.Options{Dir: filepath.Join(dir, StoreDir)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Keyspace("meta").Put("hub_id", []byte("hub-0123")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	for path, content := range map[string]string{"pki/ca.key": "KEY", "pki/ca.crt": "CERT", "admin.token": "TOKEN\n"} {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, db
}

func backupOf(t *testing.T) []byte {
	t.Helper()
	dir, db := hubDir(t)
	var buf bytes.Buffer
	n, err := Write(&buf, db, dir)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Write said %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestWriteRestore(t *testing.T) {
	b := backupOf(t)
	if _, err := Verify(bytes.NewReader(b)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	dataDir := filepath.Join(t.TempDir(), "new")
	s, err := Restore(bytes.NewReader(b), dataDir)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if diff := cmp.Diff([]string{"pki/ca.key", "pki/ca.crt", "admin.token"}, s.Files); diff != "" {
		t.Errorf("restored files (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		path, content string
		mode          os.FileMode
	}{
		{"pki/ca.key", "KEY", 0o600},
		{"pki/ca.crt", "CERT", 0o644},
		{"admin.token", "TOKEN\n", 0o600},
		{"pki", "", os.ModeDir | 0o700},
		{".", "", os.ModeDir | 0o700},
	} {
		path := filepath.Join(dataDir, tc.path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s has mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
		if !fi.IsDir() {
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Errorf("%s holds %q, want %q", tc.path, got, tc.content)
			}
		}
	}
	db, err := store.Open(store.Options{Dir: filepath.Join(dataDir, StoreDir)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if id, err := db.Keyspace("meta").Get("hub_id"); err != nil || string(id) != "hub-0123" {
		t.Errorf("restored hub_id = %q, %v", id, err)
	}
}

// crafted is a backup head with the given manifest, then b's store stream.
func crafted(t *testing.T, b []byte, files map[string][]byte) []byte {
	t.Helper()
	n := binary.BigEndian.Uint32(b[len(magic):])
	rest := b[len(magic)+4+int(n)+sha256.Size:]
	js, err := json.Marshal(manifest{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	out := binary.BigEndian.AppendUint32([]byte(magic), uint32(len(js)))
	out = append(out, js...)
	sum := sha256.Sum256(js)
	return append(append(out, sum[:]...), rest...)
}

func TestRestoreRefusesBadBackups(t *testing.T) {
	b := backupOf(t)
	damaged := bytes.Clone(b)
	damaged[len(magic)+10] ^= 1
	for _, tc := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"not a backup", []byte("PK\x03\x04 a zip file"), "does not start with"},
		{"cut in the manifest", b[:len(magic)+20], "truncated in its manifest"},
		{"damaged manifest", damaged, "manifest fails its checksum"},
		{"cut in the store", b[:len(b)-40], "truncated at byte"},
		{"trailing data", append(bytes.Clone(b), 'x'), "data follows"},
		{"a path outside the hub", crafted(t, b, map[string][]byte{"pki/ca.key": nil, "pki/ca.crt": nil, "../escape": []byte("x")}), `"../escape", which is not a hub file`},
		{"no CA key", crafted(t, b, map[string][]byte{"pki/ca.crt": nil}), "lacks pki/ca.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(bytes.NewReader(tc.stream)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error saying %q", err, tc.want)
			}
			parent := t.TempDir()
			dataDir := filepath.Join(parent, "hub")
			_, err := Restore(bytes.NewReader(tc.stream), dataDir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want an error saying %q", err, tc.want)
			}
			if !errors.Is(err, ErrBad) && !errors.Is(err, store.ErrBadBackup) {
				t.Errorf("Restore = %v, want ErrBad or store.ErrBadBackup", err)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("a failed restore left %v in %s", entries, parent)
			}
		})
	}
}

func TestRestoreNeverOverwrites(t *testing.T) {
	b := backupOf(t)
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "admin.token"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bytes.NewReader(b), dataDir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Restore over a hub = %v, want a refusal", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dataDir, "admin.token")); string(got) != "old" {
		t.Errorf("the refused restore changed admin.token to %q", got)
	}
	// An empty directory (as a package creates it) is taken, and stays
	// empty after a failure.
	empty := t.TempDir()
	if _, err := Restore(bytes.NewReader(b[:len(b)-40]), empty); !errors.Is(err, store.ErrBadBackup) {
		t.Fatalf("Restore of a truncated backup = %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a failed restore left %v in the empty data dir", entries)
	}
	if _, err := Restore(bytes.NewReader(b), empty); err != nil {
		t.Fatalf("Restore into an empty dir: %v", err)
	}
	entries, err := os.ReadDir(empty)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"admin.token", "pki", "store"}, names); diff != "" {
		t.Errorf("the restored data dir holds (-want +got):\n%s", diff)
	}
	if got, _ := os.ReadFile(filepath.Join(empty, "admin.token")); string(got) != "TOKEN\n" {
		t.Errorf("admin.token = %q after restore", got)
	}
}

func TestWriteNeedsTheCA(t *testing.T) {
	dir, db := hubDir(t)
	if err := os.Remove(filepath.Join(dir, "pki", "ca.key")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Write(&buf, db, dir); err == nil || !strings.Contains(err.Error(), "ca.key") {
		t.Errorf("Write without the CA key = %v, want an error naming it", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Write failed after writing %d bytes, want none", buf.Len())
	}
}
