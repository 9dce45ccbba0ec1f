// Package hardware is the agent's side of the device's hardware: it opens
// the HAL backend chosen with --hal, combines what it detects with the
// board file into the hardware the agent registers, executes the hub's
// commands on it (agent/actuate), samples the declared sensors and lines
// into telemetry, and reports edges on declared inputs as events.
//
// Metrics it adds to each batch (labels in braces):
//
//	sensor_temperature_celsius{sensor}   DS18B20, BME280, BMP280
//	sensor_pressure_pascals{sensor}      BME280, BMP280
//	sensor_humidity_ratio{sensor}        BME280 (0–1)
//	sensor_up{sensor}                    1 when the last reading succeeded, else 0
//	gpio_level{line}                     0 or 1, for every line the board file declares (line = its board name, e.g. GPIO17)
package hardware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/alicia-home/alicia/agent/actuate"
	"github.com/alicia-home/alicia/agent/board"
	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/hal/periph"
	"github.com/alicia-home/alicia/hal/sensor"
	"github.com/alicia-home/alicia/hal/sim"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Backends for Open.
const (
	BackendAuto   = "auto"   // periph when the board has any hardware, else none
	BackendNone   = "none"   // no HAL: no hardware is registered or commanded
	BackendSim    = "sim"    // the simulated board (hal/sim)
	BackendPeriph = "periph" // the real board (hal/periph)
)

// OpenBoard opens the HAL backend. It returns nil, nil for BackendNone, and
// for BackendAuto on a machine with no GPIO, I2C, SPI or 1-wire.
func OpenBoard(backend string) (hal.Board, error) {
	switch backend {
	case BackendNone:
		return nil, nil
	case BackendSim:
		return sim.New(sim.Options{})
	case BackendPeriph, BackendAuto, "":
		b, err := periph.New(periph.Options{})
		if err != nil {
			return nil, fmt.Errorf("hal periph: %w", err)
		}
		if backend == BackendPeriph {
			return b, nil
		}
		d := b.Describe()
		if len(d.Lines)+len(d.I2C)+len(d.SPI)+len(d.OneWire) == 0 {
			b.Close()
			return nil, nil
		}
		return b, nil
	}
	return nil, fmt.Errorf("hal %q: want auto, none, sim or periph", backend)
}

// Runtime is the device's hardware as the agent uses it.
type Runtime struct {
	board hal.Board
	file  board.File
	hw    *protocol.Hardware
	exec  *actuate.Executor
	log   *slog.Logger
	// dsBits is the DS18B20 resolution read at; never changed, since
	// changing it rewrites the sensor's EEPROM.
	dsBits int

	mu     sync.Mutex
	failed map[string]bool // sensors whose last reading failed (logged once)
}

// New combines board b with the board file f. The error names every
// declaration the board cannot satisfy.
func New(b hal.Board, f board.File, log *slog.Logger) (*Runtime, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hw, err := board.Hardware(b.Describe(), f)
	if err != nil {
		return nil, err
	}
	r := &Runtime{board: b, file: f, hw: hw, log: log, dsBits: 12, failed: map[string]bool{}}
	// Declared inputs get their pull and edge detection now, so their
	// level reads right from the first sample; outputs are left as they
	// are (the agent does not know a safe level).
	for _, l := range f.Lines {
		if l.Direction != protocol.DirIn {
			continue
		}
		pin, err := b.GPIO(l.Name)
		if err == nil {
			err = pin.In(pullOf(l), gpio.BothEdges)
		}
		if err != nil {
			return nil, fmt.Errorf("input %s (%s): %w", l.Alias, l.Name, err)
		}
	}
	r.exec = actuate.New(actuate.Config{Board: b, Lines: hw.Lines, I2C: hw.I2C, ReadSensor: r.ReadSensor})
	return r, nil
}

func pullOf(l board.Line) gpio.Pull {
	switch l.Pull {
	case "up":
		return gpio.PullUp
	case "down":
		return gpio.PullDown
	}
	return gpio.PullNoChange
}

