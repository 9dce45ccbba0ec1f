// Package board reads a device's board file — the household's names for
// its GPIO lines and the sensors wired to it — and combines it with what
// the HAL detected into the hardware the agent registers
// (protocol.Hardware).
//
// The file is plain text, one statement per line; '#' starts a comment:
//
//	# lines: <alias>: <line> <in|out> [pull-up|pull-down] [debounce=<duration>]
//	relay_kitchen: GPIO17 out
//	door: GPIO27 in pull-up debounce=50ms
//
//	# sensors: <kind> <where> as <name>
//	ds18b20 28-0000075a3b0c as temp_garage          # on the first 1-wire bus
//	ds18b20 w1_bus_master2/28-0000075a3b0d as temp_loft
//	bme280 1 0x76 as climate                        # I2C bus 1, address 0x76
//	bmp280 1 0x77 as pressure
//	input door as door_contact                      # a declared input line
//
// Errors name the file, the line number and what is wrong.
package board

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Line is a declared GPIO line.
type Line struct {
	Alias     string
	Name      string // the board's name, e.g. GPIO17
	Direction string // protocol.DirIn or protocol.DirOut
	// Pull is "up", "down" or "" (the line's default), for inputs.
	Pull string
	// Debounce is how long an input must stay at a new level before the
	// change counts (0: no debouncing).
	Debounce time.Duration
}

// Sensor is a declared sensor.
type Sensor struct {
	Name    string
	Kind    string // protocol.Sensor…
	Bus     string // I2C or 1-wire bus; "" for the first 1-wire bus
	Address uint16 // I2C address
	Device  string // 1-wire ROM ID, e.g. 28-0000075a3b0c
	Line    string // an input sensor's line alias or name
}

// File is a parsed board file.
type File struct {
	Lines   []Line
	Sensors []Sensor
}

// MaxDebounce bounds a line's debounce time.
const MaxDebounce = 10 * time.Second

// Load reads and parses the board file at path. A missing file is an
// empty File, not an error: the board file is optional.
func Load(path string) (File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return File{}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("board file: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse parses a board file read from r; name is used in errors.
func Parse(name string, r io.Reader) (File, error) {
	var out File
	names := map[string]int{} // alias or sensor name → line number
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		errf := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", name, n, fmt.Sprintf(format, args...))
		}
		claim := func(what string) error {
			if err := checkName(what); err != nil {
				return errf("%v", err)
			}
			if prev, ok := names[what]; ok {
				return errf("%q is already declared on line %d", what, prev)
			}
			names[what] = n
			return nil
		}
		if alias, ok := strings.CutSuffix(fields[0], ":"); ok {
			l, err := parseLine(alias, fields[1:])
			if err != nil {
				return File{}, errf("%v", err)
			}
			if err := claim(alias); err != nil {
				return File{}, err
			}
			if i := slices.IndexFunc(out.Lines, func(o Line) bool { return o.Name == l.Name }); i >= 0 {
				return File{}, errf("line %s is already declared as %q", l.Name, out.Lines[i].Alias)
			}
			out.Lines = append(out.Lines, l)
			continue
		}
		s, err := parseSensor(fields)
		if err != nil {
			return File{}, errf("%v", err)
		}
		if err := claim(s.Name); err != nil {
			return File{}, err
		}
		out.Sensors = append(out.Sensors, s)
	}
	if err := sc.Err(); err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	// An alias must not be a line's name (its own or another's): the hub
	// would not know which line it names.
	for _, l := range out.Lines {
		if i := slices.IndexFunc(out.Lines, func(o Line) bool { return o.Name == l.Alias }); i >= 0 {
			return File{}, fmt.Errorf("%s:%d: alias %q is the name of line %s; give it another name", name, names[l.Alias], l.Alias, out.Lines[i].Name)
		}
	}
	// An input sensor names a declared input line.
	for _, s := range out.Sensors {
		if s.Kind != protocol.SensorInput {
			continue
		}
		i := slices.IndexFunc(out.Lines, func(l Line) bool { return l.Alias == s.Line || l.Name == s.Line })
		if i < 0 || out.Lines[i].Direction != protocol.DirIn {
			return File{}, fmt.Errorf("%s:%d: input %s: %q is not a line declared \"in\" in this file", name, names[s.Name], s.Name, s.Line)
		}
	}
	return out, nil
}

