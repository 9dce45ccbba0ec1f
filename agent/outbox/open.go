package outbox

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// layoutVersion is the value of meta/version this package reads and writes.
const layoutVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")

	keyVersion = []byte("version")
	keyEpoch   = []byte("epoch")
	keyLastSeq = []byte("last_seq")
	keyDropped = []byte("dropped")
)

// initialMmapSize is bbolt's first mapping. bbolt doubles it as the file
// grows; starting small keeps a Pi Zero's 32-bit address space free, 1 MiB
// still covers a quiet outbox without remapping (a remap waits for readers).
const initialMmapSize = 1 << 20

// leftoverAge is how old a temporary file from an interrupted creation must
// be before Open removes it (younger ones may belong to a racing Open).
const leftoverAge = time.Minute

// Open opens the outbox file at opts.Path, creating it (a new epoch) if it
// does not exist. It checks every stored entry, drops damaged ones and
// applies the bounds. It fails with an error wrapping ErrCorrupt if the
// file is not a valid outbox, and with one wrapping ErrLocked if another
// process holds it for longer than opts.LockTimeout.
func Open(opts Options) (*Outbox, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	log := opts.Logger // tagged by the composition root

	db, err := openExisting(opts, log)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(opts); err != nil {
			return nil, err
		}
		db, err = openExisting(opts, log)
	}
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		db:     db,
		opts:   opts,
		log:    log,
		closed: make(chan struct{}),
		notify: make(chan struct{}),
	}
	if err := o.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox: open %s: %w", opts.Path, err)
	}
	removeLeftovers(opts.Path, log)
	return o, nil
}

// boltOptions are the bbolt options for both the final and the temporary file.
func boltOptions(opts Options) *bolt.Options {
	return &bolt.Options{
		Timeout:         opts.LockTimeout,
		InitialMmapSize: initialMmapSize,
		FreelistType:    bolt.FreelistArrayType,
	}
}

// openExisting opens and locks the file at opts.Path, which must exist and
// not be empty: bbolt would initialise an empty file in place, not
// atomically, so only create makes new files.
func openExisting(opts Options, log *slog.Logger) (db *bolt.DB, err error) {
	bo := boltOptions(opts)
	var file *os.File
	bo.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
		if err != nil {
			return nil, err
		}
		if err := checkFile(f, log); err != nil {
			_ = f.Close()
			return nil, err
		}
		file = f
		return f, nil
	}
	err = guard(func() error {
		db, err = bolt.Open(opts.Path, 0o600, bo)
		return err
	})
	if errors.Is(err, ErrCorrupt) && db == nil && file != nil {
		// bbolt panicked inside Open (a page beyond the end of a
		// truncated file): close the file, which releases its lock. Its
		// mapping stays until the process exits.
		_ = file.Close()
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("outbox: open %s: %w", opts.Path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("outbox: open %s: %w: %w", opts.Path, ErrCorrupt, err)
	case tooSmall(err):
		return nil, fmt.Errorf("outbox: open %s: %w: truncated, shorter than its two meta pages: %w", opts.Path, ErrCorrupt, err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, err // unwrapped: Open creates the file
	}
	return nil, fmt.Errorf("outbox: open %s: %w", opts.Path, err)
}

// tooSmall reports whether err is bbolt's refusal of a file shorter than
// two pages (of the page size its first meta page records): a file cut
// between one byte past its first meta page and the end of its second.
// bbolt has no sentinel for it, only this message; TestTruncated fails if
// the message changes.
func tooSmall(err error) bool {
	return errors.Unwrap(err) == nil && strings.HasPrefix(err.Error(), "file size too small ")
}

// checkFile refuses an empty or non-regular file and tightens a mode that
// lets group or others in to 0600.
func checkFile(f *os.File, log *slog.Logger) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: not a regular file (%v)", ErrCorrupt, fi.Mode().Type())
	case fi.Size() == 0:
		return fmt.Errorf("%w: empty file", ErrCorrupt)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("tighten mode %v to 0600: %w", perm, err)
		}
		log.Warn("outbox: tightened file mode", "path", f.Name(), "mode", perm.String(), "new_mode", os.FileMode(0o600).String())
	}
	return nil
}

// create makes a new, initialised outbox file at opts.Path: it builds it
// under a temporary name in the same directory, syncs it, and hard-links it
// into place, so Path never names a half-initialised file. If another
// process created Path meanwhile, create leaves that file alone.
func create(opts Options) error {
	dir, base := filepath.Dir(opts.Path), filepath.Base(opts.Path)
	f, err := os.CreateTemp(dir, base+".new-*")
	if err != nil {
		return fmt.Errorf("outbox: create %s: %w", opts.Path, err)
	}
	tmp := f.Name()
	_ = f.Close()
	defer os.Remove(tmp)

	db, err := bolt.Open(tmp, 0o600, boltOptions(opts))
	if err != nil {
		return fmt.Errorf("outbox: create %s: %w", opts.Path, err)
	}
	epoch, err := newEpoch()
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucket(bucketEntries); err != nil {
				return err
			}
			for _, kv := range [][2][]byte{
				{keyVersion, u64(layoutVersion)},
				{keyEpoch, []byte(epoch)},
				{keyLastSeq, u64(0)},
				{keyDropped, u64(0)},
			} {
				if err := meta.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("outbox: create %s: %w", opts.Path, err)
	}
	if err := os.Link(tmp, opts.Path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("outbox: create %s: %w", opts.Path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("outbox: create %s: sync directory: %w", opts.Path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeLeftovers deletes temporary files an interrupted create left next
// to path. Errors are ignored: a leftover costs a few KiB. File times are
// the real clock's, so this uses time.Since, not Options.Now.
func removeLeftovers(path string, log *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(filepath.Base(path))+".new-*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > leftoverAge {
			if os.Remove(m) == nil {
				log.Info("outbox: removed leftover of an interrupted creation", "path", m)
			}
		}
	}
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(s)
}

// epochAlphabet is what an epoch is made of.
const epochAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

const epochLen = 16

// newEpoch returns epochLen random characters of epochAlphabet (about 82
// bits).
func newEpoch() (string, error) {
	var b strings.Builder
	buf := make([]byte, 32)
	for b.Len() < epochLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random epoch: %w", err)
		}
		for _, c := range buf {
			// Reject the top of the byte range so every character is
			// equally likely (252 = 7*36).
			if c < 252 && b.Len() < epochLen {
				b.WriteByte(epochAlphabet[int(c)%len(epochAlphabet)])
			}
		}
	}
	return b.String(), nil
}

