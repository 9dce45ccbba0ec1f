package agentd_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"log"
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
	"github.com/alicia-home/alicia/internal/pki"
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
	// CAFingerprint pins the hub's CA (hex SHA-256 of its public key).
	CAFingerprint string `json:"ca_fingerprint"`
	Certificate   string `json:"certificate,omitempty"`
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

// newCA creates a hub CA in a temporary directory.
func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, _, err := pki.LoadOrCreateCA(t.TempDir(), "hub-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// joinToken is a join token of the hub whose CA is ca.
func joinToken(ca *pki.CA) string {
	return identity.FormatJoinToken("alicia_join_x", ca.Fingerprint())
}

// hubServer is a running fake hub.
type hubServer struct {
	addr  string       // HOST:PORT, as given to an agent with --hub
	conns atomic.Int32 // TCP connections accepted (before any TLS handshake)
}

// startHub serves h over HTTPS (TLS 1.3 only, like the hub) with a server
// certificate issued by ca, until the test ends.
func startHub(t *testing.T, ca *pki.CA, h http.HandlerFunc) *hubServer {
	t.Helper()
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hs := &hubServer{}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			hs.conns.Add(1)
		}
	}
	// Refused handshakes are expected in some tests: keep them off stderr.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hs.addr = strings.TrimPrefix(srv.URL, "https://")
	return hs
}

// fakeHub serves h over HTTPS as the hub whose CA is ca and returns the hub
// address (HOST:PORT) an agent is given with --hub.
func fakeHub(t *testing.T, ca *pki.CA, h http.HandlerFunc) string {
	t.Helper()
	return startHub(t, ca, h).addr
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
	// Unit tests run in the machine's own network: never send mDNS there
	// (the LAN tests in internal/e2e use network namespaces).
	cfg.NoMDNS = true
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
	ca := newCA(t)
	var requests atomic.Int32
	hub := startHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeProblem(w, http.StatusInternalServerError, "no request expected")
	})
	for _, tc := range []struct {
		name    string
		hub     string
		token   string
		wantErr []string
	}{
		{"no join token", hub.addr, "", []string{"--join-token"}},
		{"no hub", "", joinToken(ca), []string{"--hub"}},
		// The agent pins the hub's CA before it sends the secret anywhere:
		// a token that does not name the CA is refused before any request.
		{"token without fingerprint", hub.addr, "alicia_join_x", []string{"join token does not name the hub's CA", "'.<fingerprint>'", "POST /api/v1/join-tokens"}},
		{"token with a malformed fingerprint", hub.addr, "alicia_join_x.0123abc", []string{"malformed hub fingerprint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			s := start(t, agentd.Config{StateDir: dir, Hub: tc.hub, JoinToken: tc.token})
			err := s.wait(t)
			if err == nil {
				t.Fatalf("Run returned nil, want an error containing %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run: %v\nwant the error to contain %q", err, want)
				}
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
	if n := hub.conns.Load(); n != 0 {
		t.Errorf("the hub got %d connections, want none", n)
	}
}

func TestEnrol(t *testing.T) {
	const password = "broker-secret"
	ca := newCA(t)
	token := joinToken(ca)
	mqttURL := "mqtt://" + closedAddr(t)
	var requests atomic.Int32
	hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
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
	// The CA named by the token is pinned for later starts.
	want := savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{mqttURL}, Password: password, CAFingerprint: ca.Fingerprint()}
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
	ca := newCA(t)
	token := joinToken(ca)
	mqttURL := "mqtt://" + closedAddr(t)
	var requests atomic.Int32
	hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
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
	ca := newCA(t)
	var requests atomic.Int32
	hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeProblem(w, http.StatusServiceUnavailable, "down for maintenance")
	})
	s := start(t, agentd.Config{StateDir: t.TempDir(), Hub: hub, JoinToken: joinToken(ca)})
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
			ca := newCA(t)
			token := joinToken(ca)
			var requests atomic.Int32
			hub := fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				pub, ok := readEnrol(t, r, token, "kitchen-pi")
				if !ok {
					writeProblem(w, http.StatusBadRequest, "bad enrolment request")
					return
				}
				tc.answer(w, pub)
			})
			dir := t.TempDir()
			s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: token})
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

