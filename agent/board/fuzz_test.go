package board

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/internal/protocol"
)

// format writes f back as a board file.
func format(f File) string {
	var b strings.Builder
	for _, l := range f.Lines {
		fmt.Fprintf(&b, "%s: %s %s", l.Alias, l.Name, l.Direction)
		if l.Pull != "" {
			fmt.Fprintf(&b, " pull-%s", l.Pull)
		}
		if l.Debounce != 0 {
			fmt.Fprintf(&b, " debounce=%s", l.Debounce)
		}
		b.WriteString("\n")
	}
	for _, s := range f.Sensors {
		switch s.Kind {
		case protocol.SensorDS18B20:
			where := s.Device
			if s.Bus != "" {
				where = s.Bus + "/" + s.Device
			}
			fmt.Fprintf(&b, "ds18b20 %s as %s\n", where, s.Name)
		case protocol.SensorBME280, protocol.SensorBMP280:
			fmt.Fprintf(&b, "%s %s %#x as %s\n", s.Kind, s.Bus, s.Address, s.Name)
		case protocol.SensorInput:
			fmt.Fprintf(&b, "input %s as %s\n", s.Line, s.Name)
		}
	}
	return b.String()
}

// FuzzParse: Parse never panics; it refuses with an error that names the
// file; what it accepts reads the same once written back, and on a board
// that has the declared lines and buses it makes hardware that registers
// validly.
func FuzzParse(f *testing.F) {
	f.Add(example)
	for _, s := range []string{
		"", "# nothing\n\n", "relay: GPIO17", "door: GPIO27 in pull-down debounce=0s",
		"door: GPIO27 in debounce=1.5ms\ninput GPIO27 as d", "bmp280 i2c-1 119 as p",
		"ds18b20 w1/28-0000075A3B0C as t", "a: GPIO17 out\na: GPIO18 out", "relay:GPIO17 out",
		"x: y in pull-up # pull-down\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		file, err := Parse("board.conf", strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "board.conf:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		again, err := Parse("again", strings.NewReader(format(file)))
		if err != nil {
			t.Fatalf("written back as\n%s\nit is refused: %v", format(file), err)
		}
		if d := cmp.Diff(file, again, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("written back and read again (-first +again):\n%s", d)
		}

		// A board with exactly what the file declares.
		desc := hal.Description{Backend: "sim"}
		for _, l := range file.Lines {
			desc.Lines = append(desc.Lines, hal.LineInfo{Name: l.Name})
		}
		for _, s := range file.Sensors {
			switch {
			case s.Kind == protocol.SensorDS18B20 && s.Bus == "":
				desc.OneWire = append(desc.OneWire, "w1_bus_master1")
			case s.Kind == protocol.SensorDS18B20:
				desc.OneWire = append(desc.OneWire, s.Bus)
			case s.Kind == protocol.SensorBME280 || s.Kind == protocol.SensorBMP280:
				desc.I2C = append(desc.I2C, s.Bus)
			}
		}
		slices.Sort(desc.OneWire)
		slices.Sort(desc.I2C)
		desc.OneWire, desc.I2C = slices.Compact(desc.OneWire), slices.Compact(desc.I2C)
		hw, err := Hardware(desc, file)
		if err != nil {
			t.Fatalf("Hardware on a board with what the file declares: %v", err)
		}
		reg := protocol.Register{Name: "pi", AgentVersion: "v0", HeartbeatMS: 1000, Facts: protocol.Facts{Hostname: "pi", OS: "linux", Arch: "arm64"}, Hardware: hw}
		if err := reg.Validate(); err != nil {
			t.Fatalf("an accepted board file registers invalid hardware: %v\n%s", err, in)
		}
	})
}
