package agentd

import (
	"cmp"
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

	"github.com/alicia-home/alicia/agent/confapply"
	"github.com/alicia-home/alicia/agent/enrol"
	"github.com/alicia-home/alicia/agent/facts"
	"github.com/alicia-home/alicia/agent/jobs"
	"github.com/alicia-home/alicia/agent/outbox"
	"github.com/alicia-home/alicia/agent/presence"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/agent/telemetry"
	"github.com/alicia-home/alicia/agent/textfile"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/clocksync"
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
	// TextfileDir is the drop directory of custom metrics (agent/textfile)
	// read at each collection; empty: none.
	TextfileDir string
	// OwnMetric reports the names the agent sends itself, which custom
	// metrics may not take (besides textfile.ReservedPrefixes). Default
	// sample.IsHostMetric; the agent's main adds its hardware's names.
	OwnMetric func(name string) bool
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
	// LogLevel, if set, is the level of Logger's handler: the hub's
	// configuration may change it at run time (its value at New is the
	// agent's own).
	LogLevel *slog.LevelVar
	// ConfirmWindow is how long a configuration from the hub may stay
	// unconfirmed before the agent reverts it (agent/confapply). Default
	// DefaultConfirmWindow.
	ConfirmWindow time.Duration
	// Clock says when the device's clock is trusted for calendar jobs of
	// its own schedule (agent/jobs): clocksync.Kernel (the default) once
	// the kernel says it is synchronised, clocksync.Trust always (a device
	// with a real-time clock). Either way, a clock that agrees with the
	// hub's (seen on the hub's acks) is trusted until the agent restarts.
	Clock clocksync.Policy
	// Logger; nil discards.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.HeartbeatInterval, 10 * time.Second},
		{&c.KeepAlive, 30 * time.Second},
		{&c.SampleInterval, 10 * time.Second},
		{&c.RenewCheck, 6 * time.Hour},
		{&c.RediscoverAfter, 15 * time.Second},
		// PairPoll: enrol's default.
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if c.Facts == nil {
		c.Facts = facts.Source{}.Gather
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == "" {
		c.Clock = clocksync.Kernel
	}
	if c.OwnMetric == nil {
		c.OwnMetric = sample.IsHostMetric
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
	if _, err := clocksync.ParsePolicy(string(c.Clock)); err != nil {
		return err
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

// DefaultConfirmWindow is Config.ConfirmWindow's default: two minutes.
const DefaultConfirmWindow = confapply.DefaultConfirmWindow

// ErrRestart is returned by Run when the hub asked the agent to restart
// (agent.restart): the agent has stopped cleanly, and its service manager
// starts it again (the unit restarts on failure, and this exit is one).
var ErrRestart = errors.New("agent: restart requested by the hub")

// ErrNotEnrolled is returned by Run when the agent has no credentials and
// no way to get them (neither a join token nor --pair): starting it again
// as it is cannot help.
var ErrNotEnrolled = enrol.ErrNotEnrolled

// Agent is one running agent.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	baseLevel slog.Level // cfg.LogLevel's value at New

	mu       sync.Mutex // guards deviceID
	deviceID string
}

// New validates cfg and returns an Agent. It does no I/O.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: config: %w", err)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger}
	if cfg.LogLevel != nil {
		a.baseLevel = cfg.LogLevel.Level()
	}
	return a, nil
}

// DeviceID returns the device ID once Run has loaded the identity, else "".
func (a *Agent) DeviceID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.deviceID
}

// device is what the sessions of one Run share.
type device struct {
	id      string
	reg     *protocol.Register
	en      *enrol.Enroller
	store   *enrol.Store
	tel     *telemetry.Telemetry
	jobs    *jobs.Runner
	conf    *confapply.Manager
	restart func() // ends Run with ErrRestart

	// mu guards the fields below.
	mu        sync.Mutex
	settings  settings           // in effect
	pres      *presence.Presence // the current session's
	reconnect func()             // ends the current session; Run makes the next
}

func (d *device) current() settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

func (d *device) setSettings(s settings) {
	d.mu.Lock()
	d.settings = s
	d.mu.Unlock()
}

func (d *device) presence() *presence.Presence {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pres
}

// reconnectNow ends the current session, if any, so that the next is made
// with the settings in effect.
func (d *device) reconnectNow() {
	d.mu.Lock()
	f := d.reconnect
	d.mu.Unlock()
	if f != nil {
		f()
	}
}

// Run enrols if needed, then keeps the device connected and visible until
// ctx is done; then it publishes "offline" and disconnects cleanly.
func (a *Agent) Run(ctx context.Context) error {
	key, err := a.loadIdentity()
	if err != nil {
		return err
	}
	d := &device{id: a.DeviceID()}
	// Check the registration before enrolling: a device that enrolled but
	// could never register would waste its join token.
	if d.reg, err = a.registration(); err != nil {
		return err
	}
	if d.store, d.en, err = a.enroller(key, d.reg.Name); err != nil {
		return err
	}
	creds, err := d.en.Credentials(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Stopped while waiting for the hub: a clean stop, not a failure.
			a.log.Info("stopped before enrolment finished")
			return nil
		}
		return fmt.Errorf("agent: %w", err)
	}
	// The device's own jobs fire from now on, whether or not the hub is
	// reachable, into their outbox; each session sends their runs.
	jobsOb, err := a.openJobs(d)
	if err != nil {
		return err
	}
	defer jobsOb.Close()
	// Samples are collected into the outbox from now on, whether or not
	// the hub is reachable; each session sends them.
	ob, tel, err := a.openTelemetry(d.jobs.HubTime)
	if err != nil {
		return err
	}
	defer ob.Close()
	d.tel = tel
	d.settings = a.baseSettings()
	// A restart the hub asks for stops the sessions cleanly (goodbye
	// included) before Run returns ErrRestart.
	ctx, restart := context.WithCancelCause(ctx)
	d.restart = func() { restart(ErrRestart) }
	// The configuration the hub gave last is put in effect before the
	// first session: it may say how to reach the hub.
	if d.conf, err = a.openConfig(d); err != nil {
		restart(nil)
		return err
	}
	var background sync.WaitGroup
	background.Go(func() { tel.Collect(ctx) })
	background.Go(func() { d.conf.Run(ctx) })
	background.Go(func() { d.jobs.Run(ctx) })
	defer background.Wait()
	defer restart(nil) // first stop collecting, then wait for the collector
	for {
		moved, err := a.session(ctx, d, creds)
		if errors.Is(context.Cause(ctx), ErrRestart) {
			a.log.Info("restarting at the hub's request")
			return ErrRestart
		}
		if err != nil || !moved {
			return err
		}
		creds, _ = d.store.Get()
	}
}

