package telemetry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// TestAckTellsTheHubsTime: an ack of published batches gives HubTime its
// envelope time and when the oldest of them was published; an ack of
// batches not in flight (sent by a previous session) gives nothing.
func TestAckTellsTheHubsTime(t *testing.T) {
	ob, err := OpenOutbox(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	s, err := sample.New(sample.Config{Enabled: []string{"memory"}})
	if err != nil {
		t.Fatal(err)
	}
	type call struct{ hub, sent time.Time }
	var calls []call
	tel, err := New(Config{Every: time.Second, HubTime: func(hub, sent time.Time) { calls = append(calls, call{hub, sent}) }}, ob, s)
	if err != nil {
		t.Fatal(err)
	}
	sent1, sent2 := time.Date(2026, 6, 1, 6, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 6, 0, 1, 0, time.UTC)
	tel.inflight[1], tel.inflight[2] = sent2, sent1
	hub := time.Date(2026, 6, 1, 6, 0, 2, 0, time.UTC)
	for _, seqs := range [][]uint64{{1, 2}, {3}} {
		msg, err := protocol.Encode("hub1", hub, &protocol.MetricsAck{Epoch: ob.Epoch(), Seqs: seqs})
		if err != nil {
			t.Fatal(err)
		}
		tel.HandleAck(context.Background(), bus.Message{Payload: msg})
	}
	if len(calls) != 1 || !calls[0].hub.Equal(hub) || !calls[0].sent.Equal(sent1) {
		t.Errorf("HubTime calls %v, want one with the hub's time %v and the oldest publish %v", calls, hub, sent1)
	}
}
