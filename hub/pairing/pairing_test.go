package pairing

import (
	"sync"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	w := &Window{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	if _, open := w.ClosesAt(); open {
		t.Fatal("a new window is open")
	}
	for _, d := range []time.Duration{0, -time.Second, MaxDuration + time.Nanosecond, time.Hour} {
		if _, err := w.Open(d); err == nil {
			t.Errorf("Open(%s) succeeded, want an error", d)
		}
	}
	until, err := w.Open(MaxDuration)
	if err != nil || !until.Equal(now.Add(MaxDuration)) {
		t.Fatalf("Open(5m) = %s, %v", until, err)
	}
	advance(MaxDuration - time.Nanosecond)
	if got, open := w.ClosesAt(); !open || !got.Equal(until) {
		t.Errorf("just before the end: ClosesAt = %s, %v; want %s, open", got, open, until)
	}
	advance(time.Nanosecond)
	if _, open := w.ClosesAt(); open {
		t.Error("the window is open at its end")
	}
	// Re-opening sets a new end; Close closes at once.
	if _, err := w.Open(time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, open := w.ClosesAt(); !open {
		t.Error("re-opened window is closed")
	}
	w.Close()
	if _, open := w.ClosesAt(); open {
		t.Error("the window is open after Close")
	}
}

func TestZeroWindowUsesWallClock(t *testing.T) {
	var w Window
	until, err := w.Open(time.Minute)
	if err != nil || time.Until(until) <= 0 || time.Until(until) > time.Minute {
		t.Fatalf("Open(1m) = %s, %v", until, err)
	}
	if _, open := w.ClosesAt(); !open {
		t.Error("the window is closed right after opening")
	}
}
