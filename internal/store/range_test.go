package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScanRangeAndLast(t *testing.T) {
	db := open(t, Options{})
	ts := db.Keyspace("ts")
	other := db.Keyspace("tt") // sorts right after "ts/": must never leak in
	err := db.Update(func(tx *Tx) error {
		for _, k := range []string{"a/01", "a/02", "a/03", "a/10", "b/01"} {
			if err := tx.Put(ts, k, []byte("v"+k)); err != nil {
				return err
			}
		}
		return tx.Put(other, "a/05", []byte("other"))
	})
	if err != nil {
		t.Fatal(err)
	}
	scan := func(start, end string) []kv {
		t.Helper()
		var got []kv
		err := db.View(func(tx *Tx) error {
			return tx.ScanRange(ts, start, end, func(k string, v []byte) error {
				got = append(got, kv{k, string(v)})
				return nil
			})
		})
		if err != nil {
			t.Fatalf("ScanRange(%q, %q): %v", start, end, err)
		}
		return got
	}
	for _, tt := range []struct {
		start, end string
		want       []kv
	}{
		{"a/02", "a/10", []kv{{"a/02", "va/02"}, {"a/03", "va/03"}}}, // end excluded
		{"a/", "a/~", []kv{{"a/01", "va/01"}, {"a/02", "va/02"}, {"a/03", "va/03"}, {"a/10", "va/10"}}},
		{"a/04", "a/05", nil},
		{"a/10", "", []kv{{"a/10", "va/10"}, {"b/01", "vb/01"}}}, // no end: to the keyspace's end, not into "tt"
	} {
		if diff := cmp.Diff(tt.want, scan(tt.start, tt.end)); diff != "" {
			t.Errorf("ScanRange(%q, %q) (-want +got):\n%s", tt.start, tt.end, diff)
		}
	}
	rscan := func(start, end string) []kv {
		t.Helper()
		var got []kv
		err := db.View(func(tx *Tx) error {
			return tx.ScanRangeReverse(ts, start, end, func(k string, v []byte) error {
				got = append(got, kv{k, string(v)})
				return nil
			})
		})
		if err != nil {
			t.Fatalf("ScanRangeReverse(%q, %q): %v", start, end, err)
		}
		return got
	}
	for _, tt := range []struct {
		start, end string
		want       []kv
	}{
		{"a/02", "a/10", []kv{{"a/03", "va/03"}, {"a/02", "va/02"}}}, // end excluded, though it exists
		{"a/", "a0", []kv{{"a/10", "va/10"}, {"a/03", "va/03"}, {"a/02", "va/02"}, {"a/01", "va/01"}}},
		{"a/04", "a/05", nil},
		{"b/", "z", []kv{{"b/01", "vb/01"}}}, // past the keyspace's last key, not into "tt"
		{"", "a/015", []kv{{"a/01", "va/01"}}},
	} {
		if diff := cmp.Diff(tt.want, rscan(tt.start, tt.end)); diff != "" {
			t.Errorf("ScanRangeReverse(%q, %q) (-want +got):\n%s", tt.start, tt.end, diff)
		}
	}
	if err := db.View(func(tx *Tx) error { return tx.ScanRangeReverse(ts, "a/", "", nil) }); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ScanRangeReverse without an end = %v, want ErrInvalidKey", err)
	}

	stop := errors.New("stop")
	n := 0
	err = db.View(func(tx *Tx) error {
		return tx.ScanRange(ts, "", "", func(string, []byte) error { n++; return stop })
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("ScanRange with a failing callback: %v after %d calls, want stop after 1", err, n)
	}
}

func TestPutTTLExpires(t *testing.T) {
	db := open(t, Options{})
	ts := db.Keyspace("ts")
	err := db.Update(func(tx *Tx) error {
		// Badger keeps expiry in whole seconds, rounded down: a TTL of 1 s
		// may end a few milliseconds after the put. 3 s leaves at least 2.
		if err := tx.PutTTL(ts, "short", []byte("1"), 3*time.Second); err != nil {
			return err
		}
		return tx.PutTTL(ts, "long", []byte("2"), time.Hour)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, ts, ""); len(got) != 2 {
		t.Fatalf("right after the put: %v, want both", got)
	}
	// Poll until "short" is gone.
	deadline := time.Now().Add(7 * time.Second)
	for {
		got := scanAll(t, ts, "")
		if len(got) == 1 && got[0].Key == "long" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 7 s: %v, want only the hour-long entry", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ts.Get("short"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(expired) = %v, want ErrNotFound", err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.PutTTL(ts, "x", nil, 0) }); err == nil {
		t.Error("PutTTL with ttl 0 succeeded")
	}
}

func TestTxnTooBig(t *testing.T) {
	db := open(t, Options{MemTableSize: 1 << 20})
	ts := db.Keyspace("ts")
	err := db.Update(func(tx *Tx) error {
		for i := range 100000 {
			if err := tx.Put(ts, fmt.Sprintf("key-%08d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrTxnTooBig) {
		t.Fatalf("Update with 100000 puts = %v, want ErrTxnTooBig", err)
	}
	if got := scanAll(t, ts, ""); len(got) != 0 {
		t.Errorf("%d keys applied from a refused transaction", len(got))
	}
}
