package telemetry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/protocol"
)

// TestCustomPointsInTheBatch: the custom points go into the stored batch
// after the agent's own; one named like an own point of the batch is left
// out, so a script cannot overwrite a host series.
func TestCustomPointsInTheBatch(t *testing.T) {
	ob, err := OpenOutbox(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	s, err := sample.New(sample.Config{Enabled: []string{"memory"}})
	if err != nil {
		t.Fatal(err)
	}
	custom := []protocol.Point{
		{Name: "boiler_temperature_celsius", Value: 61.5},
		{Name: "memory_used_ratio", Value: 0.01}, // the host's
		{Name: "agent_outbox_batches", Value: 1e6},
	}
	tel, err := New(Config{Every: time.Second, Custom: func() []protocol.Point { return custom }}, ob, s)
	if err != nil {
		t.Fatal(err)
	}
	tel.collectOnce(context.Background())
	entries, err := ob.Pending(0, 10)
	if err != nil || len(entries) != 1 {
		t.Fatalf("pending: %d entries, %v", len(entries), err)
	}
	var dec entryDecoder
	b, err := dec.decode(entries[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range b.Points {
		count[p.Name]++
		if p.Name == "memory_used_ratio" && p.Value == 0.01 || p.Name == "agent_outbox_batches" && p.Value == 1e6 {
			t.Errorf("the custom %s replaced the agent's", p.Name)
		}
	}
	if last := b.Points[len(b.Points)-1]; last.Name != "boiler_temperature_celsius" || last.Value != 61.5 {
		t.Errorf("last point %+v, want the custom boiler_temperature_celsius", last)
	}
	for _, n := range []string{"memory_used_ratio", "agent_outbox_batches", "boiler_temperature_celsius"} {
		if count[n] != 1 {
			t.Errorf("%s: %d points, want 1", n, count[n])
		}
	}
}
