package broker

import "testing"

// TestDevicePublishesOnlyProtocolTopics: inside its own subtree a device may
// publish only the protocol's message kinds, so it cannot fill the broker's
// memory with retained messages on invented topics.
func TestDevicePublishesOnlyProtocolTopics(t *testing.T) {
	dev := Identity{Role: RoleDevice, ID: "dev-a"}
	for topic, want := range map[string]bool{
		"alicia/v1/devices/dev-a/status":    true,
		"alicia/v1/devices/dev-a/register":  true,
		"alicia/v1/devices/dev-a/heartbeat": true,
		"alicia/v1/devices/dev-a/metrics":   true,
		"alicia/v1/devices/dev-a/result":    true,
		"alicia/v1/devices/dev-a/event":     true,
		"alicia/v1/devices/dev-a/ack":       false, // the hub's acknowledgements
		"alicia/v1/devices/dev-a/cmd":       false, // the hub's commands: a device may not command itself
		"alicia/v1/devices/dev-a/junk":      false,
		"alicia/v1/devices/dev-a/junk/1":    false,
		"alicia/v1/devices/dev-a/status/x":  false,
		"alicia/v1/devices/dev-b/status":    false,
		"alicia/v1/hub/status":              false,
		"alicia/v1/devices/dev-a/+":         false,
		"$SYS/broker/clients":               false,
	} {
		if got := dev.mayPublish(topic); got != want {
			t.Errorf("device mayPublish(%q) = %v, want %v", topic, got, want)
		}
	}
}
