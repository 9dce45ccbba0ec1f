package homeassistant

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/protocol"
)

// HA platforms the bridge uses.
const (
	platformSensor = "sensor"
	platformBinary = "binary_sensor"
	platformSwitch = "switch"
)

// Payloads of switches, binary sensors and availability.
const (
	payloadOn      = "ON"
	payloadOff     = "OFF"
	payloadOnline  = "online"
	payloadOffline = "offline"
)

// Metric names the bridge reads, besides the host metrics of agent/sample.
const (
	metricGPIOLevel   = "gpio_level"
	metricSensorTemp  = "sensor_temperature_celsius"
	metricSensorPress = "sensor_pressure_pascals"
	metricSensorHum   = "sensor_humidity_ratio"
)

// entity is one HA entity of a device and where its value comes from.
type entity struct {
	// key names the component in the config's cmps, the value in the
	// state document and ends the unique_id.
	key      string
	platform string
	name     string
	unit     string
	devClass string
	// stateClass is "measurement", "total_increasing" or "".
	stateClass string
	// diagnostic puts the entity in HA's diagnostic category.
	diagnostic bool

	// metric and labels select the sample: a sample matches when it has
	// the metric's name and, for each label, one of the values.
	metric string
	labels map[string][]string
	// scale multiplies the sample's value, which is then rounded to digits
	// decimals.
	scale  float64
	digits int
	// exact: a sample matches only with exactly these labels (a custom
	// series, whose labels are the device's script's).
	exact bool
	// line is the GPIO line's board name, for switches and binary sensors,
	// whose state is the level 0 or 1.
	line string

	// src identifies the entity's source, to tell apart keys that collide
	// once sanitized.
	src string
}

// binary reports whether the entity's value is a line level (0/1).
func (e *entity) binary() bool { return e.platform == platformSwitch || e.platform == platformBinary }

// matches reports whether s is the entity's sample.
func (e *entity) matches(s metrics.Sample) bool {
	if s.Name != e.metric || e.exact && len(s.Labels) != len(e.labels) {
		return false
	}
	for k, vals := range e.labels {
		if !slices.Contains(vals, s.Labels[k]) {
			return false
		}
	}
	return true
}

