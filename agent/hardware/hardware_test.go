package hardware

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicia-home/alicia/agent/board"
	"github.com/alicia-home/alicia/hal"
	"github.com/alicia-home/alicia/hal/sim"
	"github.com/alicia-home/alicia/internal/protocol"
)

func newSim(t *testing.T) (*sim.Board, *Runtime) {
	t.Helper()
	b, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := board.Parse("sim", strings.NewReader(SimBoardFile()))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(b, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return b, r
}

func point(pts []protocol.Point, name, label, value string) (float64, bool) {
	for _, p := range pts {
		if p.Name == name && p.Labels[label] == value {
			return p.Value, true
		}
	}
	return 0, false
}

func TestSimHardwareRegistersValidly(t *testing.T) {
	_, r := newSim(t)
	hw := r.Hardware()
	reg := protocol.Register{Name: "sim", AgentVersion: "v0", HeartbeatMS: 1000, Facts: protocol.Facts{Hostname: "sim", OS: "linux", Arch: "amd64"}, Hardware: hw}
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	if hw.Backend != "sim" || len(hw.Sensors) != 3 {
		t.Errorf("hardware %+v", hw)
	}
}

func TestSampleSensorsAndLines(t *testing.T) {
	b, r := newSim(t)
	if err := b.SetDS18B20(23.5); err != nil {
		t.Fatal(err)
	}
	if err := b.SetEnvironment(sim.Environment{TemperatureCelsius: 18, PressurePascals: 99000, HumidityRatio: 0.6}); err != nil {
		t.Fatal(err)
	}
	res := r.Execute(context.Background(), &protocol.Command{ID: "c1", Action: protocol.ActionGPIOWrite, Params: protocol.CommandParams{Line: "relay", Level: new(true)}, Deadline: time.Now().Add(time.Minute)})
	if res.Status != protocol.ResultOK || !b.Relay() {
		t.Fatalf("relay on: %+v, relay %v", res, b.Relay())
	}
	pts := r.Sample(context.Background())
	for _, c := range []struct {
		name, label, value string
		want, tol          float64
	}{
		{"sensor_temperature_celsius", "sensor", "temp_sim", 23.5, 0.07},
		{"sensor_temperature_celsius", "sensor", "climate", 18, 0.1},
		{"sensor_pressure_pascals", "sensor", "climate", 99000, 20},
		{"sensor_humidity_ratio", "sensor", "climate", 0.6, 0.01},
		{"sensor_up", "sensor", "temp_sim", 1, 0},
		{"gpio_level", "line", sim.RelayLine, 1, 0},
		{"gpio_level", "line", sim.ButtonLine, 1, 0}, // pulled up, not pressed
	} {
		v, ok := point(pts, c.name, c.label, c.value)
		if !ok || math.Abs(v-c.want) > c.tol {
			t.Errorf("%s{%s=%q} = %v (present %v), want %v ± %v", c.name, c.label, c.value, v, ok, c.want, c.tol)
		}
	}
	for _, p := range pts {
		if err := protocol.ValidateMetricName(p.Name); err != nil {
			t.Error(err)
		}
		if !IsHardwareMetric(p.Name) {
			t.Errorf("%s is sent but IsHardwareMetric does not know it (custom metrics could take it)", p.Name)
		}
	}
	v, err := r.ReadSensor(context.Background(), "climate")
	if err != nil || math.Abs(v["humidity_ratio"]-0.6) > 0.01 {
		t.Errorf("ReadSensor(climate) = %v, %v", v, err)
	}
	if _, err := r.ReadSensor(context.Background(), "nope"); !errors.Is(err, hal.ErrNotPresent) {
		t.Errorf("ReadSensor(nope) = %v", err)
	}
}

// TestWatchInputsReportsDebouncedEdges runs in a synctest bubble: the
// 20 ms debounce passes on the bubble's clock, and synctest.Wait says when
// the watcher waits for an edge.
func TestWatchInputsReportsDebouncedEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, r := newSim(t)
		ctx, cancel := context.WithCancel(context.Background())
		events := make(chan protocol.DeviceEvent, 8)
		done := make(chan struct{})
		go func() { defer close(done); r.WatchInputs(ctx, func(e protocol.DeviceEvent) { events <- e }) }()
		defer func() { cancel(); <-done }()
		want := func(level bool) {
			t.Helper()
			select {
			case e := <-events:
				if e.Event != protocol.EventGPIOEdge || e.Line != sim.ButtonLine || e.Level == nil || *e.Level != level {
					t.Errorf("event %+v, want %s level %v", e, sim.ButtonLine, level)
				}
				if err := e.Validate(); err != nil {
					t.Error(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no event for level %v", level)
			}
		}
		// The watcher has read the released level and waits for an edge.
		synctest.Wait()
		// A press that bounces for 10 ms (less than the debounce) is one
		// edge, reported once the line has been still for 20 ms.
		pressed := time.Now()
		b.Press()
		time.Sleep(5 * time.Millisecond)
		b.Release()
		time.Sleep(5 * time.Millisecond)
		b.Press()
		want(false)
		if d := time.Since(pressed); d != 30*time.Millisecond {
			t.Errorf("press reported %v after the first contact, want 30ms (10ms of bounce, 20ms of debounce)", d)
		}
		synctest.Wait()
		if len(events) != 0 {
			t.Errorf("%d more events for one bouncing press, want none", len(events))
		}
		b.Release()
		want(true)
	})
}

func TestOpenBoard(t *testing.T) {
	if b, err := OpenBoard(BackendNone); b != nil || err != nil {
		t.Errorf("none: %v %v", b, err)
	}
	b, err := OpenBoard(BackendSim)
	if err != nil || b.Describe().Backend != "sim" {
		t.Fatalf("sim: %v", err)
	}
	b.Close()
	if _, err := OpenBoard("gpio"); err == nil || !strings.Contains(err.Error(), "want auto, none, sim or periph") {
		t.Errorf("unknown backend: %v", err)
	}
}

// A bmp280 declaration reads temperature and pressure, never humidity
// (here from the simulated BME280, which a BMP280 reader accepts).
func TestBMP280Declaration(t *testing.T) {
	b, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := board.Parse("b", strings.NewReader("bmp280 1 0x76 as baro\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(b, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pts := r.Sample(context.Background())
	if v, ok := point(pts, "sensor_pressure_pascals", "sensor", "baro"); !ok || math.Abs(v-101325) > 20 {
		t.Errorf("pressure %v (present %v), want about 101325 Pa", v, ok)
	}
	if _, ok := point(pts, "sensor_humidity_ratio", "sensor", "baro"); ok {
		t.Error("a bmp280 reported humidity")
	}
}
