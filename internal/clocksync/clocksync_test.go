package clocksync

import (
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	for _, s := range []string{"kernel", "trust"} {
		if p, err := ParsePolicy(s); err != nil || string(p) != s {
			t.Errorf("ParsePolicy(%q) = %q, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("ntp"); err == nil {
		t.Error("ParsePolicy(ntp): no error")
	}
	if ok, why := Synced(Trust); !ok || why != "" {
		t.Errorf("Synced(Trust) = %v, %q", ok, why)
	}
	// The kernel's answer depends on the machine; it must give a reason
	// when it says no.
	if ok, why := Synced(Kernel); !ok && why == "" {
		t.Error("Synced(Kernel) = false without a reason")
	}
}

func TestAgrees(t *testing.T) {
	hub := time.Date(2026, 3, 29, 6, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		local   time.Time
		transit time.Duration
		want    bool
	}{
		{hub, 0, true},
		{hub.Add(4 * time.Second), 0, true},
		{hub.Add(-4 * time.Second), 0, true},
		{hub.Add(7 * time.Second), 3 * time.Second, true},
		{hub.Add(7 * time.Second), 0, false},
		{hub.Add(-6 * time.Second), 0, false},
		{time.Unix(0, 0), 0, false}, // a Pi booted in 1970
	} {
		if got := Agrees(tc.local, hub, tc.transit); got != tc.want {
			t.Errorf("Agrees(%v, %v, %v) = %v", tc.local, hub, tc.transit, got)
		}
	}
}
