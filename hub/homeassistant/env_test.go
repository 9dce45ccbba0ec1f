package homeassistant_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/testkit"
)

// TestMain fails the package on leaked goroutines: the bridge starts none.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the start of every test's clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Device IDs of the fixtures (identity.DeviceID's shape: "d" and 20 base32 digits).
const (
	kitchenID = "dkitchen2345kitchen23"
	garageID  = "dgarage234567garage23"
	pendingID = "dpending2345pending23"
	revokedID = "drevoked2345revoked23"
)

// kitchen is an online Raspberry Pi with a relay, a spare output, a door
// contact, an undeclared line and three sensors.
func kitchen() registry.Device {
	return registry.Device{
		ID: kitchenID, Name: "Kitchen Pi", Labels: map[string]string{"room": "Kitchen", "floor": "0"},
		Status: registry.StatusOnline, AgentVersion: "0.4.0",
		Facts: &protocol.Facts{Hostname: "kitchen", OS: "linux", Arch: "arm64", CPUModel: "Cortex-A72", CPUCores: 4},
		Hardware: &protocol.Hardware{Backend: "periph", Model: "Raspberry Pi 4 Model B Rev 1.4",
			Lines: []protocol.HardwareLine{
				{Name: "GPIO17", Alias: "relay_kitchen", Direction: protocol.DirOut},
				{Name: "GPIO27", Direction: protocol.DirOut},
				{Name: "GPIO22", Alias: "door", Direction: protocol.DirIn},
				{Name: "GPIO5"},
				{Name: "GPIO18", PWM: true},
			},
			OneWire: []string{"w1"}, I2C: []string{"1"},
			Sensors: []protocol.HardwareSensor{
				{Name: "fridge", Kind: protocol.SensorDS18B20, Bus: "w1", Device: "28-0000075a3b0c"},
				{Name: "room", Kind: protocol.SensorBME280, Bus: "1", Address: 0x76},
				{Name: "attic", Kind: protocol.SensorBMP280, Bus: "1", Address: 0x77},
				{Name: "door_contact", Kind: protocol.SensorInput, Line: "GPIO22"},
			}},
	}
}

// kitchenSamples are the kitchen's latest samples: host metrics, sensors
// and line levels (the relay by its name, the door by its alias).
func kitchenSamples(s *source) {
	at := t0.Add(-time.Second)
	for _, x := range []struct {
		name   string
		labels map[string]string
		v      float64
	}{
		{"cpu_usage_ratio", map[string]string{"cpu": "total"}, 0.25},
		{"cpu_usage_ratio", map[string]string{"cpu": "0"}, 0.9},
		{"memory_used_ratio", nil, 0.41234},
		{"memory_total_bytes", nil, 4e9},
		{"filesystem_used_ratio", map[string]string{"mount": "/", "source": "/dev/mmcblk0p2", "fstype": "ext4"}, 0.931},
		{"filesystem_used_ratio", map[string]string{"mount": "/boot/firmware", "source": "/dev/mmcblk0p1", "fstype": "vfat"}, 0.1204},
		{"temperature_celsius", map[string]string{"sensor": "cpu_thermal"}, 48.312},
		{"load1", nil, 0.42},
		{"load5", nil, 0.3},
		{"system_uptime_seconds", nil, 86400.4},
		{"network_receive_bytes_total", map[string]string{"interface": "eth0"}, 123456789},
		{"network_transmit_bytes_total", map[string]string{"interface": "eth0"}, 98765},
		{"network_receive_bytes_total", map[string]string{"interface": "wlan0"}, 1000},
		{"network_transmit_bytes_total", map[string]string{"interface": "wlan0"}, 2000},
		{"sensor_temperature_celsius", map[string]string{"sensor": "fridge"}, 4.0625},
		{"sensor_temperature_celsius", map[string]string{"sensor": "room"}, 21.5},
		{"sensor_pressure_pascals", map[string]string{"sensor": "room"}, 101325},
		{"sensor_humidity_ratio", map[string]string{"sensor": "room"}, 0.453},
		{"sensor_temperature_celsius", map[string]string{"sensor": "attic"}, 12.25},
		{"sensor_pressure_pascals", map[string]string{"sensor": "attic"}, 99000},
		{"gpio_level", map[string]string{"line": "GPIO17"}, 0},
		{"gpio_level", map[string]string{"line": "door"}, 1},
		// Custom metrics of the kitchen's scripts: two marked as sensors,
		// one not.
		{"boiler_temperature_celsius", map[string]string{"circuit": "heating", "ha": "sensor"}, 61.5},
		{"boiler_starts_total", map[string]string{"ha": "sensor"}, 7},
		{"cellar_humidity_ratio", map[string]string{"room": "cellar"}, 0.6},
	} {
		s.sample(kitchenID, x.name, x.labels, at, x.v)
	}
	// A newer series with more labels than the heating's: a sensor of its
	// own, whose value is not the heating's.
	s.sample(kitchenID, "boiler_temperature_celsius", map[string]string{"circuit": "heating", "probe": "2", "ha": "sensor"}, t0, 60)
}

