package telemetry

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/protocol"
)

// TestEntryRoundTrip: an outbox entry of this machine's full collection
// decodes to what was stored, and is small (docs/metrics.md quotes the size).
func TestEntryRoundTrip(t *testing.T) {
	s, err := sample.New(sample.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.Collect(context.Background()) // the second collection has CPU usage
	points, _ := s.Collect(context.Background())
	in := storedBatch{Time: time.Now().UTC().Truncate(time.Millisecond), Points: points}
	data, err := encodeEntry(in)
	if err != nil {
		t.Fatal(err)
	}
	var dec entryDecoder
	out, err := dec.decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	t.Logf("%d points: %d bytes in the outbox", len(points), len(data))
	if len(data) > 8<<10 {
		t.Errorf("entry of %d points is %d bytes; want it compressed well below 8 KiB", len(points), len(data))
	}
	if _, err := dec.decode([]byte("not deflate")); err == nil {
		t.Error("garbage decoded")
	}
	// The decoder is reused: after garbage it still decodes, and it
	// reads entries written by compress/flate (agents before appendDeflate).
	in.Points = in.Points[:len(in.Points)/2]
	var old bytes.Buffer
	zw, _ := flate.NewWriter(&old, flate.BestSpeed)
	if err := json.NewEncoder(zw).Encode(in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err = dec.decode(old.Bytes()); err != nil {
		t.Fatalf("entry written by compress/flate: %v", err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("entry written by compress/flate (-in +out):\n%s", diff)
	}
}

// TestEncodeEntryAllocs: encoding an entry allocates about its own size,
// not compress/flate's writer of about 1 MiB.
func TestEncodeEntryAllocs(t *testing.T) {
	points := make([]protocol.Point, 60)
	for i := range points {
		points[i] = protocol.Point{Name: "filesystem_used_bytes", Value: float64(i) * 1e9, Labels: map[string]string{"mount": fmt.Sprintf("/mnt/%d", i)}}
	}
	in := storedBatch{Time: time.Now().UTC(), Points: points}
	var dec entryDecoder
	var size int
	allocs := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := encodeEntry(in)
			if err != nil {
				b.Fatal(err)
			}
			size = len(data)
			if _, err := dec.decode(data); err != nil {
				b.Fatal(err)
			}
		}
	}).AllocedBytesPerOp()
	if allocs > 64<<10 {
		t.Errorf("encoding and decoding an entry of %d bytes allocates %d bytes; want at most 64 KiB", size, allocs)
	}
}
