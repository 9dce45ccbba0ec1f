package api

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/identity"
)

// pairRequest is a correct pairing request of key for the hub with CA
// fingerprint fp.
func pairRequest(key ed25519.PrivateKey, fp, name string) PairRequest {
	return PairRequest{PublicKey: b64(pubKey(key)), Name: name, Signature: b64(identity.SignPairing(key, fp))}
}

func (h *harness) pair(t *testing.T, body any) response {
	t.Helper()
	return h.send(t, request{method: "POST", target: "/api/v1/pair", body: body, tls: true, remote: "198.18.0.11:50000"})
}

func (h *harness) openWindow(t *testing.T) {
	t.Helper()
	h.adminDo(t, "POST", "/api/v1/pairing", nil).mustStatus(t, http.StatusOK)
}

func TestPairingWindowRoutes(t *testing.T) {
	h := newHarness(t)
	window := func(resp response) PairingWindowState {
		t.Helper()
		resp.mustStatus(t, http.StatusOK)
		return decode[PairingWindowState](t, resp)
	}
	if w := window(h.adminDo(t, "GET", "/api/v1/pairing", nil)); w.Open || w.ClosesAt != nil || w.CAFingerprint != h.fp {
		t.Errorf("initial window = %+v, want closed with the CA fingerprint", w)
	}
	w := window(h.adminDo(t, "POST", "/api/v1/pairing", nil))
	if !w.Open || w.ClosesAt == nil || !w.ClosesAt.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("opened with defaults = %+v, want open until t0+5m", w)
	}
	w = window(h.adminDo(t, "POST", "/api/v1/pairing", `{"duration":"90s"}`))
	if !w.Open || !w.ClosesAt.Equal(t0.Add(90*time.Second)) {
		t.Errorf("re-opened for 90s = %+v", w)
	}
	for _, body := range []string{`{"duration":"5m1s"}`, `{"duration":"0s"}`, `{"duration":"-1m"}`, `{"duration":"soon"}`, `{"duration":5}`, `{"until":"1m"}`, `[`} {
		if d := h.adminDo(t, "POST", "/api/v1/pairing", body).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, "duration") && !strings.Contains(d, "JSON") && !strings.Contains(d, "field") {
			t.Errorf("%s: detail %q does not name the problem", body, d)
		}
	}
	h.clock.Advance(90 * time.Second)
	if w := window(h.adminDo(t, "GET", "/api/v1/pairing", nil)); w.Open {
		t.Errorf("window at its end = %+v, want closed", w)
	}
	h.openWindow(t)
	if w := window(h.adminDo(t, "DELETE", "/api/v1/pairing", nil)); w.Open {
		t.Errorf("after DELETE = %+v, want closed", w)
	}
}

