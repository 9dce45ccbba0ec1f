package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/agent/board"
	"github.com/alicia-home/alicia/agent/hardware"
	"github.com/alicia-home/alicia/hal/sim"
)

// simAgent is an in-process agent on a simulated board the test can touch.
type simAgent struct {
	id    string
	board *sim.Board
	stop  func()
}

// startSimAgent runs an in-process agent whose HAL is a simulated board
// with the sim's own board file (relay on GPIO17, button on GPIO27,
// DS18B20, BME280).
func startSimAgent(t testing.TB, hubHTTP, stateDir, name, token string, logs *logBuffer) *simAgent {
	t.Helper()
	b, err := sim.New(sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := board.Parse("sim", strings.NewReader(hardware.SimBoardFile()))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := hardware.New(b, f, logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	id, stop := runAgent(t, agentd.Config{StateDir: stateDir, Hub: hubHTTP, JoinToken: token, Name: name, Hardware: rt,
		HeartbeatInterval: testHeartbeat, KeepAlive: testKeepAlive, SampleInterval: time.Second, Logger: logs.Logger().With("agent", name)})
	return &simAgent{id: id, board: b, stop: stop}
}

// startLoggedHub starts an in-process hub on loopback whose logs (and its
// agents') are printed if the test fails, and returns it, its API client,
// the log buffer and the test's directory.
func startLoggedHub(t *testing.T) (*inprocHub, *apiClient, *logBuffer, string) {
	t.Helper()
	logs := &logBuffer{}
	dir := t.TempDir()
	h := &inprocHub{t: t, dir: filepath.Join(dir, "hub"), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), mqttsAddr: freeAddr(t), logs: logs}
	h.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return h, newAPIClient(t, h.httpAddr, h.dir), logs, dir
}

// commandRecord is the part of a command's record the tests look at.
type commandRecord struct {
	ID     string             `json:"id"`
	Status string             `json:"status"`
	Error  string             `json:"error"`
	Values map[string]float64 `json:"values"`
	Actor  string             `json:"actor"`
}

func (c *apiClient) command(dev string, body map[string]any) (int, commandRecord) {
	c.t.Helper()
	var rec commandRecord
	st := c.do("POST", "/api/v1/devices/"+dev+"/commands", body, &rec)
	return st, rec
}

// sseEvents collects the hub's SSE events of one type.
type sseEvents struct {
	mu     sync.Mutex
	events []string // data lines
	ready  chan struct{}
}

func watchEvents(t *testing.T, api *apiClient, typ string) *sseEvents {
	t.Helper()
	w := &sseEvents{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", api.base+"/api/v1/events?type="+typ, nil)
		req.Header.Set("Authorization", "Bearer "+api.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return
		}
		close(w.ready)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				w.mu.Lock()
				w.events = append(w.events, strings.TrimSpace(d))
				w.mu.Unlock()
			}
		}
	}()
	select {
	case <-w.ready:
	case <-time.After(5 * time.Second):
		t.Fatalf("the event stream of %s did not open", typ)
	}
	return w
}

