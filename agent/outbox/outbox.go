package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxBytes    = 64 << 20
	DefaultMaxAge      = 72 * time.Hour
	DefaultLockTimeout = time.Second
)

// EntryOverhead is what an entry costs on top of its data when counted
// against MaxBytes: its 8-byte key and 12-byte value header.
const EntryOverhead = keyLen + headerLen

const (
	keyLen    = 8
	headerLen = 4 + 8 // crc32c, added
)

var (
	// ErrCorrupt is wrapped by Open's error when the file exists but is not
	// a valid outbox. The caller may move the file aside and open a new
	// one (a new epoch).
	ErrCorrupt = errors.New("not a valid outbox file")
	// ErrLocked is wrapped by Open's error when another process holds the
	// file open. The file must be left alone.
	ErrLocked = errors.New("held by another process (is another agent running on this state directory?)")
	// ErrTooLarge is wrapped by Append's error for an entry whose size
	// alone exceeds MaxBytes. Nothing is stored.
	ErrTooLarge = errors.New("entry larger than the outbox bound")

	errClosed = errors.New("outbox: closed")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Options configures an Outbox. Only Path is required.
type Options struct {
	// Path is the bbolt file, e.g. <state-dir>/outbox.db. Its directory
	// must exist. A new file is created with mode 0600.
	Path string
	// MaxBytes bounds the sum of entry sizes (len(data)+EntryOverhead).
	// Zero means DefaultMaxBytes.
	MaxBytes int64
	// MaxAge is how long an entry may wait; older entries are dropped.
	// Zero means DefaultMaxAge.
	MaxAge time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the file. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives warnings (dropped entries, tightened mode) as it is:
	// the caller tags it (component=outbox). nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the options can be used.
func (o Options) Validate() error {
	switch {
	case o.Path == "":
		return errors.New("outbox: Path is required")
	case o.MaxBytes < 0:
		return fmt.Errorf("outbox: MaxBytes %d is negative", o.MaxBytes)
	case o.MaxAge < 0:
		return fmt.Errorf("outbox: MaxAge %v is negative", o.MaxAge)
	case o.LockTimeout < 0:
		return fmt.Errorf("outbox: LockTimeout %v is negative", o.LockTimeout)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Entry is one stored batch.
type Entry struct {
	Seq   uint64
	Added time.Time
	Data  []byte
}

// Stats describes the queue.
type Stats struct {
	Depth   int       // entries stored
	Bytes   int64     // sum of entry sizes (len(data)+EntryOverhead)
	Dropped uint64    // entries dropped (bounds, damage) since the epoch began; persisted
	Oldest  time.Time // when the oldest stored entry was added; zero if empty
	LastSeq uint64    // the last sequence number handed out; 0 if none yet
}

// Outbox is a durable queue of entries in one bbolt file. All methods are
// safe for concurrent use: appends, acks and reads may come from different
// goroutines. Writes (Append, Ack) are serialised; reads (Pending, Stats,
// Wait) do not wait for a write's fsync.
type Outbox struct {
	db     *bolt.DB
	opts   Options
	log    *slog.Logger
	epoch  string
	closed chan struct{} // closed by Close

	// wmu serialises write transactions together with the update of st
	// they imply, so st changes in commit order.
	wmu      sync.Mutex
	dropping bool // the last Append dropped entries; guarded by wmu

	// mu guards the fields below.
	mu     sync.Mutex
	st     Stats
	notify chan struct{} // closed and replaced on each Append
	isDone bool
}

// Close releases the file. It waits for transactions in progress. Channels
// returned by Wait are closed; later calls fail.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.isDone {
		o.mu.Unlock()
		return nil
	}
	o.isDone = true
	close(o.closed)
	close(o.notify)
	o.mu.Unlock()
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox: close %s: %w", o.opts.Path, err)
	}
	return nil
}

// Epoch names this outbox file: a random token of 16 characters [a-z0-9]
// created with the file and kept in it. Sequence numbers are unique within
// an epoch; a new file is a new epoch.
func (o *Outbox) Epoch() string { return o.epoch }

// Stats returns the current counters. It does not touch the disk.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st
}

// Wait returns a channel that is closed once an entry with a sequence
// number greater than after has been appended (immediately if one has
// been), or when the outbox is closed. A sender that has sent everything up
// to seq s sleeps on Wait(s); unlike "notify me of the next append" this
// cannot miss an append that happens between Pending and Wait.
func (o *Outbox) Wait(after uint64) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.isDone {
		return o.closed
	}
	if o.st.LastSeq > after {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return o.notify
}

// Append stores data (opaque bytes) as the next entry and returns its
// sequence number: 1, 2, 3, … never reused within the epoch. The write is
// committed and synced before Append returns. In the same transaction it
// drops the oldest entries while the total size exceeds MaxBytes or the
// oldest is older than MaxAge. data is copied; the caller may reuse it.
func (o *Outbox) Append(data []byte) (uint64, error) {
	size := int64(len(data)) + EntryOverhead
	if size > o.opts.MaxBytes {
		return 0, fmt.Errorf("outbox: append %d bytes (+%d overhead) to an outbox bounded to %d: %w",
			len(data), EntryOverhead, o.opts.MaxBytes, ErrTooLarge)
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	st := o.Stats()
	if st.LastSeq == math.MaxUint64 {
		return 0, errors.New("outbox: sequence numbers exhausted")
	}
	now := o.opts.Now()
	seq := st.LastSeq + 1
	var dropped int
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		key := seqKey(seq)
		if err := entries.Put(key, encodeValue(key, now, data)); err != nil {
			return err
		}
		if err := meta.Put(keyLastSeq, u64(seq)); err != nil {
			return err
		}
		st.LastSeq = seq
		st.Depth++
		st.Bytes += size
		if st.Depth == 1 {
			st.Oldest = now
		}
		var err error
		dropped, err = o.enforceLocked(tx, &st, now)
		return err
	})
	if err != nil {
		return 0, o.txErr("append", err)
	}
	if dropped > 0 {
		lvl := slog.LevelDebug
		if !o.dropping {
			lvl = slog.LevelWarn // the first of a run of drops
		}
		o.log.Log(context.Background(), lvl, "outbox full: dropped oldest entries",
			"dropped", dropped, "dropped_total", st.Dropped, "depth", st.Depth, "bytes", st.Bytes)
	}
	o.dropping = dropped > 0
	o.mu.Lock()
	o.st = st
	if !o.isDone { // Close closed notify
		close(o.notify)
		o.notify = make(chan struct{})
	}
	o.mu.Unlock()
	return seq, nil
}

