package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alicia-home/alicia/hub/backup"
	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/enrol"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/pairing"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

const (
	testHubID = "hub-test"
	testHost  = "hub.local:8470"
)

// t0 is the harness clock's start.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeAccounts records the broker accounts the API provisions and removes.
type fakeAccounts struct {
	mu           sync.Mutex // guards the fields below
	passwords    map[string][]string
	removed      []string
	provisionErr error
	removeErr    error
	// onProvision, if set, runs (without mu held) before Provision returns.
	onProvision func(id string)
}

var _ Accounts = (*fakeAccounts)(nil)

func (a *fakeAccounts) Provision(_ context.Context, id, password string) error {
	a.mu.Lock()
	hook, err := a.onProvision, a.provisionErr
	if err == nil {
		a.passwords[id] = append(a.passwords[id], password)
	}
	a.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	return err
}

func (a *fakeAccounts) Remove(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removed = append(a.removed, id)
	return a.removeErr
}

// harness is the API wired to a real registry and real tokens on a real
// store, as the hub wires it.
type harness struct {
	handler      http.Handler
	db           *store.DB
	reg          *registry.Registry
	toks         *tokens.Tokens
	clock        *testkit.Clock
	window       *pairing.Window
	metrics      *metrics.Store
	events       *events.Bus
	health       *health.Engine
	ca           *pki.CA
	fp           string // the CA's fingerprint
	admin        string // the admin token, read from admin.token
	accounts     *fakeAccounts
	commands     *command.Service
	configs      *spec.Store
	rollouts     *rollout.Manager
	syncStates   fakeSync
	integrations *integrations.Accounts
	// pushLimited makes integrations' metric pushes over their rate limit.
	pushLimited atomic.Bool
	// jobs is the scheduler, running on the harness clock, with the
	// command service and Berlin as its location.
	jobs *scheduler.Scheduler
	// clockWhy, if set, makes the scheduler's clock untrusted, for this
	// reason.
	clockWhy atomic.Pointer[string]
	// published records the scheduler's MQTT publishes.
	published chan publishedMessage
	// answer, if set, is the simulated device's result to a command
	// (nil: no answer); it runs in its own goroutine.
	answer atomic.Pointer[func(dev string, c *protocol.Command) *protocol.CommandResult]
	// backupFn, if set, replaces the hub's backup (hub/backup.Write of
	// the harness's data directory).
	backupFn atomic.Pointer[func(w io.Writer) (int64, error)]
	// noBroker makes BrokerURLs answer nothing, as a loopback-only broker
	// does for a remote agent.
	noBroker atomic.Bool

	mu           sync.Mutex // guards disconnected
	disconnected []string
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return openHarness(t, t.TempDir(), store.Options{})
}

