// Package household watches the LAN for the household's other devices and
// services (printers, speakers, Home Assistant, ESPHome nodes, web UIs) by
// browsing a configurable list of DNS-SD service types with mDNS, and keeps
// what it sees with first and last seen times, forgetting what stops
// answering. The hub serves the list at GET /api/v1/discovered.
//
// Only the hub's composition root imports it.
package household

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/alicia-home/alicia/internal/discovery"
)

// DefaultTypes are the service types browsed when Config.Types is empty.
var DefaultTypes = []string{
	"_http._tcp", "_hap._tcp", "_googlecast._tcp", "_sonos._tcp", "_ipp._tcp",
	"_esphomelib._tcp", "_home-assistant._tcp", "_mqtt._tcp", "_airplay._tcp", "_spotify-connect._tcp",
}

// Service is one service instance seen on the LAN.
type Service struct {
	Instance  string            `json:"name"`
	Type      string            `json:"type"`
	Addrs     []string          `json:"addresses"`
	Port      int               `json:"port"`
	TXT       map[string]string `json:"txt"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
}

// Config configures a Watcher. The zero value works.
type Config struct {
	// Types are the DNS-SD service types to browse; default DefaultTypes.
	Types []string
	// Expiry forgets a service not seen for this long. Default 3 minutes
	// (browsing re-reports live services about every 30 s).
	Expiry time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Watch browses one service type; default discovery.Watch. Tests of
	// this package replace it.
	Watch func(ctx context.Context, service string, seen func(discovery.Candidate), log *slog.Logger) error
	// Logger; nil discards.
	Logger *slog.Logger
}

// Watcher keeps the services seen on the LAN. Its methods are safe for
// concurrent use.
type Watcher struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // guards services
	services map[string]*Service
}

// New returns a Watcher. It does no I/O.
func New(cfg Config) *Watcher {
	if len(cfg.Types) == 0 {
		cfg.Types = DefaultTypes
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = 3 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Watch == nil {
		cfg.Watch = discovery.Watch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{cfg: cfg, log: cfg.Logger, services: map[string]*Service{}}
}

// Run browses every type until ctx is done, expiring services not seen
// for Expiry.
func (w *Watcher) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, typ := range w.cfg.Types {
		g.Go(func() error {
			return w.cfg.Watch(gctx, typ, func(c discovery.Candidate) { w.Seen(typ, c) }, w.log)
		})
	}
	g.Go(func() error {
		t := time.NewTicker(w.cfg.Expiry / 6)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				w.Expire()
			}
		}
	})
	return g.Wait()
}

// Seen records a sighting of a service of type typ.
func (w *Watcher) Seen(typ string, c discovery.Candidate) {
	now := w.cfg.Now()
	addrs := make([]string, len(c.Addrs))
	for i, a := range c.Addrs {
		addrs[i] = a.String()
	}
	key := typ + "/" + c.Instance
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.services[key]
	if !ok {
		s = &Service{Instance: c.Instance, Type: typ, FirstSeen: now}
		w.services[key] = s
		w.log.Debug("household service seen", "type", typ, "name", c.Instance)
	}
	s.Addrs, s.Port, s.TXT, s.LastSeen = addrs, c.Port, maps.Clone(c.TXT), now
}

// Expire forgets services not seen for Expiry.
func (w *Watcher) Expire() {
	cutoff := w.cfg.Now().Add(-w.cfg.Expiry)
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, s := range w.services {
		if s.LastSeen.Before(cutoff) {
			delete(w.services, k)
		}
	}
}

// List returns the services seen, by type and then name.
func (w *Watcher) List() []Service {
	w.mu.Lock()
	out := make([]Service, 0, len(w.services))
	for _, s := range w.services {
		c := *s
		c.Addrs, c.TXT = slices.Clone(s.Addrs), maps.Clone(s.TXT)
		out = append(out, c)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Instance, b.Instance))
	})
	return out
}
