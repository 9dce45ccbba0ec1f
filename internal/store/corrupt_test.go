package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fill creates a closed database in a new directory with keys k000… of
// growing size, those over 1 KiB in the value log (a threshold below the
// default's, which later opens need not repeat), and returns the directory
// and the values.
func fill(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir, ValueThreshold: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	k := db.Keyspace("dev")
	if err := db.Update(func(tx *Tx) error {
		for i := range 100 {
			key, val := fmt.Sprintf("k%03d", i), strings.Repeat(strconv.Itoa(i%10), 10+i*40)
			want[key] = val
			if err := tx.Put(k, key, []byte(val)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, want
}

// damage functions change one file in place.
var (
	garbage = func(b []byte) []byte {
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	halve    = func(b []byte) []byte { return b[:len(b)/2] }
	truncate = func(n int) func([]byte) []byte { return func(b []byte) []byte { return b[:min(n, len(b))] } }
	flipMid  = func(b []byte) []byte {
		for i := len(b) / 3; i < len(b)/3+64 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		return b
	}
)

func TestOpenCorrupt(t *testing.T) {
	tests := []struct {
		name, glob string
		damage     func([]byte) []byte // nil: delete the file
		detail     string              // substring of the error
	}{
		{"MANIFEST garbage", "MANIFEST", garbage, "manifest has bad magic"},
		{"MANIFEST empty", "MANIFEST", truncate(0), "manifest has bad magic"},
		{"MANIFEST truncated", "MANIFEST", halve, "MANIFEST lists no tables"},
		{"MANIFEST deleted", "MANIFEST", nil, "MANIFEST is missing"},
		{"table garbage", "*.sst", garbage, ".sst: "},
		{"table truncated", "*.sst", halve, ".sst: "},
		{"table empty", "*.sst", truncate(0), ".sst: "},
		{"table block damaged", "*.sst", flipMid, ".sst: "},
		{"table deleted", "*.sst", nil, ".sst listed in MANIFEST is missing"},
		{"value log garbage", "*.vlog", garbage, "vlog"},
		{"value log truncated", "*.vlog", halve, "value unreadable"},
		{"value log header only", "*.vlog", truncate(20), "value unreadable"},
		{"value log damaged", "*.vlog", flipMid, "value unreadable"},
		{"key registry garbage", "KEYREGISTRY", garbage, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := fill(t)
			damageFile(t, dir, tt.glob, tt.damage)
			db, err := Open(Options{Dir: dir})
			if err == nil {
				db.Close()
				t.Fatal("Open of a damaged directory succeeded")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error does not wrap ErrCorrupt: %v", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "store: open "+dir+": ") || !strings.Contains(msg, "data looks corrupt") ||
				!strings.Contains(msg, tt.detail) {
				t.Errorf("error = %q\nwant it to name %s, say the data looks corrupt, and mention %q", msg, dir, tt.detail)
			}
			// The failed Open released the directory.
			if _, err := Open(Options{Dir: dir}); errors.Is(err, ErrLocked) {
				t.Errorf("Open after a failed Open: %v", err)
			}
		})
	}
}

// TestFastOpenReportsUnreadableValues checks that what FastOpen skips is
// still reported at read time instead of coming back as an empty value,
// which is what badger itself does.
func TestFastOpenReportsUnreadableValues(t *testing.T) {
	dir, want := fill(t)
	damageFile(t, dir, "*.vlog", halve)
	db := open(t, Options{Dir: dir, FastOpen: true})
	k := db.Keyspace("dev")
	var bad int
	for key, val := range want {
		got, err := k.Get(key)
		switch {
		case errors.Is(err, ErrCorrupt):
			bad++
		case err != nil:
			t.Errorf("Get(%s): %v", key, err)
		case string(got) != val:
			t.Errorf("Get(%s) = %d bytes of wrong data, want %d bytes or ErrCorrupt", key, len(got), len(val))
		}
	}
	if bad == 0 {
		t.Error("no Get reported ErrCorrupt after half the value log was cut off")
	}
	err := k.Scan(func(key string, val []byte) error {
		if val := want[key]; val == "" {
			return fmt.Errorf("unexpected key %s", key)
		}
		return nil
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("Scan error = %v, want ErrCorrupt", err)
	}
}

func damageFile(t *testing.T, dir, glob string, damage func([]byte) []byte) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s in %s", glob, dir)
	}
	// The first file is the one with data: Close leaves a newer, empty
	// value-log file behind.
	f := files[0]
	if damage == nil {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, damage(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	helperEnv    = "ALICIA_STORE_TEST_HELPER"
	helperDirEnv = "ALICIA_STORE_TEST_DIR"
)

// TestHelperProcess is not a test: TestCrashKeepsAcknowledgedWrites runs the
// test binary with it as a child that writes keys, prints "ok KEY" after
// each Put returns, and never closes the DB.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "crash" {
		t.Skip("helper process for TestCrashKeepsAcknowledgedWrites")
	}
	db, err := Open(Options{Dir: os.Getenv(helperDirEnv)})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	k := db.Keyspace("dev")
	for i := 0; ; i++ {
		key := fmt.Sprintf("k%06d", i)
		if err := k.Put(key, []byte(crashValue(i))); err != nil {
			fmt.Println("put:", err)
			os.Exit(2)
		}
		fmt.Println("ok", key) // os.Stdout is unbuffered
		if i == 100_000 {
			os.Exit(3) // the parent should have killed us long ago
		}
	}
}

// crashValue alternates values in the LSM tree and in the value log.
func crashValue(i int) string {
	if i%2 == 0 {
		return strconv.Itoa(i)
	}
	return strings.Repeat(strconv.Itoa(i%10), 2000+i)
}

// TestCrashKeepsAcknowledgedWrites kills (SIGKILL) a process in the middle
// of a stream of Puts and checks that every Put that returned is there
// after reopening. It covers process crashes; power loss additionally
// relies on the msync badger does with SyncWrites (see the package doc).
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in the helper process")
	}
	dir := t.TempDir()
	// Two rounds: the second crash happens with WAL and value log left by the
	// first one.
	var acked []string
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=crash", helperDirEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			key, ok := strings.CutPrefix(sc.Text(), "ok ")
			if !ok {
				t.Fatalf("round %d: helper said %q", round, sc.Text())
			}
			acked = append(acked, key)
			if n++; n == 150 {
				// Kill while the child is in the middle of the next Puts.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		for sc.Scan() {
			// Puts acknowledged between our decision and the kill count too.
			if key, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				acked = append(acked, key)
			}
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: helper ended with %v, want killed by SIGKILL", round, err)
		}
		if n < 150 {
			t.Fatalf("round %d: helper acknowledged only %d puts", round, n)
		}
	}

	db := open(t, Options{Dir: dir})
	k := db.Keyspace("dev")
	for _, key := range acked {
		i, _ := strconv.Atoi(key[1:])
		got, err := k.Get(key)
		if err != nil {
			t.Errorf("acknowledged %s lost: %v", key, err)
		} else if string(got) != crashValue(i) {
			t.Errorf("acknowledged %s has %d bytes of wrong data", key, len(got))
		}
	}
}