// TestEnrolRefusesAHubOfAnotherCA: the token pins a CA; a host answering
// with a certificate of another CA (another hub, or an impostor on the LAN)
// fails the TLS handshake, so it never sees the request and its secret, and
// the agent gives up at once.
func TestEnrolRefusesAHubOfAnotherCA(t *testing.T) {
	pinned, other := newCA(t), newCA(t)
	var requests atomic.Int32
	hub := startHub(t, other, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeProblem(w, http.StatusInternalServerError, "no request expected")
	})
	dir := t.TempDir()
	s := start(t, agentd.Config{StateDir: dir, Hub: hub.addr, JoinToken: joinToken(pinned)})
	err := s.wait(t) // without cancelling: a wrong hub is final
	if err == nil {
		t.Fatal("Run returned nil, want an error")
	}
	for _, want := range []string{"enrolment refused", "refusing a hub whose certificate does not chain to the pinned CA"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run: %v\nwant the error to contain %q", err, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the hub got %d requests, want none (the join token must not leave the agent)", n)
	}
	if n := hub.conns.Load(); n != 1 {
		t.Errorf("the hub got %d connections, want 1 (no retry)", n)
	}
	if exists(filepath.Join(dir, "credentials.json")) {
		t.Error("credentials.json written after a refused enrolment")
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

// bootstrapHub is a fake hub with CA ca that answers GET
// /api/v1/bootstrap with b and counts the requests.
func bootstrapHub(t *testing.T, ca *pki.CA, b map[string]any) (addr string, requests *atomic.Int32) {
	t.Helper()
	requests = new(atomic.Int32)
	addr = fakeHub(t, ca, func(w http.ResponseWriter, r *http.Request) {
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
	ca := newCA(t)
	saved, _ := fakeBroker(t)
	hub, requests := bootstrapHub(t, ca, map[string]any{"hub_id": "hub-2", "protocol_version": 1, "mqtt_urls": []string{saved}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{saved}, Password: "pw", CAFingerprint: ca.Fingerprint()})
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

// TestEnrolledRefusesAHubWhoseCAChanged: the hub at the saved address now
// presents a certificate of another CA (re-installed, or an impostor): the
// agent stops with an error saying how to re-pair, and dials no broker.
func TestEnrolledRefusesAHubWhoseCAChanged(t *testing.T) {
	pinned, other := newCA(t), newCA(t)
	broker, dialed := fakeBroker(t)
	var requests atomic.Int32
	hub := fakeHub(t, other, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		writeJSON(w, http.StatusOK, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{broker}})
	})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw", CAFingerprint: pinned.Fingerprint()})
	path := filepath.Join(dir, "credentials.json")
	before := readCreds(t, path)

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	err := s.wait(t) // without cancelling: a changed hub identity is final
	if err == nil {
		t.Fatal("Run returned nil, want an error")
	}
	for _, want := range []string{"the hub's identity changed", "re-pair", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run: %v\nwant the error to contain %q", err, want)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the hub got %d requests, want none", n)
	}
	select {
	case <-dialed:
		t.Error("the agent dialed the broker although the hub's identity changed")
	default:
	}
	if diff := cmp.Diff(before, readCreds(t, path)); diff != "" {
		t.Errorf("credentials.json changed (-before +after):\n%s", diff)
	}
}

func TestEnrolledLearnsNewBrokerURLs(t *testing.T) {
	ca := newCA(t)
	oldURL, oldDialed := fakeBroker(t)
	newURL, newDialed := fakeBroker(t)
	newURLs := []string{newURL} // same host, another port
	hub, requests := bootstrapHub(t, ca, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": newURLs})
	dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{oldURL}, Password: "pw", CAFingerprint: ca.Fingerprint()})

	s := start(t, agentd.Config{StateDir: dir, Hub: hub})
	s.dialedBroker(t, newDialed)
	if err := s.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
	want := savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: newURLs, Password: "pw", CAFingerprint: ca.Fingerprint()}
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

