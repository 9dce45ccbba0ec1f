package homeassistant_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The keys the bridge may use, by level, with HA's abbreviations
// (homeassistant/components/mqtt/abbreviations.py): a typo would be
// ignored by HA, silently.
var (
	rootKeys      = []string{"dev", "o", "avty_t", "pl_avail", "pl_not_avail", "qos", "cmps"}
	deviceKeys    = []string{"ids", "name", "mf", "mdl", "sw", "sa"}
	originKeys    = []string{"name", "sw"}
	componentKeys = []string{"p", "uniq_id", "name", "stat_t", "val_tpl", "cmd_t", "pl_on", "pl_off",
		"unit_of_meas", "dev_cla", "stat_cla", "ent_cat", "qos"}
	// units HA accepts for the sensor device classes the bridge uses.
	classUnits = map[string]string{"temperature": "°C", "atmospheric_pressure": "hPa", "humidity": "%",
		"duration": "s", "data_size": "B"}
	stateClasses = []string{"measurement", "total_increasing"}
	platforms    = []string{"sensor", "binary_sensor", "switch"}

	haIDRe       = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	configTopRe  = regexp.MustCompile(`^homeassistant/device/([a-zA-Z0-9_-]+)/config$`)
	valueKeyRe   = regexp.MustCompile(`value_json\['([a-zA-Z0-9_-]+)'\]`)
	maxConfigLen = 16 << 10
)

// checkTopic fails unless topic is a valid MQTT topic to publish to.
func checkTopic(t *testing.T, topic string) {
	t.Helper()
	if topic == "" || len(topic) > 65535 || !utf8.ValidString(topic) || strings.ContainsAny(topic, "+#\x00") {
		t.Errorf("topic %q is not a valid MQTT topic name", topic)
	}
	if strings.Contains(topic, "//") || strings.HasSuffix(topic, "/") {
		t.Errorf("topic %q has an empty level", topic)
	}
}

// checkKeys fails if m has a key outside allowed.
func checkKeys(t *testing.T, where string, m map[string]any, allowed []string) {
	t.Helper()
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: key %q is not one the bridge should use (typo?)", where, k)
		}
	}
}

