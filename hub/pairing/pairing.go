// Package pairing is the hub's pairing window: for at most five minutes,
// opened by an administrator, agents without a join token may ask to pair
// and wait as pending devices for approval (kept by hub/registry, for at
// most registry.Config.PendingTTL). The window lives in memory only, so a
// hub restart closes it.
package pairing

import (
	"fmt"
	"sync"
	"time"
)

// MaxDuration is the longest a pairing window stays open.
const MaxDuration = 5 * time.Minute

// Window is the pairing window. The zero value is closed and uses
// time.Now; it is safe for concurrent use.
type Window struct {
	// Now returns the current time; nil means time.Now. Set it before use.
	Now func() time.Time

	mu    sync.Mutex
	until time.Time
}

func (w *Window) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Open opens the window for d (0 < d ≤ MaxDuration), or extends or
// shortens an open one to end d from now, and returns when it closes.
func (w *Window) Open(d time.Duration) (time.Time, error) {
	if d <= 0 || d > MaxDuration {
		return time.Time{}, fmt.Errorf("pairing window: duration %s out of range (0, %s]", d, MaxDuration)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.until = w.now().Add(d)
	return w.until, nil
}

// Close closes the window at once.
func (w *Window) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.until = time.Time{}
}

// ClosesAt reports whether the window is open now and, if so, when it
// closes.
func (w *Window) ClosesAt() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.until.IsZero() || !w.now().Before(w.until) {
		return time.Time{}, false
	}
	return w.until, true
}
