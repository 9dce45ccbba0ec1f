// Package telemetry is the agent's metrics pipeline: a collector that
// appends one batch per interval (host collectors from agent/sample plus
// the hardware's sensors) to the durable outbox, and a sender that
// publishes the unacknowledged batches on the bus and deletes them on the
// hub's ack. Only the agent's composition root (agent/agentd) imports it.
//
// # Entries
//
// An outbox entry is one collection, {"time", "points"} as JSON, compressed
// as one raw DEFLATE block with fixed Huffman codes by a stack-only encoder
// (deflate.go: compress/flate's writer would cost about 1 MiB). The sender
// decodes it with compress/flate's reader and wraps it in a protocol.Metrics
// message with the outbox's epoch and the entry's sequence number.
//
// # Delivery
//
// The collector appends whether or not the hub is reachable. The sender
// keeps at most 64 batches published but unacknowledged; after every
// (re)connect, after a failed publish and when no ack came for 15 s it
// starts again from the oldest entry. The hub acknowledges a batch only
// after its synced commit and drops duplicates by (device, epoch, seq), so
// delivery is at-least-once end to end and each batch is stored once.
//
// # Crashes
//
// Every append and ack is an fsynced transaction of agent/outbox. A crash
// (kill -9, power loss) loses at most the collection in progress: every
// batch appended before it is sent after the restart, those acknowledged
// before it are not. A batch published but not yet acknowledged is sent
// again; the hub deduplicates it. An outbox file the agent cannot read is
// moved aside as outbox.db.corrupt-<unix time> by OpenOutbox and a new one
// (a new epoch) is started: its unsent batches are lost, and said so in
// the log.
package telemetry
