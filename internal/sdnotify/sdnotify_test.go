package sdnotify

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// listen stands in for systemd's notification socket. It returns a
// function that takes the notifications sent so far without waiting: each
// is written before the call that sends it returns, so none is in flight
// once the sender waits again.
func listen(t *testing.T) func() []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return func() []string {
		t.Helper()
		var msgs []string
		buf := make([]byte, 4096)
		for {
			var n int
			var rerr error
			if err := raw.Read(func(fd uintptr) bool {
				n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
				return true // never wait for the poller
			}); err != nil {
				t.Fatal(err)
			}
			if errors.Is(rerr, syscall.EAGAIN) {
				return msgs
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			msgs = append(msgs, string(buf[:n]))
		}
	}
}

func TestReadyAndStopping(t *testing.T) {
	sent := listen(t)
	Ready("serving on :8470")
	Stopping()
	if d := cmp.Diff([]string{"READY=1\nSTATUS=serving on :8470", "STOPPING=1"}, sent()); d != "" {
		t.Errorf("ready, stopping (-want +got):\n%s", d)
	}
}

// TestWatchdogPingsWhileAlive runs in a synctest bubble: the watchdog's
// ticker runs on the bubble's clock, and synctest.Wait says when it waits
// for its next tick.
func TestWatchdogPingsWhileAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sent := listen(t)
		t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: pings every 50 ms
		var alive atomic.Bool
		alive.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); Watchdog(ctx, alive.Load, slog.New(slog.DiscardHandler)) }()
		synctest.Wait()
		if m := sent(); len(m) != 0 {
			t.Errorf("pinged %q before half the interval", m)
		}
		for range 3 {
			time.Sleep(50 * time.Millisecond) // the bubble's clock: no real wait
			synctest.Wait()
			if d := cmp.Diff([]string{"WATCHDOG=1"}, sent()); d != "" {
				t.Fatalf("ping (-want +got):\n%s", d)
			}
		}
		alive.Store(false)
		time.Sleep(200 * time.Millisecond) // four intervals of silence
		synctest.Wait()
		if m := sent(); len(m) != 0 {
			t.Errorf("pinged while not alive: %q", m)
		}
		cancel()
		<-done
	})
}

func TestNoSystemd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		t.Setenv("WATCHDOG_USEC", "")
		Ready("x") // must not fail or block
		done := make(chan struct{})
		go func() { defer close(done); Watchdog(context.Background(), nil, slog.New(slog.DiscardHandler)) }()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Error("Watchdog without a watchdog did not return")
		}
	})
}
