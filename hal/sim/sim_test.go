package sim_test

import (
	"errors"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/physic"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/hal/haltest"
	"github.com/alicia-home/alicia/hal/sensor"
	"github.com/alicia-home/alicia/hal/sim"
)

func newBoard(t *testing.T, opts sim.Options) *sim.Board {
	t.Helper()
	b, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	b := newBoard(t, sim.Options{})
	env := sim.Environment{TemperatureCelsius: 18.3, PressurePascals: 99012.5, HumidityRatio: 0.612}
	if err := b.SetEnvironment(env); err != nil {
		t.Fatal(err)
	}
	const ds = -3.7
	if err := b.SetDS18B20(ds); err != nil {
		t.Fatal(err)
	}
	want := sensor.Reading(env)
	dsWant := ds
	haltest.Run(t, b, haltest.Config{
		OutputLine: sim.RelayLine,
		ObserveOutput: func() (gpio.Level, error) {
			return gpio.Level(b.Relay()), nil
		},
		PWMLine:   "GPIO18",
		InputLine: sim.ButtonLine,
		InputPull: gpio.PullUp,
		Drive: func(l gpio.Level) error {
			if l == gpio.Low {
				b.Press()
			} else {
				b.Release()
			}
			return nil
		},
		I2CBus:      sim.I2CBus,
		BME280Addr:  sim.BME280Addr,
		BME280Want:  &want,
		OneWireBus:  sim.OneWireBus,
		DS18B20Addr: sim.DS18B20Addr,
		DS18B20Bits: 9,
		DS18B20Want: &dsWant,
		SPIPort:     sim.SPIPort,
		SPILoopback: true,
	})
}

func TestBME280FollowsEnvironment(t *testing.T) {
	b := newBoard(t, sim.Options{})
	bus, err := b.I2C(sim.I2CBus)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []sim.Environment{
		{TemperatureCelsius: -40, PressurePascals: 30000, HumidityRatio: 0},
		{TemperatureCelsius: 85, PressurePascals: 110000, HumidityRatio: 1},
		{TemperatureCelsius: 0, PressurePascals: 101325, HumidityRatio: 0.5},
		{TemperatureCelsius: 36.66, PressurePascals: 87654.3, HumidityRatio: 0.987},
	} {
		if err := b.SetEnvironment(env); err != nil {
			t.Fatal(err)
		}
		got, err := sensor.ReadBME280(t.Context(), bus, sim.BME280Addr)
		if err != nil {
			t.Fatal(err)
		}
		// The sensor's resolution: 0.01 °C, 1/256 Pa, 1/1024 %RH.
		if d := got.TemperatureCelsius - env.TemperatureCelsius; d < -0.01 || d > 0.01 {
			t.Errorf("%+v: temperature read %v", env, got.TemperatureCelsius)
		}
		if d := got.PressurePascals - env.PressurePascals; d < -0.5 || d > 0.5 {
			t.Errorf("%+v: pressure read %v", env, got.PressurePascals)
		}
		if d := got.HumidityRatio - env.HumidityRatio; d < -0.0002 || d > 0.0002 {
			t.Errorf("%+v: humidity read %v", env, got.HumidityRatio)
		}
	}
}

