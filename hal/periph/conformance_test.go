package periph

import (
	"flag"
	"fmt"
	"strconv"
	"testing"

	"periph.io/x/conn/v3/gpio"

	"github.com/alicia-home/alicia/hal/haltest"
	"github.com/alicia-home/alicia/hal/sensor"
)

// Flags of the conformance run on a real board (docs/hardware.md); every
// part left empty is skipped.
var (
	conformance = flag.Bool("conformance", false, "run the hal conformance suite against this machine's hardware")
	outputLine  = flag.String("output-line", "", "line the suite may drive high and low (e.g. GPIO17 with a relay)")
	pwmLine     = flag.String("pwm-line", "", "PWM-capable line the suite may drive")
	inputLine   = flag.String("input-line", "", "input line for the edge checks (e.g. GPIO27)")
	inputPull   = flag.String("input-pull", "up", "pull on the input line: up, down, none or keep")
	driveLine   = flag.String("drive-line", "", "output line wired to -input-line, which the suite drives (needed for the edge checks)")
	i2cBus      = flag.String("i2c-bus", "", "I2C bus with a BME280 (e.g. 1)")
	bme280Addr  = flag.String("bme280-addr", "0x76", "BME280 address")
	oneWireBus  = flag.String("onewire-bus", "", "1-wire bus with a DS18B20 (e.g. w1_bus_master1)")
	ds18b20     = flag.String("ds18b20", "", "DS18B20 to read (e.g. 28-0000075b2a11); default the first found")
	ds18b20Bits = flag.Int("ds18b20-bits", 12, "DS18B20 resolution; use the agent's, changing it writes the sensor's EEPROM")
	spiPort     = flag.String("spi-port", "", "SPI port to open (e.g. 0.0)")
	spiLoopback = flag.Bool("spi-loopback", false, "MISO is wired to MOSI on -spi-port")
)

// TestConformance runs haltest against the real board, by hand:
//
//	go test ./hal/periph -run Conformance -args -conformance -output-line=GPIO17 ...
func TestConformance(t *testing.T) {
	if !*conformance {
		t.Skip("run by hand on a board with -args -conformance (see docs/hardware.md)")
	}
	cfg, err := conformanceConfig()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("board: %+v", b.Describe())
	if *driveLine != "" {
		cfg.Drive = haltest.DriveWithLine(b, *driveLine)
	}
	haltest.Run(t, b, cfg)
}

func conformanceConfig() (haltest.Config, error) {
	cfg := haltest.Config{
		OutputLine:  *outputLine,
		PWMLine:     *pwmLine,
		InputLine:   *inputLine,
		I2CBus:      *i2cBus,
		OneWireBus:  *oneWireBus,
		DS18B20Bits: *ds18b20Bits,
		SPIPort:     *spiPort,
		SPILoopback: *spiLoopback,
	}
	pulls := map[string]gpio.Pull{"up": gpio.PullUp, "down": gpio.PullDown, "none": gpio.Float, "keep": gpio.PullNoChange}
	pull, ok := pulls[*inputPull]
	if !ok {
		return cfg, fmt.Errorf("-input-pull=%q: want up, down, none or keep", *inputPull)
	}
	cfg.InputPull = pull
	addr, err := strconv.ParseUint(*bme280Addr, 0, 16)
	if err != nil {
		return cfg, fmt.Errorf("-bme280-addr: %w", err)
	}
	cfg.BME280Addr = uint16(addr)
	if *ds18b20 != "" {
		if cfg.DS18B20Addr, err = sensor.ParseAddress(*ds18b20); err != nil {
			return cfg, fmt.Errorf("-ds18b20: %w", err)
		}
	}
	return cfg, nil
}