// checkConfig checks a device discovery config against HA's schema as far
// as we can (homeassistant/components/mqtt/schemas.py DEVICE_DISCOVERY_SCHEMA
// and the platforms' options), and returns its components.
func checkConfig(t *testing.T, topic, payload string) map[string]map[string]any {
	t.Helper()
	m := configTopRe.FindStringSubmatch(topic)
	if m == nil {
		t.Fatalf("config topic %q is not <prefix>/device/<object_id>/config", topic)
	}
	if len(payload) > maxConfigLen {
		t.Errorf("%s: config is %d bytes, more than %d", topic, len(payload), maxConfigLen)
	}
	c := decode(t, payload)
	checkKeys(t, topic, c, rootKeys)

	dev, _ := c["dev"].(map[string]any)
	checkKeys(t, topic+" dev", dev, deviceKeys)
	ids, _ := dev["ids"].([]any)
	if len(ids) == 0 {
		t.Errorf("%s: dev.ids missing or empty", topic)
	}
	for _, id := range ids {
		if s, ok := id.(string); !ok || s == "" {
			t.Errorf("%s: dev.ids has %v, not a string", topic, id)
		}
	}
	if ids[0] != m[1] {
		t.Errorf("%s: dev.ids[0] = %v, want the topic's object id %q", topic, ids[0], m[1])
	}
	for _, k := range []string{"name", "mf"} {
		if s, _ := dev[k].(string); s == "" {
			t.Errorf("%s: dev.%s missing", topic, k)
		}
	}
	o, _ := c["o"].(map[string]any)
	checkKeys(t, topic+" o", o, originKeys)
	if s, _ := o["name"].(string); s == "" {
		t.Errorf("%s: o.name (required by device discovery) missing", topic)
	}
	avty, _ := c["avty_t"].(string)
	if avty == "" {
		t.Errorf("%s: no availability topic", topic)
	}
	checkTopic(t, avty)
	if c["pl_avail"] != "online" || c["pl_not_avail"] != "offline" {
		t.Errorf("%s: availability payloads %v/%v, want online/offline", topic, c["pl_avail"], c["pl_not_avail"])
	}
	if c["qos"] != 1.0 {
		t.Errorf("%s: qos = %v, want 1", topic, c["qos"])
	}

	cmps, _ := c["cmps"].(map[string]any)
	if len(cmps) == 0 {
		t.Fatalf("%s: no components", topic)
	}
	out := map[string]map[string]any{}
	for key, v := range cmps {
		where := topic + " cmps." + key
		comp, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: not an object", where)
			continue
		}
		out[key] = comp
		checkKeys(t, where, comp, componentKeys)
		if !haIDRe.MatchString(key) {
			t.Errorf("%s: component id has characters outside [a-zA-Z0-9_-]", where)
		}
		p, _ := comp["p"].(string)
		if !slices.Contains(platforms, p) {
			t.Errorf("%s: p = %q, want one of %v", where, p, platforms)
		}
		if len(comp) == 1 {
			continue // only the platform: HA removes the component
		}
		uid, _ := comp["uniq_id"].(string)
		if !haIDRe.MatchString(uid) || !strings.HasPrefix(uid, m[1]+"_") {
			t.Errorf("%s: uniq_id %q is not %s_<key> in [a-zA-Z0-9_-]", where, uid, m[1])
		}
		if s, _ := comp["name"].(string); s == "" {
			t.Errorf("%s: no name", where)
		}
		stat, hasState := comp["stat_t"].(string)
		cmdT, hasCmd := comp["cmd_t"].(string)
		if !hasState && !hasCmd {
			t.Errorf("%s: neither stat_t nor cmd_t", where)
		}
		if hasState {
			checkTopic(t, stat)
			tpl, _ := comp["val_tpl"].(string)
			if k := valueKeyRe.FindAllStringSubmatch(tpl, -1); len(k) == 0 || k[0][1] != key {
				t.Errorf("%s: val_tpl %q does not read value_json['%s']", where, tpl, key)
			}
		}
		if p == "switch" {
			if !hasCmd {
				t.Errorf("%s: switch without cmd_t", where)
			}
			checkTopic(t, cmdT)
			if comp["pl_on"] != "ON" || comp["pl_off"] != "OFF" {
				t.Errorf("%s: pl_on/pl_off = %v/%v, want ON/OFF", where, comp["pl_on"], comp["pl_off"])
			}
		} else if hasCmd {
			t.Errorf("%s: a %s has a cmd_t", where, p)
		}
		if dc, ok := comp["dev_cla"].(string); ok {
			want, known := classUnits[dc]
			if !known || comp["unit_of_meas"] != want {
				t.Errorf("%s: dev_cla %q with unit %v (want %q)", where, dc, comp["unit_of_meas"], want)
			}
		}
		if sc, ok := comp["stat_cla"].(string); ok && !slices.Contains(stateClasses, sc) {
			t.Errorf("%s: stat_cla %q", where, sc)
		}
		if ec, ok := comp["ent_cat"].(string); ok && ec != "diagnostic" {
			t.Errorf("%s: ent_cat %q", where, ec)
		}
	}
	return out
}

