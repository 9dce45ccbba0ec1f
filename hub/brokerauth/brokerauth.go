// Package brokerauth decides who may use the hub's embedded broker: the
// hub's own connection by its per-run secret, devices by the registry,
// integrations (Home Assistant…) by their accounts. It implements
// broker.Authenticator; only the hub's root (hub/hubd) imports it.
//
// It keeps no state of its own: a device revoked or an integration
// deleted is refused at its next publish or subscription, because
// Allowed asks the registry and the accounts every time.
package brokerauth

import (
	"crypto/subtle"
	"strings"

	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/hub/integrations"
)

// Devices is what the registry answers about devices' broker accounts.
type Devices interface {
	// Authenticate reports whether secret is device id's broker password.
	Authenticate(id string, secret []byte) bool
	// Allowed reports whether device id may use the bus now.
	Allowed(id string) bool
}

// Integrations is what the integrations' accounts answer.
type Integrations interface {
	Authenticate(username string, password []byte) (broker.Identity, bool)
	Allowed(id broker.Identity) bool
}

// Authenticator is the embedded broker's broker.Authenticator. Its methods
// are safe for concurrent use if Devices' and Integrations' are.
type Authenticator struct {
	hubID, secret string
	// hubScope is what the hub reaches besides alicia/ (Home Assistant's
	// discovery prefix).
	hubScope     broker.Scope
	devices      Devices
	integrations Integrations
}

var _ broker.Authenticator = (*Authenticator)(nil)

// New returns the Authenticator of a hub whose own connection logs in as
// hubID with secret.
func New(hubID, secret string, hubScope broker.Scope, devices Devices, integrations Integrations) *Authenticator {
	return &Authenticator{hubID: hubID, secret: secret, hubScope: hubScope, devices: devices, integrations: integrations}
}

// Authenticate implements broker.Authenticator.
func (a *Authenticator) Authenticate(username string, password []byte) (broker.Identity, bool) {
	if username == a.hubID {
		ok := len(password) == len(a.secret) && subtle.ConstantTimeCompare(password, []byte(a.secret)) == 1
		return broker.Identity{Role: broker.RoleHub, ID: a.hubID, Scope: a.hubScope}, ok
	}
	if strings.HasPrefix(username, integrations.UsernamePrefix) {
		return a.integrations.Authenticate(username, password)
	}
	if a.devices.Authenticate(username, password) {
		return broker.Identity{Role: broker.RoleDevice, ID: username}, true
	}
	return broker.Identity{}, false
}

// Allowed implements broker.Authenticator.
func (a *Authenticator) Allowed(id broker.Identity) bool {
	switch id.Role {
	case broker.RoleHub:
		return true
	case broker.RoleIntegration:
		return a.integrations.Allowed(id)
	}
	return a.devices.Allowed(id.ID)
}