// TestEnrolledIgnoresBrokerOnUnknownHost: the bootstrap answer may move the
// broker to another port of a known host, never to another host (that
// would send the password there).
func TestEnrolledIgnoresBrokerOnUnknownHost(t *testing.T) {
	ca := newCA(t)
	oldURL, oldDialed := fakeBroker(t)
	hub, _ := bootstrapHub(t, ca, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{"mqtt://198.18.0.99:1883"}})
	saved := savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{oldURL}, Password: "pw", CAFingerprint: ca.Fingerprint()}
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
	ca := newCA(t)
	broker, dialed := fakeBroker(t)
	hub, requests := bootstrapHub(t, ca, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{broker}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw", CAFingerprint: ca.Fingerprint()})

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
	dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw", CAFingerprint: newCA(t).Fingerprint()})
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
	ca := newCA(t)
	saved, savedDialed := fakeBroker(t)
	override, overrideDialed := fakeBroker(t)
	hub, _ := bootstrapHub(t, ca, map[string]any{"hub_id": "hub-1", "protocol_version": 1, "mqtt_urls": []string{saved}})
	dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{saved}, Password: "pw", CAFingerprint: ca.Fingerprint()})

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

// TestBrokerChoice: the agent prefers MQTT over TLS, and uses plain MQTT
// only on this machine, so that the broker password never crosses the
// network in clear.
func TestBrokerChoice(t *testing.T) {
	// 198.18.0.0/15 is for benchmarking; nothing answers there.
	const remotePlain = "mqtt://198.18.0.50:1883"

	t.Run("plain MQTT on another host", func(t *testing.T) {
		// The hub is down: the saved URL is all the agent has.
		hub := closedAddr(t)
		dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{remotePlain}, Password: "pw", CAFingerprint: newCA(t).Fingerprint()})
		s := start(t, agentd.Config{StateDir: dir, Hub: hub})
		// Returning at all shows that the agent did not dial: a dial of the
		// unreachable address would keep Run retrying until cancelled.
		err := s.wait(t)
		if err == nil || !strings.Contains(err.Error(), "no usable broker address") || !strings.Contains(err.Error(), remotePlain) {
			t.Fatalf("Run: %v, want an error saying there is no usable broker address in %s", err, remotePlain)
		}
	})

	t.Run("override with plain MQTT on another host", func(t *testing.T) {
		broker, dialed := fakeBroker(t)
		hub := closedAddr(t)
		dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw", CAFingerprint: newCA(t).Fingerprint()})
		s := start(t, agentd.Config{StateDir: dir, Hub: hub, BrokerURL: remotePlain})
		err := s.wait(t)
		if err == nil || !strings.Contains(err.Error(), "no usable broker address") || !strings.Contains(err.Error(), remotePlain) {
			t.Fatalf("Run: %v, want an error saying there is no usable broker address in %s", err, remotePlain)
		}
		select {
		case <-dialed:
			t.Error("the agent dialed the saved broker URL despite BrokerURL")
		default:
		}
	})

	t.Run("MQTT over TLS first", func(t *testing.T) {
		plain, plainDialed := fakeBroker(t)
		tlsURL, tlsDialed := fakeBroker(t)
		tlsURL = "mqtts://" + strings.TrimPrefix(tlsURL, "mqtt://")
		hub := closedAddr(t)
		dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{plain, remotePlain, tlsURL}, Password: "pw", CAFingerprint: newCA(t).Fingerprint()})
		s := start(t, agentd.Config{StateDir: dir, Hub: hub})
		s.dialedBroker(t, tlsDialed)
		if err := s.stop(t); err != nil {
			t.Fatalf("Run after cancel: %v, want nil", err)
		}
		select {
		case <-plainDialed:
			t.Error("the agent dialed the plain broker URL although an MQTT-over-TLS one was given")
		default:
		}
	})
}

