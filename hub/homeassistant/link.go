package homeassistant

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
)

// Link connects the Bridge to the rest of the hub: the registry's
// changes and the command results from the event stream, fresh metrics
// from the ingester (Stored), Home Assistant's messages from the broker
// (Handle), and an announcement after every connection to the broker
// (Connected: the embedded broker keeps retained messages in memory
// only). Run does all of it in goroutines it owns: one that follows the
// hub, and linkWorkers that carry out Home Assistant's commands (each
// waits for its device's result).
type Link struct {
	bridge   *Bridge
	devices  LinkDevices
	events   *events.Bus
	log      *slog.Logger
	metrics  chan string   // devices with newly stored metrics
	connect  chan struct{} // the bus (re)connected
	messages chan bus.Message
}

// LinkDevices is what the Link reads of the registry.
type LinkDevices interface {
	List() []registry.Device
	Get(id string) (registry.Device, error)
}

const (
	// linkWorkers bounds the Home Assistant commands carried out at once.
	linkWorkers = 4
	// linkQueue bounds the Home Assistant messages waiting for a worker;
	// past it, messages are dropped (and logged).
	linkQueue = 64
)

// NewLink returns a Link for b. It starts nothing: call Run.
func NewLink(b *Bridge, devices LinkDevices, ev *events.Bus, log *slog.Logger) *Link {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Link{bridge: b, devices: devices, events: ev, log: log, metrics: make(chan string, 256), connect: make(chan struct{}, 1),
		messages: make(chan bus.Message, linkQueue)}
}

// Connected is called after every connection of the hub to the broker
// (bus.Client.OnConnect); it never blocks.
func (l *Link) Connected(context.Context) {
	select {
	case l.connect <- struct{}{}:
	default:
	}
}

// Stored is called after a device's metrics are committed; it never blocks
// the ingester (a dropped notice is made up by the next batch).
func (l *Link) Stored(dev string) {
	select {
	case l.metrics <- dev:
	default:
	}
}

// Handle receives Home Assistant's messages (a bus.Handler for the
// Bridge's Subscriptions). A retained command is a command replayed from
// the past (a retained "ON" left by a misconfigured client), not one to
// apply now. It never blocks: past linkQueue waiting messages, it drops.
func (l *Link) Handle(_ context.Context, m bus.Message) {
	if m.Retained && strings.HasSuffix(m.Topic, "/set") {
		l.log.Warn("retained Home Assistant command ignored", "topic", m.Topic)
		return
	}
	select {
	case l.messages <- m:
	default:
		l.log.Warn("Home Assistant message dropped: too many waiting", "topic", m.Topic)
	}
}

// Run keeps Home Assistant up to date and carries out its commands until
// ctx is done; it returns when every goroutine it started has.
func (l *Link) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range linkWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-l.messages:
					l.bridge.HandleMessage(ctx, m.Topic, m.Payload)
				}
			}
		}()
	}
	l.follow(ctx)
	wg.Wait()
	return nil
}

// follow keeps Home Assistant up to date until ctx is done. Every 15 s it
// also re-checks every device, which republishes only what changed (a new
// name, label or hardware from a register message).
func (l *Link) follow(ctx context.Context) {
	_, sub := l.events.Subscribe(0)
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
			for _, d := range l.devices.List() {
				l.bridge.DeviceChanged(ctx, d)
			}
		case e, ok := <-sub.C:
			if !ok {
				// Fell behind: start over from the registry.
				_, sub = l.events.Subscribe(0)
				l.bridge.AnnounceAll(ctx)
				continue
			}
			l.event(ctx, e)
		}
	}
}

func (l *Link) event(ctx context.Context, e events.Event) {
	switch e.Type {
	case events.DeviceJoined, events.DeviceState:
		if d, err := l.devices.Get(e.Device); err == nil {
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
