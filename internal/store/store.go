package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var (
	// ErrNotFound is returned (wrapped) by Get when the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrLocked is returned (wrapped) by Open when another process, or another
	// Open in this process, holds the data directory.
	ErrLocked = errors.New("data dir is in use by another process")
	// ErrCorrupt is returned (wrapped) by Open when the data directory cannot
	// be read as a database: damaged MANIFEST, truncated or overwritten table
	// or log files; and by reads of a value that cannot be read back. The fix
	// is to move the directory aside and restore a backup; the store never
	// repairs it silently.
	ErrCorrupt = errors.New("data looks corrupt")
	// ErrInvalidKey is returned (wrapped) for an empty key or one containing
	// a NUL byte.
	ErrInvalidKey = errors.New("invalid key")
	// ErrDiskFull is returned (wrapped) by writes while the file system
	// holding the data directory has less than Options.MinFreeBytes free.
	ErrDiskFull = errors.New("not enough free disk space")
	// ErrClosed is returned (wrapped) by every operation after Close.
	ErrClosed = errors.New("store is closed")
	// ErrTxnTooBig is returned (wrapped) by a write that would make its
	// transaction larger than one commit can hold (about 15 % of
	// Options.MemTableSize); nothing of the transaction is applied.
	ErrTxnTooBig = errors.New("transaction too big")
)

// updateAttempts bounds how often Update runs fn when its transaction
// conflicts with a concurrent one.
const updateAttempts = 10

// lockFile is the file badger flocks and writes its pid into.
const lockFile = "LOCK"

// DB is an open data directory. It is safe for concurrent use.
type DB struct {
	bdb  *badger.DB
	dir  string
	opts Options // with defaults applied
	log  *slog.Logger
	lock *dirLock // nil where badger locks the directory itself

	// writeErr is the first write or sync failure reported by badger; once
	// set, every write is refused.
	writeErr atomic.Pointer[error]
	// freeBytes reports the free space of the file system holding dir;
	// replaced in tests.
	freeBytes func(dir string) (uint64, error)

	// done is closed by Close.
	done chan struct{}
	// mu guards closed and the Add side of inflight.
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// Open opens (creating if needed) the database in opts.Dir. It takes an
// exclusive lock on the directory for the life of the DB.
//
// Errors name the directory and wrap ErrLocked when it is in use, ErrCorrupt
// when its content cannot be read as a database, and ErrDiskFull when the
// disk is full. Open starts badger's own goroutines (compaction, flushing)
// but not the GC loop: call Run for that.
func Open(opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.withDefaults()
	if err := prepareDir(o.Dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(o.Dir)
	if errors.Is(err, errLockHeld) {
		return nil, lockedError(o.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: lock data dir %s: %w", o.Dir, err)
	}
	db := &DB{
		dir:       o.Dir,
		opts:      o,
		log:       o.Logger,
		lock:      lock,
		freeBytes: freeBytes,
		done:      make(chan struct{}),
	}
	bo := o.badgerOptions(badgerLogger{log: o.Logger, writeFailed: db.setWriteErr})
	bo.BypassLockGuard = lock != nil // we hold the same lock already
	if err := checkDir(o.Dir, bo, !o.FastOpen); err != nil {
		lock.release()
		if errors.As(err, new(fsError)) {
			return nil, fmt.Errorf("store: open %s: %w", o.Dir, err)
		}
		return nil, corruptError(o.Dir, err)
	}
	db.bdb, err = openBadger(bo)
	if err != nil {
		lock.release()
		return nil, openError(o.Dir, err)
	}
	if !o.FastOpen {
		if err := checkValues(db.bdb); err != nil {
			db.bdb.Close()
			lock.release()
			if !errors.Is(err, ErrCorrupt) {
				return nil, fmt.Errorf("store: open %s: read values: %w", o.Dir, err)
			}
			return nil, corruptError(o.Dir, err)
		}
	}
	return db, nil
}

// corruptError is the error for damaged data found by Open.
func corruptError(dir string, err error) error {
	const hint = "move the directory aside and restore a backup"
	if errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("store: open %s: %w (%s)", dir, err, hint)
	}
	return fmt.Errorf("store: open %s: %w (%s): %w", dir, ErrCorrupt, hint, err)
}

// lockedError is the error for a data directory locked by someone else.
func lockedError(dir string) error {
	holder := ""
	if b, err := os.ReadFile(filepath.Join(dir, lockFile)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			holder = fmt.Sprintf(" (pid %d holds the lock)", pid)
		}
	}
	return fmt.Errorf("store: open %s: %w%s", dir, ErrLocked, holder)
}

// prepareDir creates dir if missing and checks that it is a writable
// directory, so that these common mistakes get a plain message instead of one
// from deep inside badger.
func prepareDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("store: create data dir %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("store: data dir %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("store: data dir %s is not a directory", dir)
	}
	probe := filepath.Join(dir, ".store-write-probe")
	f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store: data dir %s is not writable: %w", dir, err)
	}
	f.Close()
	if err := os.Remove(probe); err != nil {
		return fmt.Errorf("store: data dir %s is not writable: %w", dir, err)
	}
	return nil
}