// entities returns a device's entities, sorted by key: the host metrics it
// has sent (samples) and the lines and sensors of its hardware.
func entities(d registry.Device, samples []metrics.Sample) []entity {
	var out []entity
	host := func(e entity) {
		e.diagnostic = true
		out = append(out, e)
	}
	pct := func(key, name, metric string, labels map[string][]string, src string) entity {
		return entity{key: key, platform: platformSensor, name: name, unit: "%", stateClass: "measurement",
			metric: metric, labels: labels, scale: 100, digits: 1, src: src}
	}
	seen := map[string]bool{}
	once := func(id string) bool {
		if seen[id] {
			return false
		}
		seen[id] = true
		return true
	}
	for _, s := range samples {
		switch s.Name {
		case "cpu_usage_ratio":
			if s.Labels["cpu"] == "total" && once("cpu") {
				host(pct("cpu", "CPU usage", s.Name, map[string][]string{"cpu": {"total"}}, "cpu"))
			}
		case "memory_used_ratio":
			if once("memory") {
				host(pct("memory", "Memory used", s.Name, nil, "memory"))
			}
		case "filesystem_used_ratio":
			m, ok := s.Labels["mount"]
			if ok && once("fs "+m) {
				host(pct("fs_"+mountKey(m), "Disk used "+m, s.Name, map[string][]string{"mount": {m}}, "fs "+m))
			}
		case "temperature_celsius":
			n, ok := s.Labels["sensor"]
			if ok && once("temp "+n) {
				host(entity{key: "temp_" + sanitize(n), platform: platformSensor, name: "Temperature " + n, unit: "°C",
					devClass: "temperature", stateClass: "measurement", metric: s.Name,
					labels: map[string][]string{"sensor": {n}}, scale: 1, digits: 2, src: "temp " + n})
			}
		case "load1":
			if once("load1") {
				host(entity{key: "load1", platform: platformSensor, name: "Load (1 min)", stateClass: "measurement",
					metric: s.Name, scale: 1, digits: 2, src: "load1"})
			}
		case "system_uptime_seconds":
			// No state class: long-term statistics of an uptime mean nothing.
			if once("uptime") {
				host(entity{key: "uptime", platform: platformSensor, name: "Uptime", unit: "s", devClass: "duration",
					metric: s.Name, scale: 1, digits: 0, src: "uptime"})
			}
		case "network_receive_bytes_total", "network_transmit_bytes_total":
			i, ok := s.Labels["interface"]
			dir, verb := "rx", "received"
			if s.Name == "network_transmit_bytes_total" {
				dir, verb = "tx", "sent"
			}
			if ok && once("net "+dir+" "+i) {
				host(entity{key: "net_" + sanitize(i) + "_" + dir, platform: platformSensor, name: "Network " + verb + " " + i,
					unit: "B", devClass: "data_size", stateClass: "total_increasing", metric: s.Name,
					labels: map[string][]string{"interface": {i}}, scale: 1, digits: 0, src: "net " + dir + " " + i})
			}
		default:
			if s.Labels[haLabel] == haSensor {
				if e := customSensor(s); once(e.src) {
					out = append(out, e)
				}
			}
		}
	}
	if hw := d.Hardware; hw != nil {
		for _, l := range hw.Lines {
			platform := ""
			switch l.Direction {
			case protocol.DirOut:
				platform = platformSwitch
			case protocol.DirIn:
				platform = platformBinary
			default:
				continue // undeclared: no level is reported
			}
			names := []string{l.Name}
			if l.Alias != "" {
				names = append(names, l.Alias)
			}
			out = append(out, entity{key: "gpio_" + sanitize(lineLabel(l)), platform: platform, name: lineLabel(l),
				metric: metricGPIOLevel, labels: map[string][]string{"line": names}, scale: 1, line: l.Name, src: "line " + l.Name})
		}
		for _, s := range hw.Sensors {
			temp := entity{key: "sensor_" + sanitize(s.Name) + "_temperature", platform: platformSensor, name: s.Name + " temperature",
				unit: "°C", devClass: "temperature", stateClass: "measurement", metric: metricSensorTemp,
				labels: map[string][]string{"sensor": {s.Name}}, scale: 1, digits: 2, src: "sensor temperature " + s.Name}
			press := entity{key: "sensor_" + sanitize(s.Name) + "_pressure", platform: platformSensor, name: s.Name + " pressure",
				unit: "hPa", devClass: "atmospheric_pressure", stateClass: "measurement", metric: metricSensorPress,
				labels: map[string][]string{"sensor": {s.Name}}, scale: 0.01, digits: 2, src: "sensor pressure " + s.Name}
			hum := entity{key: "sensor_" + sanitize(s.Name) + "_humidity", platform: platformSensor, name: s.Name + " humidity",
				unit: "%", devClass: "humidity", stateClass: "measurement", metric: metricSensorHum,
				labels: map[string][]string{"sensor": {s.Name}}, scale: 100, digits: 1, src: "sensor humidity " + s.Name}
			switch s.Kind {
			case protocol.SensorDS18B20:
				out = append(out, temp)
			case protocol.SensorBME280:
				out = append(out, temp, press, hum)
			case protocol.SensorBMP280:
				out = append(out, temp, press)
			}
			// An input sensor is its line's binary sensor, above.
		}
	}
	dedupKeys(out)
	slices.SortFunc(out, func(a, b entity) int { return cmp.Compare(a.key, b.key) })
	return out
}

// The label by which a device's script asks for a custom metric to be a
// sensor in HA (agent/textfile: push --ha-sensor).
const (
	haLabel  = "ha"
	haSensor = "sensor"
)

// unitSuffixes map the unit suffix of a custom metric's name (after any
// _total) to its HA unit, device class, scale and decimals.
var unitSuffixes = []struct {
	suffix, unit, devClass string
	scale                  float64
	digits                 int
}{
	{"_celsius", "°C", "temperature", 1, 2},
	{"_ratio", "%", "", 100, 1},
	{"_bytes", "B", "data_size", 1, 0},
	{"_seconds", "s", "duration", 1, 2},
	{"_volts", "V", "", 1, 3},
	{"_amperes", "A", "", 1, 3},
	{"_watts", "W", "", 1, 2},
	{"_hertz", "Hz", "", 1, 2},
	{"_meters", "m", "", 1, 3},
	{"_pascals", "Pa", "", 1, 0},
}

