package sim

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// i2cHandle is one opening of the simulated I2C bus.
type i2cHandle struct {
	board *Board
	name  string

	mu     sync.Mutex // guards closed
	closed bool
}

var _ i2c.BusCloser = (*i2cHandle)(nil)

func (h *i2cHandle) String() string { return "sim-i2c-" + h.name }

// Tx implements i2c.Bus. Addressing a device that is not there fails, like
// a NACK on a real bus.
func (h *i2cHandle) Tx(addr uint16, w, r []byte) error {
	if err := h.check(); err != nil {
		return err
	}
	if addr != BME280Addr {
		return fmt.Errorf("%s: no device answers at address %#02x", h, addr)
	}
	if err := h.board.bme.tx(w, r); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	return nil
}

// SetSpeed implements i2c.Bus; the simulated bus runs at any speed.
func (h *i2cHandle) SetSpeed(f physic.Frequency) error {
	if err := h.check(); err != nil {
		return err
	}
	if f <= 0 {
		return fmt.Errorf("%s: invalid speed %v", h, f)
	}
	return nil
}

// Close implements i2c.BusCloser.
func (h *i2cHandle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return nil
}

func (h *i2cHandle) check() error {
	if err := h.board.checkOpen(); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("%s: %w", h, errHandleClosed)
	}
	return nil
}

// BME280 registers (Bosch BST-BME280-DS002).
const (
	regCalib00  = 0x88 // 0x88…0xA1: temperature and pressure calibration, H1
	regChipID   = 0xD0
	regReset    = 0xE0
	regCalib26  = 0xE1 // 0xE1…0xE7: humidity calibration
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // 0xF7…0xFE: press, temp (20 bits each), hum (16 bits)

	bme280ChipID = 0x60
	resetWord    = 0xB6
)

// bme280Calibration is the calibration memory of a real BME280 (the one
// periph's own bmxx80 tests were recorded from): 0x88…0xA1 then 0xE1…0xE7.
var (
	bme280CalibTPH = [26]byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}
	bme280CalibH   = [7]byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}
)

// bme280 answers the BME280's I2C register protocol. Conversions are
// instantaneous: the status register never reports "measuring". The raw ADC
// values are found by inverting Bosch's integer compensation for the
// calibration above, so a driver reads back what the simulation set, to the
// sensor's resolution.
type bme280 struct {
	cal calibration

	// mu guards the fields below.
	mu   sync.Mutex
	env  Environment
	regs [256]byte
	ptr  byte // register pointer, auto-incremented by reads
}

func newBME280(env Environment) *bme280 {
	d := &bme280{cal: parseCalibration(bme280CalibTPH[:], bme280CalibH[:]), env: env}
	copy(d.regs[regCalib00:], bme280CalibTPH[:])
	copy(d.regs[regCalib26:], bme280CalibH[:])
	d.regs[regChipID] = bme280ChipID
	d.resetLocked()
	return d
}

func (d *bme280) setEnvironment(env Environment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.env = env
}

// tx is one I2C transaction: a write of a register address then either
// register/value pairs or a read that auto-increments from that address.
func (d *bme280) tx(w, r []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(w) > 1 && len(w)%2 != 0 {
		return fmt.Errorf("bme280: write of %d bytes is not register/value pairs", len(w))
	}
	if len(w) > 0 {
		d.ptr = w[0]
	}
	for i := 0; i+1 < len(w); i += 2 {
		d.writeLocked(w[i], w[i+1])
	}
	if len(r) > 0 && d.ptr >= regData && d.regs[regCtrlMeas]&3 == 3 {
		d.measureLocked() // normal mode: a fresh measurement is always ready
	}
	for i := range r {
		r[i] = d.regs[d.ptr]
		d.ptr++
	}
	return nil
}

func (d *bme280) writeLocked(reg, v byte) {
	switch reg {
	case regReset:
		if v == resetWord {
			d.resetLocked()
		}
	case regCtrlHum:
		d.regs[reg] = v & 0x07
	case regConfig:
		d.regs[reg] = v
	case regCtrlMeas:
		d.regs[reg] = v
		if mode := v & 3; mode == 1 || mode == 2 { // forced
			d.measureLocked()
			d.regs[reg] = v &^ 3 // back to sleep
		}
	}
	// Other registers are read-only; the chip ignores writes to them.
}

func (d *bme280) resetLocked() {
	d.regs[regCtrlHum], d.regs[regStatus], d.regs[regCtrlMeas], d.regs[regConfig] = 0, 0, 0, 0
	copy(d.regs[regData:], []byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0})
}

// measureLocked stores one conversion of the environment in the data
// registers, skipping the quantities whose oversampling is off.
func (d *bme280) measureLocked() {
	meas := d.regs[regCtrlMeas]
	osrsT, osrsP, osrsH := meas>>5, (meas>>2)&7, d.regs[regCtrlHum]&7
	data := [8]byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}
	if osrsT != 0 {
		tRaw, tFine := d.cal.rawTemperature(d.env.TemperatureCelsius)
		put20(data[3:6], tRaw)
		if osrsP != 0 {
			put20(data[0:3], d.cal.rawPressure(d.env.PressurePascals, tFine))
		}
		if osrsH != 0 {
			h := d.cal.rawHumidity(d.env.HumidityRatio, tFine)
			data[6], data[7] = byte(h>>8), byte(h)
		}
	}
	copy(d.regs[regData:], data[:])
}

