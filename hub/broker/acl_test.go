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

// TestIntegrationScope: an integration's account reaches exactly its
// scope; the hub's scope adds Home Assistant's prefix to alicia/.
func TestIntegrationScope(t *testing.T) {
	ha := Identity{Role: RoleIntegration, ID: "int-homeassistant", Scope: Scope{
		Publish: []string{"homeassistant/status", "alicia/v1/ha/+/+/set"},
		Read:    []string{"homeassistant/", "alicia/v1/ha/"},
	}}
	for topic, want := range map[string]bool{
		"homeassistant/status":                 true,
		"alicia/v1/ha/dev-a/relay/set":         true,
		"alicia/v1/ha/dev-a/relay/set/x":       false,
		"alicia/v1/ha/dev-a/state":             false,
		"homeassistant/device/alicia_x/config": false, // only the hub announces
		"alicia/v1/devices/dev-a/cmd":          false,
		"alicia/v1/ha/+/relay/set":             false,
	} {
		if got := ha.mayPublish(topic); got != want {
			t.Errorf("integration mayPublish(%q) = %v, want %v", topic, got, want)
		}
	}
	for filter, want := range map[string]bool{
		"homeassistant/#":          true,
		"homeassistant/+/+/config": true,
		"alicia/v1/ha/#":           true,
		"alicia/v1/#":              false,
		"alicia/v1/devices/+/cmd":  false,
		"#":                        false,
		"+/status":                 false,
		"$SYS/#":                   false,
	} {
		if got := ha.maySubscribe(filter); got != want {
			t.Errorf("integration maySubscribe(%q) = %v, want %v", filter, got, want)
		}
	}
	if ha.mayReceive("alicia/v1/devices/dev-a/status") || !ha.mayReceive("alicia/v1/ha/dev-a/state") {
		t.Error("integration mayReceive outside/inside its scope is wrong")
	}
	hub := Identity{Role: RoleHub, ID: "hub-1", Scope: Scope{Publish: []string{"homeassistant/#"}, Read: []string{"homeassistant/"}}}
	if !hub.mayPublish("homeassistant/device/alicia_x/config") || !hub.maySubscribe("homeassistant/status") || !hub.mayPublish("alicia/v1/devices/x/cmd") {
		t.Error("the hub cannot reach Home Assistant's prefix or its own tree")
	}
	if hub.mayPublish("zigbee2mqtt/bridge") || (Identity{Role: RoleHub}).mayPublish("homeassistant/status") {
		t.Error("the hub reaches outside alicia/ and its scope")
	}
}

func TestTopicMatches(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true}, {"a/b", "a/c", false}, {"a/+", "a/b", true}, {"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true}, {"a/#", "a", true /* the parent matches too (MQTT 4.7.1.2) */}, {"#", "x", true}, {"a/+/c", "a/b/c", true}, {"a/b/c", "a/b", false},
	} {
		if got := topicMatches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("topicMatches(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

// TestClientIDBelongsToOneAccount: a client ID maps to exactly one account.
// An integration's extra connections are <username>.<suffix>; a "-" suffix
// would let integration "int-a" take over the session of integration
// "int-a-b", whose names may contain "-".
func TestClientIDBelongsToOneAccount(t *testing.T) {
	integ := Identity{Role: RoleIntegration, ID: "int-a"}
	dev := Identity{Role: RoleDevice, ID: "dev-a"}
	for _, c := range []struct {
		id        Identity
		user, cid string
		want      bool
	}{
		{integ, "int-a", "int-a", true},
		{integ, "int-a", "int-a.cli", true},
		{integ, "int-a", "int-a.b-c.d", true},
		{integ, "int-a", "int-a-b", false}, // integration "a-b"'s own client ID
		{integ, "int-a", "int-a-b.cli", false},
		{integ, "int-a", "int-ab", false},
		{integ, "int-a", "int-a.", false},
		{integ, "int-a", "int-b", false},
		{integ, "int-a", "dev-a", false},
		{dev, "dev-a", "dev-a", true},
		{dev, "dev-a", "dev-a.2", false},
		{dev, "dev-a", "dev-a-2", false},
		{Identity{Role: RoleHub, ID: "hub-1"}, "hub-1", "hub-1.x", false},
	} {
		if got := c.id.mayUseClientID(c.user, c.cid); got != c.want {
			t.Errorf("role %d user %q: mayUseClientID(%q) = %v, want %v", c.id.Role, c.user, c.cid, got, c.want)
		}
	}
}