func TestDiscoveryConfigsValid(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	msgs := e.rec.take()
	uids := map[string]string{}
	configs := map[string]map[string]map[string]any{}
	for _, m := range msgs {
		checkTopic(t, m.Topic)
		if !m.Retained {
			t.Errorf("%s published without retain", m.Topic)
		}
		if !strings.HasSuffix(m.Topic, "/config") {
			continue
		}
		comps := checkConfig(t, m.Topic, m.Payload)
		configs[m.Topic] = comps
		for key, c := range comps {
			uid, ok := c["uniq_id"].(string)
			if !ok {
				t.Errorf("%s: component %s has no uniq_id (a removal in a first announcement?)", m.Topic, key)
				continue
			}
			if other, dup := uids[uid]; dup {
				t.Errorf("unique id %s used by %s and %s", uid, other, m.Topic+" "+key)
			}
			uids[uid] = m.Topic + " " + key
		}
	}
	if got, want := slices.Sorted(func(yield func(string) bool) {
		for k := range configs {
			if !yield(k) {
				return
			}
		}
	}), []string{configTopic(garageID), configTopic(kitchenID)}; !slices.Equal(got, want) {
		t.Fatalf("configs published for %v, want %v (accepted devices only)", got, want)
	}

	k := configs[configTopic(kitchenID)]
	want := map[string]string{
		"cpu": "sensor", "memory": "sensor", "fs_root": "sensor", "fs_boot_firmware": "sensor",
		"temp_cpu_thermal": "sensor", "load1": "sensor", "uptime": "sensor",
		"net_eth0_rx": "sensor", "net_eth0_tx": "sensor", "net_wlan0_rx": "sensor", "net_wlan0_tx": "sensor",
		"gpio_relay_kitchen": "switch", "gpio_GPIO27": "switch", "gpio_door": "binary_sensor",
		"sensor_fridge_temperature": "sensor",
		"sensor_room_temperature":   "sensor", "sensor_room_pressure": "sensor", "sensor_room_humidity": "sensor",
		"sensor_attic_temperature": "sensor", "sensor_attic_pressure": "sensor",
		"custom_boiler_temperature_celsius_heating": "sensor", "custom_boiler_temperature_celsius_heating_2": "sensor",
		"custom_boiler_starts_total": "sensor",
	}
	got := map[string]string{}
	for key, c := range k {
		got[key] = c["p"].(string)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("kitchen components (-want +got):\n%s", d)
	}
	if ct := k["gpio_relay_kitchen"]["cmd_t"]; ct != "alicia/v1/ha/"+kitchenID+"/relay_kitchen/set" {
		t.Errorf("relay cmd_t = %v", ct)
	}
	if ct := k["gpio_GPIO27"]["cmd_t"]; ct != "alicia/v1/ha/"+kitchenID+"/GPIO27/set" {
		t.Errorf("GPIO27 cmd_t = %v", ct)
	}

	// Every value of the state document has its component, and every
	// component of the kitchen has a value but GPIO27's, never reported.
	st := stateOf(t, msgs, kitchenID)
	for key := range st {
		if _, ok := k[key]; !ok {
			t.Errorf("state key %q has no component", key)
		}
	}
	for key := range k {
		if _, ok := st[key]; !ok && key != "gpio_GPIO27" {
			t.Errorf("component %q has no value in the state", key)
		}
	}
	for id, want := range map[string]string{kitchenID: "online", garageID: "offline"} {
		if m := byTopic(msgs)[availTopic(id)]; m.Payload != want || !m.Retained {
			t.Errorf("availability of %s = %+v, want %q retained", id, m, want)
		}
	}
}

// TestGoldenConfig keeps the kitchen's discovery config for review; run
// with -update after an intended change.
func TestGoldenConfig(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	m, ok := byTopic(e.rec.take())[configTopic(kitchenID)]
	if !ok {
		t.Fatal("no config published for the kitchen")
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(m.Payload), "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", "kitchen_config.json")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), buf.String()); d != "" {
		t.Errorf("kitchen config differs from %s (-want +got):\n%s", path, d)
	}
}

func TestStateValues(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.MetricsUpdated(ctx, kitchenID)
	want := map[string]any{
		"cpu": 25.0, "memory": 41.2, "fs_root": 93.1, "fs_boot_firmware": 12.0,
		"temp_cpu_thermal": 48.31, "load1": 0.42, "uptime": 86400.0,
		"net_eth0_rx": 123456789.0, "net_eth0_tx": 98765.0, "net_wlan0_rx": 1000.0, "net_wlan0_tx": 2000.0,
		"sensor_fridge_temperature": 4.06, "sensor_room_temperature": 21.5, "sensor_room_pressure": 1013.25,
		"sensor_room_humidity": 45.3, "sensor_attic_temperature": 12.25, "sensor_attic_pressure": 990.0,
		"gpio_relay_kitchen": 0.0, "gpio_door": 1.0,
		"custom_boiler_temperature_celsius_heating": 61.5, "custom_boiler_temperature_celsius_heating_2": 60.0,
		"custom_boiler_starts_total": 7.0,
	}
	msgs := e.rec.take()
	if d := cmp.Diff(want, stateOf(t, msgs, kitchenID)); d != "" {
		t.Errorf("kitchen state (-want +got):\n%s", d)
	}
	if m := byTopic(msgs)[stateTopic(kitchenID)]; !m.Retained {
		t.Error("state not retained")
	}
	// The first MetricsUpdated of a device announces it.
	if _, ok := byTopic(msgs)[configTopic(kitchenID)]; !ok {
		t.Errorf("MetricsUpdated of an unannounced device published %v, want its config too", topics(msgs))
	}
}