// errBadgerPanic marks a panic recovered from badger.Open.
var errBadgerPanic = errors.New("unreadable (badger panicked)")

// openBadger is badger.Open that turns a panic into an error. Badger panics
// (rather than returning an error) on some damaged files.
func openBadger(bo badger.Options) (bdb *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, err = nil, fmt.Errorf("%w: %v", errBadgerPanic, r)
		}
	}()
	return badger.Open(bo)
}

// openError classifies an error from badger.Open.
func openError(dir string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return lockedError(dir)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("store: open %s: %w: %w", dir, ErrDiskFull, err)
	case errors.As(err, &errno) && !errors.Is(err, fs.ErrNotExist):
		// Permission, read-only file system, I/O error, out of memory or
		// file descriptors: the environment, not the data.
		return fmt.Errorf("store: open %s: %w", dir, err)
	default:
		return corruptError(dir, err)
	}
}

// Close closes the database. It waits for operations in flight; later
// operations fail with ErrClosed. It is safe to call more than once and
// after Run returned; only the first call can return an error.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	close(db.done)
	db.mu.Unlock()
	db.inflight.Wait()
	err := db.bdb.Close()
	if lerr := db.lock.release(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("store: close %s: %w", db.dir, err)
	}
	return nil
}

// enter registers an operation, failing once the DB is closed. Every
// successful enter must be paired with exit.
func (db *DB) enter() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.inflight.Add(1)
	return nil
}

func (db *DB) exit() { db.inflight.Done() }

// setWriteErr records the first write failure.
func (db *DB) setWriteErr(err error) {
	db.writeErr.CompareAndSwap(nil, &err)
}

// failedWrite reports the recorded write failure, if any.
func (db *DB) failedWrite() error {
	if p := db.writeErr.Load(); p != nil {
		return fmt.Errorf("refusing writes after a disk write or sync failure (restart to recover): %w", *p)
	}
	return nil
}

// checkWritable reports why a write must be refused, if it must.
func (db *DB) checkWritable() error {
	if err := db.failedWrite(); err != nil {
		return err
	}
	if db.opts.MinFreeBytes < 0 {
		return nil
	}
	free, err := db.freeBytes(db.dir)
	if err != nil {
		return fmt.Errorf("check free space: %w", err)
	}
	if free < uint64(db.opts.MinFreeBytes) {
		return fmt.Errorf("%w: %d MiB free in %s, need %d MiB", ErrDiskFull,
			free>>20, db.dir, db.opts.MinFreeBytes>>20)
	}
	return nil
}

// checkGC reports why a GC round must not run, if it must not.
func (db *DB) checkGC() error {
	if err := db.failedWrite(); err != nil {
		return err
	}
	free, err := db.freeBytes(db.dir)
	if err != nil {
		return fmt.Errorf("check free space: %w", err)
	}
	if need := uint64(db.opts.ValueLogFileSize); db.opts.MinFreeBytes >= 0 && free < need {
		return fmt.Errorf("%w: %d MiB free in %s, GC needs %d MiB", ErrDiskFull, free>>20, db.dir, need>>20)
	}
	return nil
}

