package agentd

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/agent/sample"
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
	out, err := decodeEntry(data)
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
	if _, err := decodeEntry([]byte("not deflate")); err == nil {
		t.Error("garbage decoded")
	}
}
