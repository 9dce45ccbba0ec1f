package agentd_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait in these tests; the conditions waited for
// normally hold within milliseconds.
const waitTimeout = 10 * time.Second

// savedCreds is the on-disk format of <state-dir>/credentials.json, spelled
// out here so that a change of the format fails a test.
type savedCreds struct {
	DeviceID string   `json:"device_id"`
	HubID    string   `json:"hub_id"`
	Hub      string   `json:"hub"`
	MQTTURLs []string `json:"mqtt_urls"`
	Password string   `json:"password"`
}

// enrollBody mirrors hub/api.EnrollRequest, the body of POST /api/v1/enroll.
type enrollBody struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	Signature string `json:"signature"`
}

func fixedFacts() (protocol.Facts, error) {
	return protocol.Facts{Hostname: "kitchen-pi", OS: "linux", Kernel: "6.6.0", Arch: "arm64", CPUCores: 4,
		MemoryBytes: 1 << 30, BootTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}, nil
}

// fakeHub serves h and returns the hub address (HOST:PORT) an agent is
// given with --hub.
func fakeHub(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fakeBroker listens on loopback and returns its mqtt:// URL and a channel
// that receives once a client has connected. It closes every connection at
// once: the tests only check which broker the agent dials.
func fakeBroker(t *testing.T) (url string, dialed <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "mqtt://" + ln.Addr().String(), ch
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// enrolAnswer is a hub's 201 answer to an enrolment of pub.
func enrolAnswer(id, hubID, mqttURL, password string) map[string]any {
	return map[string]any{"device_id": id, "hub_id": hubID,
		"mqtt": map[string]any{"urls": []string{mqttURL}, "username": id, "password": password}}
}

// readEnrol decodes and checks an enrolment request the way the real hub
// does; it reports a bad request with t.Errorf and returns ok=false.
func readEnrol(t *testing.T, r *http.Request, wantToken, wantName string) (pub ed25519.PublicKey, ok bool) {
	t.Helper()
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/enroll" {
		t.Errorf("request %s %s, want POST /api/v1/enroll", r.Method, r.URL.Path)
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var req enrollBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Errorf("decode enrolment request: %v", err)
		return nil, false
	}
	if req.Token != wantToken {
		t.Errorf("token = %q, want %q", req.Token, wantToken)
	}
	if req.Name != wantName {
		t.Errorf("name = %q, want %q", req.Name, wantName)
	}
	k, err := base64.StdEncoding.DecodeString(req.PublicKey)
	if err != nil || len(k) != ed25519.PublicKeySize {
		t.Errorf("public_key %q: not the base64 of an Ed25519 public key (%v)", req.PublicKey, err)
		return nil, false
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	if err != nil || !identity.VerifyEnrolment(k, req.Token, sig) {
		t.Errorf("signature %q does not verify for the token and key (%v)", req.Signature, err)
		return nil, false
	}
	return k, true
}

// started is a running Agent.
type started struct {
	agent  *agentd.Agent
	cancel context.CancelFunc
	done   chan error
}

// start runs an agent with cfg until the test ends.
func start(t *testing.T, cfg agentd.Config) *started {
	t.Helper()
	if cfg.Facts == nil {
		cfg.Facts = fixedFacts
	}
	a, err := agentd.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of cancel", waitTimeout)
		}
	})
	return s
}

// wait returns Run's result, failing the test if Run does not return in time.
func (s *started) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("Run still running after %s", waitTimeout)
		return nil
	}
}

// stop cancels Run and returns its result.
func (s *started) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	return s.wait(t)
}

