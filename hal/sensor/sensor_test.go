package sensor

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"

	"github.com/alicia-home/alicia/hal/sim"
)

// Transcripts of the BME280 traffic the bmxx80 driver does in ReadBME280.
var (
	bmeInit = []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}}, // chip id: BME280
		{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
		{Addr: 0x76, W: []byte{0xe1}, R: []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}},
		// ctrl_meas sleep, ctrl_hum 4×, config, ctrl_meas again.
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x3, 0xf5, 0xa0, 0xf4, 0x6c}},
		{Addr: 0x76, W: []byte{0xf4, 0x6d}}, // forced mode
	}
)

func TestReadBME280Playback(t *testing.T) {
	tests := []struct {
		name string
		ops  []i2ctest.IO
		want Reading
	}{{
		// Recorded on a real BME280 (periph's bmxx80 tests): the status
		// register first reports "measuring".
		name: "real device",
		ops: append(clone(bmeInit),
			i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x08}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x00}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}},
		),
		want: Reading{TemperatureCelsius: 23.72, PressurePascals: 100942.6953125, HumidityRatio: 0.653056},
	}, {
		// Recorded from hal/sim set to 23.45 °C, 98765.4 Pa, 0.523.
		name: "simulated device",
		ops: append(clone(bmeInit),
			i2ctest.IO{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x00}},
			i2ctest.IO{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4d, 0x7f, 0x20, 0x80, 0x5f, 0x80, 0x71, 0x69}},
		),
		want: Reading{TemperatureCelsius: 23.45, PressurePascals: 98765.47265625, HumidityRatio: 0.523046},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			got, err := ReadBME280(context.Background(), bus, 0x76)
			if err != nil {
				t.Fatal(err)
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
			if !near(got.TemperatureCelsius, tt.want.TemperatureCelsius, 1e-9) ||
				!near(got.PressurePascals, tt.want.PressurePascals, 1e-6) ||
				!near(got.HumidityRatio, tt.want.HumidityRatio, 1e-9) {
				t.Errorf("ReadBME280 = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadBME280Errors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		addr    uint16
		ops     []i2ctest.IO
		wantErr string
	}{{
		name: "bad address", addr: 0x40, wantErr: "address 0x40 invalid",
	}, {
		name: "canceled", ctx: canceled, addr: 0x76, wantErr: "context canceled",
	}, {
		name: "no device", addr: 0x76, wantErr: "unexpected Tx",
	}, {
		name: "bmp280 has no humidity", addr: 0x76, wantErr: "no humidity sensor",
		ops: []i2ctest.IO{
			{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
			bmeInit[1],
			{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}},
		},
	}, {
		name: "unknown chip", addr: 0x76, wantErr: "unexpected chip id",
		ops: []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x00}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			_, err := ReadBME280(ctx, bus, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadBME280 error = %v, want one containing %q", err, tt.wantErr)
			}
			if err := bus.Close(); err != nil {
				t.Errorf("not all expected traffic happened: %v", err)
			}
		})
	}
}

// dsAddr is the address of the simulated DS18B20, 28-0000075b2a11.
const dsAddr = onewire.Address(0x010000075b2a1128)

