package jobs

import (
	"log/slog"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/clocksync"
)

// clock says whether the device's clock may be trusted for calendar jobs:
// the kernel says it is synchronised (ClockOK), or it agreed with the
// hub's at the last comparison. What the hub taught is not saved: a device
// without a real-time clock restarts at a wrong time, and must learn again.
type clock struct {
	kernel func() (bool, string)
	now    func() time.Time
	log    *slog.Logger

	// mu guards the fields below.
	mu      sync.Mutex
	hub     bool          // the last comparison with the hub's clock agreed
	skew    time.Duration // the local clock minus the hub's, at the last comparison
	waiting bool          // the last check said no (logged once per change)
	checked bool          // a check was made
}

// HubTime compares the device's clock with the hub's: hub is the time in
// a message the hub created after the agent sent, at sent (the device's
// clock), what the message answers. A comparison that agrees within
// clocksync.MaxSkew (plus the round trip) makes calendar jobs trust the
// clock for the process's life, until a comparison disagrees.
func (c *clock) HubTime(hub, sent time.Time) {
	local := c.now()
	transit := local.Sub(sent)
	if hub.IsZero() || sent.IsZero() || transit < 0 {
		return
	}
	ok := clocksync.Agrees(local, hub, transit)
	c.mu.Lock()
	defer c.mu.Unlock()
	skew := local.Sub(hub)
	switch {
	case ok && !c.hub:
		c.log.Info("the device's clock agrees with the hub's", "skew", skew.Round(time.Millisecond), "round_trip", transit.Round(time.Millisecond))
	case !ok && c.hub:
		c.log.Warn("the device's clock no longer agrees with the hub's", "skew", skew.Round(time.Millisecond), "round_trip", transit.Round(time.Millisecond))
	case !ok && (c.skew == 0 || (skew-c.skew).Abs() > time.Minute):
		c.log.Info("the device's clock does not agree with the hub's", "skew", skew.Round(time.Millisecond), "round_trip", transit.Round(time.Millisecond))
	}
	c.hub, c.skew = ok, skew
}

// fromHub reports whether the last comparison with the hub's clock agreed.
func (c *clock) fromHub() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hub
}

// ok reports whether calendar jobs may fire, and logs when that changes
// (once when they start waiting, once when they start firing).
func (c *clock) ok() bool {
	ok, why := c.kernel()
	c.mu.Lock()
	defer c.mu.Unlock()
	source := "kernel"
	if !ok && c.hub {
		ok, source = true, "hub"
	}
	switch {
	case !ok && (!c.waiting || !c.checked):
		c.log.Warn("calendar jobs wait for a trustworthy clock (kernel NTP sync, or agreement with the hub's clock)", "reason", why)
	case ok && (c.waiting || !c.checked):
		c.log.Info("the clock is trustworthy: calendar jobs fire", "source", source)
	}
	c.waiting, c.checked = !ok, true
	return ok
}