// openHarness opens (or reopens) the hub state in dir; opts.Dir is set.
func openHarness(t testing.TB, dir string, opts store.Options) *harness {
	t.Helper()
	opts.Dir = filepath.Join(dir, "store")
	db, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	clk := testkit.NewClock(t0)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := registry.Open(db, registry.Config{Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	toks := tokens.Open(db, tokens.Config{Now: clk.Now})
	tokPath := filepath.Join(dir, "admin.token")
	if _, err := toks.EnsureAdmin(tokPath); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"), testHubID, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := metrics.Open(db, metrics.Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mon, err := health.Open(db, health.Config{Devices: reg.List, Latest: ms.Latest, Range: ms.Range, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{health: mon, events: events.New(8, clk.Now), metrics: ms, db: db, reg: reg, toks: toks, clock: clk, admin: strings.TrimSpace(string(b)), accounts: &fakeAccounts{passwords: map[string][]string{}},
		window: &pairing.Window{Now: clk.Now}, ca: ca, fp: ca.Fingerprint()}
	h.integrations, err = integrations.Open(db, integrations.Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if h.configs, err = spec.Open(db, spec.Config{Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	if h.rollouts, err = rollout.Open(db, rollout.Config{Configs: h.configs, Devices: reg, Health: mon, Sync: &h.syncStates, Events: h.events, Now: clk.Now}); err != nil {
		t.Fatal(err)
	}
	h.commands, err = command.Open(db, command.Config{Devices: reg, Now: clk.Now, Logger: log,
		Publish: func(_ context.Context, dev string, c *protocol.Command) error {
			if f := h.answer.Load(); f != nil {
				go func() {
					if res := (*f)(dev, c); res != nil {
						h.commands.HandleResult(dev, res)
					}
				}()
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.published = make(chan publishedMessage, 16)
	h.jobs, err = scheduler.Open(db, scheduler.Config{Commands: h.commands, Configs: harnessConfigs{h.configs}, Events: h.events,
		Location: &schedule.Location{Latitude: 52.52, Longitude: 13.405}, Now: clk.Now, Logger: log,
		ClockOK: func() (bool, string) {
			if why := h.clockWhy.Load(); why != nil {
				return false, *why
			}
			return true, ""
		},
		Publish: func(_ context.Context, topic string, payload []byte, qos byte, retain bool) error {
			select {
			case h.published <- publishedMessage{topic, string(payload), qos, retain}:
			default:
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.jobs.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	mi := metrics.NewIngester(ms, metrics.IngesterConfig{Ack: func(context.Context, string, *protocol.MetricsAck) error { return nil }})
	ictx, istop := context.WithCancel(context.Background())
	iran := make(chan error, 1)
	go func() { iran <- mi.Run(ictx) }()
	t.Cleanup(func() { istop(); <-iran })
	issue := func(id string, pub ed25519.PublicKey) ([]byte, error) {
		c, err := ca.IssueClient(id, pub, clk.Now())
		if err != nil {
			return nil, err
		}
		return c.Raw, nil
	}
	enr, err := enrol.New(enrol.Config{Devices: reg, Tokens: toks, Accounts: h.accounts, IssueCertificate: issue, CAFingerprint: h.fp,
		Window: h.window, Events: h.events, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h.handler, err = New(Config{
		HubID:         testHubID,
		CAFingerprint: h.fp,
		Now:           clk.Now,
		Metrics:       ms,
		Events:        h.events,
		Health:        mon,
		Prometheus: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, "up 1\n")
		}),
		Pairing:      h.window,
		Commands:     h.commands,
		Configs:      h.configs,
		Rollouts:     h.rollouts,
		Jobs:         h.jobs,
		Integrations: h.integrations,
		IntegrationMetrics: pusher(func(ctx context.Context, src string, m *protocol.Metrics) error {
			if h.pushLimited.Load() {
				return ErrRateLimited
			}
			return mi.Store(ctx, src, m)
		}),
		CAPEM:            []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"),
		IssueCertificate: issue,
		Devices:          reg,
		Tokens:           toks,
		Enrolment:        enr,
		Accounts:         h.accounts,
		BrokerURLs: func(r *http.Request) []string {
			if h.noBroker.Load() {
				return nil
			}
			return []string{"mqtt://" + net.JoinHostPort(HostOf(r), "1883")}
		},
		Disconnect: func(id string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.disconnected = append(h.disconnected, id)
		},
		Logger: log,
		Backup: func(w io.Writer) (int64, error) {
			if f := h.backupFn.Load(); f != nil {
				return (*f)(w)
			}
			return backup.Write(w, db, dir)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pusher is an IntegrationMetrics.
type pusher func(ctx context.Context, src string, m *protocol.Metrics) error

func (p pusher) Push(ctx context.Context, src string, m *protocol.Metrics) error {
	return p(ctx, src, m)
}

// request is one HTTP request to send.
type request struct {
	method, target string
	auth           string // Authorization header; none if empty
	body           any    // nil: none; string or []byte: sent as is; else JSON-encoded
	contentType    string // of the body; default application/json
	noContentType  bool   // send the body without a Content-Type
	host           string // default testHost
	remote         string // RemoteAddr; default a loopback address
	tls            bool   // as if it came over HTTPS
	header         map[string]string
}

// response is what the handler answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send performs r and checks the exchange against openapi.yaml.
func (h *harness) send(t *testing.T, r request) response {
	t.Helper()
	var raw []byte
	switch b := r.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	var req *http.Request
	if r.body == nil {
		req = httptest.NewRequest(r.method, r.target, nil)
	} else {
		req = httptest.NewRequest(r.method, r.target, bytes.NewReader(raw))
		if r.contentType == "" && !r.noContentType {
			r.contentType = "application/json"
		}
		if r.contentType != "" {
			req.Header.Set("Content-Type", r.contentType)
		}
	}
	req.RemoteAddr = "127.0.0.1:41000"
	if r.remote != "" {
		req.RemoteAddr = r.remote
	}
	if r.tls {
		req.TLS = &tls.ConnectionState{}
	}
	req.Host = testHost
	if r.host != "" {
		req.Host = r.host
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	resp := response{status: rec.Code, header: rec.Result().Header, body: rec.Body.Bytes()}
	x := exchange{pattern: req.Pattern, method: r.method, target: r.target, reqType: r.contentType, reqBody: raw,
		hasBody: r.body != nil, status: resp.status, header: resp.header, respBody: resp.body}
	if err := loadContract(t).check(x); err != nil {
		t.Errorf("%s %s: the exchange disagrees with openapi.yaml:\n%v", r.method, r.target, err)
	}
	return resp
}

// adminDo sends a request with the admin token.
func (h *harness) adminDo(t *testing.T, method, target string, body any) response {
	t.Helper()
	return h.send(t, request{method: method, target: target, auth: "Bearer " + h.admin, body: body})
}

func (r response) mustStatus(t *testing.T, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body: %s", r.status, want, r.body)
	}
}

// decode strictly decodes a JSON response body.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, r.body, err)
	}
	return v
}

// mustProblem checks that r is an RFC 9457 problem with the given status
// and returns its detail.
func (r response) mustProblem(t *testing.T, status int) string {
	t.Helper()
	r.mustStatus(t, status)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	want := problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: p.Detail}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
	if p.Detail == "" {
		t.Errorf("problem has no detail")
	}
	return p.Detail
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pubKey(key ed25519.PrivateKey) ed25519.PublicKey { return key.Public().(ed25519.PublicKey) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// enrolment is a correct enrolment request of key with token.
func enrolment(key ed25519.PrivateKey, token, name string) EnrollRequest {
	return EnrollRequest{Token: token, PublicKey: b64(pubKey(key)), Name: name, Signature: b64(identity.SignEnrolment(key, token))}
}

// joinToken creates a join token through the API.
func (h *harness) joinToken(t *testing.T, body string) string {
	t.Helper()
	resp := h.adminDo(t, "POST", "/api/v1/join-tokens", body)
	resp.mustStatus(t, http.StatusCreated)
	return decode[JoinTokenResponse](t, resp).Token
}

func (h *harness) enrollWith(t *testing.T, body any) response {
	t.Helper()
	return h.send(t, request{method: "POST", target: "/api/v1/enroll", body: body})
}

// enroll enrols a new device named name with a fresh single-use token.
func (h *harness) enroll(t *testing.T, name string) EnrollResponse {
	t.Helper()
	resp := h.enrollWith(t, enrolment(newKey(t), h.joinToken(t, ""), name))
	resp.mustStatus(t, http.StatusCreated)
	return decode[EnrollResponse](t, resp)
}

// device gets a device through the API.
func (h *harness) device(t *testing.T, id string) Device {
	t.Helper()
	resp := h.adminDo(t, "GET", "/api/v1/devices/"+id, nil)
	resp.mustStatus(t, http.StatusOK)
	return decode[Device](t, resp)
}

func (h *harness) devices(t *testing.T) []Device {
	t.Helper()
	resp := h.adminDo(t, "GET", "/api/v1/devices", nil)
	resp.mustStatus(t, http.StatusOK)
	return decode[[]Device](t, resp)
}

// oversize is a JSON object larger than the 64 KiB body limit.
var oversize = `{"name":"` + strings.Repeat("x", maxBody) + `"}`

func TestNewRequiresDependencies(t *testing.T) {
	h := newHarness(t)
	urls := func(*http.Request) []string { return nil }
	enr, err := enrol.New(enrol.Config{Devices: h.reg, Tokens: h.toks})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no devices", Config{Tokens: h.toks, Enrolment: enr, BrokerURLs: urls}},
		{"no tokens", Config{Devices: h.reg, Enrolment: enr, BrokerURLs: urls}},
		{"no enrolment", Config{Devices: h.reg, Tokens: h.toks, BrokerURLs: urls}},
		{"no broker URLs", Config{Devices: h.reg, Tokens: h.toks, Enrolment: enr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("New succeeded; want an error")
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	h := newHarness(t)
	resp := h.send(t, request{method: "GET", target: "/healthz"})
	resp.mustStatus(t, http.StatusOK)
	if diff := cmp.Diff(map[string]string{"status": "ok"}, decode[map[string]string](t, resp)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestAdminRoutesNeedToken(t *testing.T) {
	h := newHarness(t)
	enr := h.enroll(t, "pi")
	before := h.device(t, enr.DeviceID)
	join := h.joinToken(t, "")
	routes := []struct {
		method, target string
		body           any
	}{
		{"GET", "/api/v1/devices", nil},
		{"GET", "/api/v1/devices/" + enr.DeviceID, nil},
		{"PATCH", "/api/v1/devices/" + enr.DeviceID, `{"name":"taken over"}`},
		{"DELETE", "/api/v1/devices/" + enr.DeviceID, nil},
		{"POST", "/api/v1/join-tokens", nil},
		{"POST", "/api/v1/join-tokens", `{"uses":1000}`},
		{"GET", "/api/v1/pairing", nil},
		{"POST", "/api/v1/pairing", nil},
		{"DELETE", "/api/v1/pairing", nil},
		{"POST", "/api/v1/devices/" + enr.DeviceID + "/approve", `{"code":"AAAA-AAAA"}`},
		{"POST", "/api/v1/devices/" + enr.DeviceID + "/reject", nil},
		// The token is checked before the ID is.
		{"GET", "/api/v1/devices/unknown", nil},
		{"DELETE", "/api/v1/devices/a%2Bb", nil},
	}
	auths := []struct{ name, header string }{
		{"none", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer " + tokens.AdminPrefix + "wrong"},
		{"admin token plus a byte", "Bearer " + h.admin + "x"},
		{"admin token minus a byte", "Bearer " + h.admin[:len(h.admin)-1]},
		{"admin token without scheme", h.admin},
		{"basic scheme", "Basic " + b64([]byte("admin:"+h.admin))},
		{"join token", "Bearer " + join},
	}
	for _, rt := range routes {
		for _, a := range auths {
			t.Run(rt.method+" "+rt.target+"/"+a.name, func(t *testing.T) {
				resp := h.send(t, request{method: rt.method, target: rt.target, auth: a.header, body: rt.body})
				resp.mustProblem(t, http.StatusUnauthorized)
				if got, want := resp.header.Get("WWW-Authenticate"), `Bearer realm="alicia"`; got != want {
					t.Errorf("WWW-Authenticate = %q, want %q", got, want)
				}
			})
		}
	}
	if diff := cmp.Diff(before, h.device(t, enr.DeviceID)); diff != "" {
		t.Errorf("device changed by unauthorised requests (-before +after):\n%s", diff)
	}
	if _, open := h.window.ClosesAt(); open {
		t.Error("an unauthorised request opened the pairing window")
	}
	if len(h.disconnected) != 0 {
		t.Errorf("Disconnect called for %v", h.disconnected)
	}
}

func TestCreateJoinToken(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name       string
		body       any // nil: no body
		wantStatus int
		wantUses   int
		wantTTL    time.Duration
		wantDetail string // substring of the problem detail
	}{
		{name: "no body", wantStatus: 201, wantUses: 1, wantTTL: 24 * time.Hour},
		{name: "empty body", body: "", wantStatus: 201, wantUses: 1, wantTTL: 24 * time.Hour},
		{name: "empty object", body: "{}", wantStatus: 201, wantUses: 1, wantTTL: 24 * time.Hour},
		{name: "uses and ttl", body: `{"uses":3,"ttl":"1h"}`, wantStatus: 201, wantUses: 3, wantTTL: time.Hour},
		{name: "ttl only", body: `{"ttl":"90m"}`, wantStatus: 201, wantUses: 1, wantTTL: 90 * time.Minute},
		{name: "largest", body: `{"uses":1000,"ttl":"720h"}`, wantStatus: 201, wantUses: 1000, wantTTL: 720 * time.Hour},
		{name: "bad ttl", body: `{"ttl":"soon"}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "ttl without unit", body: `{"ttl":"60"}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "empty ttl", body: `{"ttl":""}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "zero ttl", body: `{"ttl":"0s"}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "negative ttl", body: `{"ttl":"-1h"}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "ttl too long", body: `{"ttl":"721h"}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "ttl as number", body: `{"ttl":3600}`, wantStatus: 400, wantDetail: "ttl"},
		{name: "zero uses", body: `{"uses":0}`, wantStatus: 400, wantDetail: "uses"},
		{name: "negative uses", body: `{"uses":-1}`, wantStatus: 400, wantDetail: "uses"},
		{name: "too many uses", body: `{"uses":5000}`, wantStatus: 400, wantDetail: "uses"},
		{name: "fractional uses", body: `{"uses":1.5}`, wantStatus: 400, wantDetail: "uses"},
		{name: "uses as string", body: `{"uses":"3"}`, wantStatus: 400, wantDetail: "uses"},
		{name: "unknown field", body: `{"uses":1,"role":"admin"}`, wantStatus: 400, wantDetail: "role"},
		{name: "invalid JSON", body: `{"uses":`, wantStatus: 400, wantDetail: "JSON"},
		{name: "not JSON", body: `uses=3`, wantStatus: 400, wantDetail: "JSON"},
		{name: "array", body: `[{"uses":3}]`, wantStatus: 400, wantDetail: "array"},
		{name: "trailing data", body: `{"uses":2} {"uses":3}`, wantStatus: 400, wantDetail: "trailing"},
		{name: "oversize", body: `{"ttl":"1h","x":"` + strings.Repeat("x", maxBody) + `"}`, wantStatus: 413, wantDetail: "65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.adminDo(t, "POST", "/api/v1/join-tokens", tt.body)
			if tt.wantStatus != http.StatusCreated {
				if detail := resp.mustProblem(t, tt.wantStatus); !strings.Contains(detail, tt.wantDetail) {
					t.Errorf("detail %q does not mention %q", detail, tt.wantDetail)
				}
				return
			}
			resp.mustStatus(t, http.StatusCreated)
			got := decode[JoinTokenResponse](t, resp)
			want := JoinTokenResponse{Uses: tt.wantUses, ExpiresAt: t0.Add(tt.wantTTL)}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(JoinTokenResponse{}, "Token")); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(got.Token, tokens.JoinPrefix) || len(got.Token) < len(tokens.JoinPrefix)+40 {
				t.Errorf("token %q: want %s and at least 40 random characters", got.Token, tokens.JoinPrefix)
			}
		})
	}
}

func TestJoinTokensAreDistinct(t *testing.T) {
	h := newHarness(t)
	seen := map[string]bool{}
	for range 20 {
		tok := h.joinToken(t, "")
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
	}
}

func TestEnroll(t *testing.T) {
	h := newHarness(t)
	key := newKey(t)
	tok := h.joinToken(t, "")
	resp := h.enrollWith(t, enrolment(key, tok, "kitchen-pi"))
	resp.mustStatus(t, http.StatusCreated)
	got := decode[EnrollResponse](t, resp)

	id := identity.DeviceID(pubKey(key))
	want := EnrollResponse{DeviceID: id, HubID: testHubID, MQTT: MQTTAccess{URLs: []string{"mqtt://hub.local:1883"}, Username: id}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(MQTTAccess{}, "Password", "Certificate")); diff != "" {
		t.Errorf("enrolment (-want +got):\n%s", diff)
	}
	h.checkCert(t, got.MQTT.Certificate, id, pubKey(key))
	if secret, err := base64.RawURLEncoding.DecodeString(got.MQTT.Password); err != nil || len(secret) != 32 {
		t.Errorf("password %q: want the base64url of 32 random bytes (err %v)", got.MQTT.Password, err)
	}
	if diff := cmp.Diff(map[string][]string{id: {got.MQTT.Password}}, h.accounts.passwords); diff != "" {
		t.Errorf("provisioned broker accounts (-want +got):\n%s", diff)
	}

	// Health: never seen yet, so unknown.
	wantDev := Device{ID: id, Name: "kitchen-pi", Status: "offline", Health: "unknown", State: "accepted", StatusReason: "enrolled", StatusSince: t0,
		Labels: map[string]string{}, PublicKey: b64(pubKey(key)), EnrolledAt: &t0}
	if diff := cmp.Diff(wantDev, h.device(t, id)); diff != "" {
		t.Errorf("GET device (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Device{wantDev}, h.devices(t)); diff != "" {
		t.Errorf("device list (-want +got):\n%s", diff)
	}

	pw := got.MQTT.Password
	auth := []struct {
		id, secret string
		want       bool
	}{
		{id, pw, true},
		{id, pw + "x", false},
		{id, pw[:len(pw)-1], false},
		{id, "", false},
		{id, tok, false},
		{"d" + strings.Repeat("a", 20), pw, false},
	}
	for _, a := range auth {
		if got := h.reg.Authenticate(a.id, []byte(a.secret)); got != a.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", a.id, a.secret, got, a.want)
		}
	}
}

func TestEnrollDefaultName(t *testing.T) {
	h := newHarness(t)
	enr := h.enroll(t, "")
	if got := h.device(t, enr.DeviceID).Name; got != enr.DeviceID {
		t.Errorf("name = %q, want the device ID %q", got, enr.DeviceID)
	}
}

// TestEnrollAgain: a known key cannot enrol again with a join token (a
// replayed request must not take the device over); the device, its
// password and the token's use are unchanged.
func TestEnrollAgain(t *testing.T) {
	h := newHarness(t)
	key := newKey(t)
	resp := h.enrollWith(t, enrolment(key, h.joinToken(t, ""), "first"))
	resp.mustStatus(t, http.StatusCreated)
	first := decode[EnrollResponse](t, resp)
	before := h.device(t, first.DeviceID)

	h.clock.Advance(time.Hour)
	token := h.joinToken(t, "")
	if detail := h.enrollWith(t, enrolment(key, token, "second")).mustProblem(t, http.StatusConflict); !strings.Contains(detail, "already enrolled") {
		t.Errorf("detail %q does not say the device is already enrolled", detail)
	}
	if diff := cmp.Diff(before, h.device(t, first.DeviceID)); diff != "" {
		t.Errorf("a refused re-enrolment changed the device (-before +after):\n%s", diff)
	}
	if !h.reg.Authenticate(first.DeviceID, []byte(first.MQTT.Password)) {
		t.Error("the device's password no longer authenticates")
	}
	// The token was not used: another key can still enrol with it.
	h.enrollWith(t, enrolment(newKey(t), token, "other")).mustStatus(t, http.StatusCreated)
}

// TestEnrollBadRequest sends malformed enrolments: each is refused without
// using up the single-use token, which then still enrols.
func TestEnrollBadRequest(t *testing.T) {
	h := newHarness(t)
	other := newKey(t)
	tests := []struct {
		name       string
		body       func(key ed25519.PrivateKey, tok string) any
		wantStatus int
		wantDetail string
	}{
		{"random signature", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			sig := make([]byte, ed25519.SignatureSize)
			_, _ = rand.Read(sig)
			r.Signature = b64(sig)
			return r
		}, 400, "signature"},
		{"signature by another key", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.Signature = b64(identity.SignEnrolment(other, tok))
			return r
		}, 400, "signature"},
		{"proof for a different key", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(other, tok, "pi")
			r.PublicKey = b64(pubKey(key))
			return r
		}, 400, "signature"},
		{"proof for a different token", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.Signature = b64(identity.SignEnrolment(key, tok+"x"))
			return r
		}, 400, "signature"},
		{"raw ed25519 signature of the token", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.Signature = b64(ed25519.Sign(key, []byte(tok)))
			return r
		}, 400, "signature"},
		{"signature not base64", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.Signature = "not base64!"
			return r
		}, 400, "signature"},
		{"no signature", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.Signature = ""
			return r
		}, 400, "signature"},
		{"public key not base64", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.PublicKey = "%%%"
			return r
		}, 400, "public_key"},
		{"public key too short", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.PublicKey = b64(pubKey(key)[:31])
			return r
		}, 400, "public_key"},
		{"private key as public key", func(key ed25519.PrivateKey, tok string) any {
			r := enrolment(key, tok, "pi")
			r.PublicKey = b64(key)
			return r
		}, 400, "public_key"},
		{"blank name", func(key ed25519.PrivateKey, tok string) any { return enrolment(key, tok, "   ") }, 400, "name"},
		{"name too long", func(key ed25519.PrivateKey, tok string) any {
			return enrolment(key, tok, strings.Repeat("n", registry.MaxNameLen+1))
		}, 400, "name"},
		{"name with a newline", func(key ed25519.PrivateKey, tok string) any { return enrolment(key, tok, "pi\nroot") }, 400, "name"},
		{"name with a right-to-left override", func(key ed25519.PrivateKey, tok string) any {
			return enrolment(key, tok, "kitchen\u202Egpj.exe")
		}, 400, "name: byte 7 is U+202E, a bidirectional control"},
		{"name with an isolate", func(key ed25519.PrivateKey, tok string) any { return enrolment(key, tok, "\u2067pi") }, 400, "U+2067"},
		{"name with a C1 control", func(key ed25519.PrivateKey, tok string) any { return enrolment(key, tok, "pi\u009b") }, 400, "U+009B"},
		{"unknown field", func(key ed25519.PrivateKey, tok string) any {
			b, _ := json.Marshal(enrolment(key, tok, "pi"))
			return strings.Replace(string(b), "{", `{"admin":true,`, 1)
		}, 400, "admin"},
		{"empty body", func(ed25519.PrivateKey, string) any { return "" }, 400, "empty"},
		{"invalid JSON", func(ed25519.PrivateKey, string) any { return `{"token":` }, 400, "JSON"},
		{"oversize", func(ed25519.PrivateKey, string) any { return oversize }, 413, "65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t)
			tok := h.joinToken(t, `{"uses":1}`)
			resp := h.enrollWith(t, tt.body(key, tok))
			if detail := resp.mustProblem(t, tt.wantStatus); !strings.Contains(detail, tt.wantDetail) {
				t.Errorf("detail %q does not mention %q", detail, tt.wantDetail)
			}
			if _, err := h.reg.Get(identity.DeviceID(pubKey(key))); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("refused enrolment created the device (err %v)", err)
			}
			h.enrollWith(t, enrolment(key, tok, "pi")).mustStatus(t, http.StatusCreated)
		})
	}
}

// TestEnrollTokenRefused sends well-formed, correctly signed enrolments
// whose token is not (or no longer) good. The answers do not tell the
// reasons apart.
func TestEnrollTokenRefused(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"single-use token used twice", func(t *testing.T) string {
			tok := h.joinToken(t, `{"uses":1}`)
			h.enrollWith(t, enrolment(newKey(t), tok, "first")).mustStatus(t, http.StatusCreated)
			return tok
		}},
		{"three-use token used four times", func(t *testing.T) string {
			tok := h.joinToken(t, `{"uses":3}`)
			for i := range 3 {
				h.enrollWith(t, enrolment(newKey(t), tok, fmt.Sprint("pi-", i))).mustStatus(t, http.StatusCreated)
			}
			return tok
		}},
		{"expired token", func(t *testing.T) string {
			tok := h.joinToken(t, `{"uses":2,"ttl":"1h"}`)
			h.clock.Advance(time.Hour - time.Nanosecond)
			h.enrollWith(t, enrolment(newKey(t), tok, "just in time")).mustStatus(t, http.StatusCreated)
			h.clock.Advance(time.Nanosecond)
			return tok
		}},
		{"unknown token", func(*testing.T) string { return tokens.JoinPrefix + "bm90IGEgcmVhbCB0b2tlbiBhdCBhbGwgLSBqdXN0IHRleHQ" }},
		{"admin token", func(*testing.T) string { return h.admin }},
		{"empty token", func(*testing.T) string { return "" }},
	}
	var details []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t)
			resp := h.enrollWith(t, enrolment(key, tt.token(t), "late"))
			details = append(details, resp.mustProblem(t, http.StatusForbidden))
			if _, err := h.reg.Get(identity.DeviceID(pubKey(key))); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("refused enrolment created the device (err %v)", err)
			}
		})
	}
	if len(slices.Compact(slices.Clone(details))) != 1 {
		t.Errorf("403 details differ by reason, leaking why a token failed: %q", details)
	}
}

