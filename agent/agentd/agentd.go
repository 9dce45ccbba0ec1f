package agentd

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/alicia-home/alicia/agent/facts"
	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/agent/telemetry"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/discovery"
	"github.com/alicia-home/alicia/internal/identity"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Config configures an Agent. Zero values of optional fields take the
// documented defaults.
type Config struct {
	// StateDir holds the identity key and credentials. Required; created
	// with mode 0700 if missing.
	StateDir string
	// Hub is the hub's API address, HOST[:PORT] (default port 8470). Needed
	// for the first enrolment; afterwards the address saved at enrolment is
	// used when Hub is empty.
	Hub string
	// JoinToken enrols the agent on first start. Ignored once enrolled.
	JoinToken string
	// Pair, without a JoinToken, asks the hub to pair on first start: the
	// agent trusts the hub it finds (Hub, or the only one on the LAN), logs
	// a pairing code and waits until an administrator approves it with that
	// code during the hub's pairing window. Ignored once enrolled.
	Pair bool
	// PairPoll is how often a pending agent asks whether it was approved.
	// Default 2s.
	PairPoll time.Duration
	// Name is the device's display name; default the hostname.
	Name string
	// HeartbeatInterval is how often a heartbeat is sent. Default 10s.
	HeartbeatInterval time.Duration
	// KeepAlive is the MQTT keep-alive; a dead link is noticed by the
	// broker within 1.5 times this. Default 30s.
	KeepAlive time.Duration
	// SampleInterval is how often metrics are collected. Default 10s.
	SampleInterval time.Duration
	// Collectors names the metric collectors to run (agent/sample); nil
	// runs them all.
	Collectors []string
	// SampleFilters say which network interfaces and filesystems the
	// collectors leave out; the zero value applies agent/sample's defaults.
	SampleFilters sample.Filters
	// OutboxMaxBytes and OutboxMaxAge bound the outbox of unacknowledged
	// samples (zero: the outbox package's defaults, 64 MiB and 72 h, at
	// least 24 h of samples at the default interval).
	OutboxMaxBytes int64
	OutboxMaxAge   time.Duration
	// RenewCheck is how often the agent checks whether its certificate is
	// due for renewal. Default 6h.
	RenewCheck time.Duration
	// RediscoverAfter is how long the broker may be unreachable before the
	// agent looks for the hub on the LAN at a new address (without Hub and
	// NoMDNS only). Default 15s.
	RediscoverAfter time.Duration
	// NoMDNS forbids looking for the hub on the LAN: without Hub (or a
	// saved address) the agent then fails with a clear error.
	NoMDNS bool
	// BrokerURL, if set, replaces the broker URL the hub gives the agent
	// (for networks where the hub cannot know how devices reach it, and for
	// tests that put a fault-injecting proxy in between).
	BrokerURL string
	// Facts gathers hardware facts; default facts.Source{}.Gather.
	Facts func() (protocol.Facts, error)
	// Hardware is the device's HAL (agent/hardware), registered with the
	// hub, commanded by it and sampled into telemetry; nil runs without.
	Hardware Hardware
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 30 * time.Second
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 10 * time.Second
	}
	if c.RenewCheck <= 0 {
		c.RenewCheck = 6 * time.Hour
	}
	if c.PairPoll <= 0 {
		c.PairPoll = 2 * time.Second
	}
	if c.RediscoverAfter <= 0 {
		c.RediscoverAfter = 15 * time.Second
	}
	if c.Facts == nil {
		c.Facts = facts.Source{}.Gather
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	if c.StateDir == "" {
		return errors.New("state dir: required (--state-dir)")
	}
	if c.Hub != "" {
		if _, err := hubURL(c.Hub); err != nil {
			return err
		}
	}
	if c.HeartbeatInterval < 100*time.Millisecond || c.HeartbeatInterval > time.Hour {
		return fmt.Errorf("heartbeat interval %s: want 100ms to 1h", c.HeartbeatInterval)
	}
	if c.SampleInterval < 100*time.Millisecond || c.SampleInterval > 24*time.Hour {
		return fmt.Errorf("sample interval %s: want 100ms to 24h", c.SampleInterval)
	}
	if err := (&sample.Config{Enabled: c.Collectors}).Validate(); err != nil {
		return fmt.Errorf("collectors: %w", err)
	}
	if c.KeepAlive < time.Second {
		return fmt.Errorf("keep-alive %s: want at least 1s", c.KeepAlive)
	}
	return nil
}