// enforceLocked deletes the oldest entries while st is over a bound, adds
// them to st.Dropped and persists it. The caller holds wmu and tx is
// writable.
func (o *Outbox) enforceLocked(tx *bolt.Tx, st *Stats, now time.Time) (int, error) {
	entries := tx.Bucket(bucketEntries)
	c := entries.Cursor()
	n := 0
	for k, v := c.First(); k != nil; k, v = c.First() {
		added, _ := valueAdded(v)
		if st.Bytes <= o.opts.MaxBytes && now.Sub(added) <= o.opts.MaxAge {
			break
		}
		if err := c.Delete(); err != nil {
			return n, err
		}
		st.Depth--
		st.Bytes -= int64(len(k) + len(v))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	st.Dropped += uint64(n)
	st.Oldest = oldest(entries)
	return n, tx.Bucket(bucketMeta).Put(keyDropped, u64(st.Dropped))
}

// Pending returns up to limit entries with a sequence number greater than
// after, oldest first. The entries are copies. limit must be positive.
func (o *Outbox) Pending(after uint64, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("outbox: pending: limit %d must be positive", limit)
	}
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := decodeEntry(k, v, true)
			if err != nil {
				// Damaged on the medium since Open checked it. Sending it
				// would forward garbage; it stays until acked, dropped by
				// the bounds, or dropped by the next Open.
				o.log.Warn("outbox: skipping damaged entry", "seq", binary.BigEndian.Uint64(k), "err", err)
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, o.txErr("pending", err)
	}
	return out, nil
}

// Ack deletes the entries with the given sequence numbers in one synced
// transaction. Unknown or already deleted numbers are ignored: acks may
// repeat.
func (o *Outbox) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	st := o.Stats()
	n := 0
	err := o.db.Update(func(tx *bolt.Tx) error {
		entries := tx.Bucket(bucketEntries)
		for _, seq := range seqs {
			k := seqKey(seq)
			v := entries.Get(k)
			if v == nil {
				continue
			}
			st.Depth--
			st.Bytes -= int64(len(k) + len(v))
			if err := entries.Delete(k); err != nil {
				return err
			}
			n++
		}
		if n > 0 {
			st.Oldest = oldest(entries)
		}
		return nil
	})
	if err != nil {
		return o.txErr("ack", err)
	}
	if n > 0 {
		o.mu.Lock()
		o.st = st
		o.mu.Unlock()
	}
	return nil
}

// txErr wraps the error of a transaction.
func (o *Outbox) txErr(op string, err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("outbox: %s: %w", op, errClosed)
	}
	return fmt.Errorf("outbox: %s: %w", op, err)
}

// oldest returns when the first entry of b was added, or the zero time.
func oldest(b *bolt.Bucket) time.Time {
	_, v := b.Cursor().First()
	if v == nil {
		return time.Time{}
	}
	t, _ := valueAdded(v)
	return t
}

func seqKey(seq uint64) []byte { return u64(seq) }

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

// encodeValue builds crc32c(key|added|data) | added | data.
func encodeValue(key []byte, added time.Time, data []byte) []byte {
	v := make([]byte, headerLen+len(data))
	binary.BigEndian.PutUint64(v[4:12], uint64(added.UnixNano()))
	copy(v[headerLen:], data)
	binary.BigEndian.PutUint32(v[0:4], entryCRC(key, v))
	return v
}

func entryCRC(key, v []byte) uint32 {
	c := crc32.Update(0, crcTable, key)
	return crc32.Update(c, crcTable, v[4:])
}

// valueAdded returns the added time of a stored value, or the zero time
// (which every age bound exceeds) if the value is too short to hold one.
func valueAdded(v []byte) (time.Time, bool) {
	if len(v) < headerLen {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v[4:12]))), true
}

var errDamaged = errors.New("damaged entry")

// decodeEntry checks and decodes a stored entry; with copyData it copies
// the data out of bbolt's memory map.
func decodeEntry(k, v []byte, copyData bool) (Entry, error) {
	if len(k) != keyLen {
		return Entry{}, fmt.Errorf("%w: key of %d bytes", errDamaged, len(k))
	}
	added, ok := valueAdded(v)
	if !ok {
		return Entry{}, fmt.Errorf("%w: value of %d bytes", errDamaged, len(v))
	}
	if got, want := entryCRC(k, v), binary.BigEndian.Uint32(v[0:4]); got != want {
		return Entry{}, fmt.Errorf("%w: crc32c %08x, stored %08x", errDamaged, got, want)
	}
	e := Entry{Seq: binary.BigEndian.Uint64(k), Added: added, Data: v[headerLen:]}
	if copyData {
		e.Data = append([]byte{}, e.Data...)
	}
	return e, nil
}

var _ io.Closer = (*Outbox)(nil)