// waitFor polls cond until it holds, failing the test after waitTimeout or
// as soon as Run returns.
func (s *started) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !cond() {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("Run returned %v while waiting for %s", err, what)
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// dialedBroker waits until the agent connects to the fake broker.
func (s *started) dialedBroker(t *testing.T, dialed <-chan struct{}) {
	t.Helper()
	select {
	case <-dialed:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("Run returned %v before dialing the broker", err)
	case <-time.After(waitTimeout):
		t.Fatal("the agent did not dial the broker")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readCreds(t *testing.T, path string) savedCreds {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c savedCreds
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return c
}

func writeCreds(t *testing.T, path string, c savedCreds) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := agentd.Config{StateDir: t.TempDir(), Hub: "hub.local"}
	for _, tc := range []struct {
		name    string
		edit    func(*agentd.Config)
		wantErr string
	}{
		{"no state dir", func(c *agentd.Config) { c.StateDir = "" }, "--state-dir"},
		{"hub is a URL", func(c *agentd.Config) { c.Hub = "http://x" }, "not a URL"},
		{"hub without host", func(c *agentd.Config) { c.Hub = ":8470" }, "missing host"},
		{"hub with a bad port", func(c *agentd.Config) { c.Hub = "hub.local:84x0" }, `hub "hub.local:84x0"`},
		{"hub with an empty port", func(c *agentd.Config) { c.Hub = "hub.local:" }, `hub "hub.local:"`},
		{"hub with port 0", func(c *agentd.Config) { c.Hub = "hub.local:0" }, `hub "hub.local:0"`},
		{"heartbeat too short", func(c *agentd.Config) { c.HeartbeatInterval = 50 * time.Millisecond }, "heartbeat interval 50ms"},
		{"heartbeat too long", func(c *agentd.Config) { c.HeartbeatInterval = 2 * time.Hour }, "heartbeat interval 2h0m0s"},
		{"keepalive too short", func(c *agentd.Config) { c.KeepAlive = 500 * time.Millisecond }, "keep-alive 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			_, err := agentd.New(cfg)
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewAcceptsGoodConfig(t *testing.T) {
	for _, hub := range []string{"", "hub.local", "hub.local:9000", "192.0.2.1", "::1", "[::1]", "[::1]:9000"} {
		if _, err := agentd.New(agentd.Config{StateDir: t.TempDir(), Hub: hub}); err != nil {
			t.Errorf("New with hub %q: %v", hub, err)
		}
	}
	// Zero durations take the defaults; the limits themselves are allowed.
	for _, cfg := range []agentd.Config{
		{StateDir: "x", HeartbeatInterval: 100 * time.Millisecond, KeepAlive: time.Second},
		{StateDir: "x", HeartbeatInterval: time.Hour},
	} {
		if _, err := agentd.New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

func TestRunNotEnrolled(t *testing.T) {
	var requests atomic.Int32
	hub := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeProblem(w, http.StatusInternalServerError, "no request expected")
	})
	for _, tc := range []struct {
		name    string
		hub     string
		wantErr string
	}{
		{"no join token", hub, "--join-token"},
		{"no hub", "", "--hub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			s := start(t, agentd.Config{StateDir: dir, Hub: tc.hub})
			err := s.wait(t)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.wantErr)
			}
			// The identity exists already, so the next start keeps the ID.
			checkMode(t, dir, 0o700)
			checkMode(t, filepath.Join(dir, "identity.key"), 0o600)
			if exists(filepath.Join(dir, "credentials.json")) {
				t.Error("credentials.json written without enrolment")
			}
			if s.agent.DeviceID() == "" {
				t.Error("DeviceID() empty after Run loaded the identity")
			}
		})
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the hub got %d requests, want none", n)
	}
}

func TestEnrol(t *testing.T) {
	const token, password = "join-123", "broker-secret"
	mqttURL := "mqtt://" + closedAddr(t)
	var requests atomic.Int32
	hub := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		pub, ok := readEnrol(t, r, token, "kitchen-pi") // the name defaults to the hostname
		if !ok {
			writeProblem(w, http.StatusBadRequest, "bad enrolment request")
			return
		}
		writeJSON(w, http.StatusCreated, enrolAnswer(identity.DeviceID(pub), "hub-1", mqttURL, password))
	})
	dir := filepath.Join(t.TempDir(), "state")
	credsPath := filepath.Join(dir, "credentials.json")
	s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: token})

	// Once enrolled the agent keeps trying the (closed) broker port until
	// it is stopped.
	s.waitFor(t, "credentials.json", func() bool { return exists(credsPath) })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}

	key, created, err := identity.LoadOrCreate(filepath.Join(dir, "identity.key"))
	if err != nil || created {
		t.Fatalf("identity.key: created=%v, err=%v; want the agent's key", created, err)
	}
	id := identity.DeviceID(key.Public().(ed25519.PublicKey))
	if got := s.agent.DeviceID(); got != id {
		t.Errorf("DeviceID() = %q, want %q from identity.key", got, id)
	}
	want := savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{mqttURL}, Password: password}
	if diff := cmp.Diff(want, readCreds(t, credsPath)); diff != "" {
		t.Errorf("credentials.json (-want +got):\n%s", diff)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, credsPath, 0o600)
	checkMode(t, filepath.Join(dir, "identity.key"), 0o600)
	if n := requests.Load(); n != 1 {
		t.Errorf("the hub got %d enrolment requests, want 1", n)
	}
}

