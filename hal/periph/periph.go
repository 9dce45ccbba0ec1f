package periph

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/gpioioctl"
	"periph.io/x/host/v3/netlink"
	"periph.io/x/host/v3/sysfs"

	"github.com/alicia-home/alicia/hal"
)

// Backend is the Description.Backend of this board.
const Backend = "periph"

// Options configures the board. The zero value is the running machine.
type Options struct {
	// Root is the directory that holds dev, sys and proc; "" means "/".
	// With another root (a fixture tree in tests) Describe and the
	// classification of missing or forbidden nodes read that tree, but
	// opening hardware fails: periph's drivers open the real /dev.
	Root string
}

// Board is the real board, through periph.io: GPIO lines through the
// character device (/dev/gpiochipN, by line name), I2C through
// /dev/i2c-N, SPI through /dev/spidevB.C and 1-wire through the kernel's w1
// driver over its netlink connector. It is safe for concurrent use.
type Board struct {
	root string
	// lineNames lists a chip's line names for Describe under a fixture
	// root; nil on the real root, where periph's gpioioctl lists them.
	lineNames func(chipPath string) ([]string, error)

	initOnce sync.Once
	initErr  error

	// mu guards the fields below.
	mu     sync.Mutex
	closed bool
	lines  []*line // lines handed out, released by Close
}

var _ hal.Board = (*Board)(nil)

// New returns the board. It does no I/O: periph's drivers load on the first
// open or Describe, and a machine without the hardware gives an empty
// Description and hal.ErrNotPresent, not an error here.
func New(opts Options) (*Board, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("periph: root %q is not an absolute path", root)
	}
	return &Board{root: filepath.Clean(root)}, nil
}

func (b *Board) realRoot() bool { return b.root == "/" }

func (b *Board) path(p string) string { return filepath.Join(b.root, p) }

// initPeriph loads periph's host drivers once. Drivers that find nothing
// (no bcm283x here, no gpiochip there) are skipped, not errors.
func (b *Board) initPeriph() error {
	b.initOnce.Do(func() {
		if _, err := host.Init(); err != nil {
			b.initErr = fmt.Errorf("periph: host init: %w", err)
		}
	})
	return b.initErr
}

// Describe implements hal.Board. Lines are those of the GPIO chips the
// process can open whose lines have a name and are not claimed by a kernel
// driver or another process (GPIO4 is absent while w1-gpio uses it).
func (b *Board) Describe() hal.Description {
	d := hal.Description{
		Backend: Backend,
		Model:   b.model(),
		I2C:     b.globNames("dev/i2c-*", parseI2CName),
		SPI:     b.globNames("dev/spidev*", parseSPIName),
		OneWire: b.globNames("sys/bus/w1/devices/w1_bus_master*", parseOneWireName),
	}
	for _, name := range b.freeLines() {
		d.Lines = append(d.Lines, hal.LineInfo{Name: name})
	}
	return d
}

func (b *Board) model() string {
	for _, p := range []string{"proc/device-tree/model", "sys/firmware/devicetree/base/model"} {
		if m, err := os.ReadFile(b.path(p)); err == nil {
			return strings.TrimSpace(strings.TrimRight(string(m), "\x00"))
		}
	}
	return ""
}

// globNames lists the names of the nodes matching pattern under the root,
// as parse extracts and orders them; nodes parse rejects are left out.
func (b *Board) globNames(pattern string, parse func(base string) (name string, key []int, ok bool)) []string {
	paths, _ := filepath.Glob(b.path(pattern)) // the only error is a bad pattern
	type entry struct {
		name string
		key  []int
	}
	var es []entry
	for _, p := range paths {
		if name, key, ok := parse(filepath.Base(p)); ok {
			es = append(es, entry{name, key})
		}
	}
	sortBy(es, func(e entry) []int { return e.key })
	var names []string
	for _, e := range es {
		names = append(names, e.name)
	}
	return names
}

// freeLines lists the usable line names, in chip order.
func (b *Board) freeLines() []string {
	chips, _ := filepath.Glob(b.path("dev/gpiochip*"))
	if len(chips) == 0 {
		return nil
	}
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && n != "-" && n != "_" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if !b.realRoot() {
		if b.lineNames == nil {
			return nil
		}
		for _, c := range chips {
			ns, err := b.lineNames(c)
			if err != nil {
				continue
			}
			for _, n := range ns {
				add(n)
			}
		}
		return names
	}
	if b.initPeriph() != nil {
		return nil
	}
	for _, c := range gpioioctl.Chips {
		for _, l := range c.Lines() {
			if usable(l) {
				add(l.Name())
			}
		}
	}
	return names
}

