package api

import (
	"net/http"
	"strings"
	"testing"
)

func TestIntegrations(t *testing.T) {
	h := newHarness(t)
	r := h.adminDo(t, "POST", "/api/v1/integrations", map[string]string{"name": "homeassistant", "kind": "homeassistant"})
	creds := decode[IntegrationCredentials](t, r)
	if r.status != http.StatusCreated || creds.Username != "int-homeassistant" || len(creds.Password) < 40 || len(creds.MQTTURLs) == 0 || !strings.Contains(creds.CAPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if id, ok := h.integrations.Authenticate(creds.Username, []byte(creds.Password)); !ok || id.ID != creds.Username {
		t.Error("the returned password does not authenticate")
	}
	r = h.adminDo(t, "GET", "/api/v1/integrations", nil)
	if r.status != http.StatusOK || strings.Contains(string(r.body), creds.Password) || !strings.Contains(string(r.body), "int-homeassistant") {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := h.adminDo(t, "POST", "/api/v1/integrations", map[string]string{"name": "homeassistant", "kind": "homeassistant"}); r.status != http.StatusConflict {
		t.Errorf("duplicate: %d", r.status)
	}
	for _, body := range []map[string]string{{"name": "Home Assistant", "kind": "homeassistant"}, {"name": "nr", "kind": "nodered"}} {
		if r := h.adminDo(t, "POST", "/api/v1/integrations", body); r.status != http.StatusBadRequest {
			t.Errorf("%v: %d %s, want 400", body, r.status, r.body)
		}
	}
	if r := h.adminDo(t, "DELETE", "/api/v1/integrations/homeassistant", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	h.mu.Lock()
	disconnected := strings.Join(h.disconnected, ",")
	h.mu.Unlock()
	if disconnected != "int-homeassistant" {
		t.Errorf("sessions closed on delete: %q", disconnected)
	}
	if _, ok := h.integrations.Authenticate(creds.Username, []byte(creds.Password)); ok {
		t.Error("a deleted account still authenticates")
	}
	if r := h.adminDo(t, "DELETE", "/api/v1/integrations/homeassistant", nil); r.status != http.StatusNotFound {
		t.Errorf("second delete: %d", r.status)
	}
	if r := h.send(t, request{method: "GET", target: "/api/v1/integrations"}); r.status != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", r.status)
	}
}
