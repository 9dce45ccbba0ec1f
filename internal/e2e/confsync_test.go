package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/alicia-home/alicia/internal/protocol"
)

// configWrite PUTs a config document with a precondition header.
func configWrite(t *testing.T, api *apiClient, path, precondition, value string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("PUT", api.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+api.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(precondition, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// configInbox collects the Configs a device receives on its config topic.
type configInbox struct {
	mu  sync.Mutex
	got []*protocol.Config
}

func (b *configInbox) handle(_ mqtt.Client, m mqtt.Message) {
	msg, err := protocol.Decode(m.Payload())
	if err != nil {
		return
	}
	if c, ok := msg.Payload.(*protocol.Config); ok {
		b.mu.Lock()
		b.got = append(b.got, c)
		b.mu.Unlock()
	}
}

// next waits for a config whose agent kind differs from prev's hash.
func (b *configInbox) next(t *testing.T, prev string, timeout time.Duration) protocol.ConfigDoc {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, c := range b.got {
			if d, ok := c.Configs["agent"]; ok && d.Hash != prev {
				b.mu.Unlock()
				return d
			}
		}
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling the inbox
	}
	t.Fatalf("no new agent config within %s", timeout)
	return protocol.ConfigDoc{}
}

// deviceConfig reads the device view's config state of the agent kind.
func deviceConfig(t *testing.T, api *apiClient, id string) (desired, applied, state, reason string) {
	t.Helper()
	var d struct {
		Config map[string]struct {
			Desired, Applied, State, Reason string
		} `json:"config"`
	}
	if st := api.do("GET", "/api/v1/devices/"+id, nil, &d); st != 200 {
		t.Fatalf("GET device %s: %d", id, st)
	}
	a := d.Config["agent"]
	return a.Desired, a.Applied, a.State, a.Reason
}

// TestConfigReachesDevices: a document for a label selector is sent to
// every matching device on its own topic (retained: a device that connects
// later gets it at once), and what each device answers shows as desired
// against applied in the registry.
func TestConfigReachesDevices(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	hubDir := filepath.Join(dir, "hub")
	hub := startProc(t, "hub", filepath.Join(bin, "alicia-hub"), "--data-dir", hubDir, "--http-addr", httpAddr, "--mqtt-addr", mqttAddr,
		"--mqtts-addr", freeAddr(t), "--no-mdns")
	waitHealthy(t, httpAddr, hub)
	api := newAPIClient(t, httpAddr, hubDir)

	connectDevice := func(name string) (*simDevice, *configInbox) {
		d := enrolSimDevice(t, api, api.joinToken(1), name, 1)
		if st := api.do("PATCH", "/api/v1/devices/"+d.id, map[string]any{"labels": map[string]string{"room": "garage"}}, nil); st != 200 {
			t.Fatalf("label %s: %d", name, st)
		}
		d.client = connect(t, "tcp://"+mqttAddr, d.id, d.id, d.password)
		t.Cleanup(func() { d.client.Disconnect(100) })
		in := &configInbox{}
		if tok := d.client.Subscribe(protocol.DeviceTopic(d.id, protocol.KindConfig), 1, in.handle); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		return d, in
	}
	report := func(d *simDevice, hash, state, reason string) {
		b, err := protocol.Encode(d.id, time.Now(), &protocol.ConfigStatus{Kind: "agent", Hash: hash, State: state, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		if tok := d.client.Publish(protocol.DeviceTopic(d.id, protocol.KindConfigStatus), 1, false, b); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish status: %v", tok.Error())
		}
	}
	waitState := func(id, want string) (desired, applied, reason string) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			desired, applied, state, reason := deviceConfig(t, api, id)
			if state == want {
				return desired, applied, reason
			}
			if time.Now().After(deadline) {
				t.Fatalf("device %s: config state %q after 5 s, want %q", id, state, want)
			}
			time.Sleep(20 * time.Millisecond) // polling the registry view
		}
	}

	d1, in1 := connectDevice("garage-1")
	start := time.Now()
	if st := configWrite(t, api, "/api/v1/config/agent/selector:room=garage", "If-None-Match", "*",
		map[string]any{"content": map[string]any{"sample_interval": "30s"}}); st != 201 {
		t.Fatalf("PUT the garage document: %d", st)
	}
	c1 := in1.next(t, "", 5*time.Second)
	t.Logf("the config reached the device %s after the write", time.Since(start).Round(time.Millisecond))
	if string(c1.Content) != `{"sample_interval":"30s"}` {
		t.Errorf("config content %s", c1.Content)
	}
	waitState(d1.id, "pending")
	report(d1, c1.Hash, protocol.ConfigApplied, "")
	if desired, applied, _ := waitState(d1.id, "applied"); desired != c1.Hash || applied != c1.Hash {
		t.Errorf("desired %s, applied %s; want both %s", desired, applied, c1.Hash)
	}

	// A device that connects after the write gets it at once (retained).
	d2, in2 := connectDevice("garage-2")
	if c := in2.next(t, "", 5*time.Second); c.Hash != c1.Hash {
		t.Errorf("the late device got %s, want %s", c.Hash, c1.Hash)
	}

	// A new version: the device refuses it; the registry says why, and
	// that it still runs the old one.
	if st := configWrite(t, api, "/api/v1/config/agent/selector:room=garage", "If-Match", `"1"`,
		map[string]any{"content": map[string]any{"sample_interval": "1s"}}); st != 200 {
		t.Fatalf("PUT version 2: %d", st)
	}
	c2 := in1.next(t, c1.Hash, 5*time.Second)
	report(d1, c2.Hash, protocol.ConfigRejected, "1s is too often for this SD card")
	desired, applied, reason := waitState(d1.id, "rejected")
	if desired != c2.Hash || applied != c1.Hash || reason != "1s is too often for this SD card" {
		t.Errorf("after the rejection: desired %s, applied %s, reason %q", desired, applied, reason)
	}
	_ = d2
}