// Hardware is what the agent registers.
func (r *Runtime) Hardware() *protocol.Hardware { return r.hw }

// Execute runs a command from the hub.
func (r *Runtime) Execute(ctx context.Context, c *protocol.Command) protocol.CommandResult {
	return r.exec.Execute(ctx, c)
}

// Close closes the board.
func (r *Runtime) Close() error { return r.board.Close() }

// sensorByName finds a registered sensor.
func (r *Runtime) sensorByName(name string) (protocol.HardwareSensor, bool) {
	i := slices.IndexFunc(r.hw.Sensors, func(s protocol.HardwareSensor) bool { return s.Name == name })
	if i < 0 {
		return protocol.HardwareSensor{}, false
	}
	return r.hw.Sensors[i], true
}

// ReadSensor reads the sensor called name now, as named values in SI
// units. An unknown name wraps hal.ErrNotPresent.
func (r *Runtime) ReadSensor(ctx context.Context, name string) (map[string]float64, error) {
	s, ok := r.sensorByName(name)
	if !ok {
		return nil, fmt.Errorf("sensor %q: %w", name, hal.ErrNotPresent)
	}
	switch s.Kind {
	case protocol.SensorDS18B20:
		bus, err := r.board.OneWire(s.Bus)
		if err != nil {
			return nil, err
		}
		defer bus.Close()
		addr, err := sensor.ParseAddress(s.Device)
		if err != nil {
			return nil, err
		}
		c, err := sensor.ReadDS18B20(ctx, bus, addr, r.dsBits)
		if err != nil {
			return nil, fmt.Errorf("ds18b20 %s on %s: %w", s.Device, s.Bus, err)
		}
		return map[string]float64{"temperature_celsius": c}, nil
	case protocol.SensorBME280, protocol.SensorBMP280:
		bus, err := r.board.I2C(s.Bus)
		if err != nil {
			return nil, err
		}
		defer bus.Close()
		read := sensor.ReadBME280
		if s.Kind == protocol.SensorBMP280 {
			read = sensor.ReadBMP280
		}
		rd, err := read(ctx, bus, s.Address)
		if err != nil {
			return nil, fmt.Errorf("%s on i2c %s at %#x: %w", s.Kind, s.Bus, s.Address, err)
		}
		v := map[string]float64{"temperature_celsius": rd.TemperatureCelsius, "pressure_pascals": rd.PressurePascals}
		if s.Kind == protocol.SensorBME280 {
			v["humidity_ratio"] = rd.HumidityRatio
		}
		return v, nil
	case protocol.SensorInput:
		pin, err := r.board.GPIO(s.Line)
		if err != nil {
			return nil, err
		}
		level := 0.0
		if pin.Read() == gpio.High {
			level = 1
		}
		return map[string]float64{"level": level}, nil
	}
	return nil, fmt.Errorf("sensor %q: kind %q not supported", name, s.Kind)
}

// metricNames maps a sensor reading's value names to metric names.
var metricNames = map[string]string{
	"temperature_celsius": "sensor_temperature_celsius",
	"pressure_pascals":    "sensor_pressure_pascals",
	"humidity_ratio":      "sensor_humidity_ratio",
}

// Metric names of Sample besides those of metricNames.
const (
	metricSensorUp  = "sensor_up"
	metricGPIOLevel = "gpio_level"
)

// IsHardwareMetric reports whether Sample sends metrics named name (on any
// board): custom metrics may not take these names.
func IsHardwareMetric(name string) bool {
	if name == metricSensorUp || name == metricGPIOLevel {
		return true
	}
	for _, m := range metricNames {
		if m == name {
			return true
		}
	}
	return false
}

