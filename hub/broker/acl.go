package broker

import (
	"strings"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Role says what kind of principal a broker client is.
type Role int

// Roles.
const (
	// RoleHub is the hub's own bus connection: it may publish and subscribe anywhere under alicia/.
	RoleHub Role = iota + 1
	// RoleDevice is an enrolled agent, confined to its own subtree.
	RoleDevice
	// RoleIntegration is an integration's account (Home Assistant,
	// Node-RED, a script), confined to its Scope.
	RoleIntegration
)

// Identity is an authenticated broker client.
type Identity struct {
	Role Role
	ID   string // the device ID for RoleDevice, the hub ID for RoleHub, the account for RoleIntegration
	// Scope is what an integration may touch, and what the hub may touch
	// besides alicia/ (Home Assistant's discovery prefix). Unused for
	// devices.
	Scope Scope
}

// Scope lists topics outside a role's defaults.
type Scope struct {
	// Publish are topic filters ('+' and '#' as in MQTT) the client may
	// publish to.
	Publish []string
	// Read are topic prefixes, each ending in '/', under which the client
	// may subscribe and receive; a subscription filter must start with one
	// literally, so no wildcard reaches outside it.
	Read []string
}

func (s Scope) mayPublish(topic string) bool {
	for _, f := range s.Publish {
		if topicMatches(f, topic) {
			return true
		}
	}
	return false
}

func (s Scope) mayRead(topicOrFilter string) bool {
	for _, p := range s.Read {
		if strings.HasPrefix(topicOrFilter, p) {
			return true
		}
	}
	return false
}

// topicMatches reports whether topic matches the MQTT filter.
func topicMatches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}

// ConnectionSeparator separates an integration's username from the suffix
// that names one of its extra connections: client ID
// <username><ConnectionSeparator><suffix>. Integration usernames must not
// contain it, so that every client ID belongs to exactly one account (with
// "-", integration "a" could name a connection "int-a-b" and take over the
// session of integration "a-b").
const ConnectionSeparator = "."

// mayUseClientID reports whether the client authenticated as user with
// identity id may connect under client ID cid: its own username, or, for an
// integration, <username>.<suffix>. Nobody can thus take over another
// client's session.
func (id Identity) mayUseClientID(user, cid string) bool {
	if cid == user {
		return true
	}
	suffix, ok := strings.CutPrefix(cid, user+ConnectionSeparator)
	return id.Role == RoleIntegration && ok && suffix != ""
}

// mayPublish reports whether id may publish to topic.
func (id Identity) mayPublish(topic string) bool {
	if strings.ContainsAny(topic, "+#") || strings.HasPrefix(topic, "$") {
		return false
	}
	switch id.Role {
	case RoleHub:
		return strings.HasPrefix(topic, protocol.Root+"/") || id.Scope.mayPublish(topic)
	case RoleDevice:
		// Only the protocol's own topics: an enrolled device must not be
		// able to park retained messages on arbitrary topics in the
		// broker's memory.
		dev, _, err := protocol.ParseDeviceTopic(topic)
		return err == nil && dev == id.ID
	case RoleIntegration:
		return id.Scope.mayPublish(topic)
	}
	return false
}

// maySubscribe reports whether id may subscribe to filter. Devices may
// subscribe inside their own subtree and to the hub's status; nobody may
// subscribe to "#", to "$" topics or across the whole alicia/ tree except
// the hub.
func (id Identity) maySubscribe(filter string) bool {
	if filter == "" || strings.HasPrefix(filter, "$") {
		return false
	}
	switch id.Role {
	case RoleHub:
		return strings.HasPrefix(filter, protocol.Root+"/") || id.Scope.mayRead(filter)
	case RoleDevice:
		// A filter that starts with the device's own literal prefix can only
		// match inside that subtree, whatever wildcards follow.
		return strings.HasPrefix(filter, protocol.DevicesPrefix+id.ID+"/") || filter == protocol.HubStatusTopic
	case RoleIntegration:
		return id.Scope.mayRead(filter)
	}
	return false
}

// mayReceive reports whether a message on topic may be delivered to id. It
// is the last line of defence if a subscription was ever wider than its
// rights.
func (id Identity) mayReceive(topic string) bool {
	switch id.Role {
	case RoleHub:
		return strings.HasPrefix(topic, protocol.Root+"/") || id.Scope.mayRead(topic)
	case RoleDevice:
		return strings.HasPrefix(topic, protocol.DevicesPrefix+id.ID+"/") || topic == protocol.HubStatusTopic
	case RoleIntegration:
		return id.Scope.mayRead(topic)
	}
	return false
}
