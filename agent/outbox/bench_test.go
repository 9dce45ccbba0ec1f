package outbox

import (
	"path/filepath"
	"testing"
)

// BenchmarkAppend measures a synced Append of a 2 KiB batch (one bbolt
// commit with fsync each) into a growing queue, the hub being away. Set
// TMPDIR to put the file on the storage you care about.
func BenchmarkAppend(b *testing.B) {
	o := mustOpen(b, Options{Path: filepath.Join(b.TempDir(), "outbox.db")})
	data := payload(2048 - 16)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := o.Append(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendAck measures the steady state with the hub online: each
// 2 KiB batch is appended and then acked (two synced commits).
func BenchmarkAppendAck(b *testing.B) {
	o := mustOpen(b, Options{Path: filepath.Join(b.TempDir(), "outbox.db")})
	data := payload(2048 - 16)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		seq, err := o.Append(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Ack(seq); err != nil {
			b.Fatal(err)
		}
	}
}
