package api

import (
	"cmp"
	"context"
	"crypto/ed25519"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/enrol"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/household"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/protocol"
)

//go:embed openapi.yaml
var openapiYAML []byte

// Each handler depends on the part of the registry it uses:
type (
	// deviceReader serves the device views and the lookups before an
	// action (metrics, approval, certificate renewal).
	deviceReader interface {
		List() []registry.Device
		Get(id string) (registry.Device, error)
	}
	// deviceEditor serves PATCH, DELETE and revoke.
	deviceEditor interface {
		Update(id string, p registry.Patch) (registry.Device, error)
		Delete(id string) error
		Revoke(id string) (registry.Device, error)
	}
	// pairingDecider serves approve and reject.
	pairingDecider interface {
		Approve(id string) (registry.Device, error)
		Reject(id string) (registry.Device, error)
	}
	// deviceAuthenticator checks a device's broker password (certificate
	// renewal).
	deviceAuthenticator interface {
		Authenticate(id string, secret []byte) bool
	}
)

// Devices is the device registry (hub/registry) as the root hands it
// over: the union of what the handlers use, each of which keeps only its
// part.
type Devices interface {
	deviceReader
	deviceEditor
	pairingDecider
	deviceAuthenticator
}

// Enrolment gives agents their credentials (hub/enrol): enrolment with a
// join token and pairing. Its errors are *enrol.Error.
type Enrolment interface {
	Enrol(ctx context.Context, req enrol.Request) (enrol.Credentials, error)
	Pair(ctx context.Context, req enrol.PairRequest) (enrol.Paired, error)
}

// PairingWindow is the hub's pairing window (see hub/pairing).
type PairingWindow interface {
	Open(d time.Duration) (time.Time, error)
	Close()
	ClosesAt() (time.Time, bool)
}

// Tokens checks the admin token and creates join tokens (enrolment checks
// and uses them up).
type Tokens interface {
	CheckAdmin(token string) bool
	CreateJoin(uses int, ttl time.Duration) (string, tokens.Join, error)
}

// Accounts removes the broker accounts of revoked and deleted devices.
// With the embedded broker the registry itself is the account store and
// Accounts is a no-op; with an external broker it removes accounts there
// (hub/enrol creates them).
type Accounts interface {
	Remove(ctx context.Context, deviceID string) error
}

// Config wires the API to the rest of the hub.
type Config struct {
	HubID   string
	Devices Devices
	Tokens  Tokens
	// Enrolment serves POST /api/v1/enroll and POST /api/v1/pair.
	Enrolment Enrolment
	// Accounts removes the broker accounts of revoked and deleted
	// devices; nil: none to remove.
	Accounts Accounts
	// BrokerURLs returns the broker URLs an agent should use, given the
	// request it made (agents reach the broker on the host they reached
	// the API on). An empty answer means no broker is reachable from where
	// the request came from; enrol and bootstrap then answer 503.
	BrokerURLs func(r *http.Request) []string
	// CAFingerprint is the SHA-256 of the hub CA's public key (hex), told to
	// agents so that they can pin it; empty if the hub has no CA.
	CAFingerprint string
	// IssueCertificate, if set, issues the device's client certificate
	// (DER) for its public key, at renewal (enrolment has its own).
	IssueCertificate func(deviceID string, pub ed25519.PublicKey) ([]byte, error)
	// Discovered lists the household services seen on the LAN; nil when
	// LAN discovery is off.
	Discovered func() []household.Service
	// Disconnect closes the live broker session of a deleted device.
	Disconnect func(deviceID string)
	// Prometheus, if set, serves GET /metrics: open to this machine, and
	// with the admin token over HTTPS to others.
	Prometheus http.Handler
	// Health is the health monitor; nil means no alerts and every device's
	// health is its status.
	Health Health
	// Events is the hub's event stream; nil means a private one nobody
	// else publishes to.
	Events *events.Bus
	// Stopping, once closed, ends every open event stream, so that the
	// HTTP server's Shutdown does not wait for clients that never hang up
	// (close it from http.Server.RegisterOnShutdown). Nil: streams end
	// only when their client goes.
	Stopping <-chan struct{}
	// Metrics is the device time-series store; nil means an empty one.
	Metrics Metrics
	// Now is the hub's clock; default time.Now.
	Now func() time.Time
	// Integrations manages integrations' broker accounts; nil leaves the
	// integration endpoints out.
	Integrations Integrations
	// IntegrationMetrics stores the metrics integrations push over REST;
	// nil (or no Integrations) leaves POST
	// /api/v1/integrations/{name}/metrics out.
	IntegrationMetrics IntegrationMetrics
	// CAPEM is the hub CA's certificate in PEM, given to integrations.
	CAPEM []byte
	// Commands sends remote commands and keeps their audit log; nil
	// leaves the command endpoints out.
	Commands Commands
	// Configs is the configuration manager (hub/spec); nil leaves the
	// configuration endpoints out.
	Configs Configs
	// ConfigSync, if set, sends the devices their configs: it is told of
	// every write, and the device views show desired against applied.
	ConfigSync ConfigSync
	// Rollouts, if set with Configs, runs writes with a rollout strategy
	// and serves /api/v1/rollouts; writes of a kind being rolled out are
	// refused (409).
	Rollouts Rollouts
	// Jobs, if set, is the scheduler: /api/v1/jobs.
	Jobs Jobs
	// Pairing is the pairing window; nil means a window that never opens
	// (pairing without a join token is then refused).
	Pairing PairingWindow
	// Backup writes a backup of the whole hub and returns its length
	// (hub/backup.Write); nil leaves GET /api/v1/backup out.
	Backup func(w io.Writer) (int64, error)
	Logger *slog.Logger
}

