package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/hub/hubd"
)

// inprocHub runs a hubd.Hub on fixed loopback ports so that it can be
// restarted on the same addresses.
type inprocHub struct {
	t                  *testing.T
	dir                string
	httpAddr, mqttAddr string
	mqttsAddr          string
	logs               *logBuffer
	stop               func()
}

func (h *inprocHub) start() *hubd.Hub {
	h.t.Helper()
	hub, err := hubd.New(hubd.Config{DataDir: h.dir, HTTPAddr: h.httpAddr, MQTTAddr: h.mqttAddr, MQTTSAddr: h.mqttsAddr,
		// These tests run in the machine's own network namespace: no mDNS
		// on its real interfaces (the LAN tests use namespaces).
		NoMDNS: true, HeartbeatTimeoutCheck: 100 * time.Millisecond, Logger: h.logs.Logger()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.stop = runUntil(h.t, "hub", hub.Run)
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		h.t.Fatalf("hub not ready within 10s; logs:\n%s", h.logs)
	}
	return hub
}

const (
	testHeartbeat = 300 * time.Millisecond
	testKeepAlive = 2 * time.Second
)

// startAgent runs an in-process agent enrolled with token and returns its
// device ID and stop function.
func startAgent(t *testing.T, hubHTTP, stateDir, name, token, brokerURL string, heartbeat time.Duration, logs *logBuffer) (string, func()) {
	t.Helper()
	return runAgent(t, agentd.Config{StateDir: stateDir, Hub: hubHTTP, JoinToken: token, Name: name,
		HeartbeatInterval: heartbeat, KeepAlive: testKeepAlive, BrokerURL: brokerURL, Logger: logs.Logger().With("agent", name)})
}

// runAgent runs an in-process agent with cfg and returns its device ID,
// once it has loaded its identity, and its stop function.
func runAgent(t testing.TB, cfg agentd.Config) (string, func()) {
	t.Helper()
	a, err := agentd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, "agent "+cfg.Name, a.Run)
	deadline := time.Now().Add(10 * time.Second)
	for a.DeviceID() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the identity to be loaded
	}
	if a.DeviceID() == "" {
		t.Fatalf("agent %s has no device id after 10s", cfg.Name)
	}
	return a.DeviceID(), stop
}

// TestInProcess runs the hub and two agents in this process: both register
// and go online; a hub restart keeps the registry and the agents come back
// by themselves; a clean stop shows offline at once; a dead link shows
// offline within 1.5 times the keep-alive.
func TestInProcess(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	h := &inprocHub{t: t, dir: filepath.Join(dir, "hub"), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), mqttsAddr: freeAddr(t), logs: logs}
	h.start()
	api := newAPIClient(t, h.httpAddr, h.dir)
	token := api.joinToken(2)

	// Agent b reaches the broker through a proxy that can simulate a dead
	// link. Its heartbeats are slow, so that only the broker's keep-alive
	// and the Last Will can notice the dead link in time.
	px := newProxy(t, h.mqttAddr)
	idA, stopA := startAgent(t, h.httpAddr, filepath.Join(dir, "a"), "agent-a", token, "", testHeartbeat, logs)
	idB, stopB := startAgent(t, h.httpAddr, filepath.Join(dir, "b"), "agent-b", token, "mqtt://"+px.addr(), 10*time.Second, logs)
	defer stopB()

	api.waitStatus(idA, "online", "", 5*time.Second)
	api.waitStatus(idB, "online", "", 5*time.Second)
	ds := api.devices()
	if len(ds) != 2 {
		t.Fatalf("%d devices listed, want 2", len(ds))
	}
	for id, name := range map[string]string{idA: "agent-a", idB: "agent-b"} {
		d := ds[id]
		if d.Name != name || d.Facts == nil || d.Facts.Hostname == "" || d.Facts.CPUCores == 0 || d.AgentVersion == "" {
			t.Errorf("device %s registered incompletely: %+v", id, d)
		}
	}
	if st := api.do("PATCH", "/api/v1/devices/"+idA, map[string]any{"labels": map[string]string{"room": "kitchen"}}, nil); st != 200 {
		t.Fatalf("label device: status %d", st)
	}

	t.Run("hub restart keeps the registry and agents reconnect by themselves", func(t *testing.T) {
		h.stop()
		h.start()
		ds := api.devices()
		if len(ds) != 2 || ds[idA].Labels["room"] != "kitchen" || ds[idA].Name != "agent-a" {
			t.Fatalf("registry after restart: %+v", ds)
		}
		// Devices that were online stay online through the grace period,
		// and the agents' reconnect keeps them so.
		for _, id := range []string{idA, idB} {
			if s := ds[id].Status; s != "online" {
				t.Errorf("device %s is %q right after the hub restart, want online (grace period)", id, s)
			}
		}
		// Wait for longer than the grace period (3 heartbeats): still
		// online means the agents reconnected and send heartbeats.
		time.Sleep(4 * testHeartbeat) // letting the grace period run out on purpose
		// The agents retry with a backoff capped at 5 s, so after a slow
		// restart (a loaded CI machine) the next attempt may be 5 s away.
		api.waitStatus(idA, "online", "", 15*time.Second)
		api.waitStatus(idB, "online", "", 15*time.Second)
		if !strings.Contains(logs.String(), "connected") {
			t.Errorf("no reconnect logged")
		}
	})

	t.Run("a reconnect while the broker still holds the old connection ends online", func(t *testing.T) {
		// The broker side of the cut connection stays open and silent
		// until the new connection takes the session over; the old
		// connection's Will may briefly mark the device offline (mochi
		// sends it before accepting the new one), but the device must end
		// online. Wills arriving after the new "online" are covered by the
		// registry's session tests.
		px.cutClientSide()
		time.Sleep(2 * testKeepAlive) // let the takeover and any late Will happen
		api.waitStatus(idB, "online", "", time.Second)
		if !strings.Contains(logs.String(), "connection lost") {
			t.Error("the agent did not notice the cut")
		}
	})

	t.Run("clean stop shows offline at once", func(t *testing.T) {
		stopA()
		// The reason "shutdown" proves it came from the goodbye, not from a
		// timeout; the bound leaves room for a loaded CI machine.
		if took := api.waitStatus(idA, "offline", "shutdown", 3*time.Second); took > 2*time.Second {
			t.Errorf("offline after %s, want at once", took)
		}
	})

	t.Run("dead link shows offline within 1.5x keep-alive", func(t *testing.T) {
		start := time.Now()
		px.freeze()
		api.waitStatus(idB, "offline", "connection_lost", 3*testKeepAlive)
		took := time.Since(start)
		// The broker allows 1.5×keep-alive of silence; add the registry's
		// tick, the polling interval and room for a loaded CI machine.
		if limit := testKeepAlive*3/2 + time.Second; took > limit {
			t.Errorf("offline after %s, want within %s", took, limit)
		}
		t.Logf("dead link detected after %s (keep-alive %s)", took, testKeepAlive)
	})
}
