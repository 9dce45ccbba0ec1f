package brokerauth

import (
	"testing"

	"github.com/alicia-home/alicia/hub/broker"
)

type fakeDevices map[string]string // id → password; "" means revoked

func (f fakeDevices) Authenticate(id string, secret []byte) bool {
	p, ok := f[id]
	return ok && p != "" && p == string(secret)
}
func (f fakeDevices) Allowed(id string) bool { return f[id] != "" }

type fakeIntegrations map[string]string // username → password

func (f fakeIntegrations) Authenticate(u string, p []byte) (broker.Identity, bool) {
	want, ok := f[u]
	return broker.Identity{Role: broker.RoleIntegration, ID: u}, ok && want == string(p)
}
func (f fakeIntegrations) Allowed(id broker.Identity) bool { _, ok := f[id.ID]; return ok }

func TestAuthenticate(t *testing.T) {
	devs := fakeDevices{"dev1": "pw1", "gone": ""}
	ints := fakeIntegrations{"int-ha": "pw-ha"}
	a := New("hub-1", "s3cret", broker.Scope{}, devs, ints)
	for _, tt := range []struct {
		user, pass string
		ok         bool
		role       broker.Role
	}{
		{"hub-1", "s3cret", true, broker.RoleHub},
		{"hub-1", "s3cre", false, broker.RoleHub},
		{"hub-1", "s3cretx", false, broker.RoleHub},
		{"hub-1", "", false, broker.RoleHub},
		{"dev1", "pw1", true, broker.RoleDevice},
		{"dev1", "pw2", false, 0},
		{"gone", "", false, 0},
		{"nobody", "x", false, 0},
		{"int-ha", "pw-ha", true, broker.RoleIntegration},
		{"int-ha", "pw1", false, broker.RoleIntegration},
		{"int-dev1", "pw1", false, broker.RoleIntegration}, // an integration name never reaches the devices
	} {
		id, ok := a.Authenticate(tt.user, []byte(tt.pass))
		if ok != tt.ok || (ok && id.Role != tt.role) {
			t.Errorf("Authenticate(%q, %q) = %+v, %v; want ok=%v role %v", tt.user, tt.pass, id, ok, tt.ok, tt.role)
		}
	}
	for _, tt := range []struct {
		id   broker.Identity
		want bool
	}{
		{broker.Identity{Role: broker.RoleHub, ID: "hub-1"}, true},
		{broker.Identity{Role: broker.RoleDevice, ID: "dev1"}, true},
		{broker.Identity{Role: broker.RoleDevice, ID: "gone"}, false},
		{broker.Identity{Role: broker.RoleIntegration, ID: "int-ha"}, true},
		{broker.Identity{Role: broker.RoleIntegration, ID: "int-old"}, false},
	} {
		if got := a.Allowed(tt.id); got != tt.want {
			t.Errorf("Allowed(%+v) = %v, want %v", tt.id, got, tt.want)
		}
	}
}