// checkName checks an alias or a sensor name: it becomes a metric label
// and a protocol name.
func checkName(s string) error {
	if err := protocol.ValidateLabelName(s); err != nil {
		return fmt.Errorf("name %q: use letters, digits and '_', not starting with a digit", s)
	}
	return nil
}

func parseLine(alias string, fields []string) (Line, error) {
	if len(fields) < 2 {
		return Line{}, fmt.Errorf("want \"%s: <line> <in|out> [pull-up|pull-down] [debounce=<duration>]\"", alias)
	}
	l := Line{Alias: alias, Name: fields[0], Direction: fields[1]}
	if err := protocol.ValidateID(l.Name); err != nil {
		return Line{}, fmt.Errorf("line name %q: %v", l.Name, err)
	}
	if l.Direction != protocol.DirIn && l.Direction != protocol.DirOut {
		return Line{}, fmt.Errorf("direction %q: want in or out", l.Direction)
	}
	for _, opt := range fields[2:] {
		switch {
		case opt == "pull-up" || opt == "pull-down":
			if l.Direction != protocol.DirIn {
				return Line{}, fmt.Errorf("%s: only an input has a pull", opt)
			}
			if l.Pull != "" {
				return Line{}, fmt.Errorf("%s: the pull is already %s", opt, l.Pull)
			}
			l.Pull = strings.TrimPrefix(opt, "pull-")
		case strings.HasPrefix(opt, "debounce="):
			if l.Direction != protocol.DirIn {
				return Line{}, fmt.Errorf("%s: only an input is debounced", opt)
			}
			d, err := time.ParseDuration(strings.TrimPrefix(opt, "debounce="))
			if err != nil || d < 0 || d > MaxDebounce {
				return Line{}, fmt.Errorf("%s: want a duration from 0 to %s, such as 50ms", opt, MaxDebounce)
			}
			l.Debounce = d
		default:
			return Line{}, fmt.Errorf("unknown option %q: want pull-up, pull-down or debounce=<duration>", opt)
		}
	}
	return l, nil
}

func parseSensor(fields []string) (Sensor, error) {
	n := len(fields)
	if n < 3 || fields[n-2] != "as" {
		return Sensor{}, fmt.Errorf("want \"<alias>: <line> <in|out>\" or \"<kind> <where> as <name>\", got %q", strings.Join(fields, " "))
	}
	s := Sensor{Kind: fields[0], Name: fields[n-1]}
	where := fields[1 : n-2]
	switch s.Kind {
	case protocol.SensorDS18B20:
		if len(where) != 1 {
			return Sensor{}, fmt.Errorf("ds18b20: want \"ds18b20 [<bus>/]<rom id> as <name>\"")
		}
		bus, dev, ok := strings.Cut(where[0], "/")
		if !ok {
			bus, dev = "", where[0]
		}
		if !isROMID(dev) {
			return Sensor{}, fmt.Errorf("ds18b20: %q is not a 1-wire ROM ID such as 28-0000075a3b0c", dev)
		}
		if bus != "" {
			if err := protocol.ValidateID(bus); err != nil {
				return Sensor{}, fmt.Errorf("ds18b20: bus %q: %v", bus, err)
			}
		}
		s.Bus, s.Device = bus, dev
	case protocol.SensorBME280, protocol.SensorBMP280:
		if len(where) != 2 {
			return Sensor{}, fmt.Errorf("%s: want \"%s <i2c bus> <address> as <name>\", such as \"%s 1 0x76 as climate\"", s.Kind, s.Kind, s.Kind)
		}
		if err := protocol.ValidateID(where[0]); err != nil {
			return Sensor{}, fmt.Errorf("%s: bus %q: %v", s.Kind, where[0], err)
		}
		a, err := strconv.ParseUint(where[1], 0, 16)
		if err != nil || (a != 0x76 && a != 0x77) {
			return Sensor{}, fmt.Errorf("%s: address %q: a %s answers at 0x76 or 0x77", s.Kind, where[1], s.Kind)
		}
		s.Bus, s.Address = where[0], uint16(a)
	case protocol.SensorInput:
		if len(where) != 1 {
			return Sensor{}, fmt.Errorf("input: want \"input <line alias> as <name>\"")
		}
		s.Line = where[0]
	default:
		return Sensor{}, fmt.Errorf("unknown sensor kind %q: want ds18b20, bme280, bmp280 or input", s.Kind)
	}
	return s, nil
}

