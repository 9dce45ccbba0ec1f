package agentd

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// retry returns the stop, not the failure of the attempt during which the
// agent was stopped (the hub answered 503 just as the agent stopped).
func TestRetryStoppedDuringAnAttempt(t *testing.T) {
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := retry(ctx, a, "enrolment", func() (int, error) {
		calls++
		cancel() // the stop arrives while the attempt is failing
		return 0, errors.New("503 Service Unavailable: down for maintenance")
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("retry = %v after %d attempts, want context.Canceled after 1", err, calls)
	}
	// A permanent failure is returned as it is, stopped or not.
	perm := errPermanent{errors.New("403: join token used up")}
	if _, err := retry(ctx, a, "enrolment", func() (int, error) { return 0, perm }); !errors.As(err, new(errPermanent)) {
		t.Errorf("permanent failure: %v", err)
	}
}
