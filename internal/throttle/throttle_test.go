package throttle

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLogOneLinePerKeyAndInterval(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	l := &Log{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})), Every: 10 * time.Second, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	at := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	for range 50000 {
		l.Warn("dev-a", "device message rejected", "device", "dev-a")
	}
	l.Warn("dev-b", "device message rejected", "device", "dev-b")
	at(9 * time.Second)
	l.Warn("dev-a", "device message rejected", "device", "dev-a")
	at(time.Second)
	l.Error("dev-a", "device message rejected", "device", "dev-a")
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`level=WARN msg="device message rejected" device=dev-a`,
		`level=WARN msg="device message rejected" device=dev-b`,
		`level=ERROR msg="device message rejected" device=dev-a suppressed=50000`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestLogForgetsKeysPastTheBound(t *testing.T) {
	var buf bytes.Buffer
	l := &Log{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Every: time.Hour}
	for i := range maxKeys + 10 {
		l.Warn(strings.Repeat("k", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), "x")
	}
	l.mu.Lock()
	n := len(l.keys)
	l.mu.Unlock()
	if n > maxKeys {
		t.Errorf("%d keys remembered, want at most %d", n, maxKeys)
	}
}

func TestLogBurst(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	l := &Log{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Every: 10 * time.Second, Burst: 3, Now: func() time.Time { return now }}
	for i := range 100 {
		l.Warn("topic", "rejected", "i", i)
	}
	now = now.Add(10 * time.Second)
	l.Warn("topic", "rejected", "i", 100)
	got := strings.Count(buf.String(), "\n")
	if got != 4 || !strings.Contains(buf.String(), "i=100 suppressed=97") {
		t.Errorf("%d lines, want the burst of 3 and then one with suppressed=97:\n%s", got, &buf)
	}
}