// Hardware is the device's hardware as the agent uses it
// (agent/hardware.Runtime).
type Hardware interface {
	// Hardware is what the agent registers.
	Hardware() *protocol.Hardware
	// Execute runs a command from the hub and returns its result.
	Execute(ctx context.Context, c *protocol.Command) protocol.CommandResult
	// Sample reads the declared sensors and lines.
	Sample(ctx context.Context) []protocol.Point
	// WatchInputs reports input changes until ctx is done.
	WatchInputs(ctx context.Context, emit func(protocol.DeviceEvent))
}

// ErrRestart is returned by Run when the hub asked the agent to restart
// (agent.restart): the agent has stopped cleanly, and its service manager
// starts it again (the unit restarts on failure, and this exit is one).
var ErrRestart = errors.New("agent: restart requested by the hub")

// ErrNotEnrolled is returned by Run when the agent has no credentials and
// no way to get them (neither a join token nor --pair): starting it again
// as it is cannot help.
var ErrNotEnrolled = errors.New("agent: not enrolled")

// maxCommands bounds the commands executed at once.
const maxCommands = 8

// Agent is one running agent.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // guards deviceID
	deviceID string

	// credsMu guards the credentials of the running session while the
	// certificate renewal changes them.
	credsMu sync.Mutex
	// hubOffset is the hub's clock minus ours, in nanoseconds, from the
	// last bootstrap answer.
	hubOffset atomic.Int64
	// restart ends Run with ErrRestart; set by Run.
	restart func()
}

// New validates cfg and returns an Agent. It does no I/O.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	return &Agent{cfg: cfg, log: cfg.Logger}, nil
}

// DeviceID returns the device ID once Run has loaded the identity, else "".
func (a *Agent) DeviceID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.deviceID
}

// Run enrols if needed, then keeps the device connected and visible until
// ctx is done; then it publishes "offline" and disconnects cleanly.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("agent: state dir: %w", err)
	}
	key, created, err := identity.LoadOrCreate(filepath.Join(cfg.StateDir, "identity.key"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	id := identity.DeviceID(key.Public().(ed25519.PublicKey))
	a.mu.Lock()
	a.deviceID = id
	a.mu.Unlock()
	if created {
		a.log.Info("created the device identity", "device", id)
	}

	f, err := cfg.Facts()
	if err != nil {
		a.log.Warn("some hardware facts are unavailable", "err", err)
	}
	name := cfg.Name
	if name == "" {
		name = f.Hostname
	}

	// Check the registration before enrolling: a device that enrolled but
	// could never register would waste its join token.
	reg := &protocol.Register{Name: name, AgentVersion: buildinfo.Version, HeartbeatMS: cfg.HeartbeatInterval.Milliseconds(), Facts: f}
	if cfg.Hardware != nil {
		reg.Hardware = cfg.Hardware.Hardware()
	}
	if err := reg.Validate(); err != nil {
		return fmt.Errorf("agent: registration: %w", err)
	}

	creds, err := a.credentials(ctx, key, id, name)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped while waiting for the hub: a clean stop, not a failure.
			a.log.Info("stopped before enrolment finished")
			return nil
		}
		return err
	}
	// Samples are collected into the outbox from now on, whether or not
	// the hub is reachable; each session sends them.
	ob, tel, err := a.openTelemetry()
	if err != nil {
		return err
	}
	defer ob.Close()
	collectCtx, stopCollecting := context.WithCancel(ctx)
	collected := make(chan struct{})
	go func() { defer close(collected); tel.Collect(collectCtx) }()
	defer func() { stopCollecting(); <-collected }()

	// A restart the hub asks for stops the sessions cleanly (goodbye
	// included) before Run returns ErrRestart.
	ctx, restart := context.WithCancelCause(ctx)
	defer restart(nil)
	a.restart = func() { restart(ErrRestart) }
	for {
		moved, err := a.session(ctx, key, id, reg, creds, tel)
		if errors.Is(context.Cause(ctx), ErrRestart) {
			a.log.Info("restarting at the hub's request")
			return ErrRestart
		}
		if err != nil || moved == nil {
			return err
		}
		creds = moved
	}
}

