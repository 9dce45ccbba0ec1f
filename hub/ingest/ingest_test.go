package ingest

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

type noResults struct{}

func (noResults) HandleResult(string, *protocol.CommandResult) {}

// A device flooding the bus is held to its rate and costs a log line, not
// one per message; another device's messages still go through.
func TestIngestRateLimitPerDevice(t *testing.T) {
	db, err := store.Open(store.Options{Dir: t.TempDir(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.Open(db, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"flood", "quiet"} {
		if _, err := reg.Enroll(id, id+"-pi", nil, []byte("hash")); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := metrics.Open(db, metrics.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mi := metrics.NewIngester(ms, metrics.IngesterConfig{QueueLen: 10})
	var logs testkit.LogBuffer
	in, err := New(Config{Registry: reg, Metrics: mi, Results: noResults{}, Input: func(string, *protocol.DeviceEvent) {},
		Rate: 1, Burst: 5, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(dev string, seq uint64) bus.Message {
		b, err := protocol.Encode(dev, time.Now(), &protocol.Metrics{Epoch: "e1", Seq: seq, Time: time.Now(),
			Points: []protocol.Point{{Name: "x", Value: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return bus.Message{Topic: protocol.DeviceTopic(dev, protocol.KindMetrics), Payload: b}
	}
	const n = 5000
	for i := range n {
		in.Handle(context.Background(), msg("flood", uint64(i+1)))
	}
	// The burst (5) and at most a few tokens refilled at 1/s got through.
	if got := in.limited.Load(); got < n-10 || got > n-5 {
		t.Errorf("limited = %d of %d, want all but the burst of 5 (and a token or two refilled)", got, n)
	}
	depth := mi.QueueDepth()
	in.Handle(context.Background(), msg("quiet", 1))
	if mi.QueueDepth() != depth+1 {
		t.Errorf("the quiet device's batch was not queued while the other was limited (queue %d → %d)", depth, mi.QueueDepth())
	}
	// Bad messages within the rate: rejected and counted, one line.
	in.cfg.Rate, in.cfg.Burst, in.limiters = math.Inf(1), 1, nil
	for range 1000 {
		in.Handle(context.Background(), bus.Message{Topic: protocol.DeviceTopic("quiet", protocol.KindMetrics), Payload: []byte("x")})
	}
	if got := in.rejected.Load(); got != 1000 {
		t.Errorf("rejected = %d, want 1000", got)
	}
	if lines := logs.Lines(); len(lines) != 2*rejectLogBurst {
		t.Errorf("%d log lines for %d limited and 1000 rejected messages, want %d (a burst each):\n%s", len(lines), n, 2*rejectLogBurst, strings.Join(lines, "\n"))
	}
}

// recorder is a Metrics that records what it is given.
type recorder struct{ got []string }

func (r *recorder) Submit(src string, m *protocol.Metrics) bool {
	r.got = append(r.got, src+"/"+m.Epoch)
	return true
}

// An integration's batch is taken only from an account of kind metrics,
// about itself, on its own topic, within its rate.
func TestHandleIntegration(t *testing.T) {
	rec := &recorder{}
	in, err := New(Config{Registry: noRegistry{}, Metrics: rec, Results: noResults{}, Input: func(string, *protocol.DeviceEvent) {},
		IntegrationMetrics: func(src string) bool { return src == "int-power" || src == "int-solar" }, Rate: 1, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(topic, source, epoch string, p protocol.Payload) bus.Message {
		if p == nil {
			p = &protocol.Metrics{Epoch: epoch, Seq: 1, Time: time.Now(), Points: []protocol.Point{{Name: "x", Value: 1}}}
		}
		b, err := protocol.Encode(source, time.Now(), p)
		if err != nil {
			t.Fatal(err)
		}
		return bus.Message{Topic: topic, Payload: b}
	}
	for _, m := range []bus.Message{
		msg("alicia/v1/integrations/power/metrics", "int-power", "ok", nil),
		msg("alicia/v1/integrations/power/metrics", "int-solar", "forged", nil),
		msg("alicia/v1/integrations/ha/metrics", "int-ha", "wrongkind", nil),
		msg("alicia/v1/integrations/solar/metrics", "int-solar", "ok", nil),
		msg("alicia/v1/integrations/solar/metrics", "int-solar", "", &protocol.Heartbeat{Seq: 1}),
		msg("alicia/v1/integrations/solar/ack", "int-solar", "acktopic", nil),
		msg("alicia/v1/devices/d1/metrics", "int-solar", "devtopic", nil),
	} {
		in.HandleIntegration(context.Background(), m)
	}
	if diff := cmp.Diff([]string{"int-power/ok", "int-solar/ok"}, rec.got); diff != "" {
		t.Errorf("batches taken (-want +got):\n%s", diff)
	}
	if rejected, _ := in.Stats(); rejected != 5 {
		t.Errorf("rejected = %d, want 5", rejected)
	}
	// The per-source limit: power has used 2 of its burst of 3.
	for range 10 {
		in.HandleIntegration(context.Background(), msg("alicia/v1/integrations/power/metrics", "int-power", "more", nil))
	}
	if _, limited := in.Stats(); limited < 8 || limited > 9 {
		t.Errorf("limited = %d of 10, want 8 or 9 (a burst of 3, one used, maybe one refilled)", limited)
	}
	if !in.Allow("int-other") {
		t.Error("Allow of a source that sent nothing = false")
	}
}

type noRegistry struct{}

func (noRegistry) Allowed(string) bool                    { return false }
func (noRegistry) Handle(string, *protocol.Message) error { return nil }