func TestMetricsRateLimit(t *testing.T) {
	e := newEnv(t, homeassistant.Config{StateInterval: 10 * time.Second})
	e.b.MetricsUpdated(ctx, kitchenID)
	if st := stateOf(t, e.rec.take(), kitchenID); st["cpu"] != 25.0 {
		t.Fatalf("first state cpu = %v, want 25", st["cpu"])
	}

	e.src.sample(kitchenID, "cpu_usage_ratio", map[string]string{"cpu": "total"}, t0.Add(5*time.Second), 0.5)
	e.clk.Advance(5 * time.Second)
	e.b.MetricsUpdated(ctx, kitchenID)
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Fatalf("MetricsUpdated 5s after the last state published %v, want nothing", topics(msgs))
	}

	e.clk.Advance(5 * time.Second)
	e.b.MetricsUpdated(ctx, kitchenID)
	msgs := e.rec.take()
	if st := stateOf(t, msgs, kitchenID); st["cpu"] != 50.0 {
		t.Errorf("state after the interval: cpu = %v, want 50", st["cpu"])
	}
	if len(msgs) != 1 {
		t.Errorf("published %v, want only the state", topics(msgs))
	}

	// Nothing new after another interval: the retained state stands.
	e.clk.Advance(time.Minute)
	e.b.MetricsUpdated(ctx, kitchenID)
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("unchanged state published again: %v", topics(msgs))
	}

	// A new mount is a new entity: the config follows.
	e.src.sample(kitchenID, "filesystem_used_ratio", map[string]string{"mount": "/data"}, t0.Add(time.Minute), 0.5)
	e.b.MetricsUpdated(ctx, kitchenID)
	msgs = e.rec.take()
	if got := topics(msgs); !slices.Equal(got, []string{configTopic(kitchenID), stateTopic(kitchenID)}) {
		t.Fatalf("after a new mount published %v, want config then state", got)
	}
	if _, ok := checkConfig(t, msgs[0].Topic, msgs[0].Payload)["fs_data"]; !ok {
		t.Error("config has no fs_data")
	}

	// Devices that are not accepted, or unknown, get nothing.
	for _, id := range []string{pendingID, revokedID, "dunknown"} {
		e.b.MetricsUpdated(ctx, id)
	}
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("MetricsUpdated of devices not accepted published %v", topics(msgs))
	}
}

func TestBirthRepublishes(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	first := byTopic(e.rec.take())

	e.b.HandleMessage(ctx, "homeassistant/status", []byte("online"))
	msgs := e.rec.take()
	again := byTopic(msgs)
	for _, id := range []string{kitchenID, garageID} {
		for _, topic := range []string{configTopic(id), availTopic(id), stateTopic(id)} {
			if again[topic].Payload == "" {
				t.Errorf("birth did not republish %s", topic)
			} else if again[topic] != first[topic] {
				t.Errorf("%s republished differently:\n%s\nthen\n%s", topic, first[topic].Payload, again[topic].Payload)
			}
		}
	}
	if len(msgs) != 6 {
		t.Errorf("birth published %v, want config, availability and state of 2 devices", topics(msgs))
	}

	e.logs.Take()
	e.b.HandleMessage(ctx, "homeassistant/status", []byte("offline"))
	e.b.HandleMessage(ctx, "homeassistant/status", []byte("reboot"))
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("offline or garbage status published %v", topics(msgs))
	}
	e.wantLog(`payload is neither \"online\" nor \"offline\"`)
}

func TestSubscriptionsAndPrefix(t *testing.T) {
	e := newEnv(t, homeassistant.Config{Prefix: "ha/discovery"})
	if got, want := e.b.Subscriptions(), []string{"ha/discovery/status", "alicia/v1/ha/+/+/set"}; !slices.Equal(got, want) {
		t.Errorf("Subscriptions = %v, want %v", got, want)
	}
	e.b.HandleMessage(ctx, "ha/discovery/status", []byte("online"))
	if _, ok := byTopic(e.rec.take())["ha/discovery/device/alicia_"+kitchenID+"/config"]; !ok {
		t.Error("birth on a custom prefix did not announce under it")
	}
	e.b.HandleMessage(ctx, "homeassistant/status", []byte("online"))
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("birth on the default prefix, not ours, published %v", topics(msgs))
	}
}

