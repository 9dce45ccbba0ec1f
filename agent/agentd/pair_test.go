package agentd_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/testkit"
)

// readPair decodes and checks a pairing request the way the real hub does,
// for the hub whose CA is ca.
func readPair(t *testing.T, r *http.Request, ca *pki.CA) (ed25519.PublicKey, bool) {
	t.Helper()
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/pair" {
		t.Errorf("request %s %s, want POST /api/v1/pair", r.Method, r.URL.Path)
		return nil, false
	}
	var req struct {
		PublicKey string `json:"public_key"`
		Name      string `json:"name"`
		Signature string `json:"signature"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Errorf("decode pairing request: %v", err)
		return nil, false
	}
	pub, err := base64.StdEncoding.DecodeString(req.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Errorf("public_key %q: not an Ed25519 public key", req.PublicKey)
		return nil, false
	}
	sig, _ := base64.StdEncoding.DecodeString(req.Signature)
	if !identity.VerifyPairing(pub, ca.Fingerprint(), sig) {
		t.Errorf("the pairing proof does not verify for this hub's CA fingerprint")
		return nil, false
	}
	if req.Name != "kitchen-pi" {
		t.Errorf("name = %q, want the hostname", req.Name)
	}
	return pub, true
}

// TestPair: with no join token and --pair, the agent learns the hub's CA
// from the handshake, asks until approved, logs the code the hub shows,
// and saves credentials pinned to that CA.
func TestPair(t *testing.T) {
	const password = "broker-secret"
	ca := newCA(t)
	mqttURL := "mqtt://" + closedAddr(t)
	var requests atomic.Int32
	hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
		pub, ok := readPair(t, r, ca)
		if !ok {
			writeProblem(w, http.StatusBadRequest, "bad pairing request")
			return
		}
		id := identity.DeviceID(pub)
		if requests.Add(1) < 3 { // pending twice, then approved
			writeJSON(w, http.StatusAccepted, map[string]any{"device_id": id, "status": "pending", "pairing_code": identity.PairingCode(ca.Fingerprint(), pub)})
			return
		}
		writeJSON(w, http.StatusCreated, enrolAnswer(id, "hub-1", mqttURL, password))
	})
	dir := filepath.Join(t.TempDir(), "state")
	credsPath := filepath.Join(dir, "credentials.json")
	var logs testkit.LogBuffer
	s := start(t, agentd.Config{StateDir: dir, Hub: hub, Pair: true, PairPoll: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.waitFor(t, "credentials.json", func() bool { return exists(credsPath) })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	key, _, err := identity.LoadOrCreate(filepath.Join(dir, "identity.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	id := identity.DeviceID(pub)
	want := savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{mqttURL}, Password: password, CAFingerprint: ca.Fingerprint()}
	if diff := cmp.Diff(want, readCreds(t, credsPath)); diff != "" {
		t.Errorf("credentials.json (-want +got):\n%s", diff)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d pairing requests, want 3 (two pending, one approved)", n)
	}
	code := identity.PairingCode(ca.Fingerprint(), pub)
	if out := logs.String(); strings.Count(out, "pairing_code="+code) != 1 {
		t.Errorf("the log shows the pairing code %s %d times, want once:\n%s", code, strings.Count(out, code), out)
	}
}

func TestPairRefused(t *testing.T) {
	tests := []struct {
		name    string
		answer  func(w http.ResponseWriter, ca *pki.CA, pub ed25519.PublicKey)
		wantErr string
	}{
		{"rejected", func(w http.ResponseWriter, _ *pki.CA, _ ed25519.PublicKey) {
			writeProblem(w, http.StatusForbidden, "an administrator rejected device x")
		}, "rejected device"},
		{"window closed", func(w http.ResponseWriter, _ *pki.CA, _ ed25519.PublicKey) {
			writeProblem(w, http.StatusForbidden, "the hub's pairing window is closed")
		}, "window is closed"},
		// A hub that shows another code than the agent computes is not
		// talking about this device with this CA.
		{"wrong code", func(w http.ResponseWriter, ca *pki.CA, pub ed25519.PublicKey) {
			writeJSON(w, http.StatusAccepted, map[string]any{"device_id": identity.DeviceID(pub), "status": "pending", "pairing_code": "AAAA-AAAA"})
		}, "with code"},
		{"another device id", func(w http.ResponseWriter, ca *pki.CA, pub ed25519.PublicKey) {
			writeJSON(w, http.StatusCreated, enrolAnswer("dother", "hub-1", "mqtt://127.0.0.1:1", "pw"))
		}, "want"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newCA(t)
			hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
				pub, ok := readPair(t, r, ca)
				if !ok {
					writeProblem(w, http.StatusBadRequest, "bad")
					return
				}
				tt.answer(w, ca, pub)
			})
			dir := filepath.Join(t.TempDir(), "state")
			s := start(t, agentd.Config{StateDir: dir, Hub: hub, Pair: true, PairPoll: 5 * time.Millisecond})
			err := s.wait(t)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run = %v, want an error mentioning %q", err, tt.wantErr)
			}
			if exists(filepath.Join(dir, "credentials.json")) {
				t.Error("credentials saved after a refused pairing")
			}
		})
	}
}

// TestPairWaitsForTheHub: an unreachable hub is retried, not a failure.
func TestPairWaitsForTheHub(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var logs testkit.LogBuffer
	s := start(t, agentd.Config{StateDir: dir, Hub: closedAddr(t), Pair: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.waitFor(t, "a retry", func() bool { return strings.Contains(logs.String(), "reaching the hub to pair failed; retrying") })
	if err := s.stop(t); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
}
