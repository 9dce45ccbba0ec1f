package actuate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"

	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/internal/protocol"
)

// countingPin is a gpiotest.Pin that counts writes and records levels.
type countingPin struct {
	gpiotest.Pin
	outs    atomic.Int32
	mu      sync.Mutex
	history []gpio.Level
}

func (p *countingPin) Out(l gpio.Level) error {
	p.outs.Add(1)
	p.mu.Lock()
	p.history = append(p.history, l)
	p.mu.Unlock()
	return p.Pin.Out(l)
}

// board is a one-package fake hal.Board: GPIO17 (out, relay), GPIO18
// (PWM), GPIO27 (in), and I2C bus "1" answering from a playback.
type board struct {
	pins map[string]*countingPin
	i2c  *i2ctest.Playback
}

func newBoard() *board {
	b := &board{pins: map[string]*countingPin{}}
	for i, n := range []string{"GPIO17", "GPIO18", "GPIO27"} {
		b.pins[n] = &countingPin{Pin: gpiotest.Pin{N: n, Num: 17 + i}}
	}
	return b
}

func (b *board) Describe() hal.Description { return hal.Description{Backend: "sim"} }
func (b *board) GPIO(name string) (gpio.PinIO, error) {
	if p := b.pins[name]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("gpio %s: %w", name, hal.ErrNotPresent)
}
func (b *board) I2C(name string) (i2c.BusCloser, error) {
	if name == "1" && b.i2c != nil {
		return nopCloser{b.i2c}, nil
	}
	return nil, fmt.Errorf("i2c %s: %w", name, hal.ErrNotPresent)
}
func (b *board) SPI(name string) (spi.PortCloser, error) { return nil, hal.ErrNotPresent }
func (b *board) OneWire(name string) (onewire.BusCloser, error) {
	return nil, hal.ErrNotPresent
}
func (b *board) Close() error { return nil }

type nopCloser struct{ i2c.Bus }

func (nopCloser) Close() error { return nil }

var lines = []protocol.HardwareLine{
	{Name: "GPIO17", Alias: "relay_kitchen", Direction: protocol.DirOut},
	{Name: "GPIO18", PWM: true},
	{Name: "GPIO27", Alias: "door", Direction: protocol.DirIn},
	{Name: "GPIO99"}, // registered but gone from the board
}

func ptr[T any](v T) *T { return &v }

var now = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func cmd(id, action string, p protocol.CommandParams) *protocol.Command {
	return &protocol.Command{ID: id, Action: action, Params: p, Deadline: now.Add(5 * time.Second)}
}

func newExec(b *board) *Executor {
	return New(Config{Board: b, Lines: lines, I2C: []string{"1"}, Now: func() time.Time { return now }})
}

func TestWriteReadByNameAndAlias(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	ctx := context.Background()
	if r := e.Execute(ctx, cmd("c1", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "relay_kitchen", Level: ptr(true)})); r.Status != protocol.ResultOK {
		t.Fatalf("write: %+v", r)
	}
	if got := b.pins["GPIO17"].Read(); got != gpio.High {
		t.Errorf("GPIO17 after writing high through its alias: %v", got)
	}
	r := e.Execute(ctx, cmd("c2", protocol.ActionGPIORead, protocol.CommandParams{Line: "GPIO17"}))
	if r.Status != protocol.ResultOK || r.Values["level"] != 1 {
		t.Errorf("read: %+v, want level 1", r)
	}
	b.pins["GPIO27"].Pin.L = gpio.Low
	if r := e.Execute(ctx, cmd("c3", protocol.ActionGPIORead, protocol.CommandParams{Line: "door"})); r.Status != protocol.ResultOK || r.Values["level"] != 0 {
		t.Errorf("read door: %+v, want level 0", r)
	}
}

func TestRefusals(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	for _, tc := range []struct {
		name   string
		c      *protocol.Command
		status string
		want   string
	}{
		{"unknown line", cmd("r1", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "GPIO5", Level: ptr(true)}), protocol.ResultInvalid, `line "GPIO5": not a line of this device`},
		{"write an input", cmd("r2", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "door", Level: ptr(true)}), protocol.ResultInvalid, "declared as an input"},
		{"pwm without pwm", cmd("r3", protocol.ActionPWMSet, protocol.CommandParams{Line: "GPIO17", Duty: ptr(0.5), FrequencyHz: 50}), protocol.ResultInvalid, "no hardware PWM"},
		{"line gone from the board", cmd("r4", protocol.ActionGPIORead, protocol.CommandParams{Line: "GPIO99"}), protocol.ResultInvalid, "not present"},
		{"unknown bus", cmd("r5", protocol.ActionI2CTransfer, protocol.CommandParams{Bus: "7", Address: ptr[uint16](0x76), ReadLen: 1}), protocol.ResultInvalid, `i2c bus "7"`},
		{"no sensors", cmd("r6", protocol.ActionSensorRead, protocol.CommandParams{Sensor: "temp"}), protocol.ResultInvalid, "declares no sensors"},
		{"bad parameters", cmd("r7", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "GPIO17"}), protocol.ResultInvalid, "params.level: required"},
	} {
		r := e.Execute(context.Background(), tc.c)
		if r.Status != tc.status || !strings.Contains(r.Error, tc.want) {
			t.Errorf("%s: %+v, want %s with %q", tc.name, r, tc.status, tc.want)
		}
		if err := (&r).Validate(); err != nil {
			t.Errorf("%s: the result is not a valid message: %v", tc.name, err)
		}
	}
	if n := b.pins["GPIO27"].outs.Load(); n != 0 {
		t.Errorf("the input was written %d times", n)
	}
}