func (w *sseEvents) wait(t *testing.T, match func(string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, e := range w.events {
			if match(e) {
				w.mu.Unlock()
				return e
			}
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling the collected events
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("no matching event within %s; got %v", timeout, w.events)
	return ""
}

// TestCommandsOnSimulatedHardware: REST commands reach the simulated board
// through the real hub, broker and agent and come back with results; an
// edge on the simulated button reaches the event stream; bad commands are
// refused naming the problem; a command to an offline device fails fast.
func TestCommandsOnSimulatedHardware(t *testing.T) {
	h, api, logs, dir := startLoggedHub(t)
	ag := startSimAgent(t, h.httpAddr, filepath.Join(dir, "agent"), "sim-pi", api.joinToken(1), logs)
	defer ag.stop()
	api.waitStatus(ag.id, "online", "", 10*time.Second)

	// The device registered its hardware.
	var view struct {
		Hardware struct {
			Backend string `json:"backend"`
			Lines   []struct {
				Name, Alias, Direction string
			} `json:"lines"`
			Sensors []struct{ Name, Kind string } `json:"sensors"`
		} `json:"hardware"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for api.do("GET", "/api/v1/devices/"+ag.id, nil, &view); view.Hardware.Backend == "" && time.Now().Before(deadline); api.do("GET", "/api/v1/devices/"+ag.id, nil, &view) {
		time.Sleep(20 * time.Millisecond) // polling for the register message
	}
	if view.Hardware.Backend != "sim" || len(view.Hardware.Sensors) != 3 {
		t.Fatalf("registered hardware: %+v", view.Hardware)
	}

	t.Run("write then read", func(t *testing.T) {
		st, rec := api.command(ag.id, map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}})
		if st != 200 || rec.Status != "ok" || !ag.board.Relay() {
			t.Fatalf("gpio.write relay on: %d %+v, relay %v", st, rec, ag.board.Relay())
		}
		st, rec = api.command(ag.id, map[string]any{"action": "gpio.read", "params": map[string]any{"line": "GPIO17"}})
		if st != 200 || rec.Values["level"] != 1 {
			t.Errorf("gpio.read: %d %+v, want level 1", st, rec)
		}
		st, rec = api.command(ag.id, map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": false}})
		if st != 200 || ag.board.Relay() {
			t.Errorf("gpio.write relay off: %d %+v, relay %v", st, rec, ag.board.Relay())
		}
		st, rec = api.command(ag.id, map[string]any{"action": "sensor.read", "params": map[string]any{"sensor": "climate"}})
		if st != 200 || rec.Values["temperature_celsius"] < 21 || rec.Values["temperature_celsius"] > 22 {
			t.Errorf("sensor.read climate: %d %+v, want about 21.5 °C", st, rec)
		}
	})

	t.Run("button edge reaches the event stream", func(t *testing.T) {
		ev := watchEvents(t, api, "device_input")
		ag.board.Press()
		e := ev.wait(t, func(d string) bool {
			return strings.Contains(d, `"level":false`) && strings.Contains(d, sim.ButtonLine)
		}, 5*time.Second)
		ag.board.Release()
		ev.wait(t, func(d string) bool { return strings.Contains(d, `"level":true`) }, 5*time.Second)
		var got struct {
			Device string `json:"device"`
		}
		if err := json.Unmarshal([]byte(e), &got); err != nil || got.Device != ag.id {
			t.Errorf("event %s does not name the device %s", e, ag.id)
		}
	})

	t.Run("bad commands are refused naming the problem", func(t *testing.T) {
		for _, tc := range []struct {
			body map[string]any
			want string
		}{
			{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "GPIO3", "level": true}}, `\"GPIO3\" is not a line`},
			{map[string]any{"action": "gpio.write", "params": map[string]any{"line": "button", "level": true}}, "is an input"},
			{map[string]any{"action": "gpio.pulse", "params": map[string]any{"line": "relay", "level": true, "duration_ms": 600000}}, "params.duration_ms"},
		} {
			st, body := api.doRaw("POST", "/api/v1/devices/"+ag.id+"/commands", tc.body)
			if st != 400 || !strings.Contains(body, tc.want) {
				t.Errorf("%v: %d %s, want 400 with %s", tc.body, st, body, tc.want)
			}
		}
	})

	t.Run("the audit log records every command", func(t *testing.T) {
		var audit struct {
			Commands []commandRecord `json:"commands"`
		}
		if st := api.do("GET", "/api/v1/audit?device="+ag.id, nil, &audit); st != 200 || len(audit.Commands) != 4 {
			t.Fatalf("audit: %d, %d commands, want 4: %+v", st, len(audit.Commands), audit.Commands)
		}
		for _, c := range audit.Commands {
			if c.Actor != "admin" || c.Status != "ok" {
				t.Errorf("audit entry %+v", c)
			}
		}
	})

	t.Run("offline device fails fast", func(t *testing.T) {
		ag.stop()
		api.waitStatus(ag.id, "offline", "", 5*time.Second)
		start := time.Now()
		st, _ := api.command(ag.id, map[string]any{"action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}})
		if took := time.Since(start); st != 409 || took > time.Second {
			t.Errorf("command to an offline device: %d after %s, want 409 at once", st, took)
		}
		st, rec := api.command(ag.id, map[string]any{"action": "gpio.write", "queue_ttl_ms": 60000, "params": map[string]any{"line": "relay", "level": true}})
		if st != 202 || rec.Status != "queued" {
			t.Errorf("queued command: %d %+v", st, rec)
		}
	})
}