type server struct {
	// cfg is the configuration without Devices and Health: the handlers
	// use the parts of them below.
	cfg Config
	log *slog.Logger

	devices   deviceReader
	edits     deviceEditor
	decisions pairingDecider
	devAuth   deviceAuthenticator
	enrolment Enrolment

	rules    ruleBook     // nil without Health
	alerts   alertLog     // nil without Health
	healthOf deviceHealth // nil without Health
}

// New returns the hub's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Devices == nil || cfg.Tokens == nil || cfg.Enrolment == nil || cfg.BrokerURLs == nil {
		return nil, errors.New("api: Devices, Tokens, Enrolment and BrokerURLs are required")
	}
	if cfg.Accounts == nil {
		cfg.Accounts = noAccounts{}
	}
	if cfg.Disconnect == nil {
		cfg.Disconnect = func(string) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.Events == nil {
		cfg.Events = events.New(0, cfg.Now)
	}
	if cfg.Pairing == nil {
		cfg.Pairing = noPairing{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{cfg: cfg, log: cfg.Logger, devices: cfg.Devices, edits: cfg.Devices, decisions: cfg.Devices, devAuth: cfg.Devices, enrolment: cfg.Enrolment}
	if cfg.Health != nil {
		s.rules, s.alerts, s.healthOf = cfg.Health, cfg.Health, cfg.Health
	}
	s.cfg.Devices, s.cfg.Health = nil, nil
	return router{s.routes()}, nil
}

// routes registers every route; the package doc lists them (doc_test.go
// checks).
func (s *server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	if s.cfg.Prometheus != nil {
		mux.Handle("GET /metrics", s.scrape(s.cfg.Prometheus))
	}
	mux.HandleFunc("GET /api/v1/openapi.yaml", s.openapi)
	mux.HandleFunc("GET /api/v1/bootstrap", s.bootstrap)
	mux.HandleFunc("POST /api/v1/enroll", s.enroll)
	mux.HandleFunc("POST /api/v1/pair", s.pair)
	mux.HandleFunc("POST /api/v1/device/certificate", s.renewCertificate)
	mux.Handle("GET /api/v1/pairing", s.admin(s.getPairing))
	mux.Handle("POST /api/v1/pairing", s.admin(s.openPairing))
	mux.Handle("DELETE /api/v1/pairing", s.admin(s.closePairing))
	mux.Handle("POST /api/v1/devices/{id}/approve", s.admin(s.approveDevice))
	mux.Handle("POST /api/v1/devices/{id}/reject", s.admin(s.rejectDevice))
	mux.Handle("GET /api/v1/devices/{id}/metrics", s.admin(s.deviceMetrics))
	mux.Handle("GET /api/v1/devices/{id}/metrics/latest", s.admin(s.latestMetrics))
	mux.Handle("GET /api/v1/metrics/query", s.admin(s.queryMetrics))
	mux.Handle("GET /api/v1/devices", s.admin(s.listDevices))
	mux.Handle("GET /api/v1/devices/{id}", s.admin(s.getDevice))
	mux.Handle("PATCH /api/v1/devices/{id}", s.admin(s.patchDevice))
	mux.Handle("DELETE /api/v1/devices/{id}", s.admin(s.deleteDevice))
	mux.Handle("POST /api/v1/devices/{id}/revoke", s.admin(s.revokeDevice))
	mux.Handle("POST /api/v1/join-tokens", s.admin(s.createJoinToken))
	mux.Handle("GET /api/v1/discovered", s.admin(s.discovered))
	mux.Handle("GET /api/v1/events", s.admin(s.streamEvents))
	if s.rules != nil {
		mux.Handle("GET /api/v1/alerts", s.admin(s.listAlerts))
		mux.Handle("GET /api/v1/alerts/rules", s.admin(s.listRules))
		mux.Handle("GET /api/v1/alerts/rules/{id}", s.admin(s.getRule))
		mux.Handle("PUT /api/v1/alerts/rules/{id}", s.admin(s.putRule))
		mux.Handle("DELETE /api/v1/alerts/rules/{id}", s.admin(s.deleteRule))
	}
	if s.cfg.Integrations != nil {
		mux.Handle("POST /api/v1/integrations", s.admin(s.createIntegration))
		mux.Handle("GET /api/v1/integrations", s.admin(s.listIntegrations))
		mux.Handle("DELETE /api/v1/integrations/{name}", s.admin(s.deleteIntegration))
		mux.Handle("GET /api/v1/integrations/{name}/metrics", s.admin(s.integrationMetrics))
		if s.cfg.IntegrationMetrics != nil {
			mux.HandleFunc("POST /api/v1/integrations/{name}/metrics", s.pushMetrics)
		}
	}
	if s.cfg.Configs != nil {
		mux.Handle("GET /api/v1/config", s.admin(s.listKinds))
		mux.Handle("GET /api/v1/config/{kind}", s.admin(s.listConfigs))
		mux.Handle("GET /api/v1/config/{kind}/{scope}", s.admin(s.getConfig))
		mux.Handle("PUT /api/v1/config/{kind}/{scope}", s.admin(s.putConfig))
		mux.Handle("GET /api/v1/config/{kind}/{scope}/versions", s.admin(s.configHistory))
		mux.Handle("GET /api/v1/config/{kind}/{scope}/versions/{n}", s.admin(s.configVersion))
		mux.Handle("GET /api/v1/config/{kind}/{scope}/diff", s.admin(s.configDiff))
		mux.Handle("POST /api/v1/config/{kind}/{scope}/rollback", s.admin(s.rollbackConfig))
		mux.Handle("GET /api/v1/devices/{id}/config/{kind}", s.admin(s.effectiveConfig))
		mux.Handle("GET /api/v1/config-export", s.admin(s.exportConfig))
		mux.Handle("POST /api/v1/config-import", s.admin(s.importConfig))
	}
	if s.cfg.Configs != nil && s.cfg.Rollouts != nil {
		mux.Handle("GET /api/v1/rollouts", s.admin(s.listRollouts))
		mux.Handle("GET /api/v1/rollouts/{id}", s.admin(s.getRollout))
		mux.Handle("POST /api/v1/rollouts/{id}/pause", s.admin(s.rolloutAction(s.cfg.Rollouts.Pause, "paused")))
		mux.Handle("POST /api/v1/rollouts/{id}/resume", s.admin(s.rolloutAction(s.cfg.Rollouts.Resume, "resumed")))
		mux.Handle("POST /api/v1/rollouts/{id}/cancel", s.admin(s.rolloutAction(s.cfg.Rollouts.Cancel, "cancelled")))
	}
	if s.cfg.Jobs != nil {
		mux.Handle("GET /api/v1/jobs", s.admin(s.listJobs))
		mux.Handle("POST /api/v1/jobs", s.admin(s.createJob))
		mux.Handle("POST /api/v1/jobs/preview", s.admin(s.previewTrigger))
		mux.Handle("GET /api/v1/jobs/{id}", s.admin(s.getJob))
		mux.Handle("PUT /api/v1/jobs/{id}", s.admin(s.putJob))
		mux.Handle("DELETE /api/v1/jobs/{id}", s.admin(s.deleteJob))
		mux.Handle("GET /api/v1/jobs/{id}/versions", s.admin(s.jobVersions))
		mux.Handle("GET /api/v1/jobs/{id}/runs", s.admin(s.jobRuns))
		mux.Handle("GET /api/v1/jobs/{id}/next", s.admin(s.jobNext))
		mux.Handle("POST /api/v1/jobs/{id}/pause", s.admin(s.jobAction(s.cfg.Jobs.Pause)))
		mux.Handle("POST /api/v1/jobs/{id}/resume", s.admin(s.jobAction(s.cfg.Jobs.Resume)))
		mux.Handle("POST /api/v1/jobs/{id}/run", s.admin(s.runJob))
	}
	if s.cfg.Commands != nil {
		mux.Handle("POST /api/v1/devices/{id}/commands", s.admin(s.postCommand))
		mux.Handle("GET /api/v1/devices/{id}/commands/{cid}", s.admin(s.getCommand))
		mux.Handle("GET /api/v1/audit", s.admin(s.listAudit))
	}
	if s.cfg.Backup != nil {
		mux.Handle("GET /api/v1/backup", s.admin(s.backup))
	}
	return mux
}

// router answers what its mux routes, and a problem where the mux would
// answer 404 or 405 in plain text. (A catch-all pattern would not do: the
// mux answers 405 only when no pattern, whatever its method, matches.)
type router struct{ mux *http.ServeMux }

func (rt router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := rt.mux.Handler(r)
	if pattern != "" {
		rt.mux.ServeHTTP(w, r) // sets r.Pattern and the path values
		return
	}
	// The mux's own 404 or 405 handler: keep its status and Allow header,
	// not its text/plain body.
	var rec statusRecorder
	h.ServeHTTP(&rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeProblem(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		return
	}
	writeProblem(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s (GET /api/v1/openapi.yaml lists the routes)", r.Method, r.URL.Path))
}

// statusRecorder keeps the status and header a handler writes, not its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header {
	if s.header == nil {
		s.header = http.Header{}
	}
	return s.header
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}

type noMetrics struct{}

func (noMetrics) Range(metrics.Query) ([]metrics.Series, error) { return []metrics.Series{}, nil }
func (noMetrics) Latest(string) []metrics.Sample                { return []metrics.Sample{} }
func (noMetrics) DeleteDevice(string) error                     { return nil }
func (noMetrics) Aggregate(q metrics.AggregateQuery) (metrics.Aggregation, error) {
	return metrics.Aggregation{Step: cmp.Or(q.Step, metrics.DefaultStep(q.From, q.To)), Groups: []metrics.Group{}}, nil
}

type noAccounts struct{}

func (noAccounts) Remove(context.Context, string) error { return nil }

// admin wraps h so that it requires the admin bearer token.
func (s *server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !secure(r) {
			writeProblem(w, http.StatusForbidden, insecureDetail)
			return
		}
		// The scheme name is case-insensitive (RFC 9110, section 11.1).
		scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !strings.EqualFold(scheme, "Bearer") || !s.cfg.Tokens.CheckAdmin(strings.TrimSpace(tok)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="alicia"`)
			writeProblem(w, http.StatusUnauthorized, "missing or invalid bearer token: send Authorization: Bearer <token from the hub's admin.token>")
			return
		}
		h(w, r)
	})
}

// scrape guards the Prometheus exposition: device data is not for anyone
// on the LAN. A scraper on the hub's own machine needs nothing; others send
// the admin token over HTTPS.
func (s *server) scrape(h http.Handler) http.Handler {
	guarded := s.admin(h.ServeHTTP)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsLoopback(r.RemoteAddr) {
			h.ServeHTTP(w, r)
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *server) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openapiYAML)
}

// Bootstrap is what an agent learns from the hub before and after enrolment.
type Bootstrap struct {
	HubID           string   `json:"hub_id"`
	ProtocolVersion int      `json:"protocol_version"`
	MQTTURLs        []string `json:"mqtt_urls"`
	// Time is the hub's clock, for devices without a real-time clock to
	// judge their certificate's age by.
	Time time.Time `json:"time"`
	// CAFingerprint is the hex SHA-256 of the hub CA's public key: the
	// hub's HTTPS and MQTT-over-TLS certificates chain to that CA.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
}

// noBrokerDetail explains an empty BrokerURLs answer.
const noBrokerDetail = "the hub's broker is not reachable from your network: its MQTT listener is loopback-only or off (start the hub with --mqtt-addr HOST:PORT on an address devices can reach, or --advertise-mqtt)"

func (s *server) bootstrap(w http.ResponseWriter, r *http.Request) {
	urls := s.cfg.BrokerURLs(r)
	if len(urls) == 0 {
		writeProblem(w, http.StatusServiceUnavailable, noBrokerDetail)
		return
	}
	writeJSON(w, http.StatusOK, Bootstrap{HubID: s.cfg.HubID, ProtocolVersion: protocol.Version, MQTTURLs: urls, CAFingerprint: s.cfg.CAFingerprint,
		Time: s.cfg.Now().UTC()})
}

// EnrollRequest is the body of POST /api/v1/enroll.
type EnrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"` // base64 (standard) of the Ed25519 public key
	Name      string `json:"name"`
	Signature string `json:"signature"` // base64 of identity.SignEnrolment(key, token)
}

// EnrollResponse answers a successful enrolment.
type EnrollResponse struct {
	DeviceID string     `json:"device_id"`
	HubID    string     `json:"hub_id"`
	MQTT     MQTTAccess `json:"mqtt"`
}

// MQTTAccess is a device's broker account.
type MQTTAccess struct {
	URLs     []string `json:"urls"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	// Certificate is the device's client certificate (PEM) for its own key,
	// from the hub CA; devices present it on MQTT over TLS.
	Certificate string `json:"certificate,omitempty"`
}

func (s *server) enroll(w http.ResponseWriter, r *http.Request) {
	if !secure(r) {
		writeProblem(w, http.StatusForbidden, insecureDetail)
		return
	}
	var req EnrollRequest
	if !decodeBody(w, r, &req) {
		return
	}
	creds, err := s.enrolment.Enrol(r.Context(), enrol.Request{Token: req.Token, PublicKey: req.PublicKey, Name: req.Name, Signature: req.Signature,
		BrokerURLs: s.cfg.BrokerURLs(r), Remote: r.RemoteAddr})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.enrollResponse(creds))
}

// enrollResponse hands a device its credentials.
func (s *server) enrollResponse(c enrol.Credentials) EnrollResponse {
	return EnrollResponse{DeviceID: c.DeviceID, HubID: s.cfg.HubID,
		MQTT: MQTTAccess{URLs: c.BrokerURLs, Username: c.DeviceID, Password: c.Password, Certificate: c.CertificatePEM}}
}

// JoinTokenRequest is the (optional) body of POST /api/v1/join-tokens.
type JoinTokenRequest struct {
	Uses int    `json:"uses,omitempty"` // default 1
	TTL  string `json:"ttl,omitempty"`  // Go duration, default "24h"
}

// JoinTokenResponse returns a new join token; its clear text is shown only here.
type JoinTokenResponse struct {
	Token     string    `json:"token"`
	Uses      int       `json:"uses"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *server) createJoinToken(w http.ResponseWriter, r *http.Request) {
	req := JoinTokenRequest{Uses: 1, TTL: "24h"}
	if !decodeOptionalBody(w, r, &req) {
		return
	}
	// The defaults are set above; an explicit 0 or "" is refused, as the
	// document's schema says.
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("ttl: %v (use a duration such as \"30m\" or \"24h\")", err))
		return
	}
	// The limits are checked here so that an error from CreateJoin is the
	// store's, not the caller's.
	if req.Uses < 1 || req.Uses > tokens.MaxJoinUses {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("uses: %d out of range [1, %d]", req.Uses, tokens.MaxJoinUses))
		return
	}
	if ttl <= 0 || ttl > tokens.MaxJoinTTL {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("ttl: %s out of range (0, %s]", ttl, tokens.MaxJoinTTL))
		return
	}
	tok, j, err := s.cfg.Tokens.CreateJoin(req.Uses, ttl)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("save the join token: %w", err))
		return
	}
	writeJSON(w, http.StatusCreated, JoinTokenResponse{Token: identity.FormatJoinToken(tok, s.cfg.CAFingerprint), Uses: j.UsesLeft, ExpiresAt: j.ExpiresAt})
}

