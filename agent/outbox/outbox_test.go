package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newClock returns the tests' injectable clock.
func newClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// mustOpen opens an outbox and closes it when the test ends.
func mustOpen(t testing.TB, opts Options) *Outbox {
	t.Helper()
	o, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func mustAppend(t testing.TB, o *Outbox, data []byte) uint64 {
	t.Helper()
	seq, err := o.Append(data)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// all returns every stored entry and checks that Stats agrees with them.
func all(t testing.TB, o *Outbox) []Entry {
	t.Helper()
	es, err := o.Pending(0, math.MaxInt32)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	want := Stats{LastSeq: o.Stats().LastSeq, Dropped: o.Stats().Dropped, Depth: len(es)}
	for i, e := range es {
		want.Bytes += int64(len(e.Data)) + EntryOverhead
		if i == 0 {
			want.Oldest = e.Added
		}
		if e.Seq > want.LastSeq {
			t.Errorf("entry %d is beyond LastSeq %d", e.Seq, want.LastSeq)
		}
	}
	if got := o.Stats(); !got.Oldest.Equal(want.Oldest) || got.Depth != want.Depth || got.Bytes != want.Bytes {
		t.Errorf("Stats = %+v, but the stored entries say %+v", got, want)
	}
	return es
}

func seqsOf(es []Entry) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	out := []uint64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestAppendPendingAck(t *testing.T) {
	clk := newClock()
	o := mustOpen(t, Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Now: clk.Now})
	var want []Entry
	for i := range 5 {
		clk.Set(clk.Now().Add(time.Second))
		data := []byte(fmt.Sprintf("batch %d", i+1))
		seq := mustAppend(t, o, data)
		if seq != uint64(i+1) {
			t.Fatalf("Append #%d returned seq %d, want %d", i+1, seq, i+1)
		}
		data[0] = 'X' // Append copied it
		want = append(want, Entry{Seq: seq, Added: clk.Now(), Data: []byte(fmt.Sprintf("batch %d", i+1))})
	}
	cmpEntries := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

	got := all(t, o)
	if diff := cmp.Diff(want, got, cmpEntries); diff != "" {
		t.Fatalf("Pending(0) (-want +got):\n%s", diff)
	}
	got[0].Data[0] = 'Y' // a copy, not bbolt's memory
	if got, _ := o.Pending(2, 2); !cmp.Equal(want[2:4], got, cmpEntries) {
		t.Errorf("Pending(2, 2) = %v, want entries 3 and 4", seqsOf(got))
	}
	if got, _ := o.Pending(5, 10); len(got) != 0 {
		t.Errorf("Pending(5, 10) = %v, want none", seqsOf(got))
	}
	if got, err := o.Pending(math.MaxUint64, 10); err != nil || len(got) != 0 {
		t.Errorf("Pending(MaxUint64) = %v, %v; want none", seqsOf(got), err)
	}
	if _, err := o.Pending(0, 0); err == nil {
		t.Error("Pending with max 0 did not fail")
	}

	// Unknown, repeated and duplicate seqs are ignored.
	if err := o.Ack(2, 4, 99, 2); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(2); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Entry{want[0], want[2], want[4]}, all(t, o), cmpEntries); diff != "" {
		t.Errorf("after Ack(2, 4) (-want +got):\n%s", diff)
	}
	if st := o.Stats(); st.Dropped != 0 || st.LastSeq != 5 {
		t.Errorf("Stats = %+v: acks are not drops and do not change LastSeq", st)
	}
	if err := o.Ack(1, 3, 5); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 0 || st.Bytes != 0 || !st.Oldest.IsZero() {
		t.Errorf("Stats after acking everything = %+v, want an empty queue", st)
	}
	if seq := mustAppend(t, o, nil); seq != 6 {
		t.Errorf("Append after acking everything = %d, want 6 (seqs are never reused)", seq)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	clk := newClock()
	o, err := Open(Options{Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	epoch := o.Epoch()
	if !validEpoch([]byte(epoch)) {
		t.Fatalf("Epoch() = %q, want 16 characters of [a-z0-9]", epoch)
	}
	for range 3 {
		mustAppend(t, o, []byte("x"))
	}
	if err := o.Ack(3); err != nil { // the newest: LastSeq must not come from the keys
		t.Fatal(err)
	}
	before := all(t, o)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := o.Append([]byte("y")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Append after Close = %v, want a closed error", err)
	}

	o = mustOpen(t, Options{Path: path, Now: clk.Now})
	if o.Epoch() != epoch {
		t.Errorf("epoch after reopen = %q, want %q", o.Epoch(), epoch)
	}
	if diff := cmp.Diff(before, all(t, o)); diff != "" {
		t.Errorf("entries after reopen (-before +after):\n%s", diff)
	}
	if st := o.Stats(); st.LastSeq != 3 {
		t.Errorf("LastSeq after reopen = %d, want 3", st.LastSeq)
	}
	if seq := mustAppend(t, o, []byte("y")); seq != 4 {
		t.Errorf("first Append after reopen = %d, want 4", seq)
	}

	other := mustOpen(t, Options{Path: filepath.Join(dir, "other.db")})
	if other.Epoch() == epoch || !validEpoch([]byte(other.Epoch())) {
		t.Errorf("a new file has epoch %q (first file %q): want a new valid epoch", other.Epoch(), epoch)
	}
	if seq := mustAppend(t, other, []byte("z")); seq != 1 {
		t.Errorf("first Append to a new file = %d, want 1", seq)
	}
}

func TestMaxBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	const small = 100
	maxBytes := int64(5 * (small + EntryOverhead))
	o, err := Open(Options{Path: path, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	data := func(n int, seq uint64) []byte { return bytes.Repeat([]byte{byte(seq)}, n) }
	for seq := uint64(1); seq <= 8; seq++ {
		mustAppend(t, o, data(small, seq))
	}
	check := func(o *Outbox, wantSeqs []uint64, wantDropped uint64) {
		t.Helper()
		es := all(t, o)
		if diff := cmp.Diff(wantSeqs, seqsOf(es)); diff != "" {
			t.Errorf("stored seqs (-want +got):\n%s", diff)
		}
		for _, e := range es {
			if e.Data[0] != byte(e.Seq) {
				t.Errorf("entry %d holds the data of entry %d", e.Seq, e.Data[0])
			}
		}
		if st := o.Stats(); st.Dropped != wantDropped || st.Bytes > o.opts.MaxBytes {
			t.Errorf("Stats = %+v, want Dropped %d and Bytes <= %d", st, wantDropped, o.opts.MaxBytes)
		}
	}
	check(o, seqRange(4, 8), 3) // exactly the three oldest went

	// An entry the size of 2.25 small ones pushes out three: 600+270 → 510.
	mustAppend(t, o, data(250, 9))
	check(o, []uint64{7, 8, 9}, 6)

	// Too large alone: refused, nothing changes.
	if _, err := o.Append(make([]byte, maxBytes-EntryOverhead+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append of an entry over the bound = %v, want ErrTooLarge", err)
	}
	check(o, []uint64{7, 8, 9}, 6)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	// Dropped is persisted; a smaller bound is applied by Open.
	o = mustOpen(t, Options{Path: path, MaxBytes: maxBytes})
	check(o, []uint64{7, 8, 9}, 6)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = mustOpen(t, Options{Path: path, MaxBytes: 300})
	check(o, []uint64{9}, 8)

	// An entry exactly the size of the bound fits and leaves nothing else.
	if seq := mustAppend(t, o, data(300-EntryOverhead, 10)); seq != 10 {
		t.Errorf("seq = %d, want 10", seq)
	}
	check(o, []uint64{10}, 9)
}

func TestMaxAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	clk := newClock()
	t0 := clk.Now()
	opts := Options{Path: path, MaxAge: time.Hour, Now: clk.Now}
	o, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration, seq uint64) {
		t.Helper()
		clk.Set(t0.Add(d))
		if got := mustAppend(t, o, []byte{byte(seq)}); got != seq {
			t.Fatalf("seq = %d, want %d", got, seq)
		}
	}
	check := func(o *Outbox, wantSeqs []uint64, wantDropped uint64, wantOldest time.Time) {
		t.Helper()
		if diff := cmp.Diff(wantSeqs, seqsOf(all(t, o))); diff != "" {
			t.Errorf("stored seqs (-want +got):\n%s", diff)
		}
		if st := o.Stats(); st.Dropped != wantDropped || !st.Oldest.Equal(wantOldest) {
			t.Errorf("Stats = %+v, want Dropped %d, Oldest %v", st, wantDropped, wantOldest)
		}
	}
	at(0, 1)
	at(20*time.Minute, 2)
	at(40*time.Minute, 3)
	check(o, []uint64{1, 2, 3}, 0, t0)
	at(61*time.Minute, 4) // 1 is 61m old: dropped; 2 is 41m old
	check(o, []uint64{2, 3, 4}, 1, t0.Add(20*time.Minute))
	at(80*time.Minute, 5) // 2 is exactly MaxAge old: kept
	check(o, []uint64{2, 3, 4, 5}, 1, t0.Add(20*time.Minute))
	at(100*time.Minute+1, 6) // 2 (80m+1ns) and 3 (60m+1ns) go
	check(o, []uint64{4, 5, 6}, 3, t0.Add(61*time.Minute))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	// Open applies the age bound too, and Dropped survives.
	clk.Set(t0.Add(150 * time.Minute)) // 4 and 5 are over an hour old
	o = mustOpen(t, opts)
	check(o, []uint64{6}, 5, t0.Add(100*time.Minute+1))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(24 * time.Hour))
	o = mustOpen(t, opts)
	check(o, []uint64{}, 6, time.Time{})
	if st := o.Stats(); st.Depth != 0 || st.Bytes != 0 || st.LastSeq != 6 {
		t.Errorf("Stats = %+v, want an empty queue with LastSeq 6", st)
	}
}

// writeBolt makes a bbolt file at path and runs fn in an update on it.
func writeBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// makeOutbox creates a valid outbox at path with n entries of size bytes.
func makeOutbox(t *testing.T, path string, n, size int) {
	t.Helper()
	o, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustAppend(t, o, bytes.Repeat([]byte{byte(i)}, size))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorrupt(t *testing.T) {
	garbage := func(n int) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*7 + i/13)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	editMeta := func(fn func(meta *bolt.Bucket) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			makeOutbox(t, path, 3, 10)
			writeBolt(t, path, func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketMeta)) })
		}
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"garbage 64 KiB", garbage(64 << 10)},
		{"garbage 100 bytes", garbage(100)},
		{"empty file", garbage(0)},
		{"bbolt file with other buckets", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("devices"))
				return err
			})
		}},
		{"bbolt file without buckets", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error { return nil })
		}},
		{"outbox with an extra bucket", func(t *testing.T, path string) {
			makeOutbox(t, path, 1, 10)
			writeBolt(t, path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("extra"))
				return err
			})
		}},
		{"no epoch", editMeta(func(m *bolt.Bucket) error { return m.Delete(keyEpoch) })},
		{"bad epoch", editMeta(func(m *bolt.Bucket) error { return m.Put(keyEpoch, []byte("NOT-AN-EPOCH!!!!")) })},
		{"short last_seq", editMeta(func(m *bolt.Bucket) error { return m.Put(keyLastSeq, []byte{1}) })},
		{"entry beyond last_seq", editMeta(func(m *bolt.Bucket) error { return m.Put(keyLastSeq, u64(2)) })},
		{"truncated to 16 KiB", func(t *testing.T, path string) {
			// The meta pages survive; the pages they point to do not.
			makeOutbox(t, path, 200, 1000)
			if err := os.Truncate(path, 16<<10); err != nil {
				t.Fatal(err)
			}
		}},
		{"meta pages overwritten", func(t *testing.T, path string) {
			makeOutbox(t, path, 3, 10)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := bytes.Repeat([]byte{0xAB}, 8192)
			if _, err := f.WriteAt(junk, 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			tc.make(t, path)
			o, err := Open(Options{Path: path})
			if err == nil {
				_ = o.Close()
				t.Fatal("Open succeeded on a file that is not a valid outbox")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want an error naming the file and wrapping ErrCorrupt", err)
			}
			// What the agent does: move it aside, start a new epoch.
			if err := os.Rename(path, path+".corrupt"); err != nil {
				t.Fatal(err)
			}
			o = mustOpen(t, Options{Path: path})
			if seq := mustAppend(t, o, []byte("a")); seq != 1 {
				t.Errorf("first seq of the new file = %d, want 1", seq)
			}
		})
	}

	t.Run("newer layout version is not ErrCorrupt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		editMeta(func(m *bolt.Bucket) error { return m.Put(keyVersion, u64(2)) })(t, path)
		_, err := Open(Options{Path: path})
		if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "layout version 2") {
			t.Errorf("Open = %v, want a version error that does not wrap ErrCorrupt (moving the file aside would lose it)", err)
		}
	})
}