// openTelemetry opens the outbox in the state directory and the sampler,
// and returns the telemetry that fills and drains the outbox.
func (a *Agent) openTelemetry() (*outbox.Outbox, *telemetry.Telemetry, error) {
	cfg := a.cfg
	ob, err := telemetry.OpenOutbox(outbox.Options{Path: filepath.Join(cfg.StateDir, "outbox.db"), MaxBytes: cfg.OutboxMaxBytes, MaxAge: cfg.OutboxMaxAge, Logger: a.log.With("component", "outbox")})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: outbox: %w", err)
	}
	s, err := sample.New(sample.Config{Enabled: cfg.Collectors, Filters: cfg.SampleFilters, Timeout: min(cfg.SampleInterval, sample.DefaultTimeout), Logger: a.log.With("component", "sample")})
	if err != nil {
		ob.Close()
		return nil, nil, fmt.Errorf("agent: collectors: %w", err)
	}
	tc := telemetry.Config{Every: cfg.SampleInterval, Logger: a.log.With("component", "telemetry")}
	if cfg.Hardware != nil {
		tc.Extra = cfg.Hardware.Sample
	}
	tel, err := telemetry.New(tc, ob, s)
	if err != nil {
		ob.Close()
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	return ob, tel, nil
}

// errMoved ends a session when the hub was found at a new address.
var errMoved = errors.New("the hub moved")

