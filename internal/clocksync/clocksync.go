package clocksync

import (
	"fmt"
	"os"
	"time"
)

// Policy says how a clock is judged.
type Policy string

const (
	// Kernel trusts the clock once the kernel (or systemd-timesyncd) says
	// it is synchronised.
	Kernel Policy = "kernel"
	// Trust always trusts it.
	Trust Policy = "trust"
)

// ParsePolicy checks a policy's name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case Kernel, Trust:
		return p, nil
	}
	return "", fmt.Errorf("clock policy %q: want kernel or trust", s)
}

// timesyncdFlag is the file systemd-timesyncd creates once synchronised.
const timesyncdFlag = "/run/systemd/timesync/synchronized"

// Synced reports whether the clock is trusted under p, and if not, why.
func Synced(p Policy) (bool, string) {
	if p == Trust {
		return true, ""
	}
	ok, err := kernelSynced()
	if ok {
		return true, ""
	}
	if _, serr := os.Stat(timesyncdFlag); serr == nil {
		return true, ""
	}
	if err != nil {
		return false, "the kernel's clock state cannot be read: " + err.Error()
	}
	return false, "the kernel says the clock is not synchronised (no NTP sync yet)"
}

// MaxSkew is how far an agent's clock may be from its hub's for Agrees.
const MaxSkew = 5 * time.Second

// Agrees reports whether local time is within MaxSkew of a hub's time
// read from a message that took at most transit to arrive.
func Agrees(local, hub time.Time, transit time.Duration) bool {
	d := local.Sub(hub)
	return d > -MaxSkew && d < MaxSkew+transit
}
