package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/alicia-home/alicia/hal"
)

// The simulated board's fixed topology.
const (
	// Backend is the Description.Backend of the simulated board.
	Backend = "sim"
	// DefaultModel is the Description.Model unless Options.Model is set.
	DefaultModel = "Alicia simulated board"
	// FirstLine and LastLine bound the GPIO lines, named GPIO4 … GPIO27.
	FirstLine = 4
	LastLine  = 27
	// RelayLine drives the simulated relay (energised while high).
	RelayLine = "GPIO17"
	// ButtonLine has the simulated push button, which connects the line to
	// ground while pressed: configure it with a pull-up.
	ButtonLine = "GPIO27"
	// I2CBus has the simulated BME280 at BME280Addr.
	I2CBus     = "1"
	BME280Addr = 0x76
	// OneWireBus has the simulated DS18B20 at DS18B20Addr.
	OneWireBus = "w1_bus_master1"
	// SPIPort is a loopback port: what is written is read back.
	SPIPort = "0.0"
)

// DS18B20Addr is the 1-wire address of the simulated DS18B20: family 0x28,
// serial 0x0000075b2a11 (Linux name 28-0000075b2a11) and a valid CRC.
var DS18B20Addr = withCRC(0x28 | 0x0000075b2a11<<8)

// pwmLines are the lines that support hardware PWM (as on a Raspberry Pi).
var pwmLines = []string{"GPIO12", "GPIO13", "GPIO18", "GPIO19"}

// Environment is what the simulated sensors measure.
type Environment struct {
	// TemperatureCelsius is measured by the BME280.
	TemperatureCelsius float64
	// PressurePascals is measured by the BME280.
	PressurePascals float64
	// HumidityRatio is the BME280's relative humidity, 0 to 1.
	HumidityRatio float64
}

// Options configures a simulated board. The zero value works.
type Options struct {
	// Model overrides DefaultModel in the Description.
	Model string
	// Environment is the initial BME280 reading; zero means 21.5 °C,
	// 101325 Pa and 0.45.
	Environment Environment
	// DS18B20Celsius is the initial DS18B20 temperature; zero means 19.25.
	DS18B20Celsius float64
}

// Validate reports whether the options describe a possible environment.
func (o Options) Validate() error {
	if err := o.Environment.validate(); err != nil && o.Environment != (Environment{}) {
		return err
	}
	if o.DS18B20Celsius != 0 {
		return validateDS18B20(o.DS18B20Celsius)
	}
	return nil
}

// Board is a simulated hal.Board: GPIO4…GPIO27 (PWM on GPIO12, 13, 18 and
// 19), a relay on RelayLine, a push button on ButtonLine, a BME280 on I2C
// bus I2CBus, a DS18B20 on OneWireBus and a loopback SPI port SPIPort. It
// is safe for concurrent use. Tests drive the world around it with Press,
// Release, Drive, SetEnvironment and SetDS18B20, and observe it with Relay,
// Level and PWM.
type Board struct {
	model   string
	lines   map[string]*line
	names   []string // line names in board order
	bme     *bme280
	ds      *ds18b20
	wire    *oneWireBus
	closed  atomic.Bool
	closeMu sync.Mutex
}

var _ hal.Board = (*Board)(nil)

// New returns a simulated board. It does no I/O.
func New(opts Options) (*Board, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	env := opts.Environment
	if env == (Environment{}) {
		env = Environment{TemperatureCelsius: 21.5, PressurePascals: 101325, HumidityRatio: 0.45}
	}
	dsC := opts.DS18B20Celsius
	if dsC == 0 {
		dsC = 19.25
	}
	b := &Board{model: opts.Model, lines: map[string]*line{}}
	if b.model == "" {
		b.model = DefaultModel
	}
	for n := FirstLine; n <= LastLine; n++ {
		name := "GPIO" + strconv.Itoa(n)
		// BCM283x reset state: pull-up on GPIO0-8, pull-down above.
		pull := gpio.PullDown
		if n <= 8 {
			pull = gpio.PullUp
		}
		b.lines[name] = newLine(b, name, n, slices.Contains(pwmLines, name), pull)
		b.names = append(b.names, name)
	}
	b.bme = newBME280(env)
	b.ds = newDS18B20(DS18B20Addr, dsC)
	b.wire = &oneWireBus{board: b, devices: []*ds18b20{b.ds}}
	return b, nil
}

// Describe implements hal.Board.
func (b *Board) Describe() hal.Description {
	d := hal.Description{
		Backend: Backend,
		Model:   b.model,
		I2C:     []string{I2CBus},
		SPI:     []string{SPIPort},
		OneWire: []string{OneWireBus},
	}
	for _, name := range b.names {
		d.Lines = append(d.Lines, hal.LineInfo{Name: name, PWM: b.lines[name].canPWM})
	}
	return d
}

