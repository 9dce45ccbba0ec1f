// Package outbox is the agent's durable, bounded store-and-forward queue for
// telemetry: every batch the agent collects is appended here and stays on
// disk until the hub acknowledges it after committing it. An MQTT PUBACK is
// never proof of delivery; only the hub's application-level ack is. The
// agent's composition root opens the outbox; its collector appends, its
// sender reads Pending and its ack handler calls Ack. Nothing in hub/ may
// import it.
//
// # Layout
//
// One bbolt file (for example <state-dir>/outbox.db, mode 0600) holds two
// buckets:
//
//	meta     "version"  8 bytes, big-endian uint64: the layout version (1)
//	         "epoch"    16 bytes of [a-z0-9]: names this file (see Epoch)
//	         "last_seq" 8 bytes, big-endian: the last sequence number handed out
//	         "dropped"  8 bytes, big-endian: entries dropped since the epoch began
//	entries  key:   8 bytes, the sequence number, big-endian (so bbolt's
//	                byte order is sequence order: oldest first)
//	         value: crc32c (4 bytes, big-endian) | added (8 bytes, Unix
//	                nanoseconds, big-endian) | data
//
// The CRC-32C covers key, added and data. bbolt checksums only its meta
// pages, so this is what detects an entry damaged on the medium (SD cards
// do that). Open drops such entries (counted in Dropped and logged); Pending
// skips and logs one that goes bad while the file is open.
//
// # Durability
//
// Every Append and Ack is one bbolt read-write transaction, committed with
// fsync (fdatasync on Linux) before it returns. bbolt writes copy-on-write
// pages and switches to them by writing one of its two checksummed meta
// pages last, so a process killed at any moment (kill -9, OOM, panic) leaves
// either the state before or the state after the transaction: an Append
// that returned nil is never lost and a half-written entry is never seen.
// The same holds for power loss as long as the storage honours fsync.
//
// A new file is created under a temporary name, initialised (buckets,
// epoch), synced and then hard-linked into place, so a crash during creation
// never leaves a half-initialised file at Path. An existing file that is not
// a valid outbox (garbage, a bbolt file with other buckets, an empty file, a
// file truncated at any length that loses pages it needs)
// makes Open fail with an error wrapping ErrCorrupt: the agent moves it aside
// and opens a new file, which is a new epoch. A file another process holds
// (a second agent on the same state directory) makes Open fail after
// Options.LockTimeout with an error wrapping ErrLocked; that file must not
// be moved aside. A file readable or writable by group or others has its
// mode tightened to 0600 (logged), not refused: it holds telemetry, not
// keys, and refusing would stop the agent for a fixable permission.
//
// # Bounds
//
// An entry's size is len(data) + EntryOverhead (its key and value header).
// Each Append, in the same transaction, deletes the oldest entries while the
// total size exceeds Options.MaxBytes or the oldest entry is older than
// Options.MaxAge, and adds them to Dropped. Open applies the same bounds
// (the configuration may have shrunk). Dropping is only ever from the head,
// so a gap in the sequence numbers the hub receives is either an acked entry
// (which the hub already has) or a dropped one. An entry larger than
// MaxBytes is refused with ErrTooLarge.
//
// # Epoch
//
// Sequence numbers start at 1 and are never reused within a file, also
// across restarts (last_seq is persisted, acks do not free numbers). The
// epoch, a random token created with the file, lets the hub tell "seq 5
// again" (a resend it can deduplicate) from "seq 5 of a new file" (the state
// directory was wiped or the file moved aside): the pair (epoch, seq) is
// unique.
//
// # 32-bit
//
// bbolt memory-maps the file; the mapping starts small (Options are chosen
// for a Pi Zero's 32-bit address space) and grows with the file, which the
// default 64 MiB bound keeps far below what armv6/armv7 can map. The
// package's tests run under qemu-arm-static as an ARMv6 binary.
package outbox
