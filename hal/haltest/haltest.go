package haltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/hal/sensor"
)

// Config names the hardware Run may use on the board under test. Every
// part is optional: the checks that need an empty field are skipped, so
// the zero Config runs only Describe, absence and Close checks. Name only
// what is safe to drive: Run writes to OutputLine and PWMLine.
type Config struct {
	// OutputLine is a line Run drives high and low.
	OutputLine string
	// ObserveOutput, if set, reports the level the world sees on
	// OutputLine (the sim's relay, or a second line wired to it).
	ObserveOutput func() (gpio.Level, error)

	// PWMLine is a line Describe reports as PWM-capable that Run may drive
	// with a 50 % duty cycle.
	PWMLine string

	// InputLine is the line the edge checks watch, configured with
	// InputPull (zero value gpio.PullNoChange keeps the board's pull).
	InputLine string
	InputPull gpio.Pull
	// Drive sets the level on InputLine from outside: the sim's Drive, or
	// DriveWithLine for an output wired to InputLine. Nil skips the edge
	// checks.
	Drive func(gpio.Level) error

	// I2CBus has a BME280 at BME280Addr (0 means 0x76).
	I2CBus     string
	BME280Addr uint16
	// BME280Want, if set, is what the BME280 must read, within a tolerance
	// of 0.05 °C, 2 Pa and 0.002; if nil, readings need only be plausible.
	BME280Want *sensor.Reading

	// OneWireBus has a DS18B20 at DS18B20Addr (0: the first one found).
	OneWireBus  string
	DS18B20Addr onewire.Address
	// DS18B20Bits is the resolution to read at (0 means 12). Use the one
	// the agent uses: changing it rewrites the sensor's EEPROM.
	DS18B20Bits int
	// DS18B20Want, if set, is the temperature the DS18B20 must read, within
	// one step of the resolution; if nil, it need only be plausible.
	DS18B20Want *float64

	// SPIPort is opened and used for one transfer; with SPILoopback (MISO
	// wired to MOSI) the data read must equal the data written.
	SPIPort     string
	SPILoopback bool
}

// DriveWithLine returns a Config.Drive that drives the output line name of
// b, for a board where that line is wired to Config.InputLine.
func DriveWithLine(b hal.Board, name string) func(gpio.Level) error {
	return func(l gpio.Level) error {
		p, err := b.GPIO(name)
		if err != nil {
			return err
		}
		return p.Out(l)
	}
}

// Timings of the checks. Edges travel through the kernel in well under a
// millisecond; these leave room for a loaded machine.
const (
	edgeTimeout = time.Second
	noEdgeWait  = 50 * time.Millisecond
	settle      = 30 * time.Millisecond
)

// Run checks that b behaves as a hal.Board: what Describe reports opens,
// absent names give hal.ErrNotPresent, outputs read back, PWM works where
// reported, edges reach WaitForEdge as configured, the BME280 and DS18B20
// read through periph's drivers, and Close works. Run closes b at the end.
func Run(t *testing.T, b hal.Board, cfg Config) {
	t.Helper()
	d := b.Describe()
	t.Run("Describe", func(t *testing.T) { testDescribe(t, b, d, cfg) })
	t.Run("Absent", func(t *testing.T) { testAbsent(t, b) })
	t.Run("Output", func(t *testing.T) { testOutput(t, b, d, cfg) })
	t.Run("PWM", func(t *testing.T) { testPWM(t, b, d, cfg) })
	t.Run("Edges", func(t *testing.T) { testEdges(t, b, cfg) })
	t.Run("BME280", func(t *testing.T) { testBME280(t, b, cfg) })
	t.Run("DS18B20", func(t *testing.T) { testDS18B20(t, b, cfg) })
	t.Run("SPI", func(t *testing.T) { testSPI(t, b, cfg) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, b, cfg) })
	t.Run("Close", func(t *testing.T) { testClose(t, b, d, cfg) })
}

