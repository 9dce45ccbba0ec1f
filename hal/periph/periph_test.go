package periph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hal"
)

func TestDescribeFixtures(t *testing.T) {
	tests := []struct {
		root      string
		lineNames map[string][]string // by chip base name
		want      hal.Description
	}{{
		root: "testdata/pi4",
		lineNames: map[string][]string{
			"gpiochip0": {"ID_SDA", "ID_SCL", "GPIO2", "GPIO3", "GPIO17", "", "-", "GPIO17"},
			"gpiochip1": {"BT_ON", "WL_ON"},
		},
		want: hal.Description{
			Backend: "periph",
			Model:   "Raspberry Pi 4 Model B Rev 1.4",
			Lines: []hal.LineInfo{
				{Name: "ID_SDA"}, {Name: "ID_SCL"}, {Name: "GPIO2"}, {Name: "GPIO3"}, {Name: "GPIO17"},
				{Name: "BT_ON"}, {Name: "WL_ON"},
			},
			I2C:     []string{"1", "2", "10"},
			SPI:     []string{"0.0", "0.1", "1.0"},
			OneWire: []string{"w1_bus_master1"},
		},
	}, {
		root: "testdata/dtonly",
		want: hal.Description{Backend: "periph", Model: "Radxa ROCK 3 Model A", I2C: []string{"0"}},
	}, {
		root: t.TempDir(),
		want: hal.Description{Backend: "periph"},
	}}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			b := newBoard(t, tt.root)
			b.lineNames = func(chip string) ([]string, error) {
				names, ok := tt.lineNames[filepath.Base(chip)]
				if !ok {
					return nil, fmt.Errorf("%s: not a fixture chip", chip)
				}
				return names, nil
			}
			if diff := cmp.Diff(tt.want, b.Describe()); diff != "" {
				t.Errorf("Describe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func newBoard(t *testing.T, root string) *Board {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Root: abs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestOpenFixtures(t *testing.T) {
	b := newBoard(t, "testdata/pi4")
	absent := map[string]error{}
	_, absent["i2c 3"] = b.I2C("3")
	_, absent["i2c 01"] = b.I2C("01")
	_, absent["i2c +1"] = b.I2C("+1")
	_, absent["i2c bogus"] = b.I2C("bogus")
	_, absent["spi 0.2"] = b.SPI("0.2")
	_, absent["spi 0"] = b.SPI("0")
	_, absent["spi 0.0.0"] = b.SPI("0.0.0")
	_, absent["onewire 2"] = b.OneWire("w1_bus_master2")
	_, absent["onewire device"] = b.OneWire("28-0000075b2a11")
	_, absent["gpio"] = b.GPIO("GPIO99")
	_, absent["gpio empty"] = b.GPIO("")
	for what, err := range absent {
		if !errors.Is(err, hal.ErrNotPresent) {
			t.Errorf("%s: error %v, want hal.ErrNotPresent", what, err)
		}
	}
	// Present nodes are found, but a fixture root cannot open hardware.
	present := map[string]error{}
	_, present["i2c 10"] = b.I2C("10")
	_, present["spi 1.0"] = b.SPI("1.0")
	_, present["onewire 1"] = b.OneWire("w1_bus_master1")
	for what, err := range present {
		if err == nil || errors.Is(err, hal.ErrNotPresent) {
			t.Errorf("%s: error %v, want a non-absent error", what, err)
		}
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.I2C("1"); !errors.Is(err, hal.ErrClosed) {
		t.Errorf("I2C after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err       error
		wantGroup string // "" for not a PermissionError
		absent    bool
	}{
		{err: &os.PathError{Op: "open", Path: "/dev/i2c-1", Err: syscall.EACCES}, wantGroup: "i2c"},
		{err: &os.PathError{Op: "open", Path: "/dev/i2c-1", Err: syscall.EPERM}, wantGroup: "i2c"},
		{err: &os.PathError{Op: "open", Path: "/dev/i2c-1", Err: syscall.ENOENT}, absent: true},
		{err: &os.PathError{Op: "open", Path: "/dev/i2c-1", Err: syscall.ENXIO}, absent: true},
		{err: &os.PathError{Op: "open", Path: "/dev/i2c-1", Err: syscall.EBUSY}},
	}
	for _, tt := range tests {
		got := classify("/dev/i2c-1", "i2c", tt.err)
		var pe *hal.PermissionError
		isPerm := errors.As(got, &pe)
		switch {
		case tt.wantGroup != "":
			if !isPerm || pe.Group != tt.wantGroup || pe.Path != "/dev/i2c-1" || !errors.Is(got, tt.err.(*os.PathError).Err) {
				t.Errorf("classify(%v) = %#v, want a PermissionError for group %q", tt.err, got, tt.wantGroup)
			}
		case tt.absent:
			if !errors.Is(got, hal.ErrNotPresent) {
				t.Errorf("classify(%v) = %v, want ErrNotPresent", tt.err, got)
			}
		default:
			if isPerm || errors.Is(got, hal.ErrNotPresent) || !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v, want it wrapped as is", tt.err, got)
			}
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root opens any file: the errno mapping is covered by TestClassify")
	}
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"i2c-1", "spidev0.0", "gpiochip0"} {
		if err := os.WriteFile(filepath.Join(root, "dev", n), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	b := newBoard(t, root)
	errs := map[string]error{}
	_, errs["i2c"] = b.I2C("1")
	_, errs["spi"] = b.SPI("0.0")
	_, errs["gpio"] = b.GPIO("GPIO17")
	for group, err := range errs {
		var pe *hal.PermissionError
		if !errors.As(err, &pe) || pe.Group != group {
			t.Errorf("%s: error %v, want a PermissionError for group %q", group, err, group)
		}
	}
}

func TestNewRejectsRelativeRoot(t *testing.T) {
	if _, err := New(Options{Root: "testdata/pi4"}); err == nil {
		t.Error("New accepted a relative root")
	}
}

// TestThisMachine runs on the real root. What the machine has varies (a
// desktop has I2C buses, CI has nothing), but construction never fails and
// absent names are ErrNotPresent.
func TestThisMachine(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.Describe().Backend; got != Backend {
		t.Errorf("Backend = %q", got)
	}
	if _, err := b.GPIO("alicia-absent-99"); !errors.Is(err, hal.ErrNotPresent) {
		var pe *hal.PermissionError
		if !errors.As(err, &pe) {
			t.Errorf("GPIO of an absent line: %v", err)
		}
	}
	if _, err := b.OneWire("w1_bus_master999"); !errors.Is(err, hal.ErrNotPresent) {
		t.Errorf("absent 1-wire bus: %v", err)
	}
}
