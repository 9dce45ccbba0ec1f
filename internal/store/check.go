package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

const manifestFile = "MANIFEST"

// checkDir looks, before badger opens dir, for damage that badger v4.9.6
// does not report as an error:
//   - a table file whose index is damaged or truncated makes badger panic
//     in a goroutine of its own, which kills the process;
//   - a table failing its checksum is skipped with a log line, its keys
//     silently gone;
//   - a missing MANIFEST, or one truncated to its header, makes badger start
//     an empty database and delete the table files it does not list.
//
// Each table listed in the MANIFEST is opened read-only the way badger opens
// it, in this goroutine, with panics recovered; with full, the checksum of
// every block is verified too. A non-nil error describes the damage. The
// caller must hold the directory lock.
func checkDir(dir string, bo badger.Options, full bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fsError{err}
	}
	tables := map[uint64]bool{}
	var hasManifest bool
	var logs int
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == manifestFile:
			hasManifest = true
		case filepath.Ext(name) == ".vlog" || filepath.Ext(name) == ".mem":
			logs++
			if err := checkLogHeader(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		default:
			if id, ok := table.ParseFileID(name); ok {
				tables[id] = true
			}
		}
	}
	if !hasManifest {
		if len(tables)+logs > 0 {
			return fmt.Errorf("%s is missing but %d table and %d log files exist",
				manifestFile, len(tables), logs)
		}
		return nil // a new database
	}

	f, err := os.Open(filepath.Join(dir, manifestFile))
	if err != nil {
		return fsError{err}
	}
	m, _, err := badger.ReplayManifestFile(f, bo.ExternalMagicVersion, bo)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", manifestFile, err)
	}
	if len(m.Tables) == 0 && len(tables) > 0 {
		return fmt.Errorf("%s lists no tables but %d table files exist (truncated %s?)",
			manifestFile, len(tables), manifestFile)
	}
	for id, tm := range m.Tables {
		name := table.IDToFilename(id)
		if !tables[id] {
			return fmt.Errorf("table %s listed in %s is missing", name, manifestFile)
		}
		if err := checkTable(filepath.Join(dir, name), tm, bo, full); err != nil {
			return fmt.Errorf("table %s: %w", name, err)
		}
	}
	return nil
}

// fsError marks an error accessing a file (permission, I/O), as opposed to
// damaged content.
type fsError struct{ err error }

func (e fsError) Error() string { return e.err.Error() }
func (e fsError) Unwrap() error { return e.err }

// logHeaderSize is the size of the header of value-log and WAL files: the
// id of the encryption key (8 bytes, big endian, 0 without encryption) and
// an IV (12 bytes).
const logHeaderSize = 20

// checkLogHeader checks the header of a value-log or WAL file. Badger fails
// to open a file with a damaged header too, but leaks goroutines and mapped
// files when it does.
func checkLogHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fsError{err}
	}
	defer f.Close()
	var h [logHeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		// Shorter than a header: a file being created when the machine
		// stopped; badger starts it afresh (WAL) or refuses it (value log).
		return nil
	}
	if id := binary.BigEndian.Uint64(h[:8]); id != 0 {
		return fmt.Errorf("bad header: encryption key id %d in an unencrypted database", id)
	}
	return nil
}

// checkTable opens one table read-only as badger would (reading its index
// and its first and last keys, verifying the checksums of what it reads)
// and, with full, verifies the checksum of every block.
func checkTable(path string, tm badger.TableManifest, bo badger.Options, full bool) (err error) {
	if tm.KeyID != 0 {
		return nil // encrypted; the store never enables encryption
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fsError{err}
	}
	if fi.Size() == 0 {
		return errors.New("empty file")
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fsError{err}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s", errBadgerPanic, panicSummary(r))
		}
		mf.Close(-1) // never t.DecrRef: at zero references it deletes the file
	}()
	// OnBlockRead, not OnTableRead: with the latter OpenTable closes mf
	// itself on a checksum error, and the deferred Close would unmap twice.
	t, err := table.OpenTable(mf, table.Options{
		ReadOnly:    true,
		ChkMode:     options.OnBlockRead,
		BlockSize:   bo.BlockSize,
		Compression: tm.Compression,
	})
	if err != nil || !full {
		return err
	}
	return t.VerifyChecksum()
}

// panicSummary renders a recovered panic value on one line: badger's
// panics carry multi-line debug dumps.
func panicSummary(r any) string {
	s := strings.Join(strings.Fields(fmt.Sprint(r)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// checkValues reads every live value once. Badger does not return an error
// when a value-log entry cannot be read (truncated or damaged file, checksum
// mismatch): it logs it and yields an empty value; readValue turns that into
// an error. The LSM tree itself must have been checked first (checkDir with
// full): badger's iterator stops silently at a damaged table block.
func checkValues(bdb *badger.DB) error {
	return bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if _, err := readValue(item); err != nil {
				return fmt.Errorf("key %s: %w", keyName("", string(item.Key())), err)
			}
		}
		return nil
	})
}

// errUnreadable is the error for a value badger could not read.
var errUnreadable = fmt.Errorf("%w: value unreadable from the value log (badger logged why)", ErrCorrupt)

// readValue returns a copy of item's value, never nil, or an error wrapping
// ErrCorrupt when badger failed to read it. Only values larger than
// ValueThreshold (at least 1 byte) live in the value log, so an empty
// result for an item whose stored size is non-zero is a failed read.
func readValue(item *badger.Item) ([]byte, error) {
	val, err := item.ValueCopy(nil)
	if err != nil {
		return nil, err
	}
	if len(val) == 0 {
		if item.ValueSize() > 0 {
			return nil, errUnreadable
		}
		val = []byte{}
	}
	return val, nil
}
