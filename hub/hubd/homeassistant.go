package hubd

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
)

// haLink connects the Home Assistant bridge to the rest of the hub: the
// registry's changes and the command results from the event bus, fresh
// metrics from the ingester, HA's messages from the broker, and an
// announcement after every connection to the broker (the embedded broker
// keeps retained messages in memory only).
type haLink struct {
	bridge  *homeassistant.Bridge
	reg     *registry.Registry
	evbus   *events.Bus
	log     *slog.Logger
	metrics chan string   // devices with newly stored metrics
	connect chan struct{} // the bus (re)connected
}

func newHALink(b *homeassistant.Bridge, reg *registry.Registry, evbus *events.Bus, log *slog.Logger) *haLink {
	return &haLink{bridge: b, reg: reg, evbus: evbus, log: log, metrics: make(chan string, 256), connect: make(chan struct{}, 1)}
}

// connected is called from the bus's OnConnect.
func (l *haLink) connected() {
	select {
	case l.connect <- struct{}{}:
	default:
	}
}

// stored is called after a device's metrics are committed; it never blocks
// the ingester (a dropped notice is made up by the next batch).
func (l *haLink) stored(dev string) {
	select {
	case l.metrics <- dev:
	default:
	}
}

// handle receives HA's messages. A retained command is a command replayed
// from the past (a retained "ON" left by a misconfigured client), not one
// to apply now. Commands wait for the device, so each runs on its own.
func (l *haLink) handle(ctx context.Context, m bus.Message) {
	if m.Retained && strings.HasSuffix(m.Topic, "/set") {
		l.log.Warn("retained Home Assistant command ignored", "topic", m.Topic)
		return
	}
	go l.bridge.HandleMessage(ctx, m.Topic, m.Payload)
}

// run keeps Home Assistant up to date until ctx is done. Every 15 s it
// also re-checks every device, which republishes only what changed (a new
// name, label or hardware from a register message).
func (l *haLink) run(ctx context.Context) {
	_, sub := l.evbus.Subscribe(0)
	defer func() { sub.Close() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.connect:
			l.bridge.AnnounceAll(ctx)
		case dev := <-l.metrics:
			l.bridge.MetricsUpdated(ctx, dev)
		case <-tick.C:
			for _, d := range l.reg.List() {
				l.bridge.DeviceChanged(ctx, d)
			}
		case e, ok := <-sub.C:
			if !ok {
				// Fell behind: start over from the registry.
				_, sub = l.evbus.Subscribe(0)
				l.bridge.AnnounceAll(ctx)
				continue
			}
			l.event(ctx, e)
		}
	}
}

func (l *haLink) event(ctx context.Context, e events.Event) {
	switch e.Type {
	case events.DeviceJoined, events.DeviceState:
		if d, err := l.reg.Get(e.Device); err == nil {
			l.bridge.DeviceChanged(ctx, d)
		}
	case events.DeviceLeft:
		l.bridge.DeviceRemoved(ctx, e.Device)
	case events.Command:
		var r command.Record
		if err := json.Unmarshal(e.Data, &r); err == nil {
			l.bridge.CommandDone(ctx, r)
		}
	}
}