func TestEnrolRetriesWhileTheHubIsUnavailable(t *testing.T) {
	const token = "join-456"
	mqttURL := "mqtt://" + closedAddr(t)
	var requests atomic.Int32
	hub := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		pub, ok := readEnrol(t, r, token, "garage")
		if !ok {
			writeProblem(w, http.StatusBadRequest, "bad enrolment request")
			return
		}
		if requests.Add(1) <= 2 {
			writeProblem(w, http.StatusServiceUnavailable, "starting up")
			return
		}
		writeJSON(w, http.StatusCreated, enrolAnswer(identity.DeviceID(pub), "hub-1", mqttURL, "pw"))
	})
	dir := t.TempDir()
	s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: token, Name: "garage"})
	s.waitFor(t, "credentials.json", func() bool { return exists(filepath.Join(dir, "credentials.json")) })
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("the hub got %d enrolment requests, want 3 (two 503s, then 201)", n)
	}
}

func TestEnrolStopsDuringRetries(t *testing.T) {
	var requests atomic.Int32
	hub := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeProblem(w, http.StatusServiceUnavailable, "down for maintenance")
	})
	s := start(t, agentd.Config{StateDir: t.TempDir(), Hub: hub, JoinToken: "tok"})
	s.waitFor(t, "a first enrolment attempt", func() bool { return requests.Load() > 0 })
	// Stopping while the hub is down is a clean stop (exit status 0).
	if err := s.stop(t); err != nil {
		t.Errorf("Run after cancel during enrolment: %v, want nil", err)
	}
}

func TestEnrolRefused(t *testing.T) {
	otherID := identity.DeviceID(make(ed25519.PublicKey, ed25519.PublicKeySize))
	mqttURL := "mqtt://" + closedAddr(t)
	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter, pub ed25519.PublicKey)
		wantErr []string
	}{
		{
			name: "403 problem",
			answer: func(w http.ResponseWriter, _ ed25519.PublicKey) {
				writeProblem(w, http.StatusForbidden, "join token expired or used up")
			},
			wantErr: []string{"enrolment refused", "403", "join token expired or used up"},
		},
		{
			name: "400 problem",
			answer: func(w http.ResponseWriter, _ ed25519.PublicKey) {
				writeProblem(w, http.StatusBadRequest, "name: too long")
			},
			wantErr: []string{"enrolment refused", "400", "name: too long"},
		},
		{
			name: "another device id",
			answer: func(w http.ResponseWriter, _ ed25519.PublicKey) {
				writeJSON(w, http.StatusCreated, enrolAnswer(otherID, "hub-1", mqttURL, "pw"))
			},
			wantErr: []string{"enrolment refused", "hub assigned device id", otherID},
		},
		{
			name: "no broker password",
			answer: func(w http.ResponseWriter, pub ed25519.PublicKey) {
				writeJSON(w, http.StatusCreated, enrolAnswer(identity.DeviceID(pub), "hub-1", mqttURL, ""))
			},
			wantErr: []string{"enrolment refused", "without broker access"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var requests atomic.Int32
			hub := fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				pub, ok := readEnrol(t, r, "tok", "kitchen-pi")
				if !ok {
					writeProblem(w, http.StatusBadRequest, "bad enrolment request")
					return
				}
				tc.answer(w, pub)
			})
			dir := t.TempDir()
			s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: "tok"})
			err := s.wait(t) // without cancelling: a refusal is final
			if err == nil {
				t.Fatal("Run returned nil, want an error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run: %v\nwant the error to contain %q", err, want)
				}
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("the hub got %d requests, want 1 (no retry after a refusal)", n)
			}
			if exists(filepath.Join(dir, "credentials.json")) {
				t.Error("credentials.json written after a refused enrolment")
			}
		})
	}
}