func TestNewValidates(t *testing.T) {
	base := func() homeassistant.Config {
		e := &env{src: &source{}, rec: &recorder{}, cmd: &commander{}}
		return homeassistant.Config{Publish: e.rec.publish, Devices: e.src.Devices, Latest: e.src.Latest, Command: e.cmd.command}
	}
	for name, mod := range map[string]func(*homeassistant.Config){
		"no Publish":        func(c *homeassistant.Config) { c.Publish = nil },
		"no Devices":        func(c *homeassistant.Config) { c.Devices = nil },
		"no Latest":         func(c *homeassistant.Config) { c.Latest = nil },
		"no Command":        func(c *homeassistant.Config) { c.Command = nil },
		"wildcard prefix":   func(c *homeassistant.Config) { c.Prefix = "home/#" },
		"trailing slash":    func(c *homeassistant.Config) { c.Prefix = "homeassistant/" },
		"negative interval": func(c *homeassistant.Config) { c.StateInterval = -time.Second },
	} {
		c := base()
		mod(&c)
		if _, err := homeassistant.New(c); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := homeassistant.New(base()); err != nil {
		t.Errorf("New with the required fields: %v", err)
	}
}

func TestSwitchCommand(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()

	e.b.HandleMessage(ctx, "alicia/v1/ha/"+kitchenID+"/relay_kitchen/set", []byte("ON"))
	on := true
	want := []commandCall{{Device: kitchenID, Req: command.Request{Action: protocol.ActionGPIOWrite,
		Params: protocol.CommandParams{Line: "GPIO17", Level: &on}, Actor: "homeassistant"}}}
	if d := cmp.Diff(want, e.cmd.take()); d != "" {
		t.Fatalf("commands (-want +got):\n%s", d)
	}
	msgs := e.rec.take()
	if got := topics(msgs); !slices.Equal(got, []string{stateTopic(kitchenID)}) {
		t.Fatalf("after ON published %v, want the state", got)
	}
	// The device has not reported the new level yet; the state shows the
	// command's.
	if st := stateOf(t, msgs, kitchenID); st["gpio_relay_kitchen"] != 1.0 {
		t.Errorf("relay state after ON = %v, want 1", st["gpio_relay_kitchen"])
	}
	// The command service's OnDone reports the same command: nothing new.
	e.b.CommandDone(ctx, command.Record{Device: kitchenID, Action: protocol.ActionGPIOWrite,
		Params: protocol.CommandParams{Line: "GPIO17", Level: &on}, Actor: "homeassistant", Status: protocol.ResultOK})
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("CommandDone of the same command published %v again", topics(msgs))
	}
	// The old sample does not undo the command's level; a newer one wins.
	e.clk.Advance(time.Minute)
	e.b.MetricsUpdated(ctx, kitchenID)
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("MetricsUpdated without a new level published %v", topics(msgs))
	}
	e.src.sample(kitchenID, "gpio_level", map[string]string{"line": "GPIO17"}, t0.Add(time.Minute), 0)
	e.clk.Advance(time.Minute)
	e.b.MetricsUpdated(ctx, kitchenID)
	if st := stateOf(t, e.rec.take(), kitchenID); st["gpio_relay_kitchen"] != 0.0 {
		t.Errorf("relay state after a newer sample of 0 = %v, want 0", st["gpio_relay_kitchen"])
	}

	// OFF by the board's name of a line without alias.
	e.b.HandleMessage(ctx, "alicia/v1/ha/"+kitchenID+"/GPIO27/set", []byte("OFF"))
	calls := e.cmd.take()
	if len(calls) != 1 || calls[0].Req.Params.Line != "GPIO27" || *calls[0].Req.Params.Level {
		t.Errorf("OFF on GPIO27: commands %+v", calls)
	}
	if st := stateOf(t, e.rec.take(), kitchenID); st["gpio_GPIO27"] != 0.0 {
		t.Errorf("GPIO27 state after OFF = %v, want 0", st["gpio_GPIO27"])
	}
}