// customSensor is the entity of a custom series marked ha="sensor": keyed
// custom_<name>[_<label value>…] (labels in name order, ha left out),
// named after its name and labels, its unit from its name's suffix, a
// total_increasing counter when its name ends in _total.
func customSensor(s metrics.Sample) entity {
	e := entity{platform: platformSensor, metric: s.Name, exact: true, labels: make(map[string][]string, len(s.Labels)),
		scale: 1, digits: 2, stateClass: "measurement"}
	key, name := "custom_"+s.Name, s.Name
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		e.labels[k] = []string{s.Labels[k]}
		if k != haLabel {
			key += "_" + s.Labels[k]
			name += " " + k + "=" + s.Labels[k]
		}
	}
	e.key, e.name, e.src = sanitize(key), name, "custom "+name
	base := s.Name
	if b, ok := strings.CutSuffix(base, "_total"); ok {
		base, e.stateClass = b, "total_increasing"
	}
	for _, u := range unitSuffixes {
		if strings.HasSuffix(base, u.suffix) {
			e.unit, e.devClass, e.scale, e.digits = u.unit, u.devClass, u.scale, u.digits
			break
		}
	}
	return e
}

// lineLabel is the household's name of a line, else the board's.
func lineLabel(l protocol.HardwareLine) string { return cmp.Or(l.Alias, l.Name) }

// mountKey turns a mount point into a key part: "/" is "root",
// "/boot/firmware" is "boot_firmware".
func mountKey(m string) string {
	if t := strings.Trim(m, "/"); t != "" {
		return sanitize(t)
	}
	return "root"
}

// sanitize replaces every byte outside [A-Za-z0-9_-] with "_", as HA wants
// in discovery IDs and unique IDs.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !validIDByte(c) {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

func validIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// dedupKeys gives every entity whose key collides with another's a suffix
// made from a hash of its source, so that each keeps a stable, distinct key
// whatever the order.
func dedupKeys(es []entity) {
	count := map[string]int{}
	for _, e := range es {
		count[e.key]++
	}
	for i := range es {
		if count[es[i].key] > 1 {
			h := sha256.Sum256([]byte(es[i].src))
			es[i].key += "_" + hex.EncodeToString(h[:3])
		}
	}
}

// Discovery config, with HA's abbreviated keys
// (https://www.home-assistant.io/integrations/mqtt/#device-discovery-payload).
type discoveryConfig struct {
	Device     deviceInfo           `json:"dev"`
	Origin     originInfo           `json:"o"`
	AvtyTopic  string               `json:"avty_t"`
	PlAvail    string               `json:"pl_avail"`
	PlNotAvail string               `json:"pl_not_avail"`
	QoS        int                  `json:"qos"`
	Components map[string]component `json:"cmps"`
}

type deviceInfo struct {
	IDs          []string `json:"ids"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"mf"`
	Model        string   `json:"mdl,omitempty"`
	SWVersion    string   `json:"sw,omitempty"`
	Area         string   `json:"sa,omitempty"`
}

type originInfo struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw,omitempty"`
}

// component is one entry of cmps. A component with only its platform set
// asks HA to remove it.
type component struct {
	Platform   string `json:"p"`
	UniqueID   string `json:"uniq_id,omitempty"`
	Name       string `json:"name,omitempty"`
	StateTopic string `json:"stat_t,omitempty"`
	ValueTpl   string `json:"val_tpl,omitempty"`
	CmdTopic   string `json:"cmd_t,omitempty"`
	PayloadOn  string `json:"pl_on,omitempty"`
	PayloadOff string `json:"pl_off,omitempty"`
	Unit       string `json:"unit_of_meas,omitempty"`
	DevClass   string `json:"dev_cla,omitempty"`
	StateClass string `json:"stat_cla,omitempty"`
	EntityCat  string `json:"ent_cat,omitempty"`
	QoS        int    `json:"qos,omitempty"`
}

// haID is the device's ID as HA's discovery accepts it ([A-Za-z0-9_-];
// device IDs are lowercase base32, so this changes nothing in practice).
func haID(deviceID string) string { return "alicia_" + sanitize(deviceID) }