var (
	matchROM = []byte{0x55, 0x28, 0x11, 0x2a, 0x5b, 0x07, 0x00, 0x00, 0x01}
	// Scratchpads: temperature LSB, MSB, TH, TL, config, 0xFF, 0x0C, 0x10, CRC.
	spad9Bit25C    = []byte{0x90, 0x01, 0x4b, 0x46, 0x1f, 0xff, 0x0c, 0x10, 0xa3} // +25.0 °C, datasheet table 1 at 9 bits
	spad9BitPowOn  = []byte{0x50, 0x05, 0x4b, 0x46, 0x1f, 0xff, 0x0c, 0x10, 0x8c} // +85 °C power-on value
	spad12Bit25C   = []byte{0x91, 0x01, 0x4b, 0x46, 0x7f, 0xff, 0x0c, 0x10, 0x70} // +25.0625 °C
	spadBadCRC     = []byte{0x90, 0x01, 0x4b, 0x46, 0x1f, 0xff, 0x0c, 0x10, 0x00}
	spadNoResponse = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func cmd(b ...byte) []byte { return append(clone(matchROM), b...) }

func TestReadDS18B20Playback(t *testing.T) {
	tests := []struct {
		name string
		bits int
		ops  []onewiretest.IO
		want float64
	}{{
		name: "9 bits, already configured",
		bits: 9,
		ops: []onewiretest.IO{
			{W: cmd(0xbe), R: spad9Bit25C},
			{W: cmd(0x44), Pull: onewire.StrongPullup},
			{W: cmd(0xbe), R: spad9Bit25C},
		},
		want: 25,
	}, {
		// Recorded from hal/sim at -10.125 °C: the sensor powers up at 12
		// bits, so the driver writes the configuration and copies it to
		// EEPROM first.
		name: "10 bits, configures the sensor",
		bits: 10,
		ops: []onewiretest.IO{
			{W: cmd(0xbe), R: []byte{0x50, 0x5, 0x4b, 0x46, 0x7f, 0xff, 0xc, 0x10, 0x1c}},
			{W: cmd(0x4e, 0x00, 0x00, 0x3f)},
			{W: cmd(0x48), Pull: onewire.StrongPullup},
			{W: cmd(0x44), Pull: onewire.StrongPullup},
			{W: cmd(0xbe), R: []byte{0x5c, 0xff, 0x0, 0x0, 0x3f, 0xff, 0xc, 0x10, 0xf4}},
		},
		want: -10.25,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &onewiretest.Playback{Ops: tt.ops, DontPanic: true}
			got, err := ReadDS18B20(context.Background(), bus, dsAddr, tt.bits)
			if err != nil {
				t.Fatal(err)
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
			if got != tt.want {
				t.Errorf("ReadDS18B20 = %v °C, want %v", got, tt.want)
			}
		})
	}
}

func TestReadDS18B20Errors(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		addr    onewire.Address
		bits    int
		ops     []onewiretest.IO
		wantErr string
	}{{
		name: "bad resolution", addr: dsAddr, bits: 13, wantErr: "resolution 13 bits invalid",
	}, {
		name: "not a temperature sensor", addr: 0x01 | dsAddr&^0xFF, bits: 9, wantErr: "family 0x01",
	}, {
		name: "bad crc", addr: dsAddr, bits: 9, wantErr: "incorrect scratchpad CRC",
		ops: []onewiretest.IO{{W: cmd(0xbe), R: spadBadCRC}},
	}, {
		name: "absent sensor", addr: dsAddr, bits: 9, wantErr: "did not respond",
		ops: []onewiretest.IO{{W: cmd(0xbe), R: spadNoResponse}},
	}, {
		name: "conversion did not happen", addr: dsAddr, bits: 9, wantErr: "no conversion happened",
		ops: []onewiretest.IO{
			{W: cmd(0xbe), R: spad9BitPowOn},
			{W: cmd(0x44), Pull: onewire.StrongPullup},
			{W: cmd(0xbe), R: spad9BitPowOn},
		},
	}, {
		name: "deadline during conversion", timeout: 50 * time.Millisecond, addr: dsAddr, bits: 12, wantErr: "deadline exceeded",
		ops: []onewiretest.IO{
			{W: cmd(0xbe), R: spad12Bit25C},
			{W: cmd(0x44), Pull: onewire.StrongPullup},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			bus := &onewiretest.Playback{Ops: tt.ops, DontPanic: true}
			_, err := ReadDS18B20(ctx, bus, tt.addr, tt.bits)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadDS18B20 error = %v, want one containing %q", err, tt.wantErr)
			}
			if err := bus.Close(); err != nil {
				t.Errorf("not all expected traffic happened: %v", err)
			}
		})
	}
}

