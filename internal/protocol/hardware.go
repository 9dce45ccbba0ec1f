package protocol

import "fmt"

// Hardware is what a device's agent offers through its HAL: the board's
// GPIO lines, buses and declared sensors, from detection and the
// device's board file. The hub validates commands against it.
type Hardware struct {
	// Backend is the agent's HAL: "periph" or "sim".
	Backend string `json:"backend"`
	// Model is the board's model, if known.
	Model   string           `json:"model,omitempty"`
	Lines   []HardwareLine   `json:"lines,omitempty"`
	I2C     []string         `json:"i2c,omitempty"`
	SPI     []string         `json:"spi,omitempty"`
	OneWire []string         `json:"onewire,omitempty"`
	Sensors []HardwareSensor `json:"sensors,omitempty"`
}

// Line directions. A line the board file does not declare has none and
// may be read but not written.
const (
	DirIn  = "in"
	DirOut = "out"
)

// HardwareLine is one GPIO line.
type HardwareLine struct {
	// Name is the board's name for the line ("GPIO17").
	Name string `json:"name"`
	// Alias is the household's name from the board file ("relay_kitchen");
	// commands may use either.
	Alias string `json:"alias,omitempty"`
	// Direction is DirIn, DirOut or "" (undeclared).
	Direction string `json:"direction,omitempty"`
	// PWM reports hardware PWM on the line.
	PWM bool `json:"pwm,omitempty"`
}

// Sensor kinds.
const (
	SensorDS18B20 = "ds18b20" // 1-wire temperature
	SensorBME280  = "bme280"  // I2C temperature, pressure, humidity
	SensorBMP280  = "bmp280"  // I2C temperature, pressure
	SensorInput   = "input"   // a digital input line
)

// HardwareSensor is a sensor declared in the board file.
type HardwareSensor struct {
	// Name is the household's name, also the sensor's metric label.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Bus and Address locate an I2C sensor ("1", 0x76) or a 1-wire one
	// (the bus, and the ROM ID as Device, e.g. "28-0000075a3b0c").
	Bus     string `json:"bus,omitempty"`
	Address uint16 `json:"address,omitempty"`
	Device  string `json:"device,omitempty"`
	// Line is an input sensor's GPIO line.
	Line string `json:"line,omitempty"`
}

// Limits of Hardware.
const (
	MaxHardwareLines   = 512
	MaxHardwareBuses   = 64
	MaxHardwareSensors = 128
)

func (h *Hardware) validate(prefix string) error {
	if h.Backend != "periph" && h.Backend != "sim" {
		return fieldError(prefix+"backend", fmt.Errorf("%q is not \"periph\" or \"sim\"", h.Backend))
	}
	if err := checkText(prefix+"model", h.Model, 0, 128); err != nil {
		return err
	}
	if len(h.Lines) > MaxHardwareLines {
		return fieldError(prefix+"lines", fmt.Errorf("%d lines, limit %d", len(h.Lines), MaxHardwareLines))
	}
	names := map[string]bool{}
	unique := func(field, name string) error {
		if names[name] {
			return fieldError(field, fmt.Errorf("%q names two lines", name))
		}
		names[name] = true
		return nil
	}
	for i, l := range h.Lines {
		f := fmt.Sprintf("%slines[%d]", prefix, i)
		if err := checkToken(f+".name", l.Name, 64); err != nil {
			return err
		}
		if err := unique(f+".name", l.Name); err != nil {
			return err
		}
		if l.Alias != "" {
			if err := checkToken(f+".alias", l.Alias, 64); err != nil {
				return err
			}
			if err := unique(f+".alias", l.Alias); err != nil {
				return err
			}
		}
		if l.Direction != "" && l.Direction != DirIn && l.Direction != DirOut {
			return fieldError(f+".direction", fmt.Errorf("%q is not %q or %q", l.Direction, DirIn, DirOut))
		}
	}
	for field, buses := range map[string][]string{"i2c": h.I2C, "spi": h.SPI, "onewire": h.OneWire} {
		if len(buses) > MaxHardwareBuses {
			return fieldError(prefix+field, fmt.Errorf("%d buses, limit %d", len(buses), MaxHardwareBuses))
		}
		for i, b := range buses {
			if err := checkToken(fmt.Sprintf("%s%s[%d]", prefix, field, i), b, 64); err != nil {
				return err
			}
		}
	}
	if len(h.Sensors) > MaxHardwareSensors {
		return fieldError(prefix+"sensors", fmt.Errorf("%d sensors, limit %d", len(h.Sensors), MaxHardwareSensors))
	}
	sensors := map[string]bool{}
	for i, s := range h.Sensors {
		f := fmt.Sprintf("%ssensors[%d]", prefix, i)
		if err := checkToken(f+".name", s.Name, 64); err != nil {
			return err
		}
		if sensors[s.Name] {
			return fieldError(f+".name", fmt.Errorf("%q names two sensors", s.Name))
		}
		sensors[s.Name] = true
		switch s.Kind {
		case SensorDS18B20, SensorBME280, SensorBMP280, SensorInput:
		default:
			return fieldError(f+".kind", fmt.Errorf("%q is not one of ds18b20, bme280, bmp280, input", s.Kind))
		}
		for sub, v := range map[string]string{"bus": s.Bus, "device": s.Device, "line": s.Line} {
			if v != "" {
				if err := checkToken(f+"."+sub, v, 64); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