// enrolled prepares a state directory as a first start (without a join
// token) leaves it, plus the credentials c for that start's key. It
// returns the directory and the device ID.
func enrolled(t *testing.T, c savedCreds) (dir, id string) {
	t.Helper()
	dir = t.TempDir()
	first := start(t, agentd.Config{StateDir: dir, Hub: closedAddr(t)})
	if err := first.wait(t); err == nil || !strings.Contains(err.Error(), "--join-token") {
		t.Fatalf("first Run: %v, want an error asking for --join-token", err)
	}
	id = first.agent.DeviceID()
	if id == "" {
		t.Fatal("first Run left no device ID")
	}
	if c.DeviceID == "" {
		c.DeviceID = id
	}
	writeCreds(t, filepath.Join(dir, "credentials.json"), c)
	return dir, id
}

// bootstrapHub is a fake hub that answers GET /api/v1/bootstrap with b and
// counts the requests.
func bootstrapHub(t *testing.T, b map[string]any) (addr string, requests *atomic.Int32) {
	t.Helper()
	requests = new(atomic.Int32)
	addr = fakeHub(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/bootstrap" {
			t.Errorf("request %s %s, want GET /api/v1/bootstrap", r.Method, r.URL.Path)
			writeProblem(w, http.StatusNotFound, "no route")
			return
		}
		writeJSON(w, http.StatusOK, b)
	})
	return addr, requests
}

func TestEnrolledRefusesADifferentHub(t *testing.T) {
	saved, _ := fakeBroker(t)
	hub, requests := bootstrapHub(t, map[string]any{"hub_id": "hub-2", "protocol_version": 1, "mqtt_urls": []string{saved}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{saved}, Password: "pw"})
	before := readCreds(t, filepath.Join(dir, "credentials.json"))

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	err := s.wait(t)
	if err == nil || !strings.Contains(err.Error(), "refusing a different hub") || !strings.Contains(err.Error(), "hub-2") {
		t.Fatalf("Run: %v, want an error refusing hub-2", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the hub got %d bootstrap requests, want 1", n)
	}
	if diff := cmp.Diff(before, readCreds(t, filepath.Join(dir, "credentials.json"))); diff != "" {
		t.Errorf("credentials.json changed (-before +after):\n%s", diff)
	}
}

func TestEnrolledLearnsNewBrokerURLs(t *testing.T) {
	oldURL, oldDialed := fakeBroker(t)
	newURL, newDialed := fakeBroker(t)
	newURLs := []string{newURL} // same host, another port
	hub, requests := bootstrapHub(t, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": newURLs})
	dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{oldURL}, Password: "pw"})

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	s.dialedBroker(t, newDialed)
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	want := savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: newURLs, Password: "pw"}
	if diff := cmp.Diff(want, readCreds(t, filepath.Join(dir, "credentials.json"))); diff != "" {
		t.Errorf("credentials.json (-want +got):\n%s", diff)
	}
	checkMode(t, filepath.Join(dir, "credentials.json"), 0o600)
	if n := requests.Load(); n != 1 {
		t.Errorf("the hub got %d bootstrap requests, want 1", n)
	}
	select {
	case <-oldDialed:
		t.Error("the agent dialed the old broker URL")
	default:
	}
}