// Device is the API view of a registry device (without credentials).
type Device struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	// Health is online, degraded (online with a firing alert), offline or
	// unknown.
	Health string `json:"health"`
	// State is the lifecycle state: pending, accepted, rejected or revoked.
	State        string `json:"state"`
	StatusReason string `json:"status_reason"`
	// PairingCode, for a pending device, is the code it shows; type it to
	// approve the device.
	PairingCode  string            `json:"pairing_code,omitempty"`
	StatusSince  time.Time         `json:"status_since"`
	Labels       map[string]string `json:"labels"`
	AgentVersion string            `json:"agent_version,omitempty"`
	HeartbeatMS  int64             `json:"heartbeat_ms,omitempty"`
	Facts        *protocol.Facts   `json:"facts,omitempty"`
	// Hardware is what the device's HAL offers to commands.
	Hardware *protocol.Hardware `json:"hardware,omitempty"`
	// Config is the device's configuration of each kind: desired against
	// applied (hub/confsync).
	Config     map[string]confsync.KindState `json:"config,omitempty"`
	PublicKey  string                        `json:"public_key"`
	EnrolledAt *time.Time                    `json:"enrolled_at,omitempty"` // unset while pending or rejected
	FirstSeen  *time.Time                    `json:"first_seen,omitempty"`
	LastSeen   *time.Time                    `json:"last_seen,omitempty"`
}

