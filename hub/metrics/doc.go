// Package metrics is the hub's time-series store for device telemetry, on
// the hub's badger store (internal/store), and the ingest pipeline that
// commits batches from the bus and only then acknowledges them to the
// agents.
//
// # Guarantees
//
// A batch is identified by (device, epoch, seq) (protocol.Metrics). Ingest
// commits a group of batches in one synced transaction together with a
// "seen" mark per batch; a batch whose mark exists is a duplicate and is not
// stored again. Acks are published only after the commit, for new batches
// and duplicates alike, so an agent whose ack was lost is acknowledged when
// it resends. If the store refuses writes (disk full, I/O error), nothing is
// acknowledged and the agents keep their batches.
//
// # Bounds: one device cannot hurt the others
//
// Each device has at most Config.MaxSeriesPerDevice series in the catalog
// (DefaultMaxSeriesPerDevice). A sample of a new series past the limit is
// left out of its batch's row, which is stored and acknowledged as usual
// (so the agent does not resend it forever); the refusal is counted
// (Stats, SeriesStats, the hub's /metrics) and the device's Latest carries
// SeriesLimitedName = 1, which the default series_limit alert rule
// watches. When a device is at its limit, series that had no sample for
// the raw retention are evicted from the catalog to make room (at most
// once a minute). Catalog writes and deletes, and rollup writes, go in
// transactions of at most 1,000 keys, so no device's size can make one
// too big. Every lock is per device except the one on the map of devices,
// which is held only for O(1) or O(devices) work: a device's series cost
// only that device's lock. A rollup that fails is counted and retried at
// the next pass without stopping the other devices' rollups.
//
// # Key layout
//
// All keys are text (the store forbids NUL bytes); times and sequence
// numbers are fixed-width lowercase hex so that byte order is time order.
//
//	mseries/<device>/<sid>             → JSON {"name","labels"}: the series catalog
//	mrows/<device>/<ms>/<epoch>/<seq>  → the batch's row (see below); TTL = raw retention
//	mseen/<device>/<epoch>/<seq>       → empty; TTL = raw retention (dedup marks)
//	mdrop/<device>                     → JSON {"epoch","dropped"}: the agent's latest outbox drop count
//
// <sid> is the first 8 bytes of SHA-256 over the series' canonical form
// (name, then labels sorted by name), in hex; <ms> is the batch's time in
// Unix milliseconds. A row holds all samples of one batch: a version byte,
// then per series its 8 sid bytes and its value (IEEE 754 float64,
// big-endian), ordered by sid. One key per batch instead of one per sample
// is what lets badger take 100k samples/s on two cores: its cost is per
// key. A range query of one series scans the device's rows in the range
// and picks the series out of each by binary search. Retention is enforced
// by badger's per-entry TTL, so it costs no deletes; compaction reclaims
// the space. Rollups are in rollup.go; queries over many devices
// (Aggregate: grouped operations and top-N, bounded by MaxAggregateDevices,
// MaxAggregateSeries and MaxAggregatePoints) in aggregate.go, on the same
// range code as Range.
package metrics
