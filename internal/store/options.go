package store

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Defaults for the zero fields of Options. They are tuned for a Raspberry Pi
// class hub (1–8 GiB RAM, SD card or USB SSD) storing control state and, later,
// metrics; badger's own defaults assume a server and use several hundred MiB.
const (
	// DefaultGCInterval: value-log GC is cheap when there is nothing to
	// reclaim, and 5 minutes bounds the garbage a busy hub accumulates.
	DefaultGCInterval = 5 * time.Minute
	// DefaultMemTableSize (badger: 64 MiB): each memtable is also a
	// preallocated 2× sized WAL file mapped into memory, and flushing one
	// builds a level-0 table of its size in memory (badger keeps up to 8
	// table builders' buffers pooled while it is busy); 4 MiB keeps the
	// resident set small while still batching writes into reasonable L0
	// tables. A transaction holds at most 15 % of it (about 600 KiB).
	DefaultMemTableSize = 4 << 20
	// DefaultBaseTableSize (badger: 2 MiB): the size of the tables
	// compaction writes at level 1 (doubling per level). A table is built
	// in memory, so smaller tables bound compaction's memory.
	DefaultBaseTableSize = 1 << 20
	// DefaultNumMemtables (badger: 5): one active and one being flushed; more
	// only buys burst absorption at a memtable of RAM each.
	DefaultNumMemtables = 2
	// DefaultValueThreshold (badger: 1 MiB): values up to 64 KiB (device
	// records, credentials, config versions, and hub/metrics' rows of up to
	// 2048 samples, 32 KiB) live in the LSM tree, are read without a second
	// lookup and, when they carry a TTL, vanish in compaction without
	// value-log GC; larger ones go to the value log. Must stay at or below
	// 15 % of MemTableSize (badger's maximum batch size).
	DefaultValueThreshold = 64 << 10
	// DefaultNumCompactors (badger: 4): two is badger's minimum (one would
	// push everything to level 2) and is what a 4-core Pi can spare.
	DefaultNumCompactors = 2
	// DefaultNumLevelZeroTables (badger: 5): compact level 0 early so reads
	// touch few tables and L0 stays small on disk.
	DefaultNumLevelZeroTables = 2
	// DefaultNumLevelZeroTablesStall (badger: 15): writes stall when level 0
	// has this many tables, i.e. when compaction cannot keep up; 8 tables of
	// ~4 MiB bound level 0 to ~32 MiB.
	DefaultNumLevelZeroTablesStall = 8
	// DefaultBlockCacheSize (badger: 256 MiB): caches decompressed blocks;
	// 8 MiB holds the hot control state of thousands of devices.
	DefaultBlockCacheSize = 8 << 20
	// DefaultIndexCacheSize (badger: 0, i.e. every table index and bloom
	// filter kept in memory without limit): 4 MiB bounds that memory as data
	// grows; indices beyond it are reloaded from disk.
	DefaultIndexCacheSize = 4 << 20
	// DefaultValueLogFileSize (badger: 1 GiB): GC reclaims space one file at
	// a time, so smaller files give space back sooner on a small SD card.
	DefaultValueLogFileSize = 64 << 20
)

