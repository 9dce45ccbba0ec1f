package sensor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
	"periph.io/x/devices/v3/ds18b20"
)

// Reading is one BME280 measurement, in SI units.
type Reading struct {
	TemperatureCelsius float64 `json:"temperature_celsius"`
	PressurePascals    float64 `json:"pressure_pascals"`
	// HumidityRatio is the relative humidity from 0 to 1.
	HumidityRatio float64 `json:"humidity_ratio"`
}

// ReadBME280 performs one forced-mode measurement on the BME280 at addr
// (0x76 or 0x77) with periph's bmxx80 driver at its default oversampling
// (4×). It takes about 30 ms; ctx is checked before the bus is touched.
// A BMP280 or BMP180 at addr is an error: it has no humidity sensor.
func ReadBME280(ctx context.Context, bus i2c.Bus, addr uint16) (Reading, error) {
	return readBMx280(ctx, "bme280", bus, addr, true)
}

// ReadBMP280 is ReadBME280 for a BMP280 (temperature and pressure; the
// reading's HumidityRatio is 0). A BME280 at addr reads too, without its
// humidity.
func ReadBMP280(ctx context.Context, bus i2c.Bus, addr uint16) (Reading, error) {
	return readBMx280(ctx, "bmp280", bus, addr, false)
}

func readBMx280(ctx context.Context, kind string, bus i2c.Bus, addr uint16, humidity bool) (Reading, error) {
	if err := ctx.Err(); err != nil {
		return Reading{}, fmt.Errorf("%s at %#02x: %w", kind, addr, err)
	}
	if addr != 0x76 && addr != 0x77 {
		return Reading{}, fmt.Errorf("%s: address %#02x invalid, want 0x76 or 0x77", kind, addr)
	}
	dev, err := bmxx80.NewI2C(bus, addr, &bmxx80.DefaultOpts)
	if err != nil {
		return Reading{}, fmt.Errorf("%s at %#02x: %w", kind, addr, err)
	}
	switch name := dev.String(); {
	case humidity && !strings.HasPrefix(name, "BME280"):
		return Reading{}, fmt.Errorf("%s at %#02x: found %s, which has no humidity sensor", kind, addr, dev)
	case !strings.HasPrefix(name, "BME280") && !strings.HasPrefix(name, "BMP280"):
		return Reading{}, fmt.Errorf("%s at %#02x: found %s", kind, addr, dev)
	}
	var e physic.Env
	if err := dev.Sense(&e); err != nil {
		return Reading{}, fmt.Errorf("%s at %#02x: %w", kind, addr, err)
	}
	r := Reading{
		TemperatureCelsius: celsius(e.Temperature),
		PressurePascals:    float64(e.Pressure) / float64(physic.Pascal),
	}
	if humidity {
		r.HumidityRatio = float64(e.Humidity) / float64(100*physic.PercentRH)
	}
	return r, nil
}

// Families of the temperature sensors ReadDS18B20 reads.
const (
	FamilyDS18S20 = 0x10
	FamilyDS1822  = 0x22
	FamilyDS18B20 = 0x28
)

// ReadDS18B20 performs one temperature conversion on the DS18B20 (or
// DS1822, DS18S20) at addr with periph's ds18b20 driver and returns °C.
// bits is the resolution, 9 to 12: 12 bits resolve 0.0625 °C and take
// 750 ms, each bit less halves both (a DS18S20 needs 12). Changing a
// sensor's resolution writes its EEPROM, so keep bits constant. The
// conversion wait ends early with ctx's error.
func ReadDS18B20(ctx context.Context, bus onewire.Bus, addr onewire.Address, bits int) (float64, error) {
	name := FormatAddress(addr)
	if bits < 9 || bits > 12 {
		return 0, fmt.Errorf("ds18b20 %s: resolution %d bits invalid, want 9 to 12", name, bits)
	}
	switch addr & 0xFF {
	case FamilyDS18S20, FamilyDS1822, FamilyDS18B20:
	default:
		return 0, fmt.Errorf("ds18b20 %s: family %#02x is not a DS18x20 temperature sensor", name, byte(addr))
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("ds18b20 %s: %w", name, err)
	}
	dev, err := ds18b20.New(bus, addr, bits)
	if err != nil {
		return 0, fmt.Errorf("ds18b20 %s: %w", name, err)
	}
	// The driver's Sense, with a wait that honours ctx: convert T under
	// strong pull-up (parasite power), wait, read the scratchpad.
	d := onewire.Dev{Bus: bus, Addr: addr}
	if err := d.TxPower([]byte{0x44}, nil); err != nil {
		return 0, fmt.Errorf("ds18b20 %s: convert: %w", name, err)
	}
	t := time.NewTimer(ConversionTime(bits))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("ds18b20 %s: %w", name, ctx.Err())
	case <-t.C:
	}
	temp, err := dev.LastTemp()
	if err != nil {
		return 0, fmt.Errorf("ds18b20 %s: %w", name, err)
	}
	// The driver means to reject the power-on value but compares it with
	// a temperature difference of 85 K, so it never does: check here.
	c := celsius(temp)
	if c == 85 {
		return 0, fmt.Errorf("ds18b20 %s: read the power-on value 85 °C: no conversion happened (parasite power without strong pull-up?)", name)
	}
	return c, nil
}

