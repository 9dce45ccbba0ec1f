package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// TestBadInput publishes malformed, mistyped, forged and oversize messages
// on a device's register and heartbeat topics, with the device's own
// credentials: each is rejected and logged, the hub keeps serving, and the
// registry is unchanged.
func TestBadInput(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	h := &inprocHub{t: t, dir: filepath.Join(dir, "hub"), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), mqttsAddr: freeAddr(t), logs: logs}
	h.start()
	api := newAPIClient(t, h.httpAddr, h.dir)
	state := filepath.Join(dir, "agent")
	id, stop := startAgent(t, h.httpAddr, state, "victim", api.joinToken(1), "", testHeartbeat, logs)
	api.waitStatus(id, "online", "", 5*time.Second)
	stop()
	api.waitStatus(id, "offline", "shutdown", 3*time.Second)
	before := api.devices()[id]

	var creds struct {
		Password string `json:"password"`
	}
	if b, err := os.ReadFile(filepath.Join(state, "credentials.json")); err != nil || json.Unmarshal(b, &creds) != nil {
		t.Fatalf("read credentials: %v", err)
	}
	c, err := bus.New(bus.Config{URL: "mqtt://" + h.mqttAddr, ClientID: id, Username: id, Password: creds.Password})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, "attacker client", c.Run)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	forged := must(protocol.Encode("dsomeoneelse000000000", time.Now(), &protocol.Heartbeat{Seq: 1}))
	wrongType := must(protocol.Encode(id, time.Now(), &protocol.Heartbeat{Seq: 1}))
	goodReg := must(protocol.Encode(id, time.Now(), &protocol.Register{Name: "renamed-by-attack", AgentVersion: "x", HeartbeatMS: 1000,
		Facts: protocol.Facts{Hostname: "h", OS: "linux", Arch: "amd64"}}))
	cases := []struct {
		name, kind string
		payload    []byte
		wantLog    string
	}{
		{"not json", "register", []byte("hello"), "invalid character"},
		{"truncated json", "heartbeat", []byte(`{"v":1,"id":"x"`), "unexpected EOF"},
		{"wrong version", "heartbeat", []byte(strings.Replace(string(wrongType), `"v":1`, `"v":9`, 1)), "protocol version 9"},
		{"unknown field", "register", []byte(strings.Replace(string(goodReg), `"name":`, `"evil":1,"name":`, 1)), "unknown field"},
		{"invalid facts", "register", []byte(strings.Replace(string(goodReg), `"hostname":"h"`, `"hostname":""`, 1)), "payload.facts.hostname"},
		{"type does not match topic", "register", wrongType, "message of type heartbeat on a register topic"},
		{"forged source", "heartbeat", forged, "claims source dsomeoneelse000000000"},
		{"oversize for the protocol", "register", []byte(`{"v":1,"pad":"` + strings.Repeat("x", protocol.MaxMessageSize+1<<10) + `"}`), "too large"},
	}
	for _, tc := range cases {
		topic := protocol.DeviceTopic(id, protocol.Kind(tc.kind))
		if err := c.Publish(ctx, bus.Message{Topic: topic, Payload: tc.payload, QoS: 1}); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
	}
	// A marker the hub does accept: once it is applied, every message
	// before it on that topic was handled.
	marker := must(protocol.Encode(id, time.Now(), &protocol.Heartbeat{Seq: 99}))
	if err := c.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(id, protocol.KindHeartbeat), Payload: marker, QoS: 1}); err != nil {
		t.Fatal(err)
	}
	api.waitStatus(id, "online", "heartbeat", 5*time.Second)
	for _, tc := range cases {
		if !strings.Contains(logs.String(), tc.wantLog) {
			t.Errorf("%s: no rejection logged containing %q", tc.name, tc.wantLog)
		}
	}
	after := api.devices()[id]
	// Only the status, from the marker heartbeat, may differ.
	after.Status, after.StatusReason = before.Status, before.StatusReason
	if !reflect.DeepEqual(before, after) {
		t.Errorf("registry changed by bad input:\nbefore %+v\nafter  %+v", before, after)
	}

	t.Run("a packet over the broker's limit closes the connection", func(t *testing.T) {
		huge := make([]byte, 300<<10)
		err := c.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(id, protocol.KindRegister), Payload: huge, QoS: 1})
		if err == nil {
			t.Fatal("a 300 KiB publish was acknowledged")
		}
	})
	if st, err := httpGet("http://" + h.httpAddr + "/healthz"); err != nil || st != 200 {
		t.Errorf("hub stopped serving after bad input: %d, %v", st, err)
	}
}