// openConfig opens the configurations from the hub (agent/confapply) in
// the state directory and puts them in effect.
func (a *Agent) openConfig(d *device) (*confapply.Manager, error) {
	m, err := confapply.Open(confapply.Config{
		Path:          filepath.Join(a.cfg.StateDir, "config.json"),
		DeviceID:      d.id,
		Kinds:         map[string]confapply.Applier{"agent": a.applyAgentKind(d), protocol.KindSchedule: a.applySchedule(d)},
		ConfirmWindow: a.cfg.ConfirmWindow,
		Reconnect:     d.reconnectNow,
		Logger:        a.log.With("component", "config"),
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return m, nil
}

// loadIdentity creates the state directory and loads or creates the
// device key, which names the device.
func (a *Agent) loadIdentity() (ed25519.PrivateKey, error) {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	key, created, err := identity.LoadOrCreate(filepath.Join(a.cfg.StateDir, "identity.key"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	id := identity.DeviceID(key.Public().(ed25519.PublicKey))
	a.mu.Lock()
	a.deviceID = id
	a.mu.Unlock()
	if created {
		a.log.Info("created the device identity", "device", id)
	}
	return key, nil
}

// registration gathers what the device registers with: its name, facts
// and hardware.
func (a *Agent) registration() (*protocol.Register, error) {
	f, err := a.cfg.Facts()
	if err != nil {
		a.log.Warn("some hardware facts are unavailable", "err", err)
	}
	reg := &protocol.Register{Name: cmp.Or(a.cfg.Name, f.Hostname), AgentVersion: buildinfo.Version, HeartbeatMS: a.cfg.HeartbeatInterval.Milliseconds(), Facts: f}
	if a.cfg.Hardware != nil {
		reg.Hardware = a.cfg.Hardware.Hardware()
	}
	if err := reg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: registration: %w", err)
	}
	return reg, nil
}

// enroller opens the credentials in the state directory.
func (a *Agent) enroller(key ed25519.PrivateKey, name string) (*enrol.Store, *enrol.Enroller, error) {
	cfg := a.cfg
	store, err := enrol.Open(filepath.Join(cfg.StateDir, "credentials.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	en, err := enrol.New(enrol.Config{Key: key, Name: name, Hub: cfg.Hub, JoinToken: cfg.JoinToken, Pair: cfg.Pair, PairPoll: cfg.PairPoll,
		NoMDNS: cfg.NoMDNS, Logger: a.log}, store)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	return store, en, nil
}

// openJobs opens the job outbox and the runner of the device's own jobs
// (agent/jobs) in the state directory.
func (a *Agent) openJobs(d *device) (*outbox.Outbox, error) {
	cfg := a.cfg
	ob, err := jobs.OpenOutbox(outbox.Options{Path: filepath.Join(cfg.StateDir, "jobs.db"), Logger: a.log.With("component", "jobs_outbox")})
	if err != nil {
		return nil, fmt.Errorf("agent: job outbox: %w", err)
	}
	jc := jobs.Config{Path: filepath.Join(cfg.StateDir, "jobs.json"), Logger: a.log.With("component", "jobs")}
	if cfg.Hardware != nil {
		jc.Execute = cfg.Hardware.Execute
	}
	if cfg.Clock == clocksync.Trust {
		jc.ClockOK = func() (bool, string) { return true, "" }
	}
	if d.jobs, err = jobs.Open(jc, ob); err != nil {
		ob.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	return ob, nil
}

// applySchedule is the confapply.Applier of the schedule kind: the
// device's own jobs, checked against its hardware.
func (a *Agent) applySchedule(d *device) confapply.Applier {
	return func(content []byte) (confapply.Change, error) {
		var hw *protocol.Hardware
		if a.cfg.Hardware != nil {
			hw = a.cfg.Hardware.Hardware()
		}
		s, err := jobs.Parse(content, hw)
		if err != nil {
			return confapply.Change{}, err
		}
		return confapply.Change{Apply: func() { d.jobs.SetJobs(s) }}, nil
	}
}

// openTelemetry opens the outbox in the state directory and the sampler,
// and returns the telemetry that fills and drains the outbox. hubTime is
// told the hub's time of each ack.
func (a *Agent) openTelemetry(hubTime func(hub, sent time.Time)) (*outbox.Outbox, *telemetry.Telemetry, error) {
	cfg := a.cfg
	ob, err := telemetry.OpenOutbox(outbox.Options{Path: filepath.Join(cfg.StateDir, "outbox.db"), MaxBytes: cfg.OutboxMaxBytes, MaxAge: cfg.OutboxMaxAge, Logger: a.log.With("component", "outbox")})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: outbox: %w", err)
	}
	s, err := a.newSampler(a.baseSettings())
	if err != nil {
		ob.Close()
		return nil, nil, fmt.Errorf("agent: collectors: %w", err)
	}
	tc := telemetry.Config{Every: cfg.SampleInterval, HubTime: hubTime, Logger: a.log}
	if cfg.Hardware != nil {
		tc.Extra = cfg.Hardware.Sample
	}
	if cfg.TextfileDir != "" {
		tf, err := textfile.New(textfile.Config{Dir: cfg.TextfileDir, Reserved: cfg.OwnMetric, Logger: a.log.With("component", "textfile")})
		if err != nil {
			ob.Close()
			return nil, nil, fmt.Errorf("agent: %w", err)
		}
		tc.Custom = tf.Collect
	}
	tel, err := telemetry.New(tc, ob, s)
	if err != nil {
		ob.Close()
		return nil, nil, fmt.Errorf("agent: %w", err)
	}
	return ob, tel, nil
}

// newSampler returns the host collectors that s enables.
func (a *Agent) newSampler(s settings) (*sample.Sampler, error) {
	return sample.New(sample.Config{Enabled: s.collectors, Filters: a.cfg.SampleFilters, Timeout: min(s.sampleInterval, sample.DefaultTimeout), Logger: a.log.With("component", "sample")})
}

// errReconnect ends a session whose connection settings changed.
var errReconnect = errors.New("the connection settings changed")

// errMoved ends a session when the hub was found at a new address.
var errMoved = errors.New("the hub moved")

// session connects to the broker with creds and keeps the device visible
// until ctx is done (false, nil) or the hub is found at a new address while
// the broker was unreachable (true, nil: the store has the new address).
func (a *Agent) session(ctx context.Context, d *device, creds enrol.Credentials) (moved bool, err error) {
	cfg := a.cfg
	set := d.current()
	brokerURL, brokerTLS, err := d.en.Broker(creds, set.brokerURL)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	reg := *d.reg
	reg.HeartbeatMS = set.heartbeat.Milliseconds()
	pres, err := presence.New(presence.Config{DeviceID: d.id, Register: &reg, Facts: cfg.Facts, HeartbeatInterval: set.heartbeat, Logger: a.log})
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	a.log.Info("agent identity", "device", d.id, "hub_id", creds.HubID, "mqtt", brokerURL)
	bc := bus.Config{URL: brokerURL, TLS: brokerTLS, ClientID: d.id, Username: d.id, Password: creds.Password, KeepAlive: cfg.KeepAlive, Logger: a.log.With("component", "bus")}
	pres.Configure(&bc)
	client, err := bus.New(bc)
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	cmds := &commands{hw: cfg.Hardware, pub: client, id: d.id, log: a.log, restart: d.restart, sem: make(chan struct{}, maxCommands)}
	if err := subscribe(client, d, pres, cmds); err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	sctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	d.mu.Lock()
	d.pres, d.reconnect = pres, func() { end(errReconnect) }
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.pres, d.reconnect = nil, nil
		d.mu.Unlock()
	}()
	err = a.serve(sctx, d, client, pres, cmds)
	if errors.Is(err, errMoved) || ctx.Err() == nil && errors.Is(context.Cause(sctx), errReconnect) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("agent: %w", err)
	}
	return false, nil
}

// subscribe registers the session's handlers before the client runs.
func subscribe(client *bus.Client, d *device, pres *presence.Presence, cmds *commands) error {
	if err := pres.Attach(client); err != nil {
		return err
	}
	if err := client.Subscribe(protocol.DeviceTopic(d.id, protocol.KindAck), 1, d.tel.HandleAck); err != nil {
		return err
	}
	if err := client.Subscribe(protocol.DeviceTopic(d.id, protocol.KindJobAck), 1, d.jobs.HandleAck); err != nil {
		return err
	}
	if err := d.conf.Attach(client); err != nil {
		return err
	}
	return client.Subscribe(protocol.DeviceTopic(d.id, protocol.KindCommand), 1, cmds.handle)
}

// serve runs the session's parts until ctx is done or one of them ends it
// (errMoved), and returns once all of them, commands included, returned.
func (a *Agent) serve(ctx context.Context, d *device, client *bus.Client, pres *presence.Presence, cmds *commands) error {
	cfg := a.cfg
	defer cmds.wait()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return client.Run(gctx) })
	g.Go(func() error { d.tel.Send(gctx, client, d.id); return nil })
	g.Go(func() error { d.jobs.Send(gctx, client, d.id); return nil })
	g.Go(func() error { pres.Run(gctx); return nil })
	g.Go(func() error { d.en.Renew(gctx, cfg.RenewCheck); return nil })
	if cfg.Hardware != nil {
		g.Go(func() error {
			cfg.Hardware.WatchInputs(gctx, func(e protocol.DeviceEvent) { cmds.publishEvent(gctx, e) })
			return nil
		})
	}
	if cfg.Hub == "" && !cfg.NoMDNS && d.current().brokerURL == "" {
		g.Go(func() error {
			if d.en.WatchHub(gctx, client.Connected, cfg.RediscoverAfter) {
				return errMoved
			}
			return nil
		})
	}
	return g.Wait()
}

// maxCommands bounds the commands executed at once.
const maxCommands = 8