// TestPairApproveCollect walks the whole pairing of one device: pending with
// a code both sides compute, approval only with that code, credentials
// handed out once, also after the window closed.
func TestPairApproveCollect(t *testing.T) {
	h := newHarness(t)
	key := newKey(t)
	id := identity.DeviceID(pubKey(key))
	code := identity.PairingCode(h.fp, pubKey(key))

	if d := h.pair(t, pairRequest(key, h.fp, "porch")).mustProblem(t, http.StatusForbidden); !strings.Contains(d, "pairing window is closed") {
		t.Errorf("closed window: detail %q", d)
	}
	if _, err := h.reg.Get(id); err == nil {
		t.Fatal("a request outside the window created a device")
	}
	h.openWindow(t)
	for range 2 { // asking again while pending changes nothing
		resp := h.pair(t, pairRequest(key, h.fp, "porch"))
		resp.mustStatus(t, http.StatusAccepted)
		if got, want := decode[PairPending](t, resp), (PairPending{DeviceID: id, Status: "pending", PairingCode: code}); got != want {
			t.Fatalf("pending answer = %+v, want %+v", got, want)
		}
	}
	d := h.device(t, id)
	if d.Status != "pending" || d.State != "pending" || d.StatusReason != "pairing_requested" || d.PairingCode != code || d.EnrolledAt != nil || d.Name != "porch" {
		t.Errorf("pending device = %+v", d)
	}
	if h.reg.Allowed(id) {
		t.Error("a pending device is allowed on the broker")
	}
	if len(h.accounts.passwords) != 0 {
		t.Errorf("broker accounts provisioned before approval: %v", h.accounts.passwords)
	}

	approve := "/api/v1/devices/" + id + "/approve"
	if d := h.adminDo(t, "POST", approve, `{"code":"AAAA-AAAA"}`).mustProblem(t, http.StatusUnprocessableEntity); !strings.Contains(d, "does not match") {
		t.Errorf("wrong code: detail %q", d)
	}
	h.adminDo(t, "POST", approve, `{"code":""}`).mustProblem(t, http.StatusBadRequest)
	h.adminDo(t, "POST", approve, `{}`).mustProblem(t, http.StatusBadRequest)
	h.adminDo(t, "POST", approve, nil).mustProblem(t, http.StatusBadRequest)
	if d := h.device(t, id); d.Status != "pending" {
		t.Fatalf("refused approvals changed the device: %+v", d)
	}
	// Case, spaces and dashes do not matter.
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	h.clock.Advance(time.Minute)
	resp := h.adminDo(t, "POST", approve, fmt.Sprintf(`{"code":%q}`, typed))
	resp.mustStatus(t, http.StatusOK)
	if d := decode[Device](t, resp); d.Status != "offline" || d.State != "accepted" || d.StatusReason != "approved" || d.PairingCode != "" ||
		d.EnrolledAt == nil || !d.EnrolledAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("approved device = %+v", d)
	}
	h.adminDo(t, "POST", approve, fmt.Sprintf(`{"code":%q}`, code)).mustProblem(t, http.StatusConflict)
	h.adminDo(t, "POST", "/api/v1/devices/"+id+"/reject", nil).mustProblem(t, http.StatusConflict)

	// The window closes; the approved device still collects, once.
	h.clock.Advance(10 * time.Minute)
	resp = h.pair(t, pairRequest(key, h.fp, "porch"))
	resp.mustStatus(t, http.StatusCreated)
	got := decode[EnrollResponse](t, resp)
	if got.DeviceID != id || got.HubID != testHubID || got.MQTT.Username != id || len(got.MQTT.Password) < 32 || len(got.MQTT.URLs) == 0 {
		t.Errorf("credentials = %+v", got)
	}
	if !h.reg.Authenticate(id, []byte(got.MQTT.Password)) || !h.reg.Allowed(id) {
		t.Error("the collected password does not work at the broker")
	}
	if pw := h.accounts.passwords[id]; len(pw) != 1 || pw[0] != got.MQTT.Password {
		t.Errorf("broker accounts %v, want the one password handed out", h.accounts.passwords)
	}
	if d := h.pair(t, pairRequest(key, h.fp, "porch")).mustProblem(t, http.StatusConflict); !strings.Contains(d, "delete the device") {
		t.Errorf("second collection: detail %q", d)
	}
	// The join-token path refuses the paired key as well.
	h.enrollWith(t, enrolment(key, h.joinToken(t, ""), "porch")).mustProblem(t, http.StatusConflict)
}