func (s *server) deviceView(d registry.Device) Device {
	v := Device{ID: d.ID, Name: d.Name, Status: string(d.Status), State: d.Status.State(), StatusReason: d.StatusReason, StatusSince: d.StatusSince,
		Labels: d.Labels, AgentVersion: d.AgentVersion, HeartbeatMS: d.HeartbeatMS, Facts: d.Facts, Hardware: d.Hardware,
		PublicKey: base64.StdEncoding.EncodeToString(d.PublicKey)}
	if s.cfg.ConfigSync != nil {
		if st := s.cfg.ConfigSync.State(d.ID); len(st) > 0 {
			v.Config = st
		}
	}
	if !d.EnrolledAt.IsZero() {
		v.EnrolledAt = &d.EnrolledAt
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if d.Status == registry.StatusPending {
		v.PairingCode = identity.PairingCode(s.cfg.CAFingerprint, d.PublicKey)
	}
	switch {
	case s.healthOf != nil:
		v.Health = s.healthOf.DeviceState(d)
	case d.Status.Accepted():
		v.Health = string(d.Status)
	default:
		v.Health = "unknown"
	}
	if !d.FirstSeen.IsZero() {
		v.FirstSeen = &d.FirstSeen
	}
	if !d.LastSeen.IsZero() {
		v.LastSeen = &d.LastSeen
	}
	return v
}

func (s *server) listDevices(w http.ResponseWriter, _ *http.Request) {
	ds := s.devices.List()
	out := make([]Device, len(ds))
	for i, d := range ds {
		out[i] = s.deviceView(d)
	}
	writeJSON(w, http.StatusOK, out)
}

// deviceID validates the {id} path value and answers 400 for a bad one.
func deviceID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := protocol.ValidateID(id); err != nil {
		writeProblem(w, http.StatusBadRequest, "device id: "+err.Error())
		return "", false
	}
	return id, true
}