func TestRepeatedIDAppliedOnce(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	c := cmd("same", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "GPIO17", Level: ptr(true)})
	var wg sync.WaitGroup
	results := make([]protocol.CommandResult, 8)
	for i := range results {
		wg.Go(func() { results[i] = e.Execute(context.Background(), c) })
	}
	wg.Wait()
	repeats := 0
	for _, r := range results {
		if r.Status != protocol.ResultOK {
			t.Errorf("result %+v", r)
		}
		if r.Repeat {
			repeats++
		}
	}
	if n := b.pins["GPIO17"].outs.Load(); n != 1 || repeats != len(results)-1 {
		t.Errorf("8 deliveries of one command ID: %d writes and %d repeats, want 1 and 7", n, repeats)
	}
}

func TestRememberIsBounded(t *testing.T) {
	b := newBoard()
	e := New(Config{Board: b, Lines: lines, Remember: 2, Now: func() time.Time { return now }})
	for _, id := range []string{"a", "b", "c", "a"} {
		e.Execute(context.Background(), cmd(id, protocol.ActionGPIOWrite, protocol.CommandParams{Line: "GPIO17", Level: ptr(true)}))
	}
	// "a" was forgotten when "c" came, so its late repeat runs again.
	if n := b.pins["GPIO17"].outs.Load(); n != 4 {
		t.Errorf("%d writes, want 4 (a, b, c, and a again once forgotten)", n)
	}
	if len(e.done) != 2 || len(e.order) != 2 {
		t.Errorf("remembers %d results (%d ids), want 2", len(e.done), len(e.order))
	}
}

func TestExpiredNotStarted(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	c := cmd("late", protocol.ActionGPIOWrite, protocol.CommandParams{Line: "GPIO17", Level: ptr(true)})
	c.Deadline = now.Add(-time.Second)
	r := e.Execute(context.Background(), c)
	if r.Status != protocol.ResultExpired || !strings.Contains(r.Error, "after its deadline") {
		t.Errorf("late command: %+v", r)
	}
	if n := b.pins["GPIO17"].outs.Load(); n != 0 {
		t.Errorf("an expired command wrote the line %d times", n)
	}
}

func TestPulseReturnsToTheOtherLevel(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	start := time.Now()
	r := e.Execute(context.Background(), cmd("p", protocol.ActionGPIOPulse, protocol.CommandParams{Line: "GPIO17", Level: ptr(true), DurationMS: 30}))
	if r.Status != protocol.ResultOK {
		t.Fatalf("pulse: %+v", r)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("pulse returned after %v, before its 30ms", d)
	}
	p := b.pins["GPIO17"]
	if fmt.Sprint(p.history) != "[High Low]" {
		t.Errorf("levels written: %v, want [High Low]", p.history)
	}
}

func TestPWM(t *testing.T) {
	b := newBoard()
	e := newExec(b)
	r := e.Execute(context.Background(), cmd("w", protocol.ActionPWMSet, protocol.CommandParams{Line: "GPIO18", Duty: ptr(0.25), FrequencyHz: 1000}))
	p := b.pins["GPIO18"]
	if r.Status != protocol.ResultOK || p.D != gpio.DutyMax/4 || p.F != 1000*physic.Hertz {
		t.Errorf("pwm: %+v, pin duty %v frequency %v", r, p.D, p.F)
	}
}

func TestI2CTransfer(t *testing.T) {
	b := newBoard()
	b.i2c = &i2ctest.Playback{Ops: []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}}}, DontPanic: true}
	e := newExec(b)
	r := e.Execute(context.Background(), cmd("i", protocol.ActionI2CTransfer, protocol.CommandParams{Bus: "1", Address: ptr[uint16](0x76), Write: "d0", ReadLen: 1}))
	if r.Status != protocol.ResultOK || r.Data != "60" {
		t.Errorf("i2c: %+v, want data 60 (the BME280's chip id)", r)
	}
	r = e.Execute(context.Background(), cmd("j", protocol.ActionI2CTransfer, protocol.CommandParams{Bus: "1", Address: ptr[uint16](0x77), ReadLen: 1}))
	if r.Status != protocol.ResultFailed || !strings.Contains(r.Error, "address 0x77") {
		t.Errorf("i2c past the playback: %+v, want failed naming the address", r)
	}
}

func TestSensorRead(t *testing.T) {
	b := newBoard()
	e := New(Config{Board: b, Now: func() time.Time { return now }, ReadSensor: func(_ context.Context, name string) (map[string]float64, error) {
		if name != "temp_garage" {
			return nil, fmt.Errorf("sensor %q: %w", name, hal.ErrNotPresent)
		}
		return map[string]float64{"temperature_celsius": 21.5}, nil
	}})
	if r := e.Execute(context.Background(), cmd("s1", protocol.ActionSensorRead, protocol.CommandParams{Sensor: "temp_garage"})); r.Status != protocol.ResultOK || r.Values["temperature_celsius"] != 21.5 {
		t.Errorf("sensor.read: %+v", r)
	}
	if r := e.Execute(context.Background(), cmd("s2", protocol.ActionSensorRead, protocol.CommandParams{Sensor: "nope"})); r.Status != protocol.ResultInvalid {
		t.Errorf("unknown sensor: %+v, want invalid", r)
	}
	failing := New(Config{Board: b, Now: func() time.Time { return now }, ReadSensor: func(context.Context, string) (map[string]float64, error) {
		return nil, errors.New("crc mismatch")
	}})
	if r := failing.Execute(context.Background(), cmd("s3", protocol.ActionSensorRead, protocol.CommandParams{Sensor: "x"})); r.Status != protocol.ResultFailed || r.Error != "crc mismatch" {
		t.Errorf("failing sensor: %+v, want failed", r)
	}
}
