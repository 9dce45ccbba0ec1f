package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// listen stands in for systemd's notification socket.
func listen(t *testing.T) chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

func next(t *testing.T, msgs chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s")
		return ""
	}
}

func TestReadyAndStopping(t *testing.T) {
	msgs := listen(t)
	Ready("serving on :8470")
	if m := next(t, msgs); m != "READY=1\nSTATUS=serving on :8470" {
		t.Errorf("ready: %q", m)
	}
	Stopping()
	if m := next(t, msgs); m != "STOPPING=1" {
		t.Errorf("stopping: %q", m)
	}
}

func TestWatchdogPingsWhileAlive(t *testing.T) {
	msgs := listen(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: pings every 50 ms
	var alive atomic.Bool
	alive.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Watchdog(ctx, alive.Load, slog.New(slog.DiscardHandler)) }()
	for range 3 {
		if m := next(t, msgs); m != "WATCHDOG=1" {
			t.Fatalf("ping: %q", m)
		}
	}
	alive.Store(false)
	// Drain what was in flight, then expect silence.
	time.Sleep(60 * time.Millisecond) // one ping interval, on purpose
	for len(msgs) > 0 {
		<-msgs
	}
	select {
	case m := <-msgs:
		t.Errorf("pinged while not alive: %q", m)
	case <-time.After(200 * time.Millisecond): // four intervals of silence, on purpose
	}
	cancel()
	<-done
}

func TestNoSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	Ready("x") // must not fail or block
	done := make(chan struct{})
	go func() { defer close(done); Watchdog(context.Background(), nil, slog.New(slog.DiscardHandler)) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("Watchdog without a watchdog did not return")
	}
}