// TestEnrolledIgnoresBrokerOnUnknownHost: the bootstrap answer is not yet
// authenticated, so it may move the broker to another port of a known
// host, never to another host (that would send the password there).
func TestEnrolledIgnoresBrokerOnUnknownHost(t *testing.T) {
	oldURL, oldDialed := fakeBroker(t)
	hub, _ := bootstrapHub(t, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{"mqtt://198.18.0.99:1883"}})
	saved := savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{oldURL}, Password: "pw"}
	dir, id := enrolled(t, saved)

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	s.dialedBroker(t, oldDialed)
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	saved.DeviceID = id
	if diff := cmp.Diff(saved, readCreds(t, filepath.Join(dir, "credentials.json"))); diff != "" {
		t.Errorf("credentials.json changed (-want +got):\n%s", diff)
	}
}

func TestEnrolledUsesTheSavedHubAddress(t *testing.T) {
	broker, dialed := fakeBroker(t)
	hub, requests := bootstrapHub(t, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{broker}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw"})

	s := start(t, agentd.Config{StateDir: dir}) // no --hub
	s.dialedBroker(t, dialed)
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the saved hub got %d bootstrap requests, want 1", n)
	}
}

func TestEnrolledWorksWithoutTheHub(t *testing.T) {
	broker, dialed := fakeBroker(t)
	hub := closedAddr(t)
	dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw"})
	before := readCreds(t, filepath.Join(dir, "credentials.json"))

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	s.dialedBroker(t, dialed) // the saved URL
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	if got := s.agent.DeviceID(); got != id {
		t.Errorf("DeviceID() = %q, want %q", got, id)
	}
	if diff := cmp.Diff(before, readCreds(t, filepath.Join(dir, "credentials.json"))); diff != "" {
		t.Errorf("credentials.json changed (-before +after):\n%s", diff)
	}
}

func TestBrokerURLOverridesTheHubsURL(t *testing.T) {
	saved, savedDialed := fakeBroker(t)
	override, overrideDialed := fakeBroker(t)
	hub, _ := bootstrapHub(t, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{saved}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{saved}, Password: "pw"})

	s := start(t, agentd.Config{StateDir: dir, Hub: hub, BrokerURL: override})
	s.dialedBroker(t, overrideDialed)
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	select {
	case <-savedDialed:
		t.Error("the agent dialed the hub's broker URL despite BrokerURL")
	default:
	}
}

func TestBadCredentials(t *testing.T) {
	hub := closedAddr(t)
	for _, tc := range []struct {
		name    string
		write   func(t *testing.T, path, id string)
		wantErr string
	}{
		{
			name: "another device",
			write: func(t *testing.T, path, _ string) {
				other := identity.DeviceID(make(ed25519.PublicKey, ed25519.PublicKeySize))
				writeCreds(t, path, savedCreds{DeviceID: other, HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, Password: "pw"})
			},
			wantErr: "the key was replaced",
		},
		{
			name: "not JSON",
			write: func(t *testing.T, path, _ string) {
				if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "delete it and enrol again",
		},
		{
			name: "no password",
			write: func(t *testing.T, path, id string) {
				writeCreds(t, path, savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}})
			},
			wantErr: "incomplete credentials",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, Password: "pw"})
			path := filepath.Join(dir, "credentials.json")
			tc.write(t, path, id)
			s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: "tok"})
			err := s.wait(t)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Run: %v, want an error naming %s and containing %q", err, path, tc.wantErr)
			}
		})
	}
}