// isROMID reports whether s looks like a kernel w1 slave name: a family
// code, '-', 12 hex digits.
func isROMID(s string) bool {
	fam, id, ok := strings.Cut(s, "-")
	if !ok || len(fam) != 2 || len(id) != 12 {
		return false
	}
	for _, c := range fam + id {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// Hardware combines what the board has (d) with the file's declarations:
// every detected line (with its alias and direction if declared), the
// buses, and the declared sensors with their bus resolved. A declaration
// naming hardware the board does not have is an error that says so.
func Hardware(d hal.Description, f File) (*protocol.Hardware, error) {
	h := &protocol.Hardware{Backend: d.Backend, Model: d.Model, I2C: d.I2C, SPI: d.SPI, OneWire: d.OneWire}
	for _, l := range d.Lines {
		h.Lines = append(h.Lines, protocol.HardwareLine{Name: l.Name, PWM: l.PWM})
	}
	var errs []error
	for _, l := range f.Lines {
		i := slices.IndexFunc(h.Lines, func(hl protocol.HardwareLine) bool { return hl.Name == l.Name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("board file: %s: line %s is not on this board (%s)", l.Alias, l.Name, describeLines(d)))
			continue
		}
		h.Lines[i].Alias, h.Lines[i].Direction = l.Alias, l.Direction
	}
	for _, s := range f.Sensors {
		hs := protocol.HardwareSensor{Name: s.Name, Kind: s.Kind, Bus: s.Bus, Address: s.Address, Device: s.Device, Line: s.Line}
		switch s.Kind {
		case protocol.SensorDS18B20:
			if hs.Bus == "" {
				if len(d.OneWire) == 0 {
					errs = append(errs, fmt.Errorf("board file: %s: this board has no 1-wire bus (enable the w1-gpio overlay)", s.Name))
					continue
				}
				hs.Bus = d.OneWire[0]
			} else if !slices.Contains(d.OneWire, hs.Bus) {
				errs = append(errs, fmt.Errorf("board file: %s: 1-wire bus %s is not on this board (it has %v)", s.Name, hs.Bus, d.OneWire))
				continue
			}
		case protocol.SensorBME280, protocol.SensorBMP280:
			if !slices.Contains(d.I2C, hs.Bus) {
				errs = append(errs, fmt.Errorf("board file: %s: I2C bus %s is not on this board (it has %v)", s.Name, hs.Bus, d.I2C))
				continue
			}
		case protocol.SensorInput:
			i := slices.IndexFunc(h.Lines, func(hl protocol.HardwareLine) bool { return hl.Alias == s.Line || hl.Name == s.Line })
			if i < 0 {
				continue // its line's own error is reported above
			}
			hs.Line = h.Lines[i].Name
		}
		h.Sensors = append(h.Sensors, hs)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return h, nil
}

func describeLines(d hal.Description) string {
	if len(d.Lines) == 0 {
		return "it has no GPIO lines"
	}
	if len(d.Lines) > 8 {
		return fmt.Sprintf("it has %s … %s", d.Lines[0].Name, d.Lines[len(d.Lines)-1].Name)
	}
	names := make([]string, len(d.Lines))
	for i, l := range d.Lines {
		names[i] = l.Name
	}
	return "it has " + strings.Join(names, ", ")
}
