package testkit

import (
	"testing"

	"github.com/alicia-home/alicia/internal/store"
)

// OpenStore opens the hub's store in dir for a test (with no free-space
// floor, so that a nearly full /tmp does not fail it) and closes it at
// cleanup; closing it earlier, to reopen it, is fine.
func OpenStore(tb testing.TB, dir string) *store.DB {
	tb.Helper()
	db, err := store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}