func TestSwitchCommandRefused(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()
	e.logs.Take()
	set := func(id, line string) string { return "alicia/v1/ha/" + id + "/" + line + "/set" }
	tests := []struct {
		name, topic, payload, log string
	}{
		{"lowercase payload", set(kitchenID, "relay_kitchen"), "on", `payload is neither \"ON\" nor \"OFF\"`},
		{"number payload", set(kitchenID, "relay_kitchen"), "1", `payload is neither \"ON\" nor \"OFF\"`},
		{"empty payload", set(kitchenID, "relay_kitchen"), "", `payload is neither \"ON\" nor \"OFF\"`},
		{"trailing newline", set(kitchenID, "relay_kitchen"), "ON\n", `payload is neither \"ON\" nor \"OFF\"`},
		{"binary garbage", set(kitchenID, "relay_kitchen"), "\xff\x00" + strings.Repeat("x", 100), `payload is neither`},
		{"unknown device", set("dnothere", "relay_kitchen"), "ON", "no such device"},
		{"unknown line", set(kitchenID, "GPIO4"), "ON", "device has no such line"},
		{"input line", set(kitchenID, "door"), "ON", "line is not declared as an output"},
		{"undeclared line", set(kitchenID, "GPIO5"), "ON", "line is not declared as an output"},
		{"pending device", set(pendingID, "relay"), "ON", "device is not accepted"},
		{"revoked device", set(revokedID, "relay"), "ON", "device is not accepted"},
		{"device without HAL", set(garageID, "relay"), "ON", "device has no such line"},
		{"short topic", "alicia/v1/ha/" + kitchenID + "/set", "ON", "not a Home Assistant status or switch command topic"},
		{"long topic", set(kitchenID, "relay_kitchen") + "/x", "ON", "not a Home Assistant status or switch command topic"},
		{"other topic", "alicia/v1/devices/" + kitchenID + "/cmd", "ON", "not a Home Assistant status or switch command topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			e.b.HandleMessage(ctx, tt.topic, []byte(tt.payload))
			if calls := e.cmd.take(); len(calls) != 0 {
				t.Errorf("sent commands %+v", calls)
			}
			if msgs := e.rec.take(); len(msgs) != 0 {
				t.Errorf("published %v", topics(msgs))
			}
			e.wantLog(tt.log)
		})
	}

	t.Run("command fails", func(t *testing.T) {
		e.t = t
		e.cmd.err = fmt.Errorf("%w: device %s", command.ErrOffline, kitchenID)
		defer func() { e.cmd.err = nil }()
		e.b.HandleMessage(ctx, set(kitchenID, "relay_kitchen"), []byte("ON"))
		if len(e.cmd.take()) != 1 {
			t.Error("no command sent")
		}
		if msgs := e.rec.take(); len(msgs) != 0 {
			t.Errorf("a failed command published %v", topics(msgs))
		}
		e.wantLog("device is offline")
	})
	t.Run("device answers failed", func(t *testing.T) {
		e.t = t
		e.cmd.status = protocol.ResultFailed
		defer func() { e.cmd.status = "" }()
		e.b.HandleMessage(ctx, set(kitchenID, "relay_kitchen"), []byte("ON"))
		if msgs := e.rec.take(); len(msgs) != 0 {
			t.Errorf("a failed command published %v", topics(msgs))
		}
		e.wantLog("the line is stuck")
	})
}

func TestCommandDone(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()
	high, low := true, false
	rec := func(action, line string, level *bool, status string) command.Record {
		return command.Record{Device: kitchenID, Action: action, Params: protocol.CommandParams{Line: line, Level: level},
			Actor: "admin", Status: status}
	}
	for _, r := range []command.Record{
		rec(protocol.ActionGPIOWrite, "relay_kitchen", &high, protocol.ResultFailed),
		rec(protocol.ActionGPIOWrite, "relay_kitchen", &high, command.StatusTimeout),
		rec(protocol.ActionGPIORead, "relay_kitchen", nil, protocol.ResultOK),
		rec(protocol.ActionGPIOWrite, "GPIO18", &high, protocol.ResultOK), // not declared: no entity
		rec(protocol.ActionSensorRead, "", nil, protocol.ResultOK),
		{Device: "dnothere", Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: "GPIO17", Level: &high}, Status: protocol.ResultOK},
	} {
		e.b.CommandDone(ctx, r)
		if msgs := e.rec.take(); len(msgs) != 0 {
			t.Errorf("CommandDone(%s %s %s) published %v", r.Action, r.Params.Line, r.Status, topics(msgs))
		}
	}
	// A write from the REST API, by alias.
	e.b.CommandDone(ctx, rec(protocol.ActionGPIOWrite, "relay_kitchen", &high, protocol.ResultOK))
	if st := stateOf(t, e.rec.take(), kitchenID); st["gpio_relay_kitchen"] != 1.0 {
		t.Errorf("after a write of 1: relay = %v", st["gpio_relay_kitchen"])
	}
	// A pulse high ends low.
	e.b.CommandDone(ctx, rec(protocol.ActionGPIOPulse, "GPIO27", &high, protocol.ResultOK))
	if st := stateOf(t, e.rec.take(), kitchenID); st["gpio_GPIO27"] != 0.0 {
		t.Errorf("after a pulse to 1: GPIO27 = %v, want 0", st["gpio_GPIO27"])
	}
	e.b.CommandDone(ctx, rec(protocol.ActionGPIOPulse, "GPIO27", &low, protocol.ResultOK))
	if st := stateOf(t, e.rec.take(), kitchenID); st["gpio_GPIO27"] != 1.0 {
		t.Errorf("after a pulse to 0: GPIO27 = %v, want 1", st["gpio_GPIO27"])
	}
}

