package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// open opens a DB in a new temporary directory and closes it at the end of
// the test.
func open(t *testing.T, opts Options) *DB {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	db, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

type kv struct {
	Key, Val string
}

// scanAll returns what ScanPrefix yields.
func scanAll(t *testing.T, k Keyspace, prefix string) []kv {
	t.Helper()
	var got []kv
	if err := k.ScanPrefix(prefix, func(key string, val []byte) error {
		got = append(got, kv{key, string(val)})
		return nil
	}); err != nil {
		t.Fatalf("ScanPrefix(%q): %v", prefix, err)
	}
	return got
}

// big is a value larger than DefaultValueThreshold: it lives in the value
// log, not in the LSM tree.
var big = strings.Repeat("v", 2*DefaultValueThreshold)

func TestKeyspaceIsolationAndOrder(t *testing.T) {
	db := open(t, Options{})
	dev, devx, cred := db.Keyspace("dev"), db.Keyspace("devx"), db.Keyspace("cred")
	writes := []struct {
		k        Keyspace
		key, val string
	}{
		{dev, "b", "dev-b"},
		{dev, "a/2", big},
		{dev, "a/1", "dev-a1"},
		{devx, "a/1", "devx-a1"},
		{devx, "z", "devx-z"},
		{cred, "a/1", "cred-a1"},
	}
	for _, w := range writes {
		if err := w.k.Put(w.key, []byte(w.val)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		k      Keyspace
		prefix string
		want   []kv
	}{
		{"dev all", dev, "", []kv{{"a/1", "dev-a1"}, {"a/2", big}, {"b", "dev-b"}}},
		{"dev prefix", dev, "a/", []kv{{"a/1", "dev-a1"}, {"a/2", big}}},
		{"dev no match", dev, "c", nil},
		{"devx all", devx, "", []kv{{"a/1", "devx-a1"}, {"z", "devx-z"}}},
		{"cred all", cred, "", []kv{{"a/1", "cred-a1"}}},
		{"empty keyspace", db.Keyspace("d"), "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, scanAll(t, tt.k, tt.prefix)); diff != "" {
				t.Errorf("ScanPrefix(%q) (-want +got):\n%s", tt.prefix, diff)
			}
		})
	}

	got, err := dev.Get("a/2")
	if err != nil || string(got) != big {
		t.Errorf("dev.Get(a/2) = %d bytes, %v; want the 4 KiB value", len(got), err)
	}
	if _, err := devx.Get("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("devx.Get(b) error = %v, want ErrNotFound (dev's key must not leak)", err)
	}
	if err := dev.Delete("a/1"); err != nil {
		t.Fatal(err)
	}
	if err := dev.Delete("never-there"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if _, err := dev.Get("a/1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete error = %v, want ErrNotFound", err)
	}
	if got, err := devx.Get("a/1"); err != nil || string(got) != "devx-a1" {
		t.Errorf("devx.Get(a/1) after dev.Delete(a/1) = %q, %v", got, err)
	}
}

func TestGetNotFoundMessage(t *testing.T) {
	db := open(t, Options{})
	_, err := db.Keyspace("dev").Get("x")
	if want := "store: get dev/x: not found"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestValues(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	tests := []struct {
		name string
		val  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"binary", []byte{0, 1, 2, 0xff}},
		{"at threshold", bytes.Repeat([]byte{'t'}, DefaultValueThreshold)},
		{"value log", []byte(big)},
		{"1 MiB", bytes.Repeat([]byte{'m'}, 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := k.Put(tt.name, tt.val); err != nil {
				t.Fatal(err)
			}
			got, err := k.Get(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !bytes.Equal(got, tt.val) {
				t.Errorf("Get = %d bytes (nil: %t), want %d bytes, never nil", len(got), got == nil, len(tt.val))
			}
		})
	}
}

func TestPutCopiesValue(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	buf := []byte("first")
	if err := db.Update(func(tx *Tx) error {
		if err := tx.Put(k, "a", buf); err != nil {
			return err
		}
		copy(buf, "XXXXX") // the caller reuses its buffer before the commit
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Get("a"); string(got) != "first" {
		t.Errorf("Get = %q, want %q", got, "first")
	}
}

func TestInvalidKeys(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	tests := []struct {
		name, key, want string
	}{
		{"empty", "", `store: put dev/: invalid key: empty`},
		{"NUL", "a\x00b", `store: put "dev/a\x00b": invalid key: contains a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k.Put(tt.key, []byte("v"))
			if !errors.Is(err, ErrInvalidKey) || err.Error() != tt.want {
				t.Errorf("Put error = %v, want %q wrapping ErrInvalidKey", err, tt.want)
			}
			if _, err := k.Get(tt.key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Get error = %v, want ErrInvalidKey", err)
			}
			if err := k.Delete(tt.key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Delete error = %v, want ErrInvalidKey", err)
			}
			err = db.Update(func(tx *Tx) error { return tx.Put(k, tt.key, nil) })
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Tx.Put error = %v, want ErrInvalidKey", err)
			}
		})
	}
	if err := k.ScanPrefix("a\x00", func(string, []byte) error { return nil }); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ScanPrefix with NUL error = %v, want ErrInvalidKey", err)
	}
	var zero Keyspace
	if err := zero.Put("a", nil); err == nil || !strings.Contains(err.Error(), "zero Keyspace") {
		t.Errorf("zero Keyspace Put error = %v, want one naming the zero Keyspace", err)
	}
}

func TestKeyspaceName(t *testing.T) {
	db := open(t, Options{})
	tests := []struct {
		name string
		ok   bool
	}{
		{"dev", true},
		{"a", true},
		{"dev_2", true},
		{"", false},
		{"Dev", false},
		{"2dev", false},
		{"_dev", false},
		{"dev/x", false},
		{"dev-x", false},
		{"dév", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r == nil) != tt.ok {
					t.Errorf("Keyspace(%q) panic = %v, want panic: %t", tt.name, r, !tt.ok)
				}
			}()
			if got := db.Keyspace(tt.name).Name(); got != tt.name {
				t.Errorf("Name() = %q", got)
			}
		})
	}
}

func TestScanStopsAtCallbackError(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	for _, key := range []string{"a", "b", "c"} {
		if err := k.Put(key, []byte(key)); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	var seen []string
	err := k.Scan(func(key string, _ []byte) error {
		seen = append(seen, key)
		if key == "b" {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("Scan error = %v, want the callback's error unchanged", err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, seen); diff != "" {
		t.Errorf("keys seen (-want +got):\n%s", diff)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{"small": "s", "big": big}
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	k := db.Keyspace("dev")
	for key, val := range want {
		if err := k.Put(key, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Put("gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, Options{Dir: dir})
	got := map[string]string{}
	if err := db.Keyspace("dev").Scan(func(key string, val []byte) error {
		got[key] = string(val)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}

func TestUpdateIsAtomicAcrossKeyspaces(t *testing.T) {
	db := open(t, Options{})
	dev, cred := db.Keyspace("dev"), db.Keyspace("cred")
	if err := dev.Put("old", []byte("1")); err != nil {
		t.Fatal(err)
	}

	fail := errors.New("validation failed")
	err := db.Update(func(tx *Tx) error {
		if err := tx.Put(dev, "new", []byte("2")); err != nil {
			return err
		}
		if err := tx.Delete(dev, "old"); err != nil {
			return err
		}
		if err := tx.Put(cred, "new", []byte("3")); err != nil {
			return err
		}
		// The transaction sees its own writes.
		if got, err := tx.Get(dev, "new"); err != nil || string(got) != "2" {
			t.Errorf("tx.Get(new) = %q, %v", got, err)
		}
		if _, err := tx.Get(dev, "old"); !errors.Is(err, ErrNotFound) {
			t.Errorf("tx.Get(old) error = %v, want ErrNotFound", err)
		}
		return fail
	})
	if err != fail {
		t.Fatalf("Update error = %v, want fn's error unchanged", err)
	}
	if diff := cmp.Diff([]kv{{"old", "1"}}, scanAll(t, dev, "")); diff != "" {
		t.Errorf("dev after failed Update (-want +got):\n%s", diff)
	}
	if got := scanAll(t, cred, ""); got != nil {
		t.Errorf("cred after failed Update = %v, want empty", got)
	}

	if err := db.Update(func(tx *Tx) error {
		if err := tx.Put(dev, "new", []byte("2")); err != nil {
			return err
		}
		if err := tx.Delete(dev, "old"); err != nil {
			return err
		}
		return tx.Put(cred, "new", []byte("3"))
	}); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *Tx) error {
		var got []kv
		for _, k := range []Keyspace{dev, cred} {
			if err := tx.ScanPrefix(k, "", func(key string, val []byte) error {
				got = append(got, kv{k.Name() + "/" + key, string(val)})
				return nil
			}); err != nil {
				return err
			}
		}
		if diff := cmp.Diff([]kv{{"dev/new", "2"}, {"cred/new", "3"}}, got); diff != "" {
			t.Errorf("after Update (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUpdateRetriesConflicts(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("counter")
	const workers, increments = 4, 10
	incr := func() error {
		return db.Update(func(tx *Tx) error {
			n := 0
			b, err := tx.Get(k, "n")
			switch {
			case err == nil:
				if n, err = strconv.Atoi(string(b)); err != nil {
					return err
				}
			case !errors.Is(err, ErrNotFound):
				return err
			}
			return tx.Put(k, "n", []byte(strconv.Itoa(n+1)))
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*increments)
	for range workers {
		wg.Go(func() {
			for range increments {
				errs <- incr()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Update: %v", err)
		}
	}
	if got, err := k.Get("n"); err != nil || string(got) != strconv.Itoa(workers*increments) {
		t.Errorf("counter = %q, %v; want %d (no lost increments)", got, err, workers*increments)
	}
}

func TestViewRefusesWrites(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	err := db.View(func(tx *Tx) error { return tx.Put(k, "a", []byte("v")) })
	if err == nil || !strings.HasPrefix(err.Error(), "store: put dev/a: ") {
		t.Errorf("Put in View error = %v, want a refused put", err)
	}
	if _, err := k.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after refused put: %v, want ErrNotFound", err)
	}
}

func TestTxRefusesKeyspaceOfAnotherDB(t *testing.T) {
	db1, db2 := open(t, Options{}), open(t, Options{})
	err := db1.Update(func(tx *Tx) error { return tx.Put(db2.Keyspace("dev"), "a", nil) })
	if err == nil || !strings.Contains(err.Error(), "another DB") {
		t.Errorf("error = %v, want one about another DB", err)
	}
}

func TestUpdateLazy(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	seen := db.Keyspace("seen")
	for i := range 3 {
		if err := db.UpdateLazy(func(tx *Tx) error {
			return tx.Put(seen, "dev1", []byte(strconv.Itoa(i)))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := seen.Get("dev1"); err != nil || string(got) != "2" {
		t.Errorf("Get after UpdateLazy = %q, %v; want 2", got, err)
	}
	fail := errors.New("no")
	if err := db.UpdateLazy(func(tx *Tx) error { return fail }); err != fail {
		t.Errorf("UpdateLazy error = %v, want fn's error", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, Options{Dir: dir})
	if got, err := db.Keyspace("seen").Get("dev1"); err != nil || string(got) != "2" {
		t.Errorf("Get after reopen = %q, %v; want 2", got, err)
	}
}

type device struct {
	ID     string   `json:"id"`
	Labels []string `json:"labels"`
}

func TestJSON(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	want := device{ID: "kitchen-pi", Labels: []string{"relay"}}
	if err := PutJSON(k, want.ID, want); err != nil {
		t.Fatal(err)
	}
	got, err := GetJSON[device](k, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetJSON (-want +got):\n%s", diff)
	}
	if _, err := GetJSON[device](k, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJSON(missing) error = %v, want ErrNotFound", err)
	}
	if err := k.Put("bad", []byte("{")); err != nil {
		t.Fatal(err)
	}
	if _, err := GetJSON[device](k, "bad"); err == nil || !strings.HasPrefix(err.Error(), "store: decode dev/bad: ") {
		t.Errorf("GetJSON(bad) error = %v, want a decode error", err)
	}
	if err := PutJSON(k, "fn", func() {}); err == nil || !strings.HasPrefix(err.Error(), "store: encode dev/fn: ") {
		t.Errorf("PutJSON(func) error = %v, want an encode error", err)
	}
}

func TestCloseIsIdempotentAndRefusesLaterUse(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := db.Keyspace("dev")
	for i := range 2 {
		if err := db.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	ops := map[string]error{
		"Get":    func() error { _, err := k.Get("a"); return err }(),
		"Put":    k.Put("a", nil),
		"Delete": k.Delete("a"),
		"Scan":   k.Scan(func(string, []byte) error { return nil }),
		"Update": db.Update(func(*Tx) error { return nil }),
		"View":   db.View(func(*Tx) error { return nil }),
		"Run":    db.Run(context.Background()),
	}
	for op, err := range ops {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", op, err)
		}
	}
}

func TestCloseWaitsForOperations(t *testing.T) {
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	k := db.Keyspace("dev")
	inFn, release := make(chan struct{}), make(chan struct{})
	updateErr := make(chan error, 1)
	go func() {
		updateErr <- db.Update(func(tx *Tx) error {
			close(inFn)
			<-release
			// A nested operation started after Close fails instead of
			// deadlocking.
			if _, err := k.Get("x"); !errors.Is(err, ErrClosed) {
				t.Errorf("nested Get during Close: %v, want ErrClosed", err)
			}
			return tx.Put(k, "a", []byte("1"))
		})
	}()
	<-inFn
	closeErr := make(chan error, 1)
	go func() { closeErr <- db.Close() }()
	// Close cannot finish while Update runs; let Update go once Close has
	// marked the DB closed.
	<-db.done
	close(release)
	if err := <-updateErr; err != nil {
		t.Errorf("Update in flight during Close: %v", err)
	}
	if err := <-closeErr; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestRun(t *testing.T) {
	t.Run("returns nil when ctx is done", func(t *testing.T) {
		db := open(t, Options{GCInterval: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- db.Run(ctx) }()
		// Let a few GC rounds run, with garbage in the value log.
		k := db.Keyspace("dev")
		for i := range 20 {
			if err := k.Put("a", []byte(big+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	t.Run("returns ErrClosed when the DB is closed", func(t *testing.T) {
		db, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- db.Run(context.Background()) }()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Run = %v, want ErrClosed", err)
		}
	})
}

func TestGCReclaimsValueLog(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, ValueLogFileSize: 1 << 20}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	k := db.Keyspace("blob")
	val := bytes.Repeat([]byte{'g'}, 64<<10)
	// Overwrite the same keys until several value-log files are full of
	// garbage.
	for round := range 8 {
		if err := db.Update(func(tx *Tx) error {
			for i := range 16 {
				val[0] = byte(round)
				if err := tx.Put(k, strconv.Itoa(i), val); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// GC picks files by the discard statistics that compactions keep; Close
	// flushes the memtable and compacts level 0.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open(t, opts)
	k = db.Keyspace("blob")
	_, before := db.Size()
	db.gc(context.Background())
	_, after := db.Size()
	if after >= before {
		t.Errorf("value log %d → %d bytes: GC reclaimed nothing", before, after)
	}
	for i := range 16 {
		got, err := k.Get(strconv.Itoa(i))
		if err != nil || len(got) != len(val) || got[0] != 7 {
			t.Fatalf("Get(%d) after GC = %d bytes, %v; want the last round's value", i, len(got), err)
		}
	}
}

func TestSize(t *testing.T) {
	db := open(t, Options{})
	if err := db.Keyspace("dev").Put("a", []byte(big)); err != nil {
		t.Fatal(err)
	}
	if _, vlog := db.Size(); vlog < int64(len(big)) {
		t.Errorf("Size() vlog = %d, want at least %d after a value-log write", vlog, len(big))
	}
}

func TestDiskFullRefusesWrites(t *testing.T) {
	db := open(t, Options{MinFreeBytes: 100 << 20})
	k := db.Keyspace("dev")
	if err := k.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	db.freeBytes = func(string) (uint64, error) { return 10 << 20, nil }
	writes := map[string]error{
		"Put":        k.Put("b", []byte("2")),
		"Delete":     k.Delete("a"),
		"Update":     db.Update(func(tx *Tx) error { return tx.Put(k, "c", nil) }),
		"UpdateLazy": db.UpdateLazy(func(tx *Tx) error { return tx.Put(k, "c", nil) }),
	}
	for op, err := range writes {
		if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "10 MiB free") {
			t.Errorf("%s with 10 MiB free: %v, want ErrDiskFull naming the free space", op, err)
		}
	}
	if got, err := k.Get("a"); err != nil || string(got) != "1" {
		t.Errorf("Get with a full disk = %q, %v; reads must keep working", got, err)
	}
	db.freeBytes = func(string) (uint64, error) { return 200 << 20, nil }
	if err := k.Put("b", []byte("2")); err != nil {
		t.Errorf("Put after space was freed: %v", err)
	}
}

func TestWriteFailureIsStickyAndReported(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	if err := k.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Badger reports a failed value-log msync only through its logger.
	bl := badgerLogger{log: slog.New(slog.DiscardHandler), writeFailed: db.setWriteErr}
	bl.Errorf(fmtVlogSyncFailed, errors.New("msync: input/output error"))
	for _, err := range []error{
		k.Put("b", []byte("2")),
		db.Update(func(tx *Tx) error { return tx.Delete(k, "a") }),
	} {
		if err == nil || !strings.Contains(err.Error(), "msync: input/output error") {
			t.Errorf("write after a sync failure: %v, want it refused with the cause", err)
		}
	}
	if got, err := k.Get("a"); err != nil || string(got) != "1" {
		t.Errorf("Get after a sync failure = %q, %v; reads must keep working", got, err)
	}
}

// recordHandler records the level and message of every record.
type recordHandler struct {
	mu      sync.Mutex
	records []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Level.String()+" "+r.Message)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLoggerLevels(t *testing.T) {
	h := &recordHandler{}
	var failed []error
	bl := badgerLogger{log: slog.New(h), writeFailed: func(err error) { failed = append(failed, err) }}
	bl.Errorf("e %d\n", 1)
	bl.Warningf("w %d", 2)
	bl.Infof("i %d", 3)
	bl.Debugf("d %d", 4)
	bl.Errorf(fmtWriteRequestFailed, errors.New("boom"))
	want := []string{"ERROR e 1", "WARN w 2", "DEBUG i 3", "DEBUG-4 d 4", "ERROR writeRequests: boom"}
	if diff := cmp.Diff(want, h.records); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if len(failed) != 1 || failed[0].Error() != "boom" {
		t.Errorf("write failures reported = %v, want [boom]", failed)
	}
}

func TestBadgerLogsGoThroughSlog(t *testing.T) {
	h := &recordHandler{}
	dir := t.TempDir()
	for range 2 { // the second open replays and logs more
		db, err := Open(Options{Dir: dir, Logger: slog.New(h)})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Keyspace("dev").Put("a", []byte(big)); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.records) == 0 {
		t.Error("no badger log line reached the slog handler")
	}
}

func TestConcurrentUse(t *testing.T) {
	db := open(t, Options{})
	k := db.Keyspace("dev")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("w%d/%02d", w, i)
				if err := k.Put(key, []byte(key)); err != nil {
					t.Error(err)
					return
				}
				if got, err := k.Get(key); err != nil || string(got) != key {
					t.Errorf("Get(%s) = %q, %v", key, got, err)
				}
				if err := k.ScanPrefix(fmt.Sprintf("w%d/", w), func(string, []byte) error { return nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := len(scanAll(t, k, "")); n != 100 {
		t.Errorf("%d keys after concurrent puts, want 100", n)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string // substring of the error; "" for none
	}{
		{"defaults", Options{Dir: "d"}, ""},
		{"no dir", Options{}, "Dir is required"},
		{"threshold over 15 %", Options{Dir: "d", MemTableSize: 8 << 20, ValueThreshold: 2 << 20}, "ValueThreshold"},
		{"one compactor", Options{Dir: "d", NumCompactors: 1}, "NumCompactors"},
		{"stall not above L0", Options{Dir: "d", NumLevelZeroTables: 8, NumLevelZeroTablesStall: 8}, "NumLevelZeroTablesStall"},
		{"vlog too large", Options{Dir: "d", ValueLogFileSize: 2 << 30}, "ValueLogFileSize"},
		{"negative GC interval", Options{Dir: "d", GCInterval: -time.Second}, "GCInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if _, err := Open(Options{}); err == nil {
		t.Error("Open with no Dir succeeded")
	}
}

func TestOpenErrors(t *testing.T) {
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		open(t, Options{Dir: dir})
		_, err := Open(Options{Dir: dir})
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open: %v, want ErrLocked", err)
		}
		want := fmt.Sprintf("store: open %s: data dir is in use by another process (pid %d holds the lock)", dir, os.Getpid())
		if err.Error() != want {
			t.Errorf("error = %q\nwant    %q", err, want)
		}
	})
	t.Run("released by Close", func(t *testing.T) {
		dir := t.TempDir()
		db, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		open(t, Options{Dir: dir})
	})
	t.Run("dir is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Options{Dir: file})
		if want := "store: data dir " + file + " is not a directory"; err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
	t.Run("dir cannot be created", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(file, "data")
		_, err := Open(Options{Dir: dir})
		if err == nil || !strings.HasPrefix(err.Error(), "store: data dir "+dir+": ") ||
			!strings.HasSuffix(err.Error(), "not a directory") {
			t.Errorf("error = %v, want one naming %s", err, dir)
		}
	})
	t.Run("dir not writable", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root can write anywhere")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o700)
		_, err := Open(Options{Dir: dir})
		if err == nil || !strings.HasPrefix(err.Error(), "store: data dir "+dir+" is not writable: ") {
			t.Errorf("error = %v, want a not-writable error naming %s", err, dir)
		}
	})
	t.Run("creates dir 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		open(t, Options{Dir: dir})
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("mode = %v, want 0700", fi.Mode().Perm())
		}
	})
}