func TestPairReject(t *testing.T) {
	h := newHarness(t)
	h.openWindow(t)
	key := newKey(t)
	id := identity.DeviceID(pubKey(key))
	h.pair(t, pairRequest(key, h.fp, "")).mustStatus(t, http.StatusAccepted)
	if d := h.device(t, id); d.Name != id {
		t.Errorf("unnamed device is called %q, want its ID", d.Name)
	}
	resp := h.adminDo(t, "POST", "/api/v1/devices/"+id+"/reject", nil)
	resp.mustStatus(t, http.StatusOK)
	if d := decode[Device](t, resp); d.Status != "rejected" || d.State != "rejected" || d.StatusReason != "rejected" {
		t.Errorf("rejected device = %+v", d)
	}
	if d := h.pair(t, pairRequest(key, h.fp, "")).mustProblem(t, http.StatusForbidden); !strings.Contains(d, "rejected") {
		t.Errorf("rejected device asking again: detail %q", d)
	}
	h.adminDo(t, "POST", "/api/v1/devices/"+id+"/approve", fmt.Sprintf(`{"code":%q}`, identity.PairingCode(h.fp, pubKey(key)))).mustProblem(t, http.StatusConflict)
	h.adminDo(t, "POST", "/api/v1/devices/"+id+"/reject", nil).mustProblem(t, http.StatusConflict)
	// Re-pair: delete, then the key may ask again.
	h.adminDo(t, "DELETE", "/api/v1/devices/"+id, nil).mustStatus(t, http.StatusNoContent)
	h.pair(t, pairRequest(key, h.fp, "")).mustStatus(t, http.StatusAccepted)

	// A revoked device cannot pair its way back.
	other := newKey(t)
	oid := identity.DeviceID(pubKey(other))
	h.pair(t, pairRequest(other, h.fp, "")).mustStatus(t, http.StatusAccepted)
	h.adminDo(t, "POST", "/api/v1/devices/"+oid+"/revoke", nil).mustStatus(t, http.StatusOK)
	if d := h.pair(t, pairRequest(other, h.fp, "")).mustProblem(t, http.StatusForbidden); !strings.Contains(d, "revoked") {
		t.Errorf("revoked device asking again: detail %q", d)
	}
	for _, path := range []string{"/api/v1/devices/dunknown/approve", "/api/v1/devices/dunknown/reject"} {
		h.adminDo(t, "POST", path, `{"code":"AAAA-AAAA"}`).mustProblem(t, http.StatusNotFound)
	}
	h.adminDo(t, "POST", "/api/v1/devices/a+b/reject", nil).mustProblem(t, http.StatusBadRequest)
}

func TestPairBadRequests(t *testing.T) {
	h := newHarness(t)
	h.openWindow(t)
	key := newKey(t)
	rogueFP := strings.Repeat("0f", 32)
	good := pairRequest(key, h.fp, "ok")
	tests := []struct {
		name   string
		body   any
		status int
		detail string
	}{
		// A request signed for another hub's CA (made to a rogue, relayed here) is worthless.
		{"signed for another hub", pairRequest(key, rogueFP, "ok"), http.StatusBadRequest, "another fingerprint"},
		{"enrolment proof", PairRequest{PublicKey: good.PublicKey, Signature: b64(identity.SignEnrolment(key, h.fp))}, http.StatusBadRequest, "signature"},
		{"another key's proof", PairRequest{PublicKey: b64(pubKey(newKey(t))), Signature: good.Signature}, http.StatusBadRequest, "signature"},
		{"short key", PairRequest{PublicKey: b64([]byte("short")), Signature: good.Signature}, http.StatusBadRequest, "public_key"},
		{"bad base64", PairRequest{PublicKey: "!!", Signature: good.Signature}, http.StatusBadRequest, "public_key"},
		{"control character in name", pairRequest(key, h.fp, "a\nb"), http.StatusBadRequest, "name"},
		{"unknown field", `{"public_key":"x","signature":"y","token":"z"}`, http.StatusBadRequest, "unknown field"},
		{"not JSON", `{"public_key":`, http.StatusBadRequest, "invalid JSON"},
		{"oversize", `{"name":"` + strings.Repeat("x", maxBody) + `"}`, http.StatusRequestEntityTooLarge, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := h.pair(t, tt.body).mustProblem(t, tt.status); !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q does not mention %q", d, tt.detail)
			}
		})
	}
	if n := len(h.reg.List()); n != 0 {
		t.Errorf("bad requests created %d devices", n)
	}
	// Plain HTTP from the network: refused (the answer may carry credentials).
	h.send(t, request{method: "POST", target: "/api/v1/pair", body: good, remote: "198.18.0.11:50000"}).mustProblem(t, http.StatusForbidden)
}

func TestPairFlood(t *testing.T) {
	h := newHarness(t)
	h.openWindow(t)
	for range registry.MaxPending {
		h.pair(t, pairRequest(newKey(t), h.fp, "x")).mustStatus(t, http.StatusAccepted)
	}
	h.pair(t, pairRequest(newKey(t), h.fp, "x")).mustProblem(t, http.StatusTooManyRequests)
	if n := len(h.reg.List()); n != registry.MaxPending {
		t.Errorf("%d devices, want %d", n, registry.MaxPending)
	}
}