// removal is what removing device id publishes: empty retained config,
// availability and state.
func removal(id string) []message {
	return []message{{Topic: configTopic(id), Retained: true}, {Topic: availTopic(id), Retained: true},
		{Topic: stateTopic(id), Retained: true}}
}

func TestDeviceRemoved(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()

	e.src.remove(kitchenID)
	e.b.DeviceRemoved(ctx, kitchenID)
	if d := cmp.Diff(removal(kitchenID), e.rec.take()); d != "" {
		t.Errorf("DeviceRemoved (-want +got):\n%s", d)
	}

	// A revoked device is removed.
	g := garage()
	g.Status = registry.StatusRevoked
	e.src.put(g)
	e.b.DeviceChanged(ctx, g)
	if d := cmp.Diff(removal(garageID), e.rec.take()); d != "" {
		t.Errorf("DeviceChanged(revoked) (-want +got):\n%s", d)
	}
	// Once removed, a birth does not announce or remove it again.
	e.b.HandleMessage(ctx, "homeassistant/status", []byte("online"))
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("birth with no accepted device published %v", topics(msgs))
	}
	// A pending device never announced is left alone.
	e.b.DeviceChanged(ctx, registry.Device{ID: pendingID, Status: registry.StatusPending})
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("DeviceChanged(pending) published %v", topics(msgs))
	}
}

func TestAnnounceAllRemovesVanished(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()
	e.src.remove(garageID) // deleted while the bridge was not told
	e.b.AnnounceAll(ctx)
	msgs := e.rec.take()
	if got := msgs[len(msgs)-3:]; !cmp.Equal(got, removal(garageID)) {
		t.Errorf("AnnounceAll ended with %v, want the garage's removal", topics(got))
	}
	for _, m := range msgs[:len(msgs)-3] {
		if strings.Contains(m.Topic, garageID) {
			t.Errorf("AnnounceAll published %s for a vanished device", m.Topic)
		}
	}
}