// session connects to the broker with creds and keeps the device visible
// until ctx is done (nil, nil) or the hub is found at a new address while
// the broker was unreachable (the updated credentials, nil).
func (a *Agent) session(ctx context.Context, key ed25519.PrivateKey, id string, reg *protocol.Register, creds *credentials, tel *telemetry.Telemetry) (*credentials, error) {
	cfg := a.cfg
	brokerURL, err := pickBroker(creds.MQTTURLs, cfg.BrokerURL)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	brokerURL = zoneLike(brokerURL, creds.Hub)
	// The client certificate is read at each handshake, so a renewed one
	// is used from the next connection on.
	var cert atomic.Pointer[tls.Certificate]
	if creds.Certificate != "" {
		c, err := clientCertificate(creds.Certificate, key)
		if err != nil {
			return nil, fmt.Errorf("agent: credentials: %w (delete them and enrol again)", err)
		}
		cert.Store(&c)
	}
	var brokerTLS *tls.Config
	if u, _ := url.Parse(brokerURL); u != nil && u.Scheme != "mqtt" && u.Scheme != "tcp" {
		if cert.Load() == nil {
			a.log.Warn("no client certificate saved: the hub's broker refuses devices without one over TLS; enrol again")
		}
		brokerTLS = pki.PinnedClientConfig(creds.CAFingerprint, nil)
		brokerTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert.Load(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none: the broker decides
		}
	}
	a.log.Info("agent identity", "device", id, "hub_id", creds.HubID, "mqtt", brokerURL)

	// session names the current connection in its Will and its "online".
	var (
		sessionMu sync.Mutex
		session   string
	)
	currentSession := func() string {
		sessionMu.Lock()
		defer sessionMu.Unlock()
		return session
	}
	statusMsg := func(state, reason, session string) ([]byte, error) {
		return protocol.Encode(id, time.Now(), &protocol.Status{State: state, Reason: reason, Session: session})
	}
	bye, err := statusMsg(protocol.StateOffline, protocol.ReasonShutdown, "")
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}

	var client *bus.Client
	birth := func(ctx context.Context) {
		// Facts such as the boot time are re-read on each connect.
		if nf, err := cfg.Facts(); err == nil {
			reg.Facts = nf
		}
		online := &protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup, Session: currentSession()}
		for _, p := range []protocol.Payload{reg, online} {
			b, err := protocol.Encode(id, time.Now(), p)
			if err == nil {
				err = client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(id, protocol.Kind(p.MessageType())), Payload: b, QoS: 1, Retained: true})
			}
			if err != nil {
				a.log.Warn("publish birth message", "type", p.MessageType(), "err", err)
				return
			}
		}
		a.log.Info("connected to the hub's broker", "device", id)
	}
	client, err = bus.New(bus.Config{
		URL: brokerURL, TLS: brokerTLS, ClientID: id, Username: id, Password: creds.Password,
		KeepAlive: cfg.KeepAlive,
		// Each connection gets a new session in its Will and its "online":
		// the hub ignores a late Will of a replaced connection.
		NewWill: func() *bus.Message {
			sessionMu.Lock()
			session = protocol.NewID()[:16]
			s := session
			sessionMu.Unlock()
			will, err := statusMsg(protocol.StateOffline, protocol.ReasonLost, s)
			if err != nil {
				panic(err) // a constant, valid payload: cannot fail
			}
			return &bus.Message{Topic: protocol.DeviceTopic(id, protocol.KindStatus), Payload: will, QoS: 1, Retained: true}
		},
		Goodbye:   []bus.Message{{Topic: protocol.DeviceTopic(id, protocol.KindStatus), Payload: bye, QoS: 1, Retained: true}},
		OnConnect: birth,
		Logger:    a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}

	// A late Will of a replaced connection overwrites the retained status
	// with "offline"; when the agent sees one while connected, it restores
	// its "online" so that every subscriber (not only the hub) sees the truth.
	statusTopic := protocol.DeviceTopic(id, protocol.KindStatus)
	err = client.Subscribe(statusTopic, 1, func(ctx context.Context, m bus.Message) {
		if len(m.Payload) == 0 {
			return
		}
		_, st, err := protocol.DecodeAs[*protocol.Status](m.Payload)
		if err != nil || st.State != protocol.StateOffline || st.Reason != protocol.ReasonLost {
			return
		}
		cur := currentSession()
		if st.Session == cur || !client.Connected() {
			return
		}
		b, err := statusMsg(protocol.StateOnline, protocol.ReasonStartup, cur)
		if err == nil {
			err = client.Publish(ctx, bus.Message{Topic: statusTopic, Payload: b, QoS: 1, Retained: true})
		}
		if err != nil {
			a.log.Debug("restore online status", "err", err)
			return
		}
		a.log.Info("restored the online status over a stale last will", "will_session", st.Session)
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}

	if err := client.Subscribe(protocol.DeviceTopic(id, protocol.KindAck), 1, tel.HandleAck); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	cmds := &commands{hw: cfg.Hardware, client: client, id: id, log: a.log, restart: a.restart, sem: make(chan struct{}, maxCommands)}
	if err := client.Subscribe(protocol.DeviceTopic(id, protocol.KindCommand), 1, cmds.handle); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return client.Run(gctx) })
	g.Go(func() error { tel.Send(gctx, client, id); return nil })
	g.Go(func() error { a.heartbeats(gctx, client, id); return nil })
	if cfg.Hardware != nil {
		g.Go(func() error {
			cfg.Hardware.WatchInputs(gctx, func(e protocol.DeviceEvent) { cmds.publishEvent(gctx, e) })
			return nil
		})
	}
	if cert.Load() != nil {
		g.Go(func() error { a.renewLoop(gctx, key, creds, cert.Load, cert.Store); return nil })
	}
	var moved *credentials
	if cfg.Hub == "" && !cfg.NoMDNS && cfg.BrokerURL == "" {
		g.Go(func() error {
			moved = a.watchHub(gctx, client, creds)
			if moved != nil {
				return errMoved
			}
			return nil
		})
	}
	err = g.Wait()
	if moved != nil {
		return moved, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return nil, nil
}