func testDescribe(t *testing.T, b hal.Board, d hal.Description, cfg Config) {
	if d.Backend == "" {
		t.Error("Describe: empty Backend")
	}
	var lines []string
	for _, l := range d.Lines {
		lines = append(lines, l.Name)
	}
	for kind, names := range map[string][]string{"line": lines, "i2c": d.I2C, "spi": d.SPI, "onewire": d.OneWire} {
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || seen[n] {
				t.Errorf("Describe: %s name %q empty or repeated", kind, n)
			}
			seen[n] = true
		}
	}
	for _, want := range []struct{ kind, name string }{
		{"line", cfg.OutputLine}, {"line", cfg.PWMLine}, {"line", cfg.InputLine},
		{"i2c", cfg.I2CBus}, {"spi", cfg.SPIPort}, {"onewire", cfg.OneWireBus},
	} {
		all := map[string][]string{"line": lines, "i2c": d.I2C, "spi": d.SPI, "onewire": d.OneWire}[want.kind]
		if want.name != "" && !slices.Contains(all, want.name) {
			t.Errorf("Describe does not list the configured %s %q (has %q)", want.kind, want.name, all)
		}
	}
	// Everything described opens.
	for _, n := range lines {
		if _, err := b.GPIO(n); err != nil {
			t.Errorf("GPIO(%q) described but: %v", n, err)
		}
	}
	for _, n := range d.I2C {
		bus, err := b.I2C(n)
		if err != nil {
			t.Errorf("I2C(%q) described but: %v", n, err)
			continue
		}
		closeOK(t, bus)
	}
	for _, n := range d.SPI {
		p, err := b.SPI(n)
		if err != nil {
			t.Errorf("SPI(%q) described but: %v", n, err)
			continue
		}
		closeOK(t, p)
	}
	for _, n := range d.OneWire {
		bus, err := b.OneWire(n)
		if err != nil {
			t.Errorf("OneWire(%q) described but: %v", n, err)
			continue
		}
		closeOK(t, bus)
	}
}

func closeOK(t *testing.T, c interface{ Close() error }) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Errorf("Close %v: %v", c, err)
	}
}

func testAbsent(t *testing.T, b hal.Board) {
	const name = "alicia-absent-99"
	errs := map[string]error{}
	_, errs["GPIO"] = b.GPIO(name)
	_, errs["I2C"] = b.I2C(name)
	_, errs["SPI"] = b.SPI(name)
	_, errs["OneWire"] = b.OneWire(name)
	_, errs["GPIO empty"] = b.GPIO("")
	_, errs["I2C 99"] = b.I2C("99")
	_, errs["SPI 9.9"] = b.SPI("9.9")
	_, errs["OneWire w1_bus_master99"] = b.OneWire("w1_bus_master99")
	for what, err := range errs {
		if !errors.Is(err, hal.ErrNotPresent) {
			t.Errorf("%s of an absent name: error %v, want one wrapping hal.ErrNotPresent", what, err)
		}
	}
}

func lineInfo(d hal.Description, name string) (hal.LineInfo, bool) {
	for _, l := range d.Lines {
		if l.Name == name {
			return l, true
		}
	}
	return hal.LineInfo{}, false
}

func testOutput(t *testing.T, b hal.Board, d hal.Description, cfg Config) {
	if cfg.OutputLine == "" {
		t.Skip("no OutputLine configured")
	}
	p, err := b.GPIO(cfg.OutputLine)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low} {
		if err := p.Out(l); err != nil {
			t.Fatalf("Out(%v): %v", l, err)
		}
		if got := p.Read(); got != l {
			t.Errorf("after Out(%v), Read() = %v", l, got)
		}
		if cfg.ObserveOutput != nil {
			got, err := cfg.ObserveOutput()
			if err != nil {
				t.Fatalf("ObserveOutput: %v", err)
			}
			if got != l {
				t.Errorf("after Out(%v), the world sees %v", l, got)
			}
		}
	}
	if info, _ := lineInfo(d, cfg.OutputLine); !info.PWM {
		if err := p.PWM(gpio.DutyHalf, physic.KiloHertz); err == nil {
			t.Errorf("PWM on %s succeeded, but Describe says it has no PWM", cfg.OutputLine)
		}
		if err := p.Out(gpio.Low); err != nil {
			t.Fatal(err)
		}
	}
}