// Sample reads every declared sensor (concurrently: a DS18B20 conversion
// takes 750 ms) and the level of every declared line.
func (r *Runtime) Sample(ctx context.Context) []protocol.Point {
	type result struct {
		name string
		v    map[string]float64
		err  error
	}
	var sensors []protocol.HardwareSensor
	for _, s := range r.hw.Sensors {
		if s.Kind != protocol.SensorInput { // inputs are in gpio_level
			sensors = append(sensors, s)
		}
	}
	results := make([]result, len(sensors))
	var wg sync.WaitGroup
	for i, s := range sensors {
		wg.Go(func() {
			v, err := r.ReadSensor(ctx, s.Name)
			results[i] = result{s.Name, v, err}
		})
	}
	wg.Wait()
	var pts []protocol.Point
	for _, res := range results {
		labels := map[string]string{"sensor": res.name}
		up := 1.0
		if res.err != nil {
			up = 0
			r.noteFailure(res.name, res.err)
		} else {
			r.noteSuccess(res.name)
		}
		pts = append(pts, protocol.Point{Name: metricSensorUp, Labels: labels, Value: up})
		for k, v := range res.v {
			if m, ok := metricNames[k]; ok {
				pts = append(pts, protocol.Point{Name: m, Labels: labels, Value: v})
			}
		}
	}
	for _, l := range r.hw.Lines {
		if l.Direction == "" {
			continue
		}
		pin, err := r.board.GPIO(l.Name)
		if err != nil {
			continue
		}
		v := 0.0
		if pin.Read() == gpio.High {
			v = 1
		}
		pts = append(pts, protocol.Point{Name: metricGPIOLevel, Labels: map[string]string{"line": l.Name}, Value: v})
	}
	return pts
}

func (r *Runtime) noteFailure(name string, err error) {
	r.mu.Lock()
	first := !r.failed[name]
	r.failed[name] = true
	r.mu.Unlock()
	if first {
		r.log.Warn("sensor reading failed (logged again only after it recovers)", "sensor", name, "err", err)
	}
}

func (r *Runtime) noteSuccess(name string) {
	r.mu.Lock()
	was := r.failed[name]
	delete(r.failed, name)
	r.mu.Unlock()
	if was {
		r.log.Info("sensor reading recovered", "sensor", name)
	}
}

// defaultSettle is the debounce of an input the board file gives none.
const defaultSettle = 5 * time.Millisecond

// WatchInputs reports every debounced change of a declared input line to
// emit, until ctx is done.
func (r *Runtime) WatchInputs(ctx context.Context, emit func(protocol.DeviceEvent)) {
	var wg sync.WaitGroup
	for _, l := range r.file.Lines {
		if l.Direction != protocol.DirIn {
			continue
		}
		wg.Go(func() { r.watch(ctx, l, emit) })
	}
	wg.Wait()
}

func (r *Runtime) watch(ctx context.Context, l board.Line, emit func(protocol.DeviceEvent)) {
	pin, err := r.board.GPIO(l.Name)
	if err != nil {
		r.log.Warn("input not watched", "line", l.Name, "err", err)
		return
	}
	settle := l.Debounce
	if settle <= 0 {
		settle = defaultSettle
	}
	last := pin.Read()
	for ctx.Err() == nil {
		level, err := sensor.WaitForStableEdge(pin, settle, time.Second)
		if errors.Is(err, sensor.ErrNoEdge) {
			continue
		}
		if err != nil {
			if errors.Is(err, hal.ErrClosed) {
				return
			}
			r.log.Warn("input edge", "line", l.Name, "err", err)
			continue
		}
		if level == last {
			continue // bounced back: no change
		}
		last = level
		high := level == gpio.High
		emit(protocol.DeviceEvent{Event: protocol.EventGPIOEdge, Line: l.Name, Level: &high, Time: time.Now().UTC()})
	}
}

// SimBoardFile is the board file used with the simulated board when none
// is given: its relay, its button, and both its sensors.
func SimBoardFile() string {
	return "relay: " + sim.RelayLine + " out\n" +
		"button: " + sim.ButtonLine + " in pull-up debounce=20ms\n" +
		"ds18b20 " + sim.OneWireBus + "/" + sensor.FormatAddress(sim.DS18B20Addr) + " as temp_sim\n" +
		fmt.Sprintf("bme280 %s %#x as climate\n", sim.I2CBus, sim.BME280Addr) +
		"input button as button_contact\n"
}
