package hal

import (
	"errors"
	"fmt"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/spi"
)

// Board names and opens the hardware of one device. Implementations:
// hal/periph (the real board) and hal/sim (simulated hardware for tests and
// --hal sim). Hardware that is absent is reported with ErrNotPresent, never
// as another error; a permission problem is a *PermissionError naming the
// group the service user needs. A Board is safe for concurrent use; the
// handles it returns are periph's own types, and serialising access to one
// line or bus is the caller's job (agent/actuate locks per line).
type Board interface {
	// Describe reports what the board has: its model and its GPIO lines,
	// I2C buses, SPI ports and 1-wire buses, by name.
	Describe() Description
	// GPIO opens the line called name (a board or chip line name such as
	// "GPIO17").
	GPIO(name string) (gpio.PinIO, error)
	// I2C opens the I2C bus called name (such as "1" for /dev/i2c-1).
	I2C(name string) (i2c.BusCloser, error)
	// SPI opens the SPI port called name (such as "0.0" for /dev/spidev0.0).
	SPI(name string) (spi.PortCloser, error)
	// OneWire opens the 1-wire bus called name (such as "w1_bus_master1").
	OneWire(name string) (onewire.BusCloser, error)
	// Close releases the board's resources. Afterwards every open method
	// returns an error wrapping ErrClosed; calling Close again returns nil.
	Close() error
}

// Description is what a board reports about itself. It travels to the hub
// in the agent's registration (internal/protocol) so the hub can validate
// commands against it.
type Description struct {
	// Backend is "periph" or "sim".
	Backend string `json:"backend"`
	// Model is the board's model as detected ("Raspberry Pi 4 Model B
	// Rev 1.4"), or "" if unknown.
	Model   string     `json:"model,omitempty"`
	Lines   []LineInfo `json:"lines,omitempty"`
	I2C     []string   `json:"i2c,omitempty"`
	SPI     []string   `json:"spi,omitempty"`
	OneWire []string   `json:"onewire,omitempty"`
}

// LineInfo describes one GPIO line.
type LineInfo struct {
	// Name is the line's name on the board ("GPIO17").
	Name string `json:"name"`
	// PWM reports whether the line can output hardware PWM.
	PWM bool `json:"pwm,omitempty"`
}

// ErrNotPresent is returned (wrapped) when the named hardware does not
// exist on this board.
var ErrNotPresent = errors.New("not present")

// ErrClosed is returned (wrapped) by a Board's open methods, and by the
// GPIO lines it handed out, once the Board has been closed. A closed Board
// stays closed; build a new one to use the hardware again.
var ErrClosed = errors.New("board closed")

// PermissionError is returned when the hardware exists but the process may
// not open it.
type PermissionError struct {
	// Path is the device node, such as /dev/gpiochip0.
	Path string
	// Group is the group the service user needs, such as "gpio", "i2c" or
	// "spi".
	Group string
	Err   error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s: permission denied (add the service user to group %q): %v", e.Path, e.Group, e.Err)
}

func (e *PermissionError) Unwrap() error { return e.Err }