func TestDeviceChanged(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.b.AnnounceAll(ctx)
	e.rec.take()

	d := kitchen()
	e.b.DeviceChanged(ctx, d)
	if msgs := e.rec.take(); len(msgs) != 0 {
		t.Errorf("unchanged device published %v", topics(msgs))
	}

	d.Status = registry.StatusOffline
	e.src.put(d)
	e.b.DeviceChanged(ctx, d)
	if d := cmp.Diff([]message{{Topic: availTopic(kitchenID), Payload: "offline", Retained: true}}, e.rec.take()); d != "" {
		t.Errorf("status change (-want +got):\n%s", d)
	}

	d.Labels = map[string]string{"room": "Cellar"}
	d.Name = "Cellar Pi"
	e.src.put(d)
	e.b.DeviceChanged(ctx, d)
	msgs := e.rec.take()
	if got := topics(msgs); !slices.Equal(got, []string{configTopic(kitchenID)}) {
		t.Fatalf("rename published %v, want the config", got)
	}
	dev := decode(t, msgs[0].Payload)["dev"].(map[string]any)
	if dev["name"] != "Cellar Pi" || dev["sa"] != "Cellar" {
		t.Errorf("renamed device: dev = %v", dev)
	}

	// GPIO27 disappears and the door becomes an output: HA is first told
	// to remove both components, then gets the new config.
	d.Hardware.Lines = []protocol.HardwareLine{
		{Name: "GPIO17", Alias: "relay_kitchen", Direction: protocol.DirOut},
		{Name: "GPIO22", Alias: "door", Direction: protocol.DirOut},
	}
	e.src.put(d)
	e.b.DeviceChanged(ctx, d)
	msgs = e.rec.take()
	// The state is unchanged (the door's level stays under the same key):
	// HA reads the retained one when it subscribes for the new switch.
	if got := topics(msgs); !slices.Equal(got, []string{configTopic(kitchenID), configTopic(kitchenID)}) {
		t.Fatalf("hardware change published %v, want config (removals), then config", got)
	}
	stub := checkConfig(t, msgs[0].Topic, msgs[0].Payload)
	if d := cmp.Diff(map[string]any{"p": "switch"}, stub["gpio_GPIO27"]); d != "" {
		t.Errorf("removal of GPIO27 (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]any{"p": "binary_sensor"}, stub["gpio_door"]); d != "" {
		t.Errorf("removal of the door's binary sensor (-want +got):\n%s", d)
	}
	final := checkConfig(t, msgs[1].Topic, msgs[1].Payload)
	if _, ok := final["gpio_GPIO27"]; ok {
		t.Error("GPIO27 still in the new config")
	}
	if final["gpio_door"]["p"] != "switch" {
		t.Errorf("door is %v, want a switch", final["gpio_door"]["p"])
	}
}

func TestPublishFailureRetried(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	e.rec.fail = errBroker
	e.b.DeviceChanged(ctx, kitchen())
	e.wantLog("broker unreachable")
	e.rec.fail = nil
	e.b.DeviceChanged(ctx, kitchen())
	if _, ok := byTopic(e.rec.take())[configTopic(kitchenID)]; !ok {
		t.Error("config not published again once the broker is back")
	}

	// A removal that failed is retried by the next AnnounceAll.
	e.rec.fail = errBroker
	e.src.remove(garageID)
	e.b.DeviceRemoved(ctx, garageID)
	e.rec.fail = nil
	e.b.AnnounceAll(ctx)
	msgs := e.rec.take()
	if got := msgs[len(msgs)-3:]; !cmp.Equal(got, removal(garageID)) {
		t.Errorf("AnnounceAll after a failed removal ended with %v, want the garage's removal", topics(got))
	}
}

// TestKeysSanitizedAndStable checks that names outside HA's characters
// become distinct, stable keys whatever the order of the samples.
func TestKeysSanitizedAndStable(t *testing.T) {
	keys := func(mounts ...string) []string {
		e := newEnv(t, homeassistant.Config{})
		d := garage()
		d.Status = registry.StatusOnline
		e.src.put(d)
		for i, m := range mounts {
			e.src.sample(garageID, "filesystem_used_ratio", map[string]string{"mount": m}, t0.Add(time.Duration(i)), 0.5)
		}
		e.b.DeviceChanged(ctx, d)
		var out []string
		for _, m := range e.rec.take() {
			if m.Topic == configTopic(garageID) {
				for k := range checkConfig(t, m.Topic, m.Payload) {
					if strings.HasPrefix(k, "fs_") {
						out = append(out, k)
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	a := keys("/mnt/a.b", "/mnt/a_b", "/srv/données")
	b := keys("/srv/données", "/mnt/a_b", "/mnt/a.b")
	if len(a) != 3 || len(slices.Compact(slices.Clone(a))) != 3 {
		t.Fatalf("keys %v, want 3 distinct", a)
	}
	if !slices.Equal(a, b) {
		t.Errorf("keys depend on the order: %v and %v", a, b)
	}
}

// TestHostileTextEscaped gives the bridge a device whose name, area, model
// and a mount point carry markup and bidirectional controls (stored before
// the registry refused them, or reported by the device): HA gets the
// markup as text, JSON-escaped, and no bidi control.
func TestHostileTextEscaped(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	d := kitchen()
	d.Name = `<script>alert(1)</script> & "Pi"` + "\u202Egpj.exe"
	d.Labels = map[string]string{"room": "\u2066Kitchen\u2069"}
	d.Hardware.Model = "Pi\u200F 4"
	e.src.put(d)
	e.src.sample(kitchenID, "filesystem_used_ratio", map[string]string{"mount": "/mnt/\u202Eevil", "source": "x", "fstype": "ext4"}, t0, 0.5)
	e.b.AnnounceAll(ctx)
	m, ok := byTopic(e.rec.take())[configTopic(kitchenID)]
	if !ok {
		t.Fatal("no config published for the kitchen")
	}
	for _, raw := range []string{"<", ">", "&", "\u202E", "\u2066", "\u2069", "\u200F"} {
		if strings.Contains(m.Payload, raw) {
			t.Errorf("config payload holds %q raw", raw)
		}
	}
	comps := checkConfig(t, m.Topic, m.Payload)
	dev := decode(t, m.Payload)["dev"].(map[string]any)
	want := map[string]any{"name": `<script>alert(1)</script> & "Pi"` + "\uFFFDgpj.exe", "sa": "\uFFFDKitchen\uFFFD", "mdl": "Pi\uFFFD 4"}
	for k, v := range want {
		if dev[k] != v {
			t.Errorf("dev.%s = %q, want %q", k, dev[k], v)
		}
	}
	var names []string
	for _, c := range comps {
		names = append(names, c["name"].(string))
	}
	if !slices.Contains(names, "Disk used /mnt/\uFFFDevil") {
		t.Errorf("entity names %q lack the mount point with its bidi control replaced", names)
	}
}