// garage is an offline device without a HAL.
func garage() registry.Device {
	return registry.Device{ID: garageID, Name: "Garage", Status: registry.StatusOffline, AgentVersion: "0.3.9",
		Facts: &protocol.Facts{Hostname: "garage", OS: "linux", Arch: "arm/v6"}}
}

// source fakes the registry's device list and the metrics store.
type source struct {
	mu      sync.Mutex
	devices map[string]registry.Device
	latest  map[string]map[string]metrics.Sample // device → series key → sample
}

func (s *source) Devices() []registry.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.devices))
}

func (s *source) Latest(dev string) []metrics.Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.latest[dev]))
}

func (s *source) put(d registry.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[d.ID] = d
}

func (s *source) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.devices, id)
}

func (s *source) sample(dev, name string, labels map[string]string, at time.Time, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest[dev] == nil {
		s.latest[dev] = map[string]metrics.Sample{}
	}
	key := name
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		key += "," + k + "=" + labels[k]
	}
	s.latest[dev][key] = metrics.Sample{Name: name, Labels: maps.Clone(labels), Time: at, Value: v}
}

// message is one publication.
type message struct {
	Topic    string
	Payload  string
	Retained bool
}

// recorder is Config.Publish, recording what it publishes.
type recorder struct {
	mu   sync.Mutex
	msgs []message
	fail error // returned instead of publishing, if set
}

func (r *recorder) publish(ctx context.Context, topic string, payload []byte, retained bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.msgs = append(r.msgs, message{Topic: topic, Payload: string(payload), Retained: retained})
	return nil
}

// take returns the messages published since the last call.
func (r *recorder) take() []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

// commander is Config.Command, recording the requests.
type commander struct {
	mu    sync.Mutex
	calls []commandCall
	// status and err are what the next commands return (default ok).
	status string
	err    error
}

type commandCall struct {
	Device string
	Req    command.Request
}

func (c *commander) command(_ context.Context, dev string, req command.Request) (command.Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, commandCall{Device: dev, Req: req})
	if c.err != nil {
		return command.Record{}, c.err
	}
	st := c.status
	if st == "" {
		st = protocol.ResultOK
	}
	rec := command.Record{ID: "c1", Device: dev, Action: req.Action, Params: req.Params, Actor: req.Actor, Status: st}
	if st != protocol.ResultOK {
		rec.Error = "the line is stuck"
	}
	return rec, nil
}

func (c *commander) take() []commandCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls := c.calls
	c.calls = nil
	return calls
}

// env is a Bridge on fakes: the kitchen (with samples), the garage, a
// pending and a revoked device.
type env struct {
	t    *testing.T
	src  *source
	rec  *recorder
	cmd  *commander
	clk  *testkit.Clock
	logs *testkit.LogBuffer
	b    *homeassistant.Bridge
}

func newEnv(t *testing.T, cfg homeassistant.Config) *env {
	t.Helper()
	e := &env{t: t, src: &source{devices: map[string]registry.Device{}, latest: map[string]map[string]metrics.Sample{}},
		rec: &recorder{}, cmd: &commander{}, clk: testkit.NewClock(t0), logs: &testkit.LogBuffer{}}
	e.src.put(kitchen())
	kitchenSamples(e.src)
	e.src.put(garage())
	e.src.sample(garageID, "cpu_usage_ratio", map[string]string{"cpu": "total"}, t0, 0.031)
	e.src.put(registry.Device{ID: pendingID, Name: "new-pi", Status: registry.StatusPending})
	e.src.put(registry.Device{ID: revokedID, Name: "stolen-pi", Status: registry.StatusRevoked})
	cfg.Publish, cfg.Devices, cfg.Latest, cfg.Command = e.rec.publish, e.src.Devices, e.src.Latest, e.cmd.command
	cfg.Now = e.clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Version = "0.5.0"
	b, err := homeassistant.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.b = b
	return e
}

var ctx = context.Background()

// configTopic is a device's discovery config topic under the default prefix.
func configTopic(id string) string { return "homeassistant/device/alicia_" + id + "/config" }

func stateTopic(id string) string { return "alicia/v1/ha/" + id + "/state" }

func availTopic(id string) string { return "alicia/v1/ha/" + id + "/availability" }

// byTopic returns the last payload published on each topic.
func byTopic(msgs []message) map[string]message {
	m := map[string]message{}
	for _, x := range msgs {
		m[x.Topic] = x
	}
	return m
}

// topics lists the topics of msgs, in order.
func topics(msgs []message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, m.Topic)
	}
	return out
}

// decode unmarshals a JSON object.
func decode(t *testing.T, payload string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatalf("payload is not a JSON object: %v\n%s", err, payload)
	}
	return m
}

// stateOf returns the last state document published for device id.
func stateOf(t *testing.T, msgs []message, id string) map[string]any {
	t.Helper()
	m, ok := byTopic(msgs)[stateTopic(id)]
	if !ok {
		t.Fatalf("no state published for %s; published %v", id, topics(msgs))
	}
	return decode(t, m.Payload)
}

// wantLog fails unless the logs since the last call contain want.
func (e *env) wantLog(want string) {
	e.t.Helper()
	if logs := e.logs.Take(); !strings.Contains(logs, want) {
		e.t.Errorf("logs do not contain %q:\n%s", want, logs)
	}
}

var errBroker = errors.New("broker unreachable")