// Options configures Open. The zero value of every field except Dir works;
// each zero field takes the Default… value documented beside its constant.
type Options struct {
	// Dir is the data directory. Required. Created with mode 0700 if missing.
	Dir string
	// Logger receives badger's own log lines (its info and debug lines at
	// slog.LevelDebug and below, warnings at Warn, errors at Error) and the
	// store's GC warnings. Nil discards them.
	Logger *slog.Logger
	// GCInterval is the period of the value-log GC run by DB.Run.
	// Default DefaultGCInterval.
	GCInterval time.Duration

	// MemTableSize is the size of one memtable. Default DefaultMemTableSize.
	MemTableSize int64
	// BaseTableSize is the size of compaction's tables at level 1.
	// Default DefaultBaseTableSize.
	BaseTableSize int64
	// NumMemtables is the number of memtables kept in memory (active plus
	// waiting to be flushed). Default DefaultNumMemtables.
	NumMemtables int
	// ValueThreshold is the size above which values go to the value log.
	// At most 15 % of MemTableSize. Default DefaultValueThreshold.
	ValueThreshold int64
	// NumCompactors is the number of compaction goroutines, at least 2.
	// Default DefaultNumCompactors.
	NumCompactors int
	// NumLevelZeroTables is the number of level-0 tables that triggers a
	// compaction. Default DefaultNumLevelZeroTables.
	NumLevelZeroTables int
	// NumLevelZeroTablesStall is the number of level-0 tables at which writes
	// stall. Larger than NumLevelZeroTables. Default
	// DefaultNumLevelZeroTablesStall.
	NumLevelZeroTablesStall int
	// BlockCacheSize is the size of the decompressed block cache. Default
	// DefaultBlockCacheSize.
	BlockCacheSize int64
	// IndexCacheSize is the size of the table index and bloom filter cache.
	// Default DefaultIndexCacheSize.
	IndexCacheSize int64
	// ValueLogFileSize is the size at which a value-log file is rotated, in
	// [1 MiB, 2 GiB). Default DefaultValueLogFileSize.
	ValueLogFileSize int64
	// FastOpen skips the full verification Open does by default: reading
	// every table block (checksums) and every live value once, because badger
	// reports neither damage as an error at run time (a damaged block ends an
	// iteration early; an unreadable value comes back empty, which this store
	// turns into ErrCorrupt). Open always checks the MANIFEST and every table
	// index. Set it for stores large enough that reading them at start-up
	// takes too long.
	FastOpen bool
	// MinFreeBytes is the free space the file system holding Dir must keep;
	// below it writes fail with ErrDiskFull (reads keep working). It covers
	// what badger may still write into preallocated files before it notices a
	// full disk. Default 2×ValueLogFileSize + 4×MemTableSize (144 MiB with the
	// other defaults); negative disables the check.
	MinFreeBytes int64
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.GCInterval, DefaultGCInterval)
	setDefault(&o.MemTableSize, DefaultMemTableSize)
	setDefault(&o.BaseTableSize, DefaultBaseTableSize)
	setDefault(&o.NumMemtables, DefaultNumMemtables)
	setDefault(&o.ValueThreshold, DefaultValueThreshold)
	setDefault(&o.NumCompactors, DefaultNumCompactors)
	setDefault(&o.NumLevelZeroTables, DefaultNumLevelZeroTables)
	setDefault(&o.NumLevelZeroTablesStall, DefaultNumLevelZeroTablesStall)
	setDefault(&o.BlockCacheSize, DefaultBlockCacheSize)
	setDefault(&o.IndexCacheSize, DefaultIndexCacheSize)
	setDefault(&o.ValueLogFileSize, DefaultValueLogFileSize)
	setDefault(&o.MinFreeBytes, 2*o.ValueLogFileSize+4*o.MemTableSize)
	return o
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports whether o, with its defaults applied, is usable.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Dir != "", "Dir is required")
	check(o.GCInterval > 0, "GCInterval %v must be positive", o.GCInterval)
	check(o.MemTableSize >= 1<<20, "MemTableSize %d must be at least 1 MiB", o.MemTableSize)
	check(o.BaseTableSize >= 64<<10, "BaseTableSize %d must be at least 64 KiB", o.BaseTableSize)
	check(o.NumMemtables >= 1, "NumMemtables %d must be at least 1", o.NumMemtables)
	check(o.ValueThreshold > 0 && o.ValueThreshold <= o.MemTableSize*15/100,
		"ValueThreshold %d must be in (0, 15 %% of MemTableSize = %d]", o.ValueThreshold, o.MemTableSize*15/100)
	check(o.NumCompactors >= 2, "NumCompactors %d must be at least 2", o.NumCompactors)
	check(o.NumLevelZeroTables >= 1, "NumLevelZeroTables %d must be at least 1", o.NumLevelZeroTables)
	check(o.NumLevelZeroTablesStall > o.NumLevelZeroTables,
		"NumLevelZeroTablesStall %d must be larger than NumLevelZeroTables %d",
		o.NumLevelZeroTablesStall, o.NumLevelZeroTables)
	check(o.BlockCacheSize > 0, "BlockCacheSize %d must be positive", o.BlockCacheSize)
	check(o.IndexCacheSize > 0, "IndexCacheSize %d must be positive", o.IndexCacheSize)
	check(o.ValueLogFileSize >= 1<<20 && o.ValueLogFileSize < 2<<30,
		"ValueLogFileSize %d must be in [1 MiB, 2 GiB)", o.ValueLogFileSize)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: invalid options: %w", err)
	}
	return nil
}

// badgerOptions translates o (with defaults applied) into badger's options.
func (o Options) badgerOptions(logger badger.Logger) badger.Options {
	opts := badger.DefaultOptions(o.Dir).
		WithLogger(logger).
		// Every commit is msync'ed by badger itself; see the package doc for
		// why DB.Sync after SyncWrites=false commits is not enough.
		WithSyncWrites(true).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithValueThreshold(o.ValueThreshold).
		WithNumCompactors(o.NumCompactors).
		WithNumLevelZeroTables(o.NumLevelZeroTables).
		WithNumLevelZeroTablesStall(o.NumLevelZeroTablesStall).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithBaseTableSize(o.BaseTableSize).
		// Compact level 0 on Close: a restart starts with few tables, and the
		// compaction records which value-log files hold garbage (the
		// statistics the value-log GC chooses files by).
		WithCompactL0OnClose(true).
		// Verify checksums of blocks read from disk and of value-log entries,
		// so SD-card bit rot surfaces as an error instead of wrong data. The
		// CRCs are hardware-accelerated on arm64 and amd64.
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true)
	// Every level's tables are BaseTableSize (badger doubles them per
	// level): badger builds a table in memory and keeps up to 8 builders'
	// buffers pooled, so the table size bounds its memory under load.
	opts.TableSizeMultiplier = 1
	return opts
}