func TestDS18B20FollowsTemperature(t *testing.T) {
	b := newBoard(t, sim.Options{})
	bus, err := b.OneWire(sim.OneWireBus)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		set  float64
		bits int
		want float64
	}{
		{-55, 9, -55},
		{125, 9, 125},
		{21.3, 9, 21}, // 0.5 °C steps at 9 bits
		{-0.2, 9, -0.5},
		{21.3, 10, 21.25},
	} {
		if err := b.SetDS18B20(tt.set); err != nil {
			t.Fatal(err)
		}
		got, err := sensor.ReadDS18B20(t.Context(), bus, sim.DS18B20Addr, tt.bits)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("set %v °C, read %v at %d bits, want %v", tt.set, got, tt.bits, tt.want)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	if _, err := sim.New(sim.Options{DS18B20Celsius: 200}); err == nil {
		t.Error("New accepted a DS18B20 at 200 °C")
	}
	b := newBoard(t, sim.Options{})
	nan := 0.0
	nan /= nan
	for _, env := range []sim.Environment{
		{TemperatureCelsius: 90, PressurePascals: 101325, HumidityRatio: 0.5},
		{TemperatureCelsius: 20, PressurePascals: 10, HumidityRatio: 0.5},
		{TemperatureCelsius: 20, PressurePascals: 101325, HumidityRatio: 1.5},
		{TemperatureCelsius: nan, PressurePascals: 101325, HumidityRatio: 0.5},
	} {
		if err := b.SetEnvironment(env); err == nil {
			t.Errorf("SetEnvironment(%+v) accepted", env)
		}
	}
	if err := b.SetDS18B20(nan); err == nil {
		t.Error("SetDS18B20(NaN) accepted")
	}
	if err := b.Drive("GPIO99", gpio.High); !errors.Is(err, hal.ErrNotPresent) {
		t.Errorf("Drive(GPIO99): %v", err)
	}
	bus, err := b.I2C(sim.I2CBus)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Tx(0x40, []byte{0}, nil); err == nil {
		t.Error("Tx to an empty I2C address succeeded")
	}
	if err := bus.Tx(sim.BME280Addr, []byte{0xF4, 1, 2}, nil); err == nil {
		t.Error("odd-length register write succeeded")
	}
	w1, err := b.OneWire(sim.OneWireBus)
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Tx([]byte{0x55, 1, 2}, nil, false); err == nil {
		t.Error("truncated match ROM succeeded")
	}
}

func TestRelayAndPWM(t *testing.T) {
	b := newBoard(t, sim.Options{})
	relay, err := b.GPIO(sim.RelayLine)
	if err != nil {
		t.Fatal(err)
	}
	if b.Relay() {
		t.Error("relay energised before the line was driven")
	}
	if err := relay.Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	if !b.Relay() {
		t.Error("relay not energised with its line high")
	}
	if err := relay.In(gpio.PullUp, gpio.NoEdge); err != nil {
		t.Fatal(err)
	}
	if b.Relay() {
		t.Error("relay energised by an input line's pull-up")
	}
	if err := relay.PWM(gpio.DutyHalf, 0); err == nil {
		t.Errorf("PWM on %s, which has none, succeeded", sim.RelayLine)
	}

	p, err := b.GPIO("GPIO12")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.PWM(gpio.DutyMax/4, 25*physic.KiloHertz); err != nil {
		t.Fatal(err)
	}
	duty, f, err := b.PWM("GPIO12")
	if err != nil || duty != gpio.DutyMax/4 || f != 25*physic.KiloHertz {
		t.Errorf("PWM(GPIO12) = %v, %v, %v", duty, f, err)
	}
	if err := p.PWM(gpio.DutyHalf, 0); err != nil {
		t.Fatal(err)
	}
	if _, f, _ := b.PWM("GPIO12"); f != physic.KiloHertz {
		t.Errorf("PWM with frequency 0 runs at %v, want 1kHz", f)
	}
	if err := p.Out(gpio.Low); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.PWM("GPIO12"); err == nil {
		t.Error("PWM state reported for a plain output")
	}
}

func TestButtonEdges(t *testing.T) {
	b := newBoard(t, sim.Options{})
	p, err := b.GPIO(sim.ButtonLine)
	if err != nil {
		t.Fatal(err)
	}
	// Without a pull-up, the released button floats at the default
	// pull-down: pressing it changes nothing.
	if err := p.In(gpio.PullNoChange, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	b.Press()
	if p.WaitForEdge(0) {
		t.Error("edge on a button line with a pull-down")
	}
	b.Release()
	if err := p.In(gpio.PullUp, gpio.RisingEdge); err != nil {
		t.Fatal(err)
	}
	b.Press() // falling: not watched
	if p.WaitForEdge(0) {
		t.Error("falling edge seen with RisingEdge detection")
	}
	b.Release()
	b.Press()
	b.Release()
	for i := range 2 {
		if !p.WaitForEdge(time.Second) {
			t.Fatalf("rising edge %d not seen", i+1)
		}
	}
	if p.WaitForEdge(0) {
		t.Error("a third rising edge appeared")
	}
	// Close wakes a waiter at once.
	done := make(chan bool)
	go func() { done <- p.WaitForEdge(-1) }()
	deadline := time.After(2 * time.Second)
	for {
		_ = b.Close()
		select {
		case got := <-done:
			if got {
				t.Error("WaitForEdge woken by Close returned true")
			}
			if err := p.Out(gpio.High); !errors.Is(err, hal.ErrClosed) {
				t.Errorf("Out after Close: %v", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("Close did not wake WaitForEdge")
		}
	}
}