// usable reports whether nobody but this process holds the line.
func usable(l *gpioioctl.GPIOLine) bool {
	c := l.Consumer()
	return c == "" || strings.HasSuffix(c, "@"+strconv.Itoa(os.Getpid()))
}

// GPIO implements hal.Board. name is the line name the kernel gives
// ("GPIO17" on a Raspberry Pi); the line is requested from the kernel at
// its first In or Out.
func (b *Board) GPIO(name string) (gpio.PinIO, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("periph: gpio %q: %w", name, err)
	}
	chips, _ := filepath.Glob(b.path("dev/gpiochip*"))
	if name == "" || len(chips) == 0 {
		return nil, fmt.Errorf("periph: gpio %q: %w", name, hal.ErrNotPresent)
	}
	if b.realRoot() {
		if err := b.initPeriph(); err != nil {
			return nil, err
		}
		for _, c := range gpioioctl.Chips {
			gl := c.ByName(name)
			if gl == nil {
				continue
			}
			if !usable(gl) {
				return nil, fmt.Errorf("periph: gpio %q on %s is in use by %q", name, c.Path(), gl.Consumer())
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.closed {
				return nil, fmt.Errorf("periph: gpio %q: %w", name, hal.ErrClosed)
			}
			l := &line{GPIOLine: gl, board: b}
			b.lines = append(b.lines, l)
			return l, nil
		}
	}
	// Not found: maybe because a chip could not be read.
	for _, c := range chips {
		if err := probe(c, os.O_RDONLY, "gpio"); err != nil && !errors.Is(err, hal.ErrNotPresent) {
			return nil, fmt.Errorf("periph: gpio %q: %w", name, err)
		}
	}
	return nil, fmt.Errorf("periph: gpio %q: %w", name, hal.ErrNotPresent)
}

// I2C implements hal.Board. name is the bus number ("1" for /dev/i2c-1).
func (b *Board) I2C(name string) (i2c.BusCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("periph: i2c %q: %w", name, err)
	}
	if _, key, ok := parseI2CName("i2c-" + name); !ok || name != strconv.Itoa(key[0]) {
		return nil, fmt.Errorf("periph: i2c %q: %w", name, hal.ErrNotPresent)
	}
	n, _ := strconv.Atoi(name)
	node := b.path("dev/i2c-" + name)
	if err := b.openable(node, "i2c"); err != nil {
		return nil, err
	}
	bus, err := sysfs.NewI2C(n)
	if err != nil {
		return nil, fmt.Errorf("periph: %s: %w", node, err)
	}
	return bus, nil
}

// SPI implements hal.Board. name is "bus.chipselect" ("0.0" for
// /dev/spidev0.0).
func (b *Board) SPI(name string) (spi.PortCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("periph: spi %q: %w", name, err)
	}
	_, key, ok := parseSPIName("spidev" + name)
	if !ok || name != strconv.Itoa(key[0])+"."+strconv.Itoa(key[1]) {
		return nil, fmt.Errorf("periph: spi %q: %w", name, hal.ErrNotPresent)
	}
	node := b.path("dev/spidev" + name)
	if err := b.openable(node, "spi"); err != nil {
		return nil, err
	}
	p, err := sysfs.NewSPI(key[0], key[1])
	if err != nil {
		return nil, fmt.Errorf("periph: %s: %w", node, err)
	}
	return p, nil
}

// OneWire implements hal.Board. name is the kernel's bus master
// ("w1_bus_master1"). Transactions go through the w1 netlink connector
// (kernel option CONFIG_W1_CON), so periph's 1-wire device drivers work
// while the kernel's w1_therm driver keeps its sysfs files.
func (b *Board) OneWire(name string) (onewire.BusCloser, error) {
	if err := b.checkOpen(); err != nil {
		return nil, fmt.Errorf("periph: onewire %q: %w", name, err)
	}
	_, key, ok := parseOneWireName(name)
	if !ok || name != "w1_bus_master"+strconv.Itoa(key[0]) {
		return nil, fmt.Errorf("periph: onewire %q: %w", name, hal.ErrNotPresent)
	}
	node := b.path("sys/bus/w1/devices/" + name)
	if _, err := os.Stat(node); err != nil {
		return nil, classify(node, "", err)
	}
	if !b.realRoot() {
		return nil, fmt.Errorf("periph: %s: opening hardware needs Root \"/\"", node)
	}
	bus, err := netlink.New(uint32(key[0]))
	if err != nil {
		return nil, fmt.Errorf("periph: onewire %q: %w", name, err)
	}
	return bus, nil
}