// tlsBroker listens on loopback with a server certificate of ca and returns
// its mqtts:// URL and a channel that receives the result of each TLS
// handshake (nil: the client accepted the certificate). It closes every
// connection after the handshake.
func tlsBroker(t *testing.T, ca *pki.CA) (url string, handshakes <-chan error) {
	t.Helper()
	cert, err := ca.IssueServer("hub-1", nil, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, cfg)
			_ = tc.SetDeadline(time.Now().Add(waitTimeout))
			err = tc.Handshake()
			c.Close()
			select {
			case ch <- err:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "mqtts://" + ln.Addr().String(), ch
}

// TestBrokerTLSIsPinned: over MQTT over TLS the agent accepts only a
// broker certificate of the pinned hub CA (it would send its password next).
func TestBrokerTLSIsPinned(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sameCA     bool
		wantAccept bool
	}{
		{"certificate of the pinned CA", true, true},
		{"certificate of another CA", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pinned := newCA(t)
			brokerCA := pinned
			if !tc.sameCA {
				brokerCA = newCA(t)
			}
			broker, handshakes := tlsBroker(t, brokerCA)
			hub := closedAddr(t)
			dir, _ := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{broker}, Password: "pw", CAFingerprint: pinned.Fingerprint()})
			s := start(t, agentd.Config{StateDir: dir, Hub: hub})
			var err error
			select {
			case err = <-handshakes:
			case err := <-s.done:
				s.done <- err
				t.Fatalf("Run returned %v before dialing the broker", err)
			case <-time.After(waitTimeout):
				t.Fatal("the agent did not dial the broker")
			}
			if accepted := err == nil; accepted != tc.wantAccept {
				t.Errorf("TLS handshake with the broker: %v; want the agent to accept the certificate: %v", err, tc.wantAccept)
			}
			if err := s.stop(t); err != nil {
				t.Fatalf("Run after cancel: %v, want nil", err)
			}
		})
	}
}

func TestBadCredentials(t *testing.T) {
	hub := closedAddr(t)
	fp := newCA(t).Fingerprint()
	for _, tc := range []struct {
		name    string
		write   func(t *testing.T, path, id string)
		wantErr []string
	}{
		{
			name: "another device",
			write: func(t *testing.T, path, _ string) {
				other := identity.DeviceID(make(ed25519.PublicKey, ed25519.PublicKeySize))
				writeCreds(t, path, savedCreds{DeviceID: other, HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, Password: "pw", CAFingerprint: fp})
			},
			wantErr: []string{"the key was replaced"},
		},
		{
			name: "not JSON",
			write: func(t *testing.T, path, _ string) {
				if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{"delete it and enrol again"},
		},
		{
			name: "no password",
			write: func(t *testing.T, path, id string) {
				writeCreds(t, path, savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, CAFingerprint: fp})
			},
			wantErr: []string{"incomplete credentials"},
		},
		{
			// Written by an agent from before the hub had a CA: nothing
			// pins the hub, so the device must be paired again.
			name: "no CA fingerprint",
			write: func(t *testing.T, path, id string) {
				writeCreds(t, path, savedCreds{DeviceID: id, HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, Password: "pw"})
			},
			wantErr: []string{"without a pinned hub CA", "delete it and enrol again"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, id := enrolled(t, savedCreds{HubID: "hub-1", Hub: hub, MQTTURLs: []string{"mqtt://127.0.0.1:1"}, Password: "pw", CAFingerprint: fp})
			path := filepath.Join(dir, "credentials.json")
			tc.write(t, path, id)
			s := start(t, agentd.Config{StateDir: dir, Hub: hub, JoinToken: identity.FormatJoinToken("alicia_join_x", fp)})
			err := s.wait(t)
			if err == nil {
				t.Fatalf("Run returned nil, want an error naming %s and containing %q", path, tc.wantErr)
			}
			for _, want := range append([]string{path}, tc.wantErr...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run: %v\nwant the error to contain %q", err, want)
				}
			}
		})
	}
}