func stateTopic(deviceID string) string        { return BaseTopic + "/" + deviceID + "/state" }
func availabilityTopic(deviceID string) string { return BaseTopic + "/" + deviceID + "/availability" }
func commandTopic(deviceID, line string) string {
	return BaseTopic + "/" + deviceID + "/" + line + "/set"
}

// buildConfig returns the discovery config of device d with entities es;
// version is the hub's.
func buildConfig(d registry.Device, es []entity, version string) discoveryConfig {
	id := haID(d.ID)
	c := discoveryConfig{
		Device: deviceInfo{IDs: []string{id}, Name: protocol.SafeText(cmp.Or(d.Name, d.ID)), Manufacturer: "Alicia",
			SWVersion: protocol.SafeText(d.AgentVersion), Area: protocol.SafeText(d.Labels["room"])},
		Origin:    originInfo{Name: "alicia", SWVersion: version},
		AvtyTopic: availabilityTopic(d.ID), PlAvail: payloadOnline, PlNotAvail: payloadOffline,
		QoS:        1,
		Components: make(map[string]component, len(es)),
	}
	if d.Hardware != nil {
		c.Device.Model = d.Hardware.Model
	}
	if d.Facts != nil {
		c.Device.Model = cmp.Or(c.Device.Model, d.Facts.CPUModel, d.Facts.Arch)
	}
	c.Device.Model = protocol.SafeText(c.Device.Model)
	st := stateTopic(d.ID)
	for _, e := range es {
		comp := component{Platform: e.platform, UniqueID: id + "_" + e.key, Name: protocol.SafeText(e.name), StateTopic: st,
			Unit: e.unit, DevClass: e.devClass, StateClass: e.stateClass, QoS: 1}
		if e.diagnostic {
			comp.EntityCat = "diagnostic"
		}
		v := "value_json['" + e.key + "']"
		if e.binary() {
			// A missing value renders "None", which HA shows as unknown.
			comp.ValueTpl = "{% if " + v + " is not defined %}None{% elif " + v + " %}ON{% else %}OFF{% endif %}"
		} else {
			comp.ValueTpl = "{{ " + v + " | default('None') }}"
		}
		if e.platform == platformSwitch {
			comp.CmdTopic = commandTopic(d.ID, lineLabel(lineOf(d, e.line)))
			comp.PayloadOn, comp.PayloadOff = payloadOn, payloadOff
		}
		c.Components[e.key] = comp
	}
	return c
}

// lineOf returns device d's line named name.
func lineOf(d registry.Device, name string) protocol.HardwareLine {
	if d.Hardware != nil {
		for _, l := range d.Hardware.Lines {
			if l.Name == name {
				return l
			}
		}
	}
	return protocol.HardwareLine{Name: name}
}

// override is a line level the hub knows from a command before the device
// reports it: it holds until a gpio_level sample newer than seen arrives.
type override struct {
	level bool
	// seen is the time of the latest sample of the line when the command
	// succeeded (zero if none).
	seen time.Time
}

// buildState returns the state document of entities es from samples: each
// entity's key with its converted value, lines as 0 or 1. Entities without
// a value are left out. Overrides whose line has a newer sample are deleted
// from overrides.
func buildState(es []entity, samples []metrics.Sample, overrides map[string]override) map[string]any {
	st := make(map[string]any, len(es))
	for i := range es {
		e := &es[i]
		var s *metrics.Sample
		for j := range samples {
			if e.matches(samples[j]) && (s == nil || samples[j].Time.After(s.Time)) {
				s = &samples[j]
			}
		}
		if e.binary() {
			if o, ok := overrides[e.line]; ok {
				if s == nil || !s.Time.After(o.seen) {
					st[e.key] = b2i(o.level)
					continue
				}
				delete(overrides, e.line)
			}
			if s != nil {
				st[e.key] = b2i(s.Value != 0)
			}
			continue
		}
		if s == nil {
			continue
		}
		v := s.Value * e.scale
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		p := math.Pow10(e.digits)
		st[e.key] = math.Round(v*p) / p
	}
	return st
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// marshal encodes v without the encoder's trailing newline, with <, > and
// & escaped (\u003c…): HA decodes the same strings, and a web MQTT viewer
// that shows a raw payload is not handed markup from a device's name.
func marshal(v any) ([]byte, error) {
	return json.Marshal(v)
}