func put20(b []byte, v int32) {
	b[0], b[1], b[2] = byte(v>>12), byte(v>>4), byte(v<<4)
}

// calibration holds the compensation parameters (datasheet section 4.2.2).
type calibration struct {
	t1                             uint16
	t2, t3                         int16
	p1                             uint16
	p2, p3, p4, p5, p6, p7, p8, p9 int16
	h1, h3                         uint8
	h2, h4, h5                     int16
	h6                             int8
}

func parseCalibration(tph, h []byte) calibration {
	le := func(i int) uint16 { return uint16(tph[i]) | uint16(tph[i+1])<<8 }
	return calibration{
		t1: le(0), t2: int16(le(2)), t3: int16(le(4)),
		p1: le(6), p2: int16(le(8)), p3: int16(le(10)), p4: int16(le(12)), p5: int16(le(14)),
		p6: int16(le(16)), p7: int16(le(18)), p8: int16(le(20)), p9: int16(le(22)),
		h1: tph[25],
		h2: int16(h[0]) | int16(h[1])<<8,
		h3: h[2],
		h4: int16(h[3])<<4 | int16(h[4])&0xF,
		h5: int16(h[4])>>4 | int16(h[5])<<4,
		h6: int8(h[6]),
	}
}

// The three compensation functions are Bosch's 32/64-bit integer reference
// code (datasheet section 4.2.3), the same the drivers run.

// temperature returns °C×100 and t_fine.
func (c calibration) temperature(raw int32) (int32, int32) {
	x := ((raw>>3 - int32(c.t1)<<1) * int32(c.t2)) >> 11
	y := ((((raw>>4 - int32(c.t1)) * (raw>>4 - int32(c.t1))) >> 12) * int32(c.t3)) >> 14
	tFine := x + y
	return (tFine*5 + 128) >> 8, tFine
}

// pressure returns Pa×256.
func (c calibration) pressure(raw, tFine int32) int64 {
	x := int64(tFine) - 128000
	y := x * x * int64(c.p6)
	y += (x * int64(c.p5)) << 17
	y += int64(c.p4) << 35
	x = (x*x*int64(c.p3))>>8 + ((x * int64(c.p2)) << 12)
	x = ((int64(1)<<47 + x) * int64(c.p1)) >> 33
	if x == 0 {
		return 0
	}
	p := ((((1048576 - int64(raw)) << 31) - y) * 3125) / x
	x = (int64(c.p9) * (p >> 13) * (p >> 13)) >> 25
	y = (int64(c.p8) * p) >> 19
	return ((p + x + y) >> 8) + (int64(c.p7) << 4)
}

// humidity returns %RH×1024.
func (c calibration) humidity(raw, tFine int32) int32 {
	x := tFine - 76800
	x1 := raw<<14 - int32(c.h4)<<20 - int32(c.h5)*x
	x2 := (x1 + 16384) >> 15
	x3 := (x * int32(c.h6)) >> 10
	x4 := (x * int32(c.h3)) >> 11
	x5 := (x3 * (x4 + 32768)) >> 10
	x6 := ((x5+2097152)*int32(c.h2) + 8192) >> 14
	x = x2 * x6
	x -= ((((x >> 15) * (x >> 15)) >> 7) * int32(c.h1)) >> 4
	x = min(max(x, 0), 419430400)
	return x >> 12
}

// search returns the raw value in [0, limit) whose compensated value f is
// closest to target, for f monotonic in raw (increasing unless decreasing
// is set).
func search(limit int32, decreasing bool, target float64, f func(raw int32) float64) int32 {
	lo, hi := int32(0), limit-1
	for lo < hi { // find the first raw with f(raw) on the far side of target
		mid := lo + (hi-lo)/2
		if v := f(mid); (v >= target) != decreasing || v == target {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo > 0 && abs(f(lo-1)-target) < abs(f(lo)-target) {
		return lo - 1
	}
	return lo
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func (c calibration) rawTemperature(celsius float64) (raw, tFine int32) {
	raw = search(1<<20, false, celsius*100, func(r int32) float64 {
		t, _ := c.temperature(r)
		return float64(t)
	})
	_, tFine = c.temperature(raw)
	return raw, tFine
}

func (c calibration) rawPressure(pascals float64, tFine int32) int32 {
	return search(1<<20, true, pascals*256, func(r int32) float64 {
		return float64(c.pressure(r, tFine))
	})
}

func (c calibration) rawHumidity(ratio float64, tFine int32) int32 {
	return search(1<<16, false, ratio*100*1024, func(r int32) float64 {
		return float64(c.humidity(r, tFine))
	})
}
