package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRevokeLiveDevice: revoking an online device closes its live session
// within seconds, and its reconnects are refused afterwards.
func TestRevokeLiveDevice(t *testing.T) {
	logs := &logBuffer{}
	dir := t.TempDir()
	h := &inprocHub{t: t, dir: filepath.Join(dir, "hub"), httpAddr: freeAddr(t), mqttAddr: freeAddr(t), mqttsAddr: freeAddr(t), logs: logs}
	h.start()
	api := newAPIClient(t, h.httpAddr, h.dir)
	id, _ := startAgent(t, h.httpAddr, filepath.Join(dir, "agent"), "to-revoke", api.joinToken(1), "", testHeartbeat, logs)
	api.waitStatus(id, "online", "", 5*time.Second)

	mark := len(logs.String())
	start := time.Now()
	if st := api.do("POST", "/api/v1/devices/"+id+"/revoke", nil, nil); st != 200 {
		t.Fatalf("revoke: status %d", st)
	}
	api.waitStatus(id, "revoked", "revoked", time.Second)
	since := func() string { return logs.String()[mark:] }
	deadline := time.Now().Add(5 * time.Second)
	for !(strings.Contains(since(), "connection lost") && strings.Contains(since(), "mqtt connection refused")) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the logs
	}
	after := since()
	if !strings.Contains(after, "connection lost") {
		t.Fatalf("the agent's session was not closed within 5s of the revoke")
	}
	if !strings.Contains(after, "mqtt connection refused") || !strings.Contains(after, id) {
		t.Fatalf("the revoked device's reconnect was not refused within 5s")
	}
	t.Logf("session closed and reconnect refused within %s", time.Since(start).Round(time.Millisecond))
	// Its messages no longer change anything: still revoked.
	time.Sleep(3 * testHeartbeat) // letting heartbeats (if any slipped through) arrive
	api.waitStatus(id, "revoked", "revoked", time.Second)
}