// damage flips a byte in every copy of marker in the file (bbolt's freed
// pages may hold old copies) and reports how many it found.
func damage(t *testing.T, path string, marker []byte) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		if _, err := f.WriteAt([]byte{^marker[3]}, int64(off+i+3)); err != nil {
			t.Fatal(err)
		}
		n++
		off += i + len(marker)
	}
	return n
}

func TestDamagedEntry(t *testing.T) {
	marker := func(seq int) []byte { return []byte(fmt.Sprintf("<<entry %d payload>>", seq)) }
	t.Run("Open drops it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		o, err := Open(Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			mustAppend(t, o, marker(i))
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if damage(t, path, marker(2)) == 0 {
			t.Fatal("entry 2 not found in the file")
		}
		var logs testkit.LogBuffer
		o = mustOpen(t, Options{Path: path, Logger: logs.Logger()})
		es := all(t, o)
		if diff := cmp.Diff([]uint64{1, 3}, seqsOf(es)); diff != "" {
			t.Errorf("seqs after damage (-want +got):\n%s", diff)
		}
		if st := o.Stats(); st.Dropped != 1 {
			t.Errorf("Dropped = %d, want 1", st.Dropped)
		}
		if !strings.Contains(logs.String(), "damaged entry") || !strings.Contains(logs.String(), "seq=2") {
			t.Errorf("no warning about entry 2 in the log:\n%s", logs.String())
		}
	})
	t.Run("Pending skips it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "outbox.db")
		var logs testkit.LogBuffer
		o := mustOpen(t, Options{Path: path, Logger: logs.Logger()})
		for i := 1; i <= 3; i++ {
			mustAppend(t, o, marker(i))
		}
		if damage(t, path, marker(2)) == 0 { // bbolt maps the file shared: it sees this
			t.Fatal("entry 2 not found in the file")
		}
		es, err := o.Pending(0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]uint64{1, 3}, seqsOf(es)); diff != "" {
			t.Errorf("Pending with a damaged entry (-want +got):\n%s", diff)
		}
		if !strings.Contains(logs.String(), "skipping damaged entry") {
			t.Errorf("no warning in the log:\n%s", logs.String())
		}
	})
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	first := mustOpen(t, Options{Path: path})
	start := time.Now()
	second, err := Open(Options{Path: path, LockTimeout: 300 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		_ = second.Close()
		t.Fatal("a second Open of a held file succeeded")
	}
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second Open = %v, want ErrLocked saying another agent holds it (and not ErrCorrupt)", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("second Open took %v with a 300ms lock timeout", elapsed)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, Options{Path: path, LockTimeout: 300 * time.Millisecond})
}

func TestCreateRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	type result struct {
		o   *Outbox
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			o, err := Open(Options{Path: path, LockTimeout: 200 * time.Millisecond})
			results <- result{o, err}
		}()
	}
	var winner *Outbox
	for range 2 {
		r := <-results
		switch {
		case r.err == nil && winner == nil:
			winner = r.o
			t.Cleanup(func() { _ = r.o.Close() })
		case r.err == nil:
			_ = r.o.Close()
			t.Error("both racing Opens succeeded")
		case !errors.Is(r.err, ErrLocked):
			t.Errorf("losing Open = %v, want ErrLocked", r.err)
		}
	}
	if winner == nil {
		t.Fatal("no Open succeeded")
	}
	epoch := winner.Epoch()
	mustAppend(t, winner, []byte("a"))
	if err := winner.Close(); err != nil {
		t.Fatal(err)
	}
	o := mustOpen(t, Options{Path: path})
	if o.Epoch() != epoch || o.Stats().LastSeq != 1 {
		t.Errorf("reopened: epoch %q LastSeq %d, want the winner's file (%q, 1)", o.Epoch(), o.Stats().LastSeq, epoch)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 {
		t.Errorf("files in the state dir: %v, want only outbox.db", names)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := mustOpen(t, Options{Path: path})
	mode := func() os.FileMode {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	if m := mode(); m != 0o600 {
		t.Errorf("new file mode %v, want 0600", m)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testkit.LogBuffer
	// The composition root tags the outbox's logger; the outbox adds no
	// component of its own.
	mustOpen(t, Options{Path: path, Logger: logs.Logger().With("component", "outbox")})
	if m := mode(); m != 0o600 {
		t.Errorf("mode after opening a 0644 file %v, want it tightened to 0600", m)
	}
	if !strings.Contains(logs.String(), "tightened file mode") {
		t.Errorf("no warning about the mode:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "component="); n != 1 {
		t.Errorf("the warning carries %d component keys, want the root's one:\n%s", n, logs.String())
	}
}

func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	stale, fresh := path+".new-111", path+".new-222"
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half-made"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, Options{Path: path})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale leftover %s still there (%v)", stale, err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file (maybe a racing Open's) was removed: %v", err)
	}
}

func TestWait(t *testing.T) {
	o, err := Open(Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	w0 := o.Wait(0)
	if closed(w0) {
		t.Fatal("Wait(0) on an empty outbox is already closed")
	}
	mustAppend(t, o, []byte("a"))
	if !closed(w0) {
		t.Error("Wait(0) not closed by an Append")
	}
	if !closed(o.Wait(0)) {
		t.Error("Wait(0) after seq 1 exists is not closed")
	}
	w1 := o.Wait(1)
	if closed(w1) {
		t.Error("Wait(1) with LastSeq 1 is already closed")
	}
	if err := o.Ack(1); err != nil {
		t.Fatal(err)
	}
	if closed(w1) {
		t.Error("Wait(1) closed by an Ack")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if !closed(w1) || !closed(o.Wait(7)) {
		t.Error("Wait channels not closed by Close")
	}
	if _, err := o.Pending(0, 1); err == nil {
		t.Error("Pending after Close succeeded")
	}
}

// TestConcurrent runs collectors, a sender and a stats reader together (run
// it with -race): the sender must see every entry exactly once, in order.
func TestConcurrent(t *testing.T) {
	o := mustOpen(t, Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	const appenders, each = 4, 40
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := range each {
				if _, err := o.Append([]byte(fmt.Sprintf("%d/%d", a, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var statsWG sync.WaitGroup
	statsWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st := o.Stats(); st.Depth < 0 || st.Bytes < 0 {
				t.Errorf("Stats = %+v", st)
				return
			}
		}
	})
	var seen []uint64
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		var sent uint64
		for sent < appenders*each {
			es, err := o.Pending(sent, 7)
			if err != nil {
				t.Error(err)
				return
			}
			if len(es) == 0 {
				<-o.Wait(sent)
				continue
			}
			for _, e := range es {
				seen = append(seen, e.Seq)
			}
			sent = es[len(es)-1].Seq
			if err := o.Ack(seqsOf(es)...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	<-senderDone
	close(stop)
	statsWG.Wait()
	if diff := cmp.Diff(seqRange(1, appenders*each), seen); diff != "" {
		t.Errorf("seqs the sender saw (-want +got):\n%s", diff)
	}
	if st := o.Stats(); st.Depth != 0 || st.LastSeq != appenders*each || st.Dropped != 0 {
		t.Errorf("Stats = %+v, want empty with LastSeq %d", st, appenders*each)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "Path is required"},
		{Options{Path: "x", MaxBytes: -1}, "MaxBytes"},
		{Options{Path: "x", MaxAge: -time.Second}, "MaxAge"},
		{Options{Path: "x", LockTimeout: -time.Second}, "LockTimeout"},
		{Options{Path: "x"}, ""},
	} {
		err := tc.opts.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	if _, err := Open(Options{}); err == nil {
		t.Error("Open with no Path succeeded")
	}
	if _, err := Open(Options{Path: filepath.Join(t.TempDir(), "missing-dir", "outbox.db")}); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

// TestGrowth grows the file well past bbolt's first mapping (remaps) with
// entries larger than a page (overflow pages) and a bound that drops, as on
// a Pi Zero whose hub is away; TestARMv6 runs it in 32 bits.
func TestGrowth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	const size, n = 16 << 10, 400
	maxBytes := int64(4 << 20)
	o := mustOpen(t, Options{Path: path, MaxBytes: maxBytes})
	for seq := uint64(1); seq <= n; seq++ {
		mustAppend(t, o, bytes.Repeat([]byte{byte(seq)}, size))
	}
	keep := uint64(maxBytes / (size + EntryOverhead))
	es := all(t, o)
	if diff := cmp.Diff(seqRange(n-keep+1, n), seqsOf(es)); diff != "" {
		t.Errorf("stored seqs (-want +got):\n%s", diff)
	}
	for _, e := range es {
		if len(e.Data) != size || e.Data[0] != byte(e.Seq) || e.Data[size-1] != byte(e.Seq) {
			t.Fatalf("entry %d does not hold its data", e.Seq)
		}
	}
	if st := o.Stats(); st.Dropped != n-keep {
		t.Errorf("Dropped = %d, want %d", st.Dropped, n-keep)
	}
	if err := o.Ack(seqsOf(es)...); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 0 || st.Bytes != 0 {
		t.Errorf("Stats after acking all = %+v", st)
	}
}
