package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
// it, in this goroutine, with panics recovered. A non-nil error describes
// the damage. The caller must hold the directory lock.
func checkDir(dir string, bo badger.Options) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
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
		return err
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
		if err := checkTable(filepath.Join(dir, name), tm, bo); err != nil {
			return fmt.Errorf("table %s: %w", name, err)
		}
	}
	return nil
}

// checkTable opens one table read-only as badger would (reading its index
// and its first and last keys, verifying the checksums of what it reads).
func checkTable(path string, tm badger.TableManifest, bo badger.Options) (err error) {
	if tm.KeyID != 0 {
		return nil // encrypted; the store never enables encryption
	}
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errBadgerPanic, r)
		}
		mf.Close(-1) // never DecrRef: at zero references it deletes the file
	}()
	if len(mf.Data) == 0 {
		return errors.New("empty file")
	}
	_, err = table.OpenTable(mf, table.Options{
		ReadOnly:    true,
		ChkMode:     options.OnBlockRead,
		BlockSize:   bo.BlockSize,
		Compression: tm.Compression,
	})
	return err
}