// watchHub looks for the hub on the LAN whenever the broker has been
// unreachable for RediscoverAfter. If the pinned hub answers at a new
// address, it saves and returns the updated credentials, which makes the
// agent reconnect there. It returns nil when ctx is done.
func (a *Agent) watchHub(ctx context.Context, client *bus.Client, creds *credentials) *credentials {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var downSince time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if client.Connected() {
			downSince = time.Time{}
			continue
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if time.Since(downSince) < a.cfg.RediscoverAfter {
			continue
		}
		downSince = time.Now() // at most one search per RediscoverAfter
		found, err := a.discover(ctx, creds.CAFingerprint, 5*time.Second)
		if err != nil || found == creds.Hub {
			continue
		}
		client := pinnedClient(creds.CAFingerprint)
		b, err := a.bootstrapAt(ctx, client, found)
		client.CloseIdleConnections()
		if err != nil || b.HubID != creds.HubID || usableBrokers(b.MQTTURLs) != nil {
			a.log.Warn("a hub answered at a new address but could not be used", "hub", found, "err", err)
			continue
		}
		a.credsMu.Lock()
		moved := *creds
		a.credsMu.Unlock()
		moved.Hub, moved.MQTTURLs = found, b.MQTTURLs
		if err := saveCredentials(filepath.Join(a.cfg.StateDir, "credentials.json"), &moved); err != nil {
			a.log.Error("save credentials", "err", err)
			continue
		}
		a.log.Info("the hub moved: reconnecting at its new address", "old", creds.Hub, "new", found)
		return &moved
	}
}

// credentials returns the saved credentials, enrolling first if there are
// none, and refreshes the broker URLs from the hub when it answers.
func (a *Agent) credentials(ctx context.Context, key ed25519.PrivateKey, id, name string) (*credentials, error) {
	cfg := a.cfg
	path := filepath.Join(cfg.StateDir, "credentials.json")
	creds, err := loadCredentials(path)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if creds != nil && creds.DeviceID != id {
		return nil, fmt.Errorf("agent: %s belongs to device %s, but the identity key is of %s: the key was replaced; delete the credentials and enrol again", path, creds.DeviceID, id)
	}
	hub := cfg.Hub
	if hub == "" && creds != nil {
		hub = creds.Hub
	}
	if creds == nil && cfg.JoinToken == "" && cfg.Pair {
		if hub == "" && cfg.NoMDNS {
			return nil, errors.New("agent: no hub address to pair with: pass --hub HOST[:PORT] (looking for the hub with mDNS is turned off)")
		}
		creds, err := a.pair(ctx, key, id, name, hub)
		if err != nil {
			return nil, err
		}
		if err := saveCredentials(path, creds); err != nil {
			return nil, fmt.Errorf("agent: save credentials: %w", err)
		}
		return creds, nil
	}
	if creds == nil {
		if cfg.JoinToken == "" {
			return nil, fmt.Errorf("%w: start once with --join-token TOKEN (an admin creates one with POST /api/v1/join-tokens on the hub), or with --pair while the hub's pairing window is open", ErrNotEnrolled)
		}
		_, fp, err := identity.ParseJoinToken(cfg.JoinToken)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		if fp == "" {
			return nil, errors.New("agent: the join token does not name the hub's CA (it lacks the '.<fingerprint>' part): create a new one with POST /api/v1/join-tokens")
		}
		if hub == "" && cfg.NoMDNS {
			return nil, errors.New("agent: no hub address: pass --hub HOST[:PORT] (looking for the hub with mDNS is turned off)")
		}
		if hub == "" {
			// No address given: find the hub on the LAN. mDNS is only a
			// hint: the candidate must announce the pinned fingerprint,
			// and the TLS handshake proves it before anything is sent.
			a.log.Info("looking for the hub on the LAN (mDNS); pass --hub HOST[:PORT] where multicast does not pass")
			hub, err = a.discover(ctx, fp, 0)
			if err != nil {
				return nil, fmt.Errorf("agent: finding the hub: %w", err)
			}
		}
		base, err := hubURL(hub)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		client := pinnedClient(fp)
		defer client.CloseIdleConnections()
		creds, err = a.enrolWithRetry(ctx, client, base, key, name)
		if err != nil {
			return nil, err
		}
		creds.Hub, creds.CAFingerprint = hub, fp
		if err := saveCredentials(path, creds); err != nil {
			return nil, fmt.Errorf("agent: save credentials: %w", err)
		}
		a.log.Info("enrolled with the hub", "device", id, "hub_id", creds.HubID)
		return creds, nil
	}
	// Already enrolled: learn the current broker address, but do not wait
	// for the hub: a device keeps working with what it knows.
	client := pinnedClient(creds.CAFingerprint)
	defer client.CloseIdleConnections()
	b, err := a.bootstrapAt(ctx, client, hub)
	if err != nil && cfg.Hub == "" && !cfg.NoMDNS {
		// The hub may have moved: look for it on the LAN for a moment.
		if found, derr := a.discover(ctx, creds.CAFingerprint, 5*time.Second); derr == nil && found != hub {
			a.log.Info("found the hub at a new address", "old", hub, "new", found)
			if nb, nerr := a.bootstrapAt(ctx, client, found); nerr == nil {
				hub, b, err = found, nb, nil
			}
		}
	}
	var perm errPermanent
	switch {
	case errors.As(err, &perm) && errors.Is(err, pki.ErrWrongHub):
		return nil, fmt.Errorf("agent: %w: the hub's identity changed; if it was re-installed on purpose, re-pair this device (delete %s and enrol with a new join token)", err, path)
	case err != nil:
		a.log.Warn("hub not reachable; using the saved broker address", "hub", hub, "err", err)
	case b.HubID != creds.HubID:
		return nil, fmt.Errorf("agent: the hub at %s is %s, but this device is enrolled with %s: refusing a different hub (delete %s to enrol again)", hub, b.HubID, creds.HubID, path)
	case !slices.Equal(b.MQTTURLs, creds.MQTTURLs) || creds.Hub != hub:
		if err := usableBrokers(b.MQTTURLs); err != nil {
			a.log.Warn("ignoring broker addresses from the hub's bootstrap answer; using the saved ones", "err", err)
			break
		}
		creds.MQTTURLs, creds.Hub = b.MQTTURLs, hub
		if err := saveCredentials(path, creds); err != nil {
			return nil, fmt.Errorf("agent: save credentials: %w", err)
		}
	}
	return creds, nil
}

