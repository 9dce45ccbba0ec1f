package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

func ids(es []Event) string {
	s := ""
	for _, e := range es {
		if e.Type == Reset {
			s += "R "
			continue
		}
		s += fmt.Sprintf("%d ", e.ID)
	}
	return s
}

func TestPublishSubscribeReplay(t *testing.T) {
	b := New(4, nil)
	replay, live := b.Subscribe(0)
	defer live.Close()
	if len(replay) != 0 {
		t.Fatalf("replay without Last-Event-ID: %v", replay)
	}
	for i := range 6 {
		e := b.Publish(DeviceState, "dev-a", map[string]string{"status": fmt.Sprint(i)})
		if e.ID != uint64(i+1) {
			t.Fatalf("event %d has ID %d", i, e.ID)
		}
	}
	for i := range 6 {
		select {
		case e := <-live.C:
			if e.ID != uint64(i+1) || e.Device != "dev-a" || string(e.Data) != fmt.Sprintf(`{"status":"%d"}`, i) {
				t.Fatalf("live event %d = %+v", i, e)
			}
		case <-time.After(time.Second):
			t.Fatal("live event not delivered")
		}
	}
	// The ring holds 3..6.
	for _, tt := range []struct {
		after uint64
		want  string
	}{
		{4, "5 6 "},
		{6, ""},
		{2, "3 4 5 6 "},    // nothing missed: 3 is the oldest kept
		{1, "R 3 4 5 6 "},  // 2 was dropped from the ring
		{99, "R 3 4 5 6 "}, // an ID from before a hub restart
	} {
		replay, s := b.Subscribe(tt.after)
		s.Close()
		if got := ids(replay); got != tt.want {
			t.Errorf("Subscribe(%d) replay = %q, want %q", tt.after, got, tt.want)
		}
	}
	if got := ids(b.Last(2)); got != "5 6 " {
		t.Errorf("Last(2) = %q", got)
	}
}

func TestSlowSubscriberIsCutOff(t *testing.T) {
	b := New(0, nil)
	_, slow := b.Subscribe(0)
	_, fast := b.Subscribe(0)
	got := make(chan Event)
	go func() {
		for e := range fast.C {
			got <- e
		}
		close(got)
	}()
	// The fast subscriber takes each event before the next is published;
	// the slow one never reads.
	for i := range subBuffer + 10 {
		b.Publish(DeviceState, "d", nil)
		select {
		case e := <-got:
			if e.ID != uint64(i+1) {
				t.Fatalf("fast subscriber got event %d, want %d", e.ID, i+1)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("fast subscriber did not get event %d", i+1)
		}
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != subBuffer || !slow.Lagged() {
		t.Errorf("slow subscriber got %d events, lagged %v; want %d then cut off", n, slow.Lagged(), subBuffer)
	}
	fast.Close()
	if _, ok := <-got; ok {
		t.Error("fast subscriber's channel still open after Close")
	}
	if fast.Lagged() {
		t.Error("a subscriber that kept up is marked lagged")
	}
	fast.Close() // twice is fine
}

func TestUnencodableData(t *testing.T) {
	b := New(0, nil)
	e := b.Publish(DeviceState, "", func() {})
	if string(e.Data) == "" || e.Data[0] != '{' {
		t.Errorf("data = %s, want an error object", e.Data)
	}
}

func TestForward(t *testing.T) {
	b := New(0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Event, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Forward(ctx, func(_ context.Context, e Event) error {
			got <- e
			if e.Device == "d2" {
				return errors.New("broker down") // logged, not retried
			}
			return nil
		}, slog.New(slog.DiscardHandler))
	}()
	// Forward subscribes in its goroutine: publish until it sees one.
	deadline := time.Now().Add(5 * time.Second)
	var first Event
	for first.ID == 0 && time.Now().Before(deadline) {
		b.Publish(DeviceState, "d0", nil)
		select {
		case first = <-got:
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.Publish(DeviceState, "d1", nil)
	b.Publish(DeviceState, "d2", nil)
	b.Publish(DeviceState, "d3", nil)
	var devs []string
	for len(devs) < 3 {
		select {
		case e := <-got:
			if e.Device != "d0" { // more d0 may still come
				devs = append(devs, e.Device)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("forwarded %v, want d1 d2 d3", devs)
		}
	}
	if fmt.Sprint(devs) != "[d1 d2 d3]" {
		t.Errorf("forwarded %v, want [d1 d2 d3] in order", devs)
	}
	cancel()
	<-done
}