func (s *server) getDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	d, err := s.devices.Get(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

// DevicePatch is the body of PATCH /api/v1/devices/{id} (JSON merge patch:
// a label set to null is removed).
type DevicePatch struct {
	Name   *string            `json:"name,omitempty"`
	Labels map[string]*string `json:"labels,omitempty"`
}

func (s *server) patchDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	var req DevicePatch
	if !decodeBody(w, r, &req) {
		return
	}
	p := registry.Patch{Name: req.Name}
	if req.Labels != nil {
		p.Labels = map[string]string{}
		for k, v := range req.Labels {
			if v == nil {
				p.Labels[k] = ""
			} else if *v == "" {
				writeProblem(w, http.StatusBadRequest, fmt.Sprintf("label %q: empty value (use null to remove a label)", k))
				return
			} else {
				p.Labels[k] = *v
			}
		}
	}
	d, err := s.edits.Update(id, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.configChanged() // a name or label may change what the device's config is
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

// discovered lists the other services seen on the LAN.
func (s *server) discovered(w http.ResponseWriter, _ *http.Request) {
	list := []household.Service{}
	if s.cfg.Discovered != nil {
		list = s.cfg.Discovered()
	}
	for i := range list {
		if list[i].Addrs == nil {
			list[i].Addrs = []string{}
		}
		if list[i].TXT == nil {
			list[i].TXT = map[string]string{}
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// revokeDevice makes the device's credentials stop working, closes its live
// session and removes its external broker account; the device stays listed
// as revoked until it is deleted.
func (s *server) revokeDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	d, err := s.edits.Revoke(id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Disconnect(id)
	if err := s.cfg.Accounts.Remove(r.Context(), id); err != nil {
		s.log.Error("remove broker account of a revoked device", "device", id, "err", err)
		writeProblem(w, http.StatusBadGateway, "the device is revoked at the hub, but its account on the external broker could not be removed: "+err.Error()+" (retry the revoke)")
		return
	}
	s.log.Info("device revoked", "device", id)
	writeJSON(w, http.StatusOK, s.deviceView(d))
}

func (s *server) deleteDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := deviceID(w, r)
	if !ok {
		return
	}
	if err := s.edits.Delete(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.cfg.Disconnect(id)
	s.cfg.Events.Publish(events.DeviceLeft, id, nil)
	if err := s.cfg.Metrics.DeleteDevice(id); err != nil {
		s.log.Error("forget the metrics of a deleted device", "device", id, "err", err)
	}
	if err := s.cfg.Accounts.Remove(r.Context(), id); err != nil {
		// The device is gone from the registry; a leftover broker account
		// is logged for the operator rather than failing the delete.
		s.log.Error("remove broker account", "device", id, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// IsLoopback reports whether a request's remote address is on this machine.
func IsLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secure reports whether a secret (the admin token, a join token) may
// travel on this request: over TLS, or from this machine.
func secure(r *http.Request) bool { return r.TLS != nil || IsLoopback(r.RemoteAddr) }

// insecureDetail explains the refusal of a secret over plain HTTP.
const insecureDetail = "use HTTPS: secrets must not cross the network in clear (the hub's CA is in <data-dir>/pki/ca.crt, e.g. curl --cacert ca.crt --resolve hub.alicia.invalid:8470:HUB-IP https://hub.alicia.invalid:8470/...)"

// HostOf returns the host part of the request's Host header, for building
// broker URLs on the same host the agent reached the API on.
func HostOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		// No port: strip the brackets of an IPv6 literal, which
		// net.JoinHostPort would otherwise double.
		return strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]")
	}
	return host
}