// Run runs the value-log GC every Options.GCInterval until ctx is done, and
// then returns nil. Each round calls badger's RunValueLogGC(0.5) repeatedly
// while it reclaims a file. GC failures are logged at warn level and retried
// next round; a round is skipped (with a warning) while less than
// ValueLogFileSize is free or after a write failure. Run returns an error wrapping ErrClosed if the DB is closed
// under it.
func (db *DB) Run(ctx context.Context) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: run: %w", err)
	}
	db.exit()
	t := time.NewTicker(db.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-db.done:
			return fmt.Errorf("store: run: %w", ErrClosed)
		case <-t.C:
			db.gc(ctx)
		}
	}
}

// gc runs one GC round.
func (db *DB) gc(ctx context.Context) {
	for ctx.Err() == nil {
		if db.enter() != nil {
			return
		}
		// A GC round rewrites up to one value-log file of live values
		// before it frees the old file; do not start it without room for
		// that, or after a write failure.
		if err := db.checkGC(); err != nil {
			db.exit()
			db.log.Warn("store: value-log GC skipped", "dir", db.dir, "err", err)
			return
		}
		err := db.bdb.RunValueLogGC(0.5)
		db.exit()
		switch {
		case err == nil:
			continue // a file was rewritten; there may be more
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing worth reclaiming, or a GC is already running.
		default:
			db.log.Warn("store: value-log GC failed", "dir", db.dir, "err", err)
		}
		return
	}
}

// Size returns the bytes allocated on disk by the LSM tree (*.sst files) and
// by the value log (*.vlog files), read from the directory at the time of the
// call. WAL (*.mem) files, preallocated sparse, are not counted. It returns
// zeros if the directory cannot be read.
func (db *DB) Size() (lsm, vlog int64) {
	entries, err := os.ReadDir(db.dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if ext != ".sst" && ext != ".vlog" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // deleted by a compaction or GC since ReadDir
		}
		if ext == ".sst" {
			lsm += allocatedBytes(fi)
		} else {
			vlog += allocatedBytes(fi)
		}
	}
	return lsm, vlog
}

// Update runs fn in one read-write transaction across keyspaces and commits
// it; the commit is durable on disk when Update returns nil. If fn returns an
// error, nothing is written and that error is returned unchanged. If the
// transaction conflicts with a concurrent one (it read a key another
// transaction changed before it committed), fn runs again after a short
// random back-off, up to 10 times in all, so fn must have no effects outside
// tx. tx must not be used after fn returns. fn may call other DB methods,
// but they run in transactions of their own.
func (db *DB) Update(fn func(*Tx) error) error {
	return db.wrapUpdate(db.update(fn))
}

// UpdateLazy is Update for data that may lose its last seconds of changes on
// power loss (last-seen times, counters): callers promise to tolerate that,
// so that the store may stop syncing these commits. In the current
// implementation it is as durable as Update, because badger v4 can only
// sync all commits or none (SyncWrites) and the store syncs all of them; a
// process crash (kill -9) never loses a committed write either way.
func (db *DB) UpdateLazy(fn func(*Tx) error) error {
	return db.wrapUpdate(db.update(fn))
}

func (db *DB) wrapUpdate(fnErr, err error) error {
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: update: %w", err)
	}
	return nil
}

// update runs fn in a read-write transaction and commits it, retrying on
// conflicts. It returns fn's error as fnErr and its own errors, without the
// "store: ..." context, as err.
func (db *DB) update(fn func(*Tx) error) (fnErr, err error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.exit()
	if err := db.checkWritable(); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		txn := db.bdb.NewTransaction(true)
		if err := fn(&Tx{db: db, txn: txn}); err != nil {
			txn.Discard()
			return err, nil
		}
		err := txn.Commit()
		if errors.Is(err, badger.ErrConflict) && attempt < updateAttempts {
			// Back off for a random time, doubling the range each attempt
			// (1 ms, 2 ms … capped at 64 ms), so that contenders separate.
			time.Sleep(rand.N(time.Millisecond << min(attempt-1, 6)))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		// Badger logs but does not return a failed value-log sync.
		if err := db.failedWrite(); err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		return nil, nil
	}
}

// View runs fn in a read-only transaction: a consistent snapshot across
// keyspaces. fn's error is returned unchanged. tx must not be used after fn
// returns.
func (db *DB) View(fn func(*Tx) error) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: view: %w", err)
	}
	defer db.exit()
	txn := db.bdb.NewTransaction(false)
	defer txn.Discard()
	return fn(&Tx{db: db, txn: txn})
}