// Close implements hal.Board: it releases the GPIO lines handed out (their
// kernel line requests end). Buses and ports stay open until their owners
// close them.
func (b *Board) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	for _, l := range b.lines {
		_ = l.Halt()
		l.Close()
	}
	b.lines = nil
	return nil
}

func (b *Board) checkOpen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return hal.ErrClosed
	}
	return nil
}

// openable checks that node exists and may be opened read-write, for a
// clear error before periph's drivers (which lose the errno) try.
func (b *Board) openable(node, group string) error {
	if err := probe(node, os.O_RDWR, group); err != nil {
		return fmt.Errorf("periph: %w", err)
	}
	if !b.realRoot() {
		return fmt.Errorf("periph: %s: opening hardware needs Root \"/\"", node)
	}
	return nil
}

// probe opens and closes node, classifying a failure.
func probe(node string, flag int, group string) error {
	f, err := os.OpenFile(node, flag, 0)
	if err != nil {
		return classify(node, group, err)
	}
	return f.Close()
}

// classify turns an open error into hal.ErrNotPresent (no such node, or a
// node without a device behind it), a *hal.PermissionError naming the group
// that grants access, or a plain wrapped error.
func classify(node, group string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return fmt.Errorf("%s: %w", node, hal.ErrNotPresent)
	case group != "" && errors.Is(err, fs.ErrPermission):
		return &hal.PermissionError{Path: node, Group: group, Err: err}
	}
	return fmt.Errorf("open %s: %w", node, err)
}

func parseI2CName(base string) (string, []int, bool) {
	s, ok := strings.CutPrefix(base, "i2c-")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 0 {
		return "", nil, false
	}
	return s, []int{n}, true
}

func parseSPIName(base string) (string, []int, bool) {
	s, ok := strings.CutPrefix(base, "spidev")
	bs, cs, ok2 := strings.Cut(s, ".")
	bus, err1 := strconv.Atoi(bs)
	sel, err2 := strconv.Atoi(cs)
	if !ok || !ok2 || err1 != nil || err2 != nil || bus < 0 || sel < 0 {
		return "", nil, false
	}
	return s, []int{bus, sel}, true
}

func parseOneWireName(base string) (string, []int, bool) {
	s, ok := strings.CutPrefix(base, "w1_bus_master")
	n, err := strconv.Atoi(s)
	if !ok || err != nil || n < 0 {
		return "", nil, false
	}
	return base, []int{n}, true
}

// line is a gpioioctl line whose WaitForEdge follows the gpio.PinIn
// contract for the timeouts gpioioctl reads differently (there, 0 waits
// forever and -1 not at all), and which fails with hal.ErrClosed once the
// board is closed instead of requesting the line again.
type line struct {
	*gpioioctl.GPIOLine
	board *Board
}

var _ gpio.PinIO = (*line)(nil)

// pollWait is how long WaitForEdge(0) waits for a pending edge.
const pollWait = time.Millisecond

// In implements gpio.PinIn.
func (l *line) In(pull gpio.Pull, edge gpio.Edge) error {
	if err := l.board.checkOpen(); err != nil {
		return fmt.Errorf("periph: gpio %s: %w", l.Name(), err)
	}
	return l.GPIOLine.In(pull, edge)
}

// Out implements gpio.PinOut.
func (l *line) Out(level gpio.Level) error {
	if err := l.board.checkOpen(); err != nil {
		return fmt.Errorf("periph: gpio %s: %w", l.Name(), err)
	}
	return l.GPIOLine.Out(level)
}

// Read implements gpio.PinIn; it reads Low once the board is closed.
func (l *line) Read() gpio.Level {
	if l.board.checkOpen() != nil {
		return gpio.Low
	}
	return l.GPIOLine.Read()
}

// WaitForEdge implements gpio.PinIn: a negative timeout waits without
// limit, 0 only picks up an edge already pending.
func (l *line) WaitForEdge(timeout time.Duration) bool {
	if l.board.checkOpen() != nil {
		return false
	}
	switch {
	case timeout < 0:
		timeout = 0
	case timeout == 0:
		timeout = pollWait
	}
	return l.GPIOLine.WaitForEdge(timeout)
}

// Real implements gpio.RealPin.
func (l *line) Real() gpio.PinIO { return l.GPIOLine }