func validEpoch(s []byte) bool {
	if len(s) != epochLen {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune(epochAlphabet, rune(c)) {
			return false
		}
	}
	return true
}

// load checks the file's layout and every entry, computes the statistics,
// and, in one synced transaction, drops damaged entries and applies the
// bounds.
func (o *Outbox) load() error {
	var (
		st  Stats
		bad [][]byte // keys of damaged entries
	)
	err := guard(func() error {
		return o.db.View(func(tx *bolt.Tx) error {
			if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				if string(name) != string(bucketMeta) && string(name) != string(bucketEntries) {
					return fmt.Errorf("%w: unexpected bucket %q", ErrCorrupt, name)
				}
				return nil
			}); err != nil {
				return err
			}
			meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
			if meta == nil || entries == nil {
				return fmt.Errorf("%w: missing bucket %q or %q", ErrCorrupt, bucketMeta, bucketEntries)
			}
			if v := meta.Get(keyVersion); len(v) != 8 {
				return fmt.Errorf("%w: no layout version", ErrCorrupt)
			} else if n := binary.BigEndian.Uint64(v); n != layoutVersion {
				// Not ErrCorrupt: a newer agent wrote it; moving it aside
				// on a downgrade would lose its entries.
				return fmt.Errorf("layout version %d, this agent reads version %d", n, layoutVersion)
			}
			epoch := meta.Get(keyEpoch)
			if !validEpoch(epoch) {
				return fmt.Errorf("%w: invalid epoch %q", ErrCorrupt, epoch)
			}
			o.epoch = string(epoch)
			for _, k := range [][]byte{keyLastSeq, keyDropped} {
				if len(meta.Get(k)) != 8 {
					return fmt.Errorf("%w: meta key %q missing or not 8 bytes", ErrCorrupt, k)
				}
			}
			st.LastSeq = binary.BigEndian.Uint64(meta.Get(keyLastSeq))
			st.Dropped = binary.BigEndian.Uint64(meta.Get(keyDropped))

			var prev uint64
			c := entries.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != keyLen || v == nil {
					return fmt.Errorf("%w: entries: key %x is not a sequence number", ErrCorrupt, k)
				}
				seq := binary.BigEndian.Uint64(k)
				if seq > st.LastSeq {
					return fmt.Errorf("%w: entries: seq %d is beyond last_seq %d", ErrCorrupt, seq, st.LastSeq)
				}
				if seq == 0 || seq <= prev {
					return fmt.Errorf("%w: entries: seq %d out of order (after %d)", ErrCorrupt, seq, prev)
				}
				prev = seq
				e, err := decodeEntry(k, v, false)
				if err != nil {
					o.log.Warn("outbox: dropping damaged entry", "seq", seq, "err", err)
					bad = append(bad, append([]byte{}, k...))
					continue
				}
				if st.Depth == 0 {
					st.Oldest = e.Added
				}
				st.Depth++
				st.Bytes += int64(len(k) + len(v))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	now := o.opts.Now()
	over := st.Bytes > o.opts.MaxBytes || (st.Depth > 0 && now.Sub(st.Oldest) > o.opts.MaxAge)
	if len(bad) > 0 || over {
		err := guard(func() error {
			return o.db.Update(func(tx *bolt.Tx) error {
				entries := tx.Bucket(bucketEntries)
				for _, k := range bad {
					if entries.Get(k) == nil {
						continue
					}
					if err := entries.Delete(k); err != nil {
						return err
					}
					st.Dropped++
				}
				st.Oldest = oldest(entries)
				if err := tx.Bucket(bucketMeta).Put(keyDropped, u64(st.Dropped)); err != nil {
					return err
				}
				n, err := o.enforceLocked(tx, &st, now)
				if n > 0 {
					o.log.Warn("outbox: dropped entries over the bounds", "dropped", n, "max_bytes", o.opts.MaxBytes, "max_age", o.opts.MaxAge.String())
				}
				return err
			})
		})
		if err != nil {
			return err
		}
	}
	o.st = st
	return nil
}

// guard runs fn with memory faults turned into panics and turns a panic
// into an error wrapping ErrCorrupt: bbolt panics, or faults on a page
// beyond the end of a truncated file, when the file's pages are damaged.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}
