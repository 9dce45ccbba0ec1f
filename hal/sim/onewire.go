package sim

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"periph.io/x/conn/v3/onewire"
)

// oneWireBus is the simulated 1-wire bus shared by all handles. Each Tx
// starts with a reset and presence pulse, then a ROM command, then a
// function command for the selected devices.
type oneWireBus struct {
	board   *Board
	mu      sync.Mutex // serialises transactions, like the bus master
	devices []*ds18b20
}

// noDevicesError implements onewire.NoDevicesError.
type noDevicesError string

func (e noDevicesError) Error() string   { return string(e) }
func (e noDevicesError) NoDevices() bool { return true }

// 1-wire ROM commands.
const (
	romSearch      = 0xF0
	romAlarmSearch = 0xEC
	romRead        = 0x33
	romMatch       = 0x55
	romSkip        = 0xCC
)

func (b *oneWireBus) tx(w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.devices) == 0 {
		return noDevicesError("sim-onewire: no presence pulse")
	}
	fill(r, 0xFF) // an idle bus reads as ones
	if len(w) == 0 {
		return nil
	}
	var selected []*ds18b20
	switch w[0] {
	case romSkip:
		selected, w = b.devices, w[1:]
	case romMatch:
		if len(w) < 9 {
			return fmt.Errorf("sim-onewire: match ROM needs 8 address bytes, got %d", len(w)-1)
		}
		addr := onewire.Address(binary.LittleEndian.Uint64(w[1:9]))
		for _, d := range b.devices {
			if d.addr == addr {
				selected = append(selected, d)
			}
		}
		w = w[9:]
	case romRead:
		if len(b.devices) != 1 {
			return fmt.Errorf("sim-onewire: read ROM with %d devices on the bus", len(b.devices))
		}
		binary.LittleEndian.PutUint64(r[:min(8, len(r))], uint64(b.devices[0].addr))
		return nil
	case romSearch, romAlarmSearch:
		return fmt.Errorf("sim-onewire: use Search, not a raw search ROM command")
	default:
		return fmt.Errorf("sim-onewire: unknown ROM command %#02x", w[0])
	}
	if len(w) == 0 {
		return nil
	}
	for i, d := range selected {
		// Several devices answering at once would AND their bits on the
		// wire; there is one DS18B20 here, so the first answer stands.
		if i > 0 {
			break
		}
		if err := d.function(w, r); err != nil {
			return err
		}
	}
	return nil
}

func (b *oneWireBus) search(alarmOnly bool) []onewire.Address {
	b.mu.Lock()
	defer b.mu.Unlock()
	if alarmOnly {
		return nil // the simulated sensors never alarm
	}
	var addrs []onewire.Address
	for _, d := range b.devices {
		addrs = append(addrs, d.addr)
	}
	return addrs
}

// oneWireHandle is one opening of the simulated 1-wire bus.
type oneWireHandle struct {
	bus  *oneWireBus
	name string

	mu     sync.Mutex // guards closed
	closed bool
}

var _ onewire.BusCloser = (*oneWireHandle)(nil)

func (h *oneWireHandle) String() string { return "sim-onewire-" + h.name }

// Tx implements onewire.Bus.
func (h *oneWireHandle) Tx(w, r []byte, _ onewire.Pullup) error {
	if err := h.check(); err != nil {
		return err
	}
	return h.bus.tx(w, r)
}

// Search implements onewire.Bus; it lists the devices on the bus, as the
// Linux w1 driver does.
func (h *oneWireHandle) Search(alarmOnly bool) ([]onewire.Address, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	return h.bus.search(alarmOnly), nil
}

// Close implements onewire.BusCloser.
func (h *oneWireHandle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return nil
}

func (h *oneWireHandle) check() error {
	if err := h.bus.board.checkOpen(); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("%s: %w", h, errHandleClosed)
	}
	return nil
}

// DS18B20 function commands (Maxim DS18B20 datasheet, pages 11-12).
const (
	fnConvert         = 0x44
	fnReadScratchpad  = 0xBE
	fnWriteScratchpad = 0x4E
	fnCopyScratchpad  = 0x48
	fnRecallEEPROM    = 0xB8
	fnReadPowerSupply = 0xB4
)

// ds18b20 answers the DS18B20 function commands. Conversions are
// instantaneous; the value converted is the simulated temperature rounded to
// the configured resolution, as the chip does.
type ds18b20 struct {
	addr onewire.Address

	// mu guards the fields below.
	mu      sync.Mutex
	celsius float64
	spad    [8]byte // scratchpad without its CRC
	eeprom  [3]byte // TH, TL, configuration
}

func newDS18B20(addr onewire.Address, celsius float64) *ds18b20 {
	d := &ds18b20{addr: addr, celsius: celsius}
	// Power-up state: 85 °C, TH 75, TL 70, 12 bits.
	d.eeprom = [3]byte{0x4B, 0x46, 0x7F}
	d.spad = [8]byte{0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10}
	return d
}

func (d *ds18b20) setTemperature(c float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.celsius = c
}

// function runs the function command in w; r was filled with ones.
func (d *ds18b20) function(w, r []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch w[0] {
	case fnConvert:
		bits := 9 + int(d.spad[4]>>5&3)
		v := int16(math.Round(d.celsius * 16))
		v &^= int16(1)<<(12-bits) - 1 // undefined low bits read as 0
		d.spad[0], d.spad[1] = byte(v), byte(uint16(v)>>8)
	case fnReadScratchpad:
		var full [9]byte
		copy(full[:], d.spad[:])
		full[8] = crc8(d.spad[:])
		copy(r, full[:])
	case fnWriteScratchpad:
		if len(w) < 4 {
			return fmt.Errorf("sim-ds18b20: write scratchpad needs 3 bytes, got %d", len(w)-1)
		}
		d.spad[2], d.spad[3] = w[1], w[2]
		d.spad[4] = w[3]&0x60 | 0x1F
	case fnCopyScratchpad:
		copy(d.eeprom[:], d.spad[2:5])
	case fnRecallEEPROM:
		copy(d.spad[2:5], d.eeprom[:])
	case fnReadPowerSupply:
		// Externally powered: the device leaves the bus high.
	default:
		return fmt.Errorf("sim-ds18b20: unknown function command %#02x", w[0])
	}
	return nil
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// crc8 is the Dallas/Maxim 1-wire CRC (x⁸+x⁵+x⁴+1, reflected).
func crc8(b []byte) byte {
	var crc byte
	for _, v := range b {
		for range 8 {
			mix := (crc ^ v) & 1
			crc >>= 1
			if mix != 0 {
				crc ^= 0x8C
			}
			v >>= 1
		}
	}
	return crc
}

// withCRC returns the address with its top byte set to the CRC of the
// family code and serial number.
func withCRC(a onewire.Address) onewire.Address {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(a))
	b[7] = crc8(b[:7])
	return onewire.Address(binary.LittleEndian.Uint64(b[:]))
}