func testPWM(t *testing.T, b hal.Board, d hal.Description, cfg Config) {
	if cfg.PWMLine == "" {
		t.Skip("no PWMLine configured")
	}
	if info, _ := lineInfo(d, cfg.PWMLine); !info.PWM {
		t.Fatalf("Describe does not report PWM on %s", cfg.PWMLine)
	}
	p, err := b.GPIO(cfg.PWMLine)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PWM(gpio.DutyHalf, physic.KiloHertz); err != nil {
		t.Errorf("PWM(50%%, 1kHz): %v", err)
	}
	if err := p.PWM(gpio.DutyMax+1, physic.KiloHertz); err == nil {
		t.Error("PWM with a duty above DutyMax succeeded")
	}
	if err := p.Out(gpio.Low); err != nil {
		t.Errorf("Out after PWM: %v", err)
	}
}

func testEdges(t *testing.T, b hal.Board, cfg Config) {
	if cfg.InputLine == "" || cfg.Drive == nil {
		t.Skip("no InputLine with a Drive hook configured")
	}
	p, err := b.GPIO(cfg.InputLine)
	if err != nil {
		t.Fatal(err)
	}
	drive := func(l gpio.Level) {
		t.Helper()
		if err := cfg.Drive(l); err != nil {
			t.Fatalf("Drive(%v): %v", l, err)
		}
	}
	in := func(e gpio.Edge) {
		t.Helper()
		if err := p.In(cfg.InputPull, e); err != nil {
			t.Fatalf("In(%v, %v): %v", cfg.InputPull, e, err)
		}
	}
	defer func() {
		drive(gpio.High)
		in(gpio.NoEdge)
	}()

	drive(gpio.High)
	in(gpio.FallingEdge)
	if p.WaitForEdge(noEdgeWait) {
		t.Error("WaitForEdge saw an edge right after In, which flushes them")
	}
	drive(gpio.Low)
	if !p.WaitForEdge(edgeTimeout) {
		t.Fatal("falling edge not seen by WaitForEdge")
	}
	if got := p.Read(); got != gpio.Low {
		t.Errorf("Read() after the falling edge = %v", got)
	}
	drive(gpio.High)
	if p.WaitForEdge(noEdgeWait) {
		t.Error("rising edge seen with FallingEdge detection")
	}
	if got := p.Read(); got != gpio.High {
		t.Errorf("Read() after driving high = %v", got)
	}

	// Debounce: a bouncing press is seen once, at its settled level, and
	// leaves no edge behind.
	in(gpio.BothEdges)
	drive(gpio.Low)
	drive(gpio.High)
	drive(gpio.Low)
	got, err := sensor.WaitForStableEdge(p, settle, edgeTimeout)
	if err != nil {
		t.Fatalf("bouncing press: %v", err)
	}
	if got != gpio.Low {
		t.Errorf("bouncing press settled at %v, want Low", got)
	}
	if p.WaitForEdge(noEdgeWait) {
		t.Error("an edge remained after the bounces were consumed")
	}

	// Halt interrupts a waiting WaitForEdge. Halt may come before the wait
	// starts, so repeat it until the waiter returns.
	done := make(chan bool, 1)
	go func() { done <- p.WaitForEdge(5 * time.Second) }()
	deadline := time.After(2 * time.Second)
	for {
		if err := p.Halt(); err != nil {
			t.Fatalf("Halt: %v", err)
		}
		select {
		case got := <-done:
			if got {
				t.Error("WaitForEdge interrupted by Halt returned true")
			}
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("Halt did not interrupt WaitForEdge")
		}
	}
}

func testBME280(t *testing.T, b hal.Board, cfg Config) {
	if cfg.I2CBus == "" {
		t.Skip("no I2CBus configured")
	}
	addr := cfg.BME280Addr
	if addr == 0 {
		addr = 0x76
	}
	bus, err := b.I2C(cfg.I2CBus)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, bus)
	got, err := sensor.ReadBME280(context.Background(), bus, addr)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.BME280Want; w != nil {
		if !near(got.TemperatureCelsius, w.TemperatureCelsius, 0.05) ||
			!near(got.PressurePascals, w.PressurePascals, 2) ||
			!near(got.HumidityRatio, w.HumidityRatio, 0.002) {
			t.Errorf("BME280 read %+v, want %+v", got, *w)
		}
		return
	}
	if got.TemperatureCelsius < -40 || got.TemperatureCelsius > 85 ||
		got.PressurePascals < 30000 || got.PressurePascals > 110000 ||
		got.HumidityRatio < 0 || got.HumidityRatio > 1 {
		t.Errorf("BME280 read %+v, outside its range", got)
	}
}

