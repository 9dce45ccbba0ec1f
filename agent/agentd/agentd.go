package agentd

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/alicia-home/alicia/agent/enrol"
	"github.com/alicia-home/alicia/agent/facts"
	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/agent/telemetry"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/identity"
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
		if err := enrol.CheckHub(c.Hub); err != nil {
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
var ErrNotEnrolled = enrol.ErrNotEnrolled

// maxCommands bounds the commands executed at once.
const maxCommands = 8

// Agent is one running agent.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex // guards deviceID
	deviceID string

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

	store, err := enrol.Open(filepath.Join(cfg.StateDir, "credentials.json"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	en, err := enrol.New(enrol.Config{Key: key, Name: name, Hub: cfg.Hub, JoinToken: cfg.JoinToken, Pair: cfg.Pair, PairPoll: cfg.PairPoll, NoMDNS: cfg.NoMDNS, Logger: a.log}, store)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	creds, err := en.Credentials(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped while waiting for the hub: a clean stop, not a failure.
			a.log.Info("stopped before enrolment finished")
			return nil
		}
		return fmt.Errorf("agent: %w", err)
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
		moved, err := a.session(ctx, en, creds, id, reg, tel)
		if errors.Is(context.Cause(ctx), ErrRestart) {
			a.log.Info("restarting at the hub's request")
			return ErrRestart
		}
		if err != nil || !moved {
			return err
		}
		creds, _ = store.Get()
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
func (a *Agent) session(ctx context.Context, en *enrol.Enroller, creds enrol.Credentials, id string, reg *protocol.Register, tel *telemetry.Telemetry) (bool, error) {
	cfg := a.cfg
	brokerURL, brokerTLS, err := en.Broker(creds, cfg.BrokerURL)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
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
		return false, fmt.Errorf("agent: %w", err)
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
		return false, fmt.Errorf("agent: %w", err)
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
		return false, fmt.Errorf("agent: %w", err)
	}

	if err := client.Subscribe(protocol.DeviceTopic(id, protocol.KindAck), 1, tel.HandleAck); err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	cmds := &commands{hw: cfg.Hardware, client: client, id: id, log: a.log, restart: a.restart, sem: make(chan struct{}, maxCommands)}
	if err := client.Subscribe(protocol.DeviceTopic(id, protocol.KindCommand), 1, cmds.handle); err != nil {
		return false, fmt.Errorf("agent: %w", err)
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
	g.Go(func() error { en.Renew(gctx, cfg.RenewCheck); return nil })
	if cfg.Hub == "" && !cfg.NoMDNS && cfg.BrokerURL == "" {
		g.Go(func() error {
			if en.WatchHub(gctx, client.Connected, cfg.RediscoverAfter) {
				return errMoved
			}
			return nil
		})
	}
	err = g.Wait()
	if errors.Is(err, errMoved) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	return false, nil
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