// enrolWithRetry enrols, retrying while the hub is unreachable or answers
// 5xx, and giving up at once on a refusal.
func (a *Agent) enrolWithRetry(ctx context.Context, client *http.Client, base string, key ed25519.PrivateKey, name string) (*credentials, error) {
	creds, err := retry(ctx, a, "enrolment at "+base, func() (*credentials, error) {
		return a.enrol(ctx, client, base, key, a.cfg.JoinToken, name)
	})
	var perm errPermanent
	switch {
	case err == nil:
		return creds, nil
	case errors.As(err, &perm) && ctx.Err() == nil:
		return nil, fmt.Errorf("agent: enrolment refused: %w", err)
	default:
		return nil, fmt.Errorf("agent: enrolment: %w", err)
	}
}

// heartbeats publishes a heartbeat every interval while connected.
func (a *Agent) heartbeats(ctx context.Context, client *bus.Client, id string) {
	start := time.Now()
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	var seq uint64
	topic := protocol.DeviceTopic(id, protocol.KindHeartbeat)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !client.Connected() {
			continue
		}
		seq++
		b, err := protocol.Encode(id, time.Now(), &protocol.Heartbeat{Seq: seq, UptimeS: int64(time.Since(start).Seconds())})
		if err == nil {
			err = client.Publish(ctx, bus.Message{Topic: topic, Payload: b, QoS: 0})
		}
		if err != nil && ctx.Err() == nil {
			a.log.Debug("heartbeat not sent", "err", err)
		}
	}
}

// usableBrokers accepts broker URLs from the hub only if each is MQTT over
// TLS (verified against the pinned CA wherever it is, so the hub may move)
// or plain MQTT on this machine: the device's password never goes in clear
// over the network.
func usableBrokers(urls []string) error {
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("broker url %q: %w", s, err)
		}
		switch u.Scheme {
		case "mqtts", "ssl", "tls":
			continue
		}
		if ip := net.ParseIP(u.Hostname()); (ip == nil || !ip.IsLoopback()) && !strings.EqualFold(u.Hostname(), "localhost") {
			return fmt.Errorf("broker url %q: plain MQTT to another machine", s)
		}
	}
	return nil
}

