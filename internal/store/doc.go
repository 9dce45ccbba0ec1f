// Package store is the hub's durable key-value storage: named keyspaces with
// typed get/put/scan, atomic transactions across keyspaces and a value-log GC
// loop, on top of github.com/dgraph-io/badger/v4. Only the hub (hub/...) may
// import it; the agent must not, and it must only run on 64-bit platforms:
// badger panics and loses data on 32-bit ARM.
//
// # Durability
//
// Badger is opened with SyncWrites=true, so every commit (Put, Delete,
// Update, UpdateLazy) has been written to the write-ahead log and the value
// log and msync'ed (MS_SYNC, i.e. fsync of the file) before it returns.
// Opening with SyncWrites=false and calling badger's DB.Sync after each
// commit is not enough in badger v4.9.6: Sync msyncs only the active
// memtable WAL and the active value-log file, so an entry that landed in a
// file rotated between the commit and the Sync (memtable rotation caused by a
// concurrent write; value-log rotation, even caused by the same write) stays
// unsynced, and value-log GC moves live entries through the unsynced path
// before it deletes the old file. Badger logs, but does not return, a failed
// value-log msync; the store catches that through its logger adapter and then
// refuses every further write (see "Write failures").
//
// # Write failures
//
// After a disk write or sync failure the store refuses all writes until the
// process restarts: on Linux a failed fsync may drop the dirty pages, so a
// later successful sync proves nothing. Reads keep working. Writes are also
// refused with ErrDiskFull while the file system holding the data directory
// has less than Options.MinFreeBytes free, because badger writes through
// mmap into preallocated sparse files, and running out of blocks there is a
// SIGBUS that kills the process rather than an error.
//
// # Damaged data
//
// Badger v4.9.6 turns several kinds of damage into a crash or into silent
// loss rather than an error: a damaged table index panics in one of its
// goroutines, a table failing its checksum is skipped, a lost or truncated
// MANIFEST starts an empty database (and deletes the tables), and a value
// that cannot be read from the value log comes back empty. So Open first
// checks the MANIFEST, the header of every log file and every table (by
// default every block and every live value as well; see Options.FastOpen)
// and fails with ErrCorrupt, and reads return ErrCorrupt for an unreadable
// value instead of an empty one. Still undetected: a table block damaged
// after Open can end a Scan early without an error, and damage inside a WAL
// (*.mem) file is taken for the torn tail of a crash: badger truncates the
// file there, dropping the entries after it.
//
// # Backup
//
// DB.Backup writes a consistent snapshot (one read timestamp) while writes
// go on; Restore loads one into a new store. The stream wraps badger's own
// backup format in CRC-32C-checked frames of at most 1 MiB and ends with a
// SHA-256 of them all, because badger's Load trusts each record's length
// and takes a stream cut at a record boundary for a whole one: Restore
// refuses a truncated or damaged stream (ErrBadBackup, naming the byte)
// before badger reads it, and removes what it wrote.
//
// # Concurrency
//
// A DB and its Keyspaces are safe for concurrent use. Close waits for
// operations in flight; operations started after Close fail with ErrClosed.
package store
