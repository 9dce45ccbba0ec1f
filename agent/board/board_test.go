package board

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/internal/protocol"
)

const example = `# garage-pi
relay_kitchen: GPIO17 out
door: GPIO27 in pull-up debounce=50ms   # reed switch

ds18b20 28-0000075a3b0c as temp_garage
ds18b20 w1_bus_master2/28-0000075a3b0d as temp_loft
bme280 1 0x76 as climate
input door as door_contact
`

var pi = hal.Description{Backend: "periph", Model: "Raspberry Pi Zero W Rev 1.1",
	Lines: []hal.LineInfo{{Name: "GPIO4"}, {Name: "GPIO17"}, {Name: "GPIO18", PWM: true}, {Name: "GPIO27"}},
	I2C:   []string{"1"}, OneWire: []string{"w1_bus_master1", "w1_bus_master2"}}

func TestParseAndHardware(t *testing.T) {
	f, err := Parse("board.conf", strings.NewReader(example))
	if err != nil {
		t.Fatal(err)
	}
	want := File{
		Lines: []Line{{Alias: "relay_kitchen", Name: "GPIO17", Direction: "out"}, {Alias: "door", Name: "GPIO27", Direction: "in", Pull: "up", Debounce: 50 * time.Millisecond}},
		Sensors: []Sensor{{Name: "temp_garage", Kind: "ds18b20", Device: "28-0000075a3b0c"}, {Name: "temp_loft", Kind: "ds18b20", Bus: "w1_bus_master2", Device: "28-0000075a3b0d"},
			{Name: "climate", Kind: "bme280", Bus: "1", Address: 0x76}, {Name: "door_contact", Kind: "input", Line: "door"}},
	}
	if diff := cmp.Diff(want, f); diff != "" {
		t.Fatalf("parse (-want +got):\n%s", diff)
	}
	h, err := Hardware(pi, f)
	if err != nil {
		t.Fatal(err)
	}
	wantHW := &protocol.Hardware{Backend: "periph", Model: pi.Model,
		Lines: []protocol.HardwareLine{{Name: "GPIO4"}, {Name: "GPIO17", Alias: "relay_kitchen", Direction: "out"}, {Name: "GPIO18", PWM: true}, {Name: "GPIO27", Alias: "door", Direction: "in"}},
		I2C:   []string{"1"}, OneWire: []string{"w1_bus_master1", "w1_bus_master2"},
		Sensors: []protocol.HardwareSensor{{Name: "temp_garage", Kind: "ds18b20", Bus: "w1_bus_master1", Device: "28-0000075a3b0c"},
			{Name: "temp_loft", Kind: "ds18b20", Bus: "w1_bus_master2", Device: "28-0000075a3b0d"},
			{Name: "climate", Kind: "bme280", Bus: "1", Address: 0x76}, {Name: "door_contact", Kind: "input", Line: "GPIO27"}}}
	if diff := cmp.Diff(wantHW, h); diff != "" {
		t.Errorf("hardware (-want +got):\n%s", diff)
	}
	// What it registers is a valid protocol message.
	reg := protocol.Register{Name: "pi", AgentVersion: "v0", HeartbeatMS: 1000, Facts: protocol.Facts{Hostname: "pi", OS: "linux", Arch: "arm/v6"}, Hardware: h}
	if err := reg.Validate(); err != nil {
		t.Errorf("register with this hardware: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"relay: GPIO17", `board.conf:1: want "relay: <line> <in|out>`},
		{"relay: GPIO17 both", `board.conf:1: direction "both": want in or out`},
		{"\n\nrelay: GPIO17 out pull-up", "board.conf:3: pull-up: only an input has a pull"},
		{"door: GPIO27 in pull-up pull-down", "pull-down: the pull is already up"},
		{"door: GPIO27 in debounce=forever", "debounce=forever: want a duration"},
		{"door: GPIO27 in debounce=1m", "debounce=1m: want a duration from 0 to 10s"},
		{"door: GPIO27 in bouncy", `unknown option "bouncy"`},
		{"a: GPIO17 out\nb: GPIO17 in", `board.conf:2: line GPIO17 is already declared as "a"`},
		{"a: GPIO17 out\na: GPIO18 out", `board.conf:2: "a" is already declared on line 1`},
		{"9lives: GPIO17 out", `name "9lives"`},
		{"relay: GPIO/17 out", `line name "GPIO/17"`},
		{"ds18b20 28-xyz as t", `ds18b20: "28-xyz" is not a 1-wire ROM ID`},
		{"ds18b20 28-0000075a3b0c", `want "<alias>: <line> <in|out>" or "<kind> <where> as <name>"`},
		{"bme280 1 0x40 as c", "bme280: address \"0x40\": a bme280 answers at 0x76 or 0x77"},
		{"bme280 0x76 as c", `bme280: want "bme280 <i2c bus> <address> as <name>"`},
		{"dht22 GPIO4 as t", `unknown sensor kind "dht22"`},
		{"input door as d", `input d: "door" is not a line declared "in"`},
		{"door: GPIO27 out\ninput door as d", `board.conf:2: input d: "door" is not a line declared "in"`},
		{"a: GPIO17 out\nds18b20 28-0000075a3b0c as a", `"a" is already declared on line 1`},
		{"y: y in pull-up", `board.conf:1: alias "y" is the name of line y`},
		{"GPIO17: GPIO27 out\nrelay: GPIO17 out", `board.conf:1: alias "GPIO17" is the name of line GPIO17`},
	} {
		_, err := Parse("board.conf", strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestHardwareNamesWhatIsMissing(t *testing.T) {
	f, err := Parse("b", strings.NewReader("x: GPIO99 out\nbme280 2 0x76 as c\nds18b20 w1_bus_master9/28-0000075a3b0c as t"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Hardware(pi, f)
	for _, want := range []string{"x: line GPIO99 is not on this board (it has GPIO4, GPIO17, GPIO18, GPIO27)", "c: I2C bus 2 is not on this board", "t: 1-wire bus w1_bus_master9"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	f, _ = Parse("b", strings.NewReader("ds18b20 28-0000075a3b0c as t"))
	if _, err := Hardware(hal.Description{Backend: "periph"}, f); err == nil || !strings.Contains(err.Error(), "no 1-wire bus (enable the w1-gpio overlay)") {
		t.Errorf("ds18b20 without a 1-wire bus: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if f, err := Load(filepath.Join(dir, "missing.conf")); err != nil || len(f.Lines)+len(f.Sensors) != 0 {
		t.Errorf("missing file: %+v, %v; want empty and no error", f, err)
	}
	p := filepath.Join(dir, "board.conf")
	if err := os.WriteFile(p, []byte("relay: GPIO17 sideways\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":1:") {
		t.Errorf("bad file: %v, want an error naming %s:1", err, p)
	}
}
