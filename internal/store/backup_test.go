package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// backupOf fills a store with small and value-log values in two keyspaces
// (over a few frames' worth) and returns its content and its backup.
func backupOf(t *testing.T) (want map[string][]kv, backup []byte) {
	t.Helper()
	db := open(t, Options{})
	want = map[string][]kv{}
	for _, ks := range []string{"devices", "metrics"} {
		k := db.Keyspace(ks)
		for i := range 300 {
			key, val := fmt.Sprintf("k%04d", i), fmt.Sprintf("%s-%d", ks, i)
			if i%3 == 0 {
				val += big
			}
			if err := k.Put(key, []byte(val)); err != nil {
				t.Fatal(err)
			}
			want[ks] = append(want[ks], kv{key, val})
		}
	}
	// A deleted key does not come back.
	if err := db.Keyspace("devices").Put("gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := db.Keyspace("devices").Delete("gone"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Backup said %d bytes, wrote %d", n, buf.Len())
	}
	return want, buf.Bytes()
}

func TestBackupRestore(t *testing.T) {
	want, backup := backupOf(t)
	if len(backup) < 2*maxFrame {
		t.Fatalf("backup of %d bytes: the test wants several frames", len(backup))
	}
	if n, err := VerifyBackup(bytes.NewReader(backup)); err != nil || n != int64(len(backup)) {
		t.Errorf("VerifyBackup = %d, %v; want %d, nil", n, err, len(backup))
	}
	dir := filepath.Join(t.TempDir(), "restored")
	r := bytes.NewReader(append(bytes.Clone(backup), "trailing"...))
	if err := Restore(dir, r); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if rest := r.Len(); rest != len("trailing") {
		t.Errorf("Restore left %d bytes of the reader, want exactly what follows the stream (%d)", rest, len("trailing"))
	}
	db := open(t, Options{Dir: dir})
	for ks, kvs := range want {
		if diff := cmp.Diff(kvs, scanAll(t, db.Keyspace(ks), "")); diff != "" {
			t.Errorf("keyspace %s after restore (-want +got):\n%s", ks, diff)
		}
	}
}

func TestRestoreRefusesBadBackups(t *testing.T) {
	_, backup := backupOf(t)
	flip := func(i int) []byte {
		b := bytes.Clone(backup)
		b[i] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"empty", nil, "does not start with"},
		{"not a backup", []byte("hello, this is not a backup at all"), "does not start with"},
		{"cut in a frame header", backup[:len(backupMagic)+2], "truncated at byte"},
		{"cut in the middle", backup[:len(backup)/2], "truncated at byte"},
		{"cut before the end", backup[:len(backup)-sha256Len-4], "truncated at byte"},
		{"cut in the end checksum", backup[:len(backup)-1], "in the end checksum"},
		{"damaged data", flip(len(backup) / 2), "fails its checksum"},
		{"damaged length", flip(len(backupMagic)), "claims"},
		{"damaged end checksum", flip(len(backup) - 1), "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyBackup(bytes.NewReader(tc.stream)); !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("VerifyBackup = %v, want ErrBadBackup saying %q", err, tc.want)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "restored")
			err := Restore(dir, bytes.NewReader(tc.stream))
			if !errors.Is(err, ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want ErrBadBackup saying %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed restore left %s behind (stat: %v)", dir, err)
			}
		})
	}
}

// sha256Len is the end checksum's length.
const sha256Len = 32

func TestRestoreRefusesNonEmptyDir(t *testing.T) {
	_, backup := backupOf(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Restore(dir, bytes.NewReader(backup))
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Restore into a non-empty dir = %v, want a refusal", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "mine" {
		t.Errorf("the refused restore touched the directory: %q, %v", b, err)
	}
	// An empty existing directory is fine, and stays after a failed restore.
	empty := t.TempDir()
	if err := Restore(empty, bytes.NewReader(backup[:len(backup)/2])); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("Restore of a truncated backup = %v", err)
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("a failed restore into an empty dir left %v (%v)", entries, err)
	}
	if err := Restore(empty, bytes.NewReader(backup)); err != nil {
		t.Errorf("Restore into an empty dir: %v", err)
	}
}

func TestBackupAfterClose(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Backup(&bytes.Buffer{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Backup after Close = %v, want ErrClosed", err)
	}
}