func TestAddress(t *testing.T) {
	a, err := ParseAddress("28-0000075b2a11")
	if err != nil {
		t.Fatal(err)
	}
	if a != dsAddr {
		t.Errorf("ParseAddress = %#x, want %#x", uint64(a), uint64(dsAddr))
	}
	if got := FormatAddress(a); got != "28-0000075b2a11" {
		t.Errorf("FormatAddress = %q", got)
	}
	for _, bad := range []string{"", "28", "28-", "2800-00075b2a11", "zz-0000075b2a11", "28-0000075b2a1g", "28-00000075b2a11"} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) succeeded", bad)
		}
	}
}

func TestFindDS18B20(t *testing.T) {
	b := newSim(t)
	bus, err := b.OneWire(sim.OneWireBus)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FindDS18B20(bus)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != dsAddr {
		t.Errorf("FindDS18B20 = %#x, want [%#x]", got, uint64(dsAddr))
	}
}

func TestReadInput(t *testing.T) {
	b := newSim(t)
	p, err := b.GPIO(sim.ButtonLine)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		pressed bool
		pull    gpio.Pull
		want    gpio.Level
	}{
		{false, gpio.PullUp, gpio.High},
		{true, gpio.PullUp, gpio.Low},
		{false, gpio.PullDown, gpio.Low},
	} {
		if tt.pressed {
			b.Press()
		} else {
			b.Release()
		}
		got, err := ReadInput(p, tt.pull)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("pressed=%v pull=%v: ReadInput = %v, want %v", tt.pressed, tt.pull, got, tt.want)
		}
	}
}

func TestWaitForStableEdge(t *testing.T) {
	b := newSim(t)
	p, err := b.GPIO(sim.ButtonLine)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.In(gpio.PullUp, gpio.BothEdges); err != nil {
		t.Fatal(err)
	}
	// A bouncing press: low, high, low, then it stays low.
	b.Press()
	b.Release()
	b.Press()
	got, err := WaitForStableEdge(p, 20*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got != gpio.Low {
		t.Errorf("settled at %v, want Low", got)
	}
	// The bounces were consumed: nothing is pending.
	if _, err := WaitForStableEdge(p, 5*time.Millisecond, 5*time.Millisecond); !errors.Is(err, ErrNoEdge) {
		t.Errorf("second wait: error %v, want ErrNoEdge", err)
	}
	if _, err := WaitForStableEdge(p, 0, time.Second); err == nil {
		t.Error("zero settle accepted")
	}
}

func newSim(t *testing.T) *sim.Board {
	t.Helper()
	b, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func clone[T any](s []T) []T { return append([]T(nil), s...) }

// bmp280Ops is periph's own recording of a BMP280 (chip id 0x58) at 0x76:
// 23.72 °C, 100942.695 Pa.
var bmp280Ops = []i2ctest.IO{
	{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
	{Addr: 0x76, W: []byte{0x88}, R: []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}},
	{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}},
	{Addr: 0x76, W: []byte{0xF4, 0x6d}},
	{Addr: 0x76, W: []byte{0xF3}, R: []byte{8}},
	{Addr: 0x76, W: []byte{0xF3}, R: []byte{0}},
	{Addr: 0x76, W: []byte{0xf7}, R: []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0}},
}

func TestReadBMP280Playback(t *testing.T) {
	bus := &i2ctest.Playback{Ops: bmp280Ops, DontPanic: true}
	r, err := ReadBMP280(context.Background(), bus, 0x76)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.TemperatureCelsius-23.72) > 0.001 || math.Abs(r.PressurePascals-100942.695) > 0.01 || r.HumidityRatio != 0 {
		t.Errorf("BMP280 reading %+v, want 23.72 °C, 100942.695 Pa, no humidity", r)
	}
	if err := bus.Close(); err != nil {
		t.Errorf("the driver did not do the recorded transactions: %v", err)
	}
	// The same chip read as a BME280 is refused: it has no humidity.
	bus = &i2ctest.Playback{Ops: bmp280Ops[:3], DontPanic: true}
	if _, err := ReadBME280(context.Background(), bus, 0x76); err == nil || !strings.Contains(err.Error(), "no humidity sensor") {
		t.Errorf("ReadBME280 of a BMP280: %v, want no humidity sensor", err)
	}
}