// zoneLike gives the host of broker, if it is an IPv6 link-local address
// without a zone, the zone of hub (HOST:PORT, the address the agent reached
// the hub's API at) if that is a link-local address with one. The hub
// builds broker URLs from the Host header of the agent's request, which
// carries no zone (RFC 7230 has no syntax for it), and a link-local address
// dialled without one fails ("connect: invalid argument"). The zone names
// this machine's interface towards the hub, so it fits every link-local
// address of the hub.
func zoneLike(broker, hub string) string {
	h, _, err := net.SplitHostPort(hub)
	if err != nil {
		return broker
	}
	ha, err := netip.ParseAddr(h)
	if err != nil || ha.Zone() == "" || !ha.IsLinkLocalUnicast() {
		return broker
	}
	u, err := url.Parse(broker)
	if err != nil {
		return broker
	}
	ba, err := netip.ParseAddr(u.Hostname())
	if err != nil || !ba.Is6() || !ba.IsLinkLocalUnicast() || ba.Zone() != "" {
		return broker
	}
	if p := u.Port(); p != "" {
		u.Host = net.JoinHostPort(ba.WithZone(ha.Zone()).String(), p)
	} else {
		u.Host = "[" + ba.WithZone(ha.Zone()).String() + "]"
	}
	return u.String()
}

// pickBroker chooses the broker URL: the override if set, else the first
// MQTT-over-TLS URL, else a plain one only on this machine (a password must
// never cross the network in clear).
func pickBroker(urls []string, override string) (string, error) {
	candidates := urls
	if override != "" {
		candidates = []string{override}
	}
	for _, s := range candidates {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		switch u.Scheme {
		case "mqtts", "ssl", "tls":
			return s, nil
		}
	}
	for _, s := range candidates {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || strings.EqualFold(u.Hostname(), "localhost") {
			return s, nil
		}
	}
	return "", fmt.Errorf("no usable broker address in %q: plain MQTT is used only on this machine, and none is MQTT over TLS", candidates)
}

// bootstrapAt asks the hub at HOST:PORT for its current broker URLs,
// waiting at most a few seconds.
func (a *Agent) bootstrapAt(ctx context.Context, client *http.Client, hub string) (*bootstrap, error) {
	base, err := hubURL(hub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	b, err := fetchBootstrap(ctx, client, base)
	if err == nil {
		a.noteHubTime(b.Time)
	}
	return b, err
}

// discover finds on the LAN the hub that announces the pinned CA
// fingerprint and returns its API address, HOST:PORT. timeout 0 waits until
// ctx is done.
func (a *Agent) discover(ctx context.Context, fingerprint string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	client := pinnedClient(fingerprint)
	defer client.CloseIdleConnections()
	var hub string
	_, err := discovery.Lookup(ctx, discovery.ServiceType, func(c discovery.Candidate) bool {
		if c.TXT["fp"] != fingerprint {
			a.log.Warn("ignoring a hub that announces another CA: not the hub this device trusts (another installation, or a rogue)",
				"instance", c.Instance, "addrs", c.Addrs, "fp", c.TXT["fp"])
			return false
		}
		// The fingerprint is public, so anyone can announce it: take the
		// candidate only once it proves the pinned key over TLS (which
		// sends nothing secret), and otherwise keep browsing.
		for _, ip := range c.Addrs {
			if c.Port <= 0 {
				break
			}
			h := net.JoinHostPort(ip.String(), strconv.Itoa(c.Port))
			if _, err := a.bootstrapAt(ctx, client, h); err != nil {
				a.log.Warn("a candidate announcing our hub's fingerprint failed to prove it", "instance", c.Instance, "hub", h, "err", err)
				continue
			}
			hub = h
			return true
		}
		return false
	})
	if err != nil {
		return "", err
	}
	a.log.Info("found the hub on the LAN", "hub", hub)
	return hub, nil
}