// ConversionTime is how long a DS18B20 takes to convert at the given
// resolution (datasheet, page 6): 94 ms at 9 bits to 752 ms at 12.
func ConversionTime(bits int) time.Duration {
	bits = min(max(bits, 9), 12)
	return (94 << (bits - 9)) * time.Millisecond
}

// FindDS18B20 lists the DS18x20 temperature sensors on bus.
func FindDS18B20(bus onewire.Bus) ([]onewire.Address, error) {
	all, err := bus.Search(false)
	if err != nil {
		return nil, fmt.Errorf("ds18b20: search %s: %w", bus, err)
	}
	var found []onewire.Address
	for _, a := range all {
		switch a & 0xFF {
		case FamilyDS18S20, FamilyDS1822, FamilyDS18B20:
			found = append(found, a)
		}
	}
	return found, nil
}

// FormatAddress returns the Linux w1 name of a 1-wire address, such as
// "28-0000075b2a11": family code, a dash, then the 48-bit serial number.
func FormatAddress(a onewire.Address) string {
	return fmt.Sprintf("%02x-%012x", byte(a), uint64(a)>>8&(1<<48-1))
}

// ParseAddress parses a Linux w1 name ("28-0000075b2a11") into a full
// 1-wire address, adding the CRC byte.
func ParseAddress(s string) (onewire.Address, error) {
	fam, serial, ok := strings.Cut(s, "-")
	if !ok || len(fam) != 2 || len(serial) != 12 {
		return 0, fmt.Errorf("onewire address %q: want family-serial like 28-0000075b2a11", s)
	}
	f, err := strconv.ParseUint(fam, 16, 8)
	if err != nil {
		return 0, fmt.Errorf("onewire address %q: family: %w", s, err)
	}
	n, err := strconv.ParseUint(serial, 16, 48)
	if err != nil {
		return 0, fmt.Errorf("onewire address %q: serial: %w", s, err)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], f|n<<8)
	b[7] = onewire.CalcCRC(b[:7])
	return onewire.Address(binary.LittleEndian.Uint64(b[:])), nil
}

// ReadInput configures pin as an input with the given pull resistor and no
// edge detection, and returns its level. Do not use it on a line another
// goroutine waits on for edges: it turns their detection off.
func ReadInput(pin gpio.PinIn, pull gpio.Pull) (gpio.Level, error) {
	if err := pin.In(pull, gpio.NoEdge); err != nil {
		return gpio.Low, fmt.Errorf("input %s: %w", pin, err)
	}
	return pin.Read(), nil
}

// ErrNoEdge is returned by WaitForStableEdge when no edge came in time.
var ErrNoEdge = errors.New("no edge")

// WaitForStableEdge debounces a switch. It waits up to timeout for an edge
// on pin (configured with In and an edge beforehand), then consumes the
// edges that follow until none has come for settle, and returns the level
// the line settled at. A contact that bounces from low to high and back
// within settle is thus seen once, at its final level. Both durations must
// be positive. It returns ErrNoEdge on timeout, and an error when the line
// has not settled within timeout after the first edge.
func WaitForStableEdge(pin gpio.PinIn, settle, timeout time.Duration) (gpio.Level, error) {
	if settle <= 0 || timeout <= 0 {
		return gpio.Low, fmt.Errorf("input %s: settle %v and timeout %v must be positive", pin, settle, timeout)
	}
	if !pin.WaitForEdge(timeout) {
		return gpio.Low, fmt.Errorf("input %s: %w within %v", pin, ErrNoEdge, timeout)
	}
	deadline := time.Now().Add(timeout)
	for pin.WaitForEdge(settle) {
		if time.Now().After(deadline) {
			return pin.Read(), fmt.Errorf("input %s: still bouncing after %v", pin, timeout)
		}
	}
	return pin.Read(), nil
}

func celsius(t physic.Temperature) float64 {
	return float64(t-physic.ZeroCelsius) / float64(physic.Celsius)
}
