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
)

// Identity is an authenticated broker client.
type Identity struct {
	Role Role
	ID   string // the device ID for RoleDevice, the hub ID for RoleHub
}

// mayPublish reports whether id may publish to topic.
func (id Identity) mayPublish(topic string) bool {
	if strings.ContainsAny(topic, "+#") || strings.HasPrefix(topic, "$") {
		return false
	}
	switch id.Role {
	case RoleHub:
		return strings.HasPrefix(topic, protocol.Root+"/")
	case RoleDevice:
		// Only the protocol's own topics: an enrolled device must not be
		// able to park retained messages on arbitrary topics in the
		// broker's memory.
		dev, _, err := protocol.ParseDeviceTopic(topic)
		return err == nil && dev == id.ID
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
		return strings.HasPrefix(filter, protocol.Root+"/")
	case RoleDevice:
		// A filter that starts with the device's own literal prefix can only
		// match inside that subtree, whatever wildcards follow.
		return strings.HasPrefix(filter, protocol.DevicesPrefix+id.ID+"/") || filter == protocol.HubStatusTopic
	}
	return false
}

// mayReceive reports whether a message on topic may be delivered to id. It
// is the last line of defence if a subscription was ever wider than its
// rights.
func (id Identity) mayReceive(topic string) bool {
	switch id.Role {
	case RoleHub:
		return strings.HasPrefix(topic, protocol.Root+"/")
	case RoleDevice:
		return strings.HasPrefix(topic, protocol.DevicesPrefix+id.ID+"/") || topic == protocol.HubStatusTopic
	}
	return false
}