func testDS18B20(t *testing.T, b hal.Board, cfg Config) {
	if cfg.OneWireBus == "" {
		t.Skip("no OneWireBus configured")
	}
	bus, err := b.OneWire(cfg.OneWireBus)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, bus)
	found, err := sensor.FindDS18B20(bus)
	if err != nil {
		t.Fatal(err)
	}
	addr := cfg.DS18B20Addr
	if addr == 0 {
		if len(found) == 0 {
			t.Fatalf("no DS18B20 found on %s", cfg.OneWireBus)
		}
		addr = found[0]
	} else if !slices.Contains(found, addr) {
		t.Errorf("search on %s found %v, not %s", cfg.OneWireBus, found, sensor.FormatAddress(addr))
	}
	bits := cfg.DS18B20Bits
	if bits == 0 {
		bits = 12
	}
	got, err := sensor.ReadDS18B20(context.Background(), bus, addr, bits)
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.DS18B20Want; w != nil {
		step := math.Ldexp(1, 8-bits) // 0.5 °C at 9 bits … 0.0625 °C at 12
		if !near(got, *w, step) {
			t.Errorf("DS18B20 read %v °C, want %v ± %v", got, *w, step)
		}
		return
	}
	if got < -55 || got > 125 {
		t.Errorf("DS18B20 read %v °C, outside its range", got)
	}
}

func testSPI(t *testing.T, b hal.Board, cfg Config) {
	if cfg.SPIPort == "" {
		t.Skip("no SPIPort configured")
	}
	p, err := b.SPI(cfg.SPIPort)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, p)
	c, err := p.Connect(physic.MegaHertz, spi.Mode0, 8)
	if err != nil {
		t.Fatal(err)
	}
	w := []byte{0xA5, 0x5A, 0x00, 0xFF}
	r := make([]byte, len(w))
	if err := c.Tx(w, r); err != nil {
		t.Fatal(err)
	}
	if cfg.SPILoopback && !bytes.Equal(r, w) {
		t.Errorf("loopback read %#v, wrote %#v", r, w)
	}
}

// testConcurrent uses the board from several goroutines at once; run the
// suite with -race for it to mean much.
func testConcurrent(t *testing.T, b hal.Board, cfg Config) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 4 {
		wg.Go(func() {
			_ = b.Describe()
			if cfg.OutputLine != "" && i == 0 { // one writer per line
				p, err := b.GPIO(cfg.OutputLine)
				if err != nil {
					errs <- err
					return
				}
				for _, l := range []gpio.Level{gpio.High, gpio.Low} {
					if err := p.Out(l); err != nil {
						errs <- err
					}
				}
			}
			if cfg.I2CBus != "" {
				bus, err := b.I2C(cfg.I2CBus)
				if err != nil {
					errs <- err
					return
				}
				defer bus.Close()
				addr := cfg.BME280Addr
				if addr == 0 {
					addr = 0x76
				}
				// Reads of one chip from several drivers may interleave;
				// each must still succeed.
				if _, err := sensor.ReadBME280(context.Background(), bus, addr); err != nil {
					errs <- fmt.Errorf("concurrent BME280 read: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testClose(t *testing.T, b hal.Board, d hal.Description, cfg Config) {
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, hal.ErrClosed) {
			t.Errorf("%s after Close: error %v, want one wrapping hal.ErrClosed", what, err)
		}
	}
	for _, l := range d.Lines {
		_, err := b.GPIO(l.Name)
		check("GPIO("+l.Name+")", err)
		break
	}
	for _, n := range d.I2C {
		_, err := b.I2C(n)
		check("I2C("+n+")", err)
	}
	for _, n := range d.SPI {
		_, err := b.SPI(n)
		check("SPI("+n+")", err)
	}
	for _, n := range d.OneWire {
		_, err := b.OneWire(n)
		check("OneWire("+n+")", err)
	}
	_, err := b.GPIO("alicia-absent-99")
	check("GPIO of an absent name", err)
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }
