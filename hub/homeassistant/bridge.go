package homeassistant

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Defaults and names.
const (
	// DefaultPrefix is HA's default discovery prefix.
	DefaultPrefix = "homeassistant"
	// BaseTopic is the parent of the bridge's availability, state and
	// command topics: BaseTopic/<device>/availability, …/state and
	// …/<line>/set.
	BaseTopic = protocol.Root + "/ha"
	// Actor is the actor of the commands the bridge sends, in the audit log.
	Actor = "homeassistant"
	// DefaultStateInterval is the default of Config.StateInterval.
	DefaultStateInterval = 10 * time.Second
	// publishTimeout bounds each publication, so that a stuck connection
	// does not hold the bridge forever.
	publishTimeout = 5 * time.Second
)

// Config configures a Bridge.
type Config struct {
	// Prefix is HA's discovery prefix. Default DefaultPrefix.
	Prefix string
	// Publish sends an MQTT message (QoS 1) through the hub's own bus
	// connection. Required. It is called with the bridge's lock held and a
	// context bounded to a few seconds.
	Publish func(ctx context.Context, topic string, payload []byte, retained bool) error
	// Devices returns the registry's devices. Required.
	Devices func() []registry.Device
	// Latest returns a device's latest samples. Required.
	Latest func(device string) []metrics.Sample
	// Command sends a command through the hub's command service and
	// returns its record once final (the device's result, or a timeout).
	// Required. The bridge's requests have Actor "homeassistant".
	Command func(ctx context.Context, device string, req command.Request) (command.Record, error)
	// Version is the hub's version: the origin's sw version in every
	// discovery config.
	Version string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the bridge's logs. Default: discarded.
	Logger *slog.Logger
	// StateInterval is the least time between two state publications of a
	// device from MetricsUpdated. Default DefaultStateInterval.
	StateInterval time.Duration
}

// Validate reports the first missing or invalid setting, once defaults are
// applied.
func (c *Config) Validate() error {
	switch {
	case c.Publish == nil:
		return errors.New("homeassistant: Publish is required")
	case c.Devices == nil:
		return errors.New("homeassistant: Devices is required")
	case c.Latest == nil:
		return errors.New("homeassistant: Latest is required")
	case c.Command == nil:
		return errors.New("homeassistant: Command is required")
	case c.StateInterval < 0:
		return fmt.Errorf("homeassistant: StateInterval %v is negative", c.StateInterval)
	}
	p := cmp.Or(c.Prefix, DefaultPrefix)
	if strings.ContainsAny(p, "+#\x00") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || !utf8.ValidString(p) {
		return fmt.Errorf("homeassistant: Prefix %q is not a topic prefix (no wildcards, no leading or trailing '/')", p)
	}
	return nil
}

// Bridge publishes the hub's devices to Home Assistant and turns HA's
// switch commands into device commands. Create it with New; it is safe
// for concurrent use.
type Bridge struct {
	cfg Config
	log *slog.Logger

	// mu serializes the bridge's operations and guards the fields below.
	mu sync.Mutex
	// devices holds what was published for each device in this process.
	devices map[string]*deviceState
}

// deviceState is what the bridge published for a device.
type deviceState struct {
	// config is the last discovery config published, nil if none.
	config []byte
	// comps maps the components of that config to their platforms, to
	// remove those that disappear.
	comps map[string]string
	// avail is the last availability published.
	avail string
	// state and stateAt are the last state document published and when.
	state   []byte
	stateAt time.Time
	// overrides are line levels known from commands, by line name.
	overrides map[string]override
}

// New returns a Bridge. It does no I/O.
func New(cfg Config) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	if cfg.StateInterval == 0 {
		cfg.StateInterval = DefaultStateInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{cfg: cfg, log: cfg.Logger, devices: map[string]*deviceState{}}, nil
}

// Subscriptions returns the MQTT filters whose messages the hub must pass
// to HandleMessage: HA's status topic and the switches' command topics.
func (b *Bridge) Subscriptions() []string {
	return []string{b.statusTopic(), BaseTopic + "/+/+/set"}
}

func (b *Bridge) statusTopic() string { return b.cfg.Prefix + "/status" }

func (b *Bridge) configTopic(deviceID string) string {
	return b.cfg.Prefix + "/device/" + haID(deviceID) + "/config"
}

// HandleMessage handles a message on one of the Subscriptions: HA's birth
// message ("online") re-announces every device; "ON" or "OFF" on a
// switch's command topic writes the line through Config.Command and, once
// the device confirms, publishes the new state. Anything else is logged
// with the reason it was ignored. It blocks for as long as the command
// takes (bounded by the command service's timeout and ctx).
func (b *Bridge) HandleMessage(ctx context.Context, topic string, payload []byte) {
	if topic == b.statusTopic() {
		switch string(payload) {
		case payloadOnline:
			b.log.Info("Home Assistant is online; announcing every device")
			b.AnnounceAll(ctx)
		case payloadOffline:
			b.log.Info("Home Assistant went offline")
		default:
			b.log.Warn("ignored Home Assistant status: payload is neither \"online\" nor \"offline\"",
				"topic", topic, "payload", quote(payload))
		}
		return
	}
	id, lineName, ok := parseCommandTopic(topic)
	if !ok {
		b.log.Warn("ignored message: not a Home Assistant status or switch command topic", "topic", topic)
		return
	}
	var level bool
	switch string(payload) {
	case payloadOn:
		level = true
	case payloadOff:
	default:
		b.log.Warn("ignored switch command: payload is neither \"ON\" nor \"OFF\"", "topic", topic, "payload", quote(payload))
		return
	}
	d, ok := b.device(id)
	if !ok {
		b.log.Warn("ignored switch command: no such device", "topic", topic, "device", id)
		return
	}
	if !d.Status.Accepted() {
		b.log.Warn("ignored switch command: device is not accepted", "topic", topic, "device", id, "status", string(d.Status))
		return
	}
	l, ok := findLine(d, lineName)
	if !ok {
		b.log.Warn("ignored switch command: device has no such line", "topic", topic, "device", id, "line", lineName)
		return
	}
	if l.Direction != protocol.DirOut {
		b.log.Warn("ignored switch command: line is not declared as an output", "topic", topic, "device", id,
			"line", lineName, "direction", l.Direction)
		return
	}
	req := command.Request{Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: l.Name, Level: &level}, Actor: Actor}
	rec, err := b.cfg.Command(ctx, id, req)
	if err != nil {
		b.log.Warn("switch command failed", "device", id, "line", l.Name, "level", level, "err", err)
		return
	}
	if rec.Status != protocol.ResultOK {
		b.log.Warn("switch command did not succeed", "device", id, "line", l.Name, "level", level,
			"command", rec.ID, "status", rec.Status, "error", rec.Error)
		return
	}
	b.levelChanged(ctx, id, l.Name, level)
}

// parseCommandTopic splits BaseTopic/<device>/<line>/set.
func parseCommandTopic(topic string) (device, line string, ok bool) {
	rest, ok := strings.CutPrefix(topic, BaseTopic+"/")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "set" || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// findLine returns device d's line whose alias or name is name.
func findLine(d registry.Device, name string) (protocol.HardwareLine, bool) {
	if d.Hardware != nil {
		for _, l := range d.Hardware.Lines {
			if l.Name == name || (l.Alias != "" && l.Alias == name) {
				return l, true
			}
		}
	}
	return protocol.HardwareLine{}, false
}

// device returns the registry's device id.
func (b *Bridge) device(id string) (registry.Device, bool) {
	for _, d := range b.cfg.Devices() {
		if d.ID == id {
			return d, true
		}
	}
	return registry.Device{}, false
}

// AnnounceAll publishes the discovery config, availability and state of
// every accepted device, and removes the configs of the devices it
// announced before in this process that are no longer accepted or present.
func (b *Bridge) AnnounceAll(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	devs := b.cfg.Devices()
	slices.SortFunc(devs, func(x, y registry.Device) int { return cmp.Compare(x.ID, y.ID) })
	present := map[string]bool{}
	for _, d := range devs {
		if d.Status.Accepted() {
			present[d.ID] = true
			b.announceLocked(ctx, d, true, true)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(b.devices)) {
		if !present[id] {
			b.removeLocked(ctx, id)
		}
	}
}

// DeviceChanged follows a change of device d in the registry: it
// re-publishes d's config if it changed (name, room, hardware, version…)
// and its availability if its status changed, and removes d from HA once
// it is no longer accepted.
func (b *Bridge) DeviceChanged(ctx context.Context, d registry.Device) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !d.Status.Accepted() {
		_, announced := b.devices[d.ID]
		if announced || d.Status == registry.StatusRevoked || d.Status == registry.StatusRejected {
			b.removeLocked(ctx, d.ID)
		}
		return
	}
	b.announceLocked(ctx, d, false, false)
}

// DeviceRemoved removes device id from HA: an empty retained config (HA
// deletes the device and its entities) and cleared availability and state.
func (b *Bridge) DeviceRemoved(ctx context.Context, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.removeLocked(ctx, id)
}

// MetricsUpdated publishes device's state after new samples arrived, at
// most once per StateInterval (the first time at once); updates within the
// interval are skipped, and the next one after it carries their values.
// It also publishes the device's config if new host entities appeared.
func (b *Bridge) MetricsUpdated(ctx context.Context, device string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.devices[device]; st != nil && !st.stateAt.IsZero() && b.cfg.Now().Sub(st.stateAt) < b.cfg.StateInterval {
		return
	}
	d, ok := b.device(device)
	if !ok || !d.Status.Accepted() {
		return
	}
	b.announceLocked(ctx, d, false, true)
}

// CommandDone publishes the state of a switch after a gpio.write or
// gpio.pulse succeeded, whoever sent it; other records are ignored.
func (b *Bridge) CommandDone(ctx context.Context, r command.Record) {
	if r.Status != protocol.ResultOK || r.Params.Level == nil {
		return
	}
	var level bool
	switch r.Action {
	case protocol.ActionGPIOWrite:
		level = *r.Params.Level
	case protocol.ActionGPIOPulse:
		level = !*r.Params.Level // the agent answers once the pulse is over
	default:
		return
	}
	d, ok := b.device(r.Device)
	if !ok {
		return
	}
	l, ok := findLine(d, r.Params.Line)
	if !ok || l.Direction != protocol.DirOut {
		return
	}
	b.levelChanged(ctx, r.Device, l.Name, level)
}

// levelChanged records that line of device id is now at level and
// publishes the device's state.
func (b *Bridge) levelChanged(ctx context.Context, id, line string, level bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.device(id)
	if !ok || !d.Status.Accepted() {
		return
	}
	l, ok := findLine(d, line)
	if !ok {
		return
	}
	var seen time.Time
	for _, s := range b.cfg.Latest(id) {
		if s.Name == metricGPIOLevel && (s.Labels["line"] == l.Name || (l.Alias != "" && s.Labels["line"] == l.Alias)) && s.Time.After(seen) {
			seen = s.Time
		}
	}
	st := b.stateLocked(id)
	st.overrides[line] = override{level: level, seen: seen}
	b.announceLocked(ctx, d, false, true)
}

func (b *Bridge) stateLocked(id string) *deviceState {
	st := b.devices[id]
	if st == nil {
		st = &deviceState{overrides: map[string]override{}}
		b.devices[id] = st
	}
	return st
}

// announceLocked publishes accepted device d's config if it changed, its
// availability if it changed, and its state if the config was published
// or wantState; force publishes all three even if unchanged.
func (b *Bridge) announceLocked(ctx context.Context, d registry.Device, force, wantState bool) {
	st := b.stateLocked(d.ID)
	samples := b.cfg.Latest(d.ID)
	es := entities(d, samples)
	cfg := buildConfig(d, es, b.cfg.Version)
	payload, err := marshal(cfg)
	if err != nil {
		b.log.Error("discovery config not encoded", "device", d.ID, "err", err)
		return
	}
	configured := false
	if force || !bytes.Equal(payload, st.config) {
		// Components that disappeared (or changed platform) are removed
		// explicitly first, as HA's device discovery asks.
		removed := map[string]string{}
		for key, p := range st.comps {
			if c, ok := cfg.Components[key]; !ok || c.Platform != p {
				removed[key] = p
			}
		}
		if len(removed) > 0 {
			stub := cfg
			stub.Components = maps.Clone(cfg.Components)
			for key, p := range removed {
				stub.Components[key] = component{Platform: p}
			}
			sp, err := marshal(stub)
			if err != nil || !b.publish(ctx, b.configTopic(d.ID), sp) {
				return
			}
		}
		if !b.publish(ctx, b.configTopic(d.ID), payload) {
			return
		}
		st.config, configured = payload, true
		st.comps = make(map[string]string, len(cfg.Components))
		for key, c := range cfg.Components {
			st.comps[key] = c.Platform
		}
		b.log.Debug("device announced to Home Assistant", "device", d.ID, "entities", len(es), "bytes", len(payload))
	}
	avail := payloadOffline
	if d.Status == registry.StatusOnline {
		avail = payloadOnline
	}
	if force || avail != st.avail {
		if b.publish(ctx, availabilityTopic(d.ID), []byte(avail)) {
			st.avail = avail
		}
	}
	if !force && !wantState && !configured {
		return
	}
	state, err := marshal(buildState(es, samples, st.overrides))
	if err != nil {
		b.log.Error("state not encoded", "device", d.ID, "err", err)
		return
	}
	if !force && bytes.Equal(state, st.state) {
		return
	}
	if b.publish(ctx, stateTopic(d.ID), state) {
		st.state, st.stateAt = state, b.cfg.Now()
	}
}

// removeLocked publishes an empty retained config for device id (HA
// removes the device and its entities) and clears its availability and
// state. If the config could not be cleared, the device stays known so
// that the next AnnounceAll tries again.
func (b *Bridge) removeLocked(ctx context.Context, id string) {
	if !b.publish(ctx, b.configTopic(id), nil) {
		b.stateLocked(id).config = nil
		return
	}
	b.publish(ctx, availabilityTopic(id), nil)
	b.publish(ctx, stateTopic(id), nil)
	delete(b.devices, id)
	b.log.Debug("device removed from Home Assistant", "device", id)
}

// publish sends a retained message and logs a failure.
func (b *Bridge) publish(ctx context.Context, topic string, payload []byte) bool {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := b.cfg.Publish(pctx, topic, payload, true); err != nil {
		b.log.Warn("publication for Home Assistant failed", "topic", topic, "bytes", len(payload), "err", err)
		return false
	}
	return true
}

// quote renders a payload for a log line, cut to 64 bytes.
func quote(p []byte) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q…", p[:64])
	}
	return fmt.Sprintf("%q", p)
}