func TestListDevicesOrderedByName(t *testing.T) {
	h := newHarness(t)
	if got := h.devices(t); got == nil || len(got) != 0 {
		t.Errorf("empty registry lists %#v, want []", got)
	}
	type entry struct{ Name, ID string }
	var want []entry
	for _, name := range []string{"charlie", "Alpha", "bravo", "delta", "alpha", "delta"} {
		enr := h.enroll(t, name)
		want = append(want, entry{name, enr.DeviceID})
	}
	slices.SortFunc(want, func(a, b entry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var got []entry
	for _, d := range h.devices(t) {
		got = append(got, entry{d.Name, d.ID})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// TestDeviceView checks the optional fields a device gains once its agent
// connects (facts, version, first and last seen) against the document.
func TestDeviceView(t *testing.T) {
	h := newHarness(t)
	enr := h.enroll(t, "pi")
	h.clock.Advance(time.Minute)
	facts := protocol.Facts{Hostname: "pi", OS: "linux", Platform: "debian 12", Kernel: "6.6.31", Arch: "arm64",
		CPUModel: "Cortex-A76", CPUCores: 4, MemoryBytes: 8 << 30, BootTime: t0.Add(-time.Hour)}
	msgs := []protocol.Payload{
		&protocol.Register{Name: "agent-name", AgentVersion: "v0.1.0", HeartbeatMS: 5000, Facts: facts},
		&protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup},
	}
	for _, p := range msgs {
		if err := h.reg.Handle(enr.DeviceID, &protocol.Message{ID: protocol.NewID(), Time: h.clock.Now(), Source: enr.DeviceID, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	seen := t0.Add(time.Minute)
	got := h.device(t, enr.DeviceID)
	// The agent's name replaces the enrolment name until an admin renames the device.
	want := Device{ID: enr.DeviceID, Name: "agent-name", Status: "online", Health: "online", State: "accepted", StatusReason: "startup", StatusSince: seen,
		Labels: map[string]string{}, AgentVersion: "v0.1.0", HeartbeatMS: 5000, Facts: &facts,
		EnrolledAt: &t0, FirstSeen: &seen, LastSeen: &seen}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Device{}, "PublicKey")); diff != "" {
		t.Errorf("device (-want +got):\n%s", diff)
	}
}

// TestDeviceID checks the {id} of every device route: malformed IDs are
// 400, well-formed unknown ones 404.
func TestDeviceID(t *testing.T) {
	h := newHarness(t)
	ids := []struct {
		name, escaped string
		want          int
	}{
		{"plus", "a%2Bb", 400},
		{"hash", "a%23b", 400},
		{"slash", "a%2Fb", 400},
		{"space", "a%20b", 400},
		{"dollar", "%24SYS", 400},
		{"leading dot", ".x", 400},
		{"leading dash", "-x", 400},
		{"non-ASCII", "%C3%A9", 400},
		{"65 bytes", strings.Repeat("a", protocol.MaxIDLen+1), 400},
		{"64 bytes unknown", strings.Repeat("a", protocol.MaxIDLen), 404},
		{"unknown", "d" + strings.Repeat("a", identity.DeviceIDLen-1), 404},
	}
	methods := []struct {
		method string
		body   any
	}{{"GET", nil}, {"PATCH", `{"name":"x"}`}, {"DELETE", nil}}
	for _, id := range ids {
		for _, m := range methods {
			t.Run(m.method+"/"+id.name, func(t *testing.T) {
				resp := h.adminDo(t, m.method, "/api/v1/devices/"+id.escaped, m.body)
				resp.mustProblem(t, id.want)
			})
		}
	}
	if len(h.disconnected) != 0 || len(h.accounts.removed) != 0 {
		t.Errorf("failed deletes disconnected %v and removed accounts %v", h.disconnected, h.accounts.removed)
	}
}

func TestPatchDevice(t *testing.T) {
	h := newHarness(t)
	initial := map[string]string{"room": "kitchen", "floor": "1"}
	withLabels := func(extra map[string]string, drop ...string) map[string]string {
		m := map[string]string{}
		for k, v := range initial {
			if !slices.Contains(drop, k) {
				m[k] = v
			}
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	manyLabels := func(n int) string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("l%02d", i)] = "v"
		}
		b, _ := json.Marshal(map[string]any{"labels": m})
		return string(b)
	}
	tests := []struct {
		name        string
		body        any
		contentType string
		wantStatus  int
		wantName    string            // when 200
		wantLabels  map[string]string // when 200
		wantDetail  string            // when not 200
	}{
		{name: "rename", body: `{"name":"Kitchen Pi"}`, wantStatus: 200, wantName: "Kitchen Pi", wantLabels: initial},
		{name: "longest name", body: `{"name":"` + strings.Repeat("n", registry.MaxNameLen) + `"}`, wantStatus: 200,
			wantName: strings.Repeat("n", registry.MaxNameLen), wantLabels: initial},
		{name: "add label", body: `{"labels":{"zone":"north"}}`, wantStatus: 200, wantName: "pi", wantLabels: withLabels(map[string]string{"zone": "north"})},
		{name: "change label", body: `{"labels":{"room":"hall"}}`, wantStatus: 200, wantName: "pi", wantLabels: withLabels(map[string]string{"room": "hall"})},
		{name: "null removes a label", body: `{"labels":{"room":null}}`, wantStatus: 200, wantName: "pi", wantLabels: withLabels(nil, "room")},
		{name: "null on a missing label", body: `{"labels":{"nope":null}}`, wantStatus: 200, wantName: "pi", wantLabels: initial},
		{name: "name and labels", body: `{"name":"b","labels":{"room":null,"floor":"2","k.e_y-1":"v"}}`, wantStatus: 200,
			wantName: "b", wantLabels: map[string]string{"floor": "2", "k.e_y-1": "v"}},
		{name: "empty patch", body: `{}`, wantStatus: 200, wantName: "pi", wantLabels: initial},
		{name: "merge-patch media type", body: `{"labels":{"room":null}}`, contentType: "application/merge-patch+json",
			wantStatus: 200, wantName: "pi", wantLabels: withLabels(nil, "room")},
		{name: "longest label key and value", body: `{"labels":{"` + strings.Repeat("k", registry.MaxLabelKeyLen) + `":"` + strings.Repeat("v", registry.MaxLabelValLen) + `"}}`,
			wantStatus: 200, wantName: "pi", wantLabels: withLabels(map[string]string{strings.Repeat("k", registry.MaxLabelKeyLen): strings.Repeat("v", registry.MaxLabelValLen)})},
		{name: "32 labels in all", body: manyLabels(registry.MaxLabels - len(initial)), wantStatus: 200, wantName: "pi",
			wantLabels: func() map[string]string {
				m := withLabels(nil)
				for i := range registry.MaxLabels - len(initial) {
					m[fmt.Sprintf("l%02d", i)] = "v"
				}
				return m
			}()},
		{name: "33 labels in all", body: manyLabels(registry.MaxLabels - len(initial) + 1), wantStatus: 400, wantDetail: "labels"},
		{name: "33 labels at once", body: manyLabels(registry.MaxLabels + 1), wantStatus: 400, wantDetail: "labels"},
		{name: "empty label value", body: `{"labels":{"room":""}}`, wantStatus: 400, wantDetail: "null"},
		{name: "upper-case label key", body: `{"labels":{"Room":"x"}}`, wantStatus: 400, wantDetail: "Room"},
		{name: "label key starts with a digit", body: `{"labels":{"1st":"x"}}`, wantStatus: 400, wantDetail: "1st"},
		{name: "label key with a space", body: `{"labels":{"my room":"x"}}`, wantStatus: 400, wantDetail: "my room"},
		{name: "empty label key", body: `{"labels":{"":"x"}}`, wantStatus: 400, wantDetail: "label key"},
		{name: "label key too long", body: `{"labels":{"` + strings.Repeat("k", registry.MaxLabelKeyLen+1) + `":"x"}}`, wantStatus: 400, wantDetail: "label key"},
		{name: "label value too long", body: `{"labels":{"room":"` + strings.Repeat("v", registry.MaxLabelValLen+1) + `"}}`, wantStatus: 400, wantDetail: "room"},
		{name: "label value with a newline", body: `{"labels":{"room":"a\nb"}}`, wantStatus: 400, wantDetail: "control"},
		{name: "label value not a string", body: `{"labels":{"room":1}}`, wantStatus: 400, wantDetail: "labels"},
		{name: "empty name", body: `{"name":""}`, wantStatus: 400, wantDetail: "name"},
		{name: "blank name", body: `{"name":"  "}`, wantStatus: 400, wantDetail: "name"},
		{name: "name too long", body: `{"name":"` + strings.Repeat("n", registry.MaxNameLen+1) + `"}`, wantStatus: 400, wantDetail: "name"},
		{name: "name with a tab", body: `{"name":"a\tb"}`, wantStatus: 400, wantDetail: "name"},
		{name: "name with a right-to-left override", body: `{"name":"kitchen\u202egpj.exe"}`, wantStatus: 400, wantDetail: "name: byte 7 is U+202E, a bidirectional control"},
		{name: "name with a right-to-left mark", body: `{"name":"\u200fkitchen"}`, wantStatus: 400, wantDetail: "U+200F"},
		{name: "label value with a bidi isolate", body: `{"labels":{"room":"\u2066hall"}}`, wantStatus: 400, wantDetail: `label "room": value: byte 0 is U+2066`},
		{name: "label value with a C1 control", body: `{"labels":{"room":"hall\u0085"}}`, wantStatus: 400, wantDetail: "U+0085"},
		{name: "unknown field", body: `{"nmae":"x"}`, wantStatus: 400, wantDetail: "nmae"},
		{name: "labels not an object", body: `{"labels":["room"]}`, wantStatus: 400, wantDetail: "labels"},
		{name: "invalid JSON", body: `{"name":"x"`, wantStatus: 400, wantDetail: "JSON"},
		{name: "no body", wantStatus: 400, wantDetail: "empty"},
		{name: "oversize", body: oversize, wantStatus: 413, wantDetail: "65536"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := h.enroll(t, "pi").DeviceID
			h.adminDo(t, "PATCH", "/api/v1/devices/"+id, map[string]any{"labels": initial}).mustStatus(t, http.StatusOK)
			before := h.device(t, id)
			resp := h.send(t, request{method: "PATCH", target: "/api/v1/devices/" + id, auth: "Bearer " + h.admin,
				body: tt.body, contentType: tt.contentType})
			if tt.wantStatus != http.StatusOK {
				if detail := resp.mustProblem(t, tt.wantStatus); !strings.Contains(detail, tt.wantDetail) {
					t.Errorf("detail %q does not mention %q", detail, tt.wantDetail)
				}
				if diff := cmp.Diff(before, h.device(t, id)); diff != "" {
					t.Errorf("refused patch changed the device (-before +after):\n%s", diff)
				}
				return
			}
			resp.mustStatus(t, http.StatusOK)
			got := decode[Device](t, resp)
			want := before
			want.Name, want.Labels = tt.wantName, tt.wantLabels
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PATCH answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(got, h.device(t, id)); diff != "" {
				t.Errorf("GET after PATCH differs from the PATCH answer (-patch +get):\n%s", diff)
			}
		})
	}
}

func TestDeleteDevice(t *testing.T) {
	h := newHarness(t)
	gone := h.enroll(t, "gone")
	kept := h.enroll(t, "kept")
	keptDev := h.device(t, kept.DeviceID)

	resp := h.adminDo(t, "DELETE", "/api/v1/devices/"+gone.DeviceID, nil)
	resp.mustStatus(t, http.StatusNoContent)
	if len(resp.body) != 0 {
		t.Errorf("204 with body %q", resp.body)
	}
	h.adminDo(t, "GET", "/api/v1/devices/"+gone.DeviceID, nil).mustProblem(t, http.StatusNotFound)
	h.adminDo(t, "PATCH", "/api/v1/devices/"+gone.DeviceID, `{"name":"back"}`).mustProblem(t, http.StatusNotFound)
	h.adminDo(t, "DELETE", "/api/v1/devices/"+gone.DeviceID, nil).mustProblem(t, http.StatusNotFound)
	if diff := cmp.Diff([]Device{keptDev}, h.devices(t)); diff != "" {
		t.Errorf("devices after delete (-want +got):\n%s", diff)
	}
	if h.reg.Authenticate(gone.DeviceID, []byte(gone.MQTT.Password)) {
		t.Error("a deleted device's password still authenticates")
	}
	if !h.reg.Authenticate(kept.DeviceID, []byte(kept.MQTT.Password)) {
		t.Error("the other device's password stopped working")
	}
	if diff := cmp.Diff([]string{gone.DeviceID}, h.disconnected); diff != "" {
		t.Errorf("Disconnect calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{gone.DeviceID}, h.accounts.removed); diff != "" {
		t.Errorf("Accounts.Remove calls (-want +got):\n%s", diff)
	}

	// A broker account that cannot be removed does not fail the delete:
	// the device is already gone from the registry.
	h.accounts.removeErr = errors.New("broker unreachable")
	h.adminDo(t, "DELETE", "/api/v1/devices/"+kept.DeviceID, nil).mustStatus(t, http.StatusNoContent)
	if got := h.devices(t); len(got) != 0 {
		t.Errorf("devices after deleting all: %v", got)
	}
	if diff := cmp.Diff([]string{gone.DeviceID, kept.DeviceID}, h.accounts.removed); diff != "" {
		t.Errorf("Accounts.Remove calls (-want +got):\n%s", diff)
	}
}

func TestUnknownRoute(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		method, target string
		wantStatus     int
		wantAllow      string // for 405
	}{
		{"GET", "/", 404, ""},
		{"POST", "/", 404, ""},
		{"GET", "/index.html", 404, ""},
		{"GET", "/api/", 404, ""},
		{"GET", "/api/v1", 404, ""},
		{"GET", "/api/v1/nope", 404, ""},
		{"GET", "/api/v2/devices", 404, ""},
		{"GET", "/api/v1/devices/", 404, ""},
		{"GET", "/api/v1/devices/x/y", 404, ""},
		{"PUT", "/api/v1/devices", 405, "GET, HEAD"},
		{"POST", "/api/v1/devices/x", 405, "DELETE, GET, HEAD, PATCH"},
		{"GET", "/api/v1/join-tokens", 405, "POST"},
		{"GET", "/api/v1/enroll", 405, "POST"},
		{"DELETE", "/api/v1/enroll", 405, "POST"},
		{"POST", "/api/v1/bootstrap", 405, "GET, HEAD"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"PATCH", "/api/v1/pairing", 405, "DELETE, GET, HEAD, POST"},
	}
	for _, tt := range tests {
		for _, auth := range []string{"", "Bearer " + h.admin} {
			t.Run(fmt.Sprintf("%s %s auth=%v", tt.method, tt.target, auth != ""), func(t *testing.T) {
				resp := h.send(t, request{method: tt.method, target: tt.target, auth: auth})
				detail := resp.mustProblem(t, tt.wantStatus)
				if got := resp.header.Get("Allow"); got != tt.wantAllow {
					t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
				}
				want := "no route"
				if tt.wantStatus == http.StatusMethodNotAllowed {
					want = "not allowed"
				}
				if !strings.Contains(detail, want) {
					t.Errorf("detail %q does not say %q", detail, want)
				}
			})
		}
	}
}

func TestBootstrap(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		host string
		want string
	}{
		{"hub.local:8470", "mqtt://hub.local:1883"},
		{"hub.local", "mqtt://hub.local:1883"},
		{"192.0.2.7:8470", "mqtt://192.0.2.7:1883"},
		{"[fd00::1]:8470", "mqtt://[fd00::1]:1883"},
		{"[fd00::1]", "mqtt://[fd00::1]:1883"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			// The route is public: a wrong token is ignored, not refused.
			for _, auth := range []string{"", "Bearer wrong"} {
				resp := h.send(t, request{method: "GET", target: "/api/v1/bootstrap", host: tt.host, auth: auth})
				resp.mustStatus(t, http.StatusOK)
				want := Bootstrap{HubID: testHubID, ProtocolVersion: protocol.Version, MQTTURLs: []string{tt.want}, CAFingerprint: h.fp, Time: t0}
				if diff := cmp.Diff(want, decode[Bootstrap](t, resp)); diff != "" {
					t.Errorf("bootstrap (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestHostOf(t *testing.T) {
	tests := []struct{ host, want string }{
		{"hub.local:8470", "hub.local"},
		{"hub.local", "hub.local"},
		{"192.0.2.7:80", "192.0.2.7"},
		{"192.0.2.7", "192.0.2.7"},
		{"[fd00::1]:8470", "fd00::1"},
		{"[fd00::1]", "fd00::1"},
		{"", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tt.host
		if got := HostOf(r); got != tt.want {
			t.Errorf("HostOf(Host %q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

// TestEnrollBrokerFailure checks that a failed broker account answers 502
// and leaves the token and the registry alone.
func TestEnrollBrokerFailure(t *testing.T) {
	h := newHarness(t)
	key := newKey(t)
	tok := h.joinToken(t, `{"uses":1}`)
	h.accounts.provisionErr = errors.New("broker unreachable")
	resp := h.enrollWith(t, enrolment(key, tok, "pi"))
	if detail := resp.mustProblem(t, http.StatusBadGateway); !strings.Contains(detail, "broker unreachable") {
		t.Errorf("detail %q does not give the cause", detail)
	}
	if got := h.devices(t); len(got) != 0 {
		t.Errorf("failed enrolment listed %v", got)
	}
	h.accounts.provisionErr = nil
	h.enrollWith(t, enrolment(key, tok, "pi")).mustStatus(t, http.StatusCreated)
}

// TestEnrollLastUseRace lets a second enrolment take the token's last use
// while the first one creates its broker account: the first is refused and
// its account removed.
func TestEnrollLastUseRace(t *testing.T) {
	h := newHarness(t)
	tok := h.joinToken(t, `{"uses":1}`)
	first, second := newKey(t), newKey(t)
	var inner response
	h.accounts.onProvision = func(string) {
		h.accounts.onProvision = nil
		inner = h.enrollWith(t, enrolment(second, tok, "second"))
	}
	outer := h.enrollWith(t, enrolment(first, tok, "first"))
	inner.mustStatus(t, http.StatusCreated)
	outer.mustProblem(t, http.StatusForbidden)
	firstID, secondID := identity.DeviceID(pubKey(first)), identity.DeviceID(pubKey(second))
	if diff := cmp.Diff([]string{firstID}, h.accounts.removed); diff != "" {
		t.Errorf("removed broker accounts (-want +got):\n%s", diff)
	}
	var ids []string
	for _, d := range h.devices(t) {
		ids = append(ids, d.ID)
	}
	if diff := cmp.Diff([]string{secondID}, ids); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
}

// TestStoreRefusesWrites reopens the hub's state on a store that refuses
// writes (a full disk): reads keep working, writes answer 5xx and change
// nothing.
func TestStoreRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	h := openHarness(t, dir, store.Options{})
	enr := h.enroll(t, "pi")
	tok := h.joinToken(t, `{"uses":1}`)
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	h = openHarness(t, dir, store.Options{MinFreeBytes: math.MaxInt64})
	before := h.device(t, enr.DeviceID)

	tests := []struct {
		name       string
		method     string
		target     string
		body       any
		admin      bool
		wantStatus int
	}{
		{"rename", "PATCH", "/api/v1/devices/" + enr.DeviceID, `{"name":"new"}`, true, 500},
		{"delete", "DELETE", "/api/v1/devices/" + enr.DeviceID, nil, true, 500},
		{"create join token", "POST", "/api/v1/join-tokens", nil, true, 500},
		{"enrol", "POST", "/api/v1/enroll", enrolment(newKey(t), tok, "new"), false, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request{method: tt.method, target: tt.target, body: tt.body}
			if tt.admin {
				r.auth = "Bearer " + h.admin
			}
			h.send(t, r).mustProblem(t, tt.wantStatus)
		})
	}
	if diff := cmp.Diff([]Device{before}, h.devices(t)); diff != "" {
		t.Errorf("devices after refused writes (-want +got):\n%s", diff)
	}
	if len(h.disconnected) != 0 {
		t.Errorf("a failed delete disconnected %v", h.disconnected)
	}
	// The enrolment's broker account was created before the device write
	// failed, and removed again.
	var provisioned []string
	for id := range h.accounts.passwords {
		provisioned = append(provisioned, id)
	}
	if diff := cmp.Diff(provisioned, h.accounts.removed); diff != "" {
		t.Errorf("broker accounts left behind (-provisioned +removed):\n%s", diff)
	}

	// Once the disk has room again, the single-use token still works: the
	// failed enrolment did not burn it.
	if err := h.db.Close(); err != nil {
		t.Fatal(err)
	}
	h = openHarness(t, dir, store.Options{})
	h.enrollWith(t, enrolment(newKey(t), tok, "after")).mustStatus(t, http.StatusCreated)
}

// TestBearerSchemeIsCaseInsensitive: RFC 9110 makes the scheme name
// case-insensitive; the token itself is not.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	h := newHarness(t)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		if resp := h.send(t, request{method: "GET", target: "/api/v1/devices", auth: scheme + " " + h.admin}); resp.status != http.StatusOK {
			t.Errorf("scheme %q: status %d, want 200", scheme, resp.status)
		}
	}
	if resp := h.send(t, request{method: "GET", target: "/api/v1/devices", auth: "Bearer " + strings.ToUpper(h.admin)}); resp.status != http.StatusUnauthorized {
		t.Errorf("upper-cased token: status %d, want 401", resp.status)
	}
}

// TestNoReachableBroker: when no broker address is reachable from the
// agent's network, enrol and bootstrap say so (503) instead of handing out
// an address the agent cannot use, and enrolment uses nothing up.
func TestNoReachableBroker(t *testing.T) {
	h := newHarness(t)
	h.noBroker.Store(true)
	if detail := h.send(t, request{method: "GET", target: "/api/v1/bootstrap"}).mustProblem(t, http.StatusServiceUnavailable); !strings.Contains(detail, "--mqtt-addr") {
		t.Errorf("bootstrap detail %q does not say how to fix it", detail)
	}
	token := h.joinToken(t, "")
	key := newKey(t)
	if detail := h.enrollWith(t, enrolment(key, token, "remote")).mustProblem(t, http.StatusServiceUnavailable); !strings.Contains(detail, "not reachable") {
		t.Errorf("enrol detail %q does not say the broker is unreachable", detail)
	}
	if n := len(h.reg.List()); n != 0 {
		t.Errorf("%d devices enrolled, want none", n)
	}
	h.noBroker.Store(false)
	h.enrollWith(t, enrolment(key, token, "remote")).mustStatus(t, http.StatusCreated)
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000":   true,
		"[::1]:5000":       true,
		"127.8.9.1:1":      true,
		"198.18.0.11:5000": false,
		"[fd00::1]:5000":   false,
		"not an address":   false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestSecretsNeedTLSFromTheNetwork: the admin token and join tokens are
// refused over plain HTTP from another machine, and accepted over HTTPS or
// from this machine.
func TestSecretsNeedTLSFromTheNetwork(t *testing.T) {
	h := newHarness(t)
	const lan = "198.18.0.11:40000"
	devices := func(remote string, tls bool) response {
		return h.send(t, request{method: "GET", target: "/api/v1/devices", auth: "Bearer " + h.admin, remote: remote, tls: tls})
	}
	if detail := devices(lan, false).mustProblem(t, http.StatusForbidden); !strings.Contains(detail, "use HTTPS") {
		t.Errorf("plain admin request from the LAN: detail %q", detail)
	}
	devices(lan, true).mustStatus(t, http.StatusOK)
	devices("", false).mustStatus(t, http.StatusOK)

	token := h.joinToken(t, "")
	key := newKey(t)
	req := request{method: "POST", target: "/api/v1/enroll", body: enrolment(key, token, "lan"), remote: lan}
	if detail := h.send(t, req).mustProblem(t, http.StatusForbidden); !strings.Contains(detail, "use HTTPS") {
		t.Errorf("plain enrolment from the LAN: detail %q", detail)
	}
	req.tls = true
	h.send(t, req).mustStatus(t, http.StatusCreated)
}

// TestRevokeDevice: revoking stops the credentials, closes the live
// session, removes the broker account, keeps the device listed as revoked,
// and is idempotent; unknown and invalid IDs are refused.
func TestRevokeDevice(t *testing.T) {
	h := newHarness(t)
	enr := h.enroll(t, "garage")
	resp := h.adminDo(t, "POST", "/api/v1/devices/"+enr.DeviceID+"/revoke", nil)
	resp.mustStatus(t, http.StatusOK)
	if d := decode[Device](t, resp); d.Status != "revoked" || d.StatusReason != "revoked" {
		t.Errorf("revoked device = %+v", d)
	}
	if h.reg.Authenticate(enr.DeviceID, []byte(enr.MQTT.Password)) {
		t.Error("the revoked device's password still works")
	}
	h.mu.Lock()
	disconnected := slices.Clone(h.disconnected)
	h.mu.Unlock()
	if !slices.Equal(disconnected, []string{enr.DeviceID}) || !slices.Contains(h.accounts.removed, enr.DeviceID) {
		t.Errorf("disconnected %v, removed accounts %v; want the device in both", disconnected, h.accounts.removed)
	}
	h.adminDo(t, "POST", "/api/v1/devices/"+enr.DeviceID+"/revoke", nil).mustStatus(t, http.StatusOK)
	if d := h.device(t, enr.DeviceID); d.Status != "revoked" {
		t.Errorf("listed as %q, want revoked", d.Status)
	}
	h.adminDo(t, "POST", "/api/v1/devices/dnosuchdevice0000000/revoke", nil).mustProblem(t, http.StatusNotFound)
	h.adminDo(t, "POST", "/api/v1/devices/a+b/revoke", nil).mustProblem(t, http.StatusBadRequest)
	h.send(t, request{method: "POST", target: "/api/v1/devices/" + enr.DeviceID + "/revoke"}).mustProblem(t, http.StatusUnauthorized)
}
