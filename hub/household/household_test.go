package household

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/discovery"
)

func TestSeenAndExpire(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	w := New(Config{Expiry: time.Minute, Now: func() time.Time { return now }})
	w.Seen("_ipp._tcp", discovery.Candidate{Instance: "Printer", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.20")}, Port: 631, TXT: map[string]string{"ty": "Laser"}})
	first := now
	now = now.Add(30 * time.Second)
	w.Seen("_ipp._tcp", discovery.Candidate{Instance: "Printer", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.21")}, Port: 631, TXT: map[string]string{"ty": "Laser"}})
	w.Seen("_hap._tcp", discovery.Candidate{Instance: "Lamp", Port: 8080})
	want := []Service{
		{Instance: "Lamp", Type: "_hap._tcp", Addrs: []string{}, Port: 8080, FirstSeen: now, LastSeen: now},
		{Instance: "Printer", Type: "_ipp._tcp", Addrs: []string{"198.18.0.21"}, Port: 631, TXT: map[string]string{"ty": "Laser"}, FirstSeen: first, LastSeen: now},
	}
	if diff := cmp.Diff(want, w.List()); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	now = now.Add(45 * time.Second)
	w.Seen("_hap._tcp", discovery.Candidate{Instance: "Lamp", Port: 8080})
	now = now.Add(30 * time.Second) // the printer was last seen 75 s ago
	w.Expire()
	if got := w.List(); len(got) != 1 || got[0].Instance != "Lamp" {
		t.Errorf("after expiry: %+v, want only the lamp", got)
	}
}

func TestRunBrowsesEveryType(t *testing.T) {
	seen := make(chan string, 10)
	w := New(Config{Types: []string{"_a._tcp", "_b._tcp"}, Watch: func(ctx context.Context, service string, found func(discovery.Candidate), _ *slog.Logger) error {
		found(discovery.Candidate{Instance: "x-" + service, Port: 1})
		seen <- service
		<-ctx.Done()
		return nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	got := map[string]bool{<-seen: true, <-seen: true}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !got["_a._tcp"] || !got["_b._tcp"] || len(w.List()) != 2 {
		t.Errorf("browsed %v, listed %+v", got, w.List())
	}
}
