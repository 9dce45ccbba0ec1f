package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTruncated: a valid outbox cut at any length is either opened (the
// pages it keeps are enough) or refused with an error wrapping ErrCorrupt,
// which the agent answers by moving the file aside; never with another
// error, which stops the agent. A file cut between its first meta page and
// the end of its second (4,096 to 8,191 bytes with 4 KiB pages) used to
// fail with bbolt's unclassified "file size too small".
func TestTruncated(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src.db")
	makeOutbox(t, src, 200, 1000)
	full, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize() // bbolt's page size for files it creates
	for _, tc := range []struct {
		name       string
		size       int
		mustRefuse bool // too short to be opened
	}{
		{"empty", 0, true},
		{"1 byte", 1, true},
		{"100 bytes", 100, true},
		{"one page less a byte", page - 1, true},
		{"one page", page, true},
		{"one page and a byte", page + 1, true},
		{"two pages less a byte", 2*page - 1, true},
		{"two pages", 2 * page, false},
		{"two pages and a byte", 2*page + 1, false},
		{"three pages", 3 * page, false},
		{"16 KiB", 16 << 10, false},
		{"64 KiB", 64 << 10, false},
		{"all but the last page", len(full) - page, false},
		{"all but the last byte", len(full) - 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			if err := os.WriteFile(path, full[:tc.size], 0o600); err != nil {
				t.Fatal(err)
			}
			o, err := Open(Options{Path: path})
			if err == nil {
				_ = o.Close()
				if tc.mustRefuse {
					t.Fatalf("Open of the first %d of %d bytes succeeded", tc.size, len(full))
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open of the first %d of %d bytes = %v, want success or an error naming the file and wrapping ErrCorrupt", tc.size, len(full), err)
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
}