// GPIO implements hal.Board. Every call for one name returns the same line.
func (b *Board) GPIO(name string) (gpio.PinIO, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("sim: gpio %q: %w", name, err)
	}
	l, ok := b.lines[name]
	if !ok {
		return nil, notPresent("gpio", name)
	}
	return l, nil
}

// I2C implements hal.Board. Each call returns a new handle on the bus;
// closing it does not affect other handles.
func (b *Board) I2C(name string) (i2c.BusCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("sim: i2c %q: %w", name, err)
	}
	if name != I2CBus {
		return nil, notPresent("i2c bus", name)
	}
	return &i2cHandle{board: b, name: name}, nil
}

// SPI implements hal.Board.
func (b *Board) SPI(name string) (spi.PortCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("sim: spi %q: %w", name, err)
	}
	if name != SPIPort {
		return nil, notPresent("spi port", name)
	}
	return &spiPort{board: b, name: name}, nil
}

// OneWire implements hal.Board.
func (b *Board) OneWire(name string) (onewire.BusCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("sim: onewire %q: %w", name, err)
	}
	if name != OneWireBus {
		return nil, notPresent("onewire bus", name)
	}
	return &oneWireHandle{bus: b.wire, name: name}, nil
}

// Close implements hal.Board: it interrupts pending WaitForEdge calls and
// makes every open method and every handle fail with hal.ErrClosed.
func (b *Board) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed.Swap(true) {
		return nil
	}
	for _, l := range b.lines {
		_ = l.Halt()
	}
	return nil
}

func (b *Board) checkOpen() error {
	if b.closed.Load() {
		return hal.ErrClosed
	}
	return nil
}

// Press presses the button on ButtonLine: the line is pulled to ground.
func (b *Board) Press() { b.lines[ButtonLine].drive(true, gpio.Low) }

// Release releases the button: the line goes back to its pull resistor.
func (b *Board) Release() { b.lines[ButtonLine].drive(false, gpio.Low) }

// Drive makes something outside drive the input line name to level, as a
// wire from another circuit would; edges are seen by WaitForEdge.
func (b *Board) Drive(name string, level gpio.Level) error {
	l, ok := b.lines[name]
	if !ok {
		return notPresent("gpio", name)
	}
	l.drive(true, level)
	return nil
}

// Undrive stops driving the line name from outside: it goes back to its
// pull resistor.
func (b *Board) Undrive(name string) error {
	l, ok := b.lines[name]
	if !ok {
		return notPresent("gpio", name)
	}
	l.drive(false, gpio.Low)
	return nil
}

// Relay reports whether the relay on RelayLine is energised: the line is an
// output driven high.
func (b *Board) Relay() bool {
	mode, level, _, _ := b.lines[RelayLine].state()
	return mode == modeOut && level == gpio.High
}

// Level reports the level on line name as the world sees it.
func (b *Board) Level(name string) (gpio.Level, error) {
	l, ok := b.lines[name]
	if !ok {
		return gpio.Low, notPresent("gpio", name)
	}
	_, level, _, _ := l.state()
	return level, nil
}

// PWM reports the duty cycle and frequency that line name generates.
func (b *Board) PWM(name string) (gpio.Duty, physic.Frequency, error) {
	l, ok := b.lines[name]
	if !ok {
		return 0, 0, notPresent("gpio", name)
	}
	mode, _, duty, f := l.state()
	if mode != modePWM {
		return 0, 0, fmt.Errorf("sim: %s: %w", name, errNotPWM)
	}
	return duty, f, nil
}

// SetEnvironment sets what the BME280 measures from its next conversion.
func (b *Board) SetEnvironment(env Environment) error {
	if err := env.validate(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	b.bme.setEnvironment(env)
	return nil
}

// SetDS18B20 sets the temperature the DS18B20 measures from its next
// conversion. Exactly 85 °C reads as "no conversion" in drivers, as on the
// real sensor.
func (b *Board) SetDS18B20(celsius float64) error {
	if err := validateDS18B20(celsius); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	b.ds.setTemperature(celsius)
	return nil
}

func (e Environment) validate() error {
	// Written as !(inside) so that NaN is rejected too.
	switch {
	case !(e.TemperatureCelsius >= -40 && e.TemperatureCelsius <= 85):
		return fmt.Errorf("bme280 temperature %v °C outside [-40, 85]", e.TemperatureCelsius)
	case !(e.PressurePascals >= 30000 && e.PressurePascals <= 110000):
		return fmt.Errorf("bme280 pressure %v Pa outside [30000, 110000]", e.PressurePascals)
	case !(e.HumidityRatio >= 0 && e.HumidityRatio <= 1):
		return fmt.Errorf("bme280 humidity %v outside [0, 1]", e.HumidityRatio)
	}
	return nil
}

func validateDS18B20(c float64) error {
	if !(c >= -55 && c <= 125) { // also rejects NaN
		return fmt.Errorf("ds18b20 temperature %v °C outside [-55, 125]", c)
	}
	return nil
}

// errHandleClosed is returned by a bus handle used after its Close.
var errHandleClosed = errors.New("handle closed")
