package hubd

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/alicia-home/alicia/hub/api"
	"github.com/alicia-home/alicia/hub/backup"
	"github.com/alicia-home/alicia/hub/enrol"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/household"
	"github.com/alicia-home/alicia/hub/pairing"
	"github.com/alicia-home/alicia/hub/prom"
	"github.com/alicia-home/alicia/hub/sniff"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/discovery"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/throttle"
)

// openAPI builds the REST API, with /metrics, and its HTTP server. Event
// streams end when the server shuts down, so that it does not wait for
// clients that never hang up.
func (p *parts) openAPI() error {
	if !p.cfg.NoMDNS {
		p.lan = household.New(household.Config{Types: p.cfg.DiscoverTypes, Logger: p.log.With("component", "household")})
	}
	window := &pairing.Window{}
	enrolCfg := enrol.Config{Devices: p.reg, Tokens: p.toks, IssueCertificate: p.issueCertificate, CAFingerprint: p.ca.Fingerprint(),
		Window: window, Events: p.events, Logger: p.log.With("component", "enrol")}
	cfg := api.Config{
		HubID: p.hubID, Devices: p.reg, Tokens: p.toks, BrokerURLs: p.broker.urls,
		CAFingerprint: p.ca.Fingerprint(), CAPEM: p.ca.CertPEM(),
		Discovered: p.discovered, IssueCertificate: p.issueCertificate, Disconnect: p.broker.disconnect,
		Pairing: window, Commands: p.cmds, Configs: p.configs, ConfigSync: p.confsync, Rollouts: p.rollouts, Jobs: p.sched, Metrics: p.mstore, Events: p.events, Health: p.health,
		Prometheus: p.prometheus(), Logger: p.log.With("component", "api"),
		Backup: func(w io.Writer) (int64, error) { return backup.Write(w, p.db, p.cfg.DataDir) },
	}
	// Integration accounts live in the embedded broker; with an external
	// broker its own ACLs apply and the endpoints are left out, and the
	// devices' accounts are made there through dynamic security.
	if p.broker.brk != nil {
		cfg.Integrations = p.accts
		cfg.IntegrationMetrics = integrationPush{p}
	} else {
		cfg.Accounts, enrolCfg.Accounts = p.dynsec, p.dynsec
	}
	enrolment, err := enrol.New(enrolCfg)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	cfg.Enrolment = enrolment
	stopping := make(chan struct{})
	cfg.Stopping = stopping
	handler, err := api.New(cfg)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.srv.RegisterOnShutdown(func() { close(stopping) })
	return nil
}

func (p *parts) discovered() []household.Service {
	if p.lan == nil {
		return nil
	}
	return p.lan.List()
}

func (p *parts) issueCertificate(id string, pub ed25519.PublicKey) ([]byte, error) {
	c, err := p.ca.IssueClient(id, pub, time.Now())
	if err != nil {
		return nil, err
	}
	return c.Raw, nil
}

// prometheus is the /metrics handler over the hub's parts.
func (p *parts) prometheus() http.Handler {
	return prom.Handler(prom.Sources{
		Devices:      p.reg.List,
		Integrations: p.metricsIntegrations,
		Metrics:      p.mstore,
		Ingest:       p.mingest,
		StoreSize:    p.db.Size,
		Broker:       p.broker.stats(),
		Rejected:     func() uint64 { r, _ := p.ingest.Stats(); return r },
		Limited:      func() uint64 { _, l := p.ingest.Stats(); return l },
		Dropped:      func() []prom.Dropped { return append(p.broker.dropped(), httpDropped(p.httpLn.Counts())...) },
	})
}

// httpDropped labels the HTTP port's dropped connections for /metrics.
func httpDropped(c sniff.Counts) []prom.Dropped {
	return []prom.Dropped{
		{Listener: "http", Reason: "first_byte_timeout", Count: c.Silent},
		{Listener: "http", Reason: "tls_handshake_timeout", Count: c.TLSTimeout},
		{Listener: "http", Reason: "tls_handshake_failed", Count: c.TLSFailed},
	}
}

// openMDNS builds the hub's mDNS announcement, unless mDNS is off.
func (p *parts) openMDNS() error {
	if p.cfg.NoMDNS {
		return nil
	}
	ann, err := discovery.NewAnnouncer(discovery.Announcement{
		Instance: "Alicia " + p.hubID,
		Port:     p.httpLn.Addr().(*net.TCPAddr).Port,
		TXT:      announcementTXT(p.hubID, p.ca.Fingerprint(), p.broker.mqttsPort),
	}, p.log.With("component", "mdns"))
	if err != nil {
		return fmt.Errorf("hub: mdns: %w", err)
	}
	p.announcer = ann
	return nil
}

// announcementTXT is the TXT record of the hub's mDNS announcement: the
// protocol version, the hub ID, the CA fingerprint agents pin, and the
// MQTT-over-TLS port when there is one. The SRV port is the REST API's.
func announcementTXT(hubID, fingerprint string, mqttsPort int) map[string]string {
	txt := map[string]string{"v": strconv.Itoa(protocol.Version), "id": hubID, "fp": fingerprint}
	if mqttsPort != 0 {
		txt["mqtts"] = strconv.Itoa(mqttsPort)
	}
	return txt
}

// run starts every part in one errgroup, calls serving once they are
// started, and returns when ctx is done or a part fails, after every part
// stopped. The embedded broker stops last, after the hub's own connection
// has said goodbye on it.
func (p *parts) run(ctx context.Context, serving func()) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range []func(context.Context) error{p.db.Run, p.reg.Run, p.mingest.Run, p.health.Run, p.cmds.Run, p.confsync.Run, p.rollouts.Run, p.sched.Run, p.serveHTTP} {
		g.Go(func() error { return run(gctx) })
	}
	if p.ha != nil {
		g.Go(func() error { return p.ha.Run(gctx) })
	}
	if p.webhook != nil {
		g.Go(func() error { return p.webhook.Run(gctx) })
	}
	if p.pprofLn != nil {
		g.Go(func() error { return servePprof(gctx, p.pprofLn, p.log) })
	}
	g.Go(func() error { p.runRollups(gctx); return nil })
	g.Go(func() error { p.events.Forward(gctx, p.forwardEvent, p.log); return nil })
	brokerCtx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	if p.broker.brk != nil {
		g.Go(func() error { return p.broker.brk.Run(brokerCtx) })
	}
	g.Go(func() error {
		defer stopBroker()
		return p.client.Run(gctx)
	})
	if p.announcer != nil {
		g.Go(func() error { return p.lan.Run(gctx) })
		g.Go(func() error {
			// mDNS is a convenience: without it agents need --hub. Its
			// failure is logged loudly by the announcer, not fatal.
			if err := p.announcer.Run(gctx); err != nil && gctx.Err() == nil {
				p.log.Error("mDNS announcement stopped; agents must be given --hub", "err", err)
			}
			return nil
		})
	}
	serving()
	return g.Wait()
}

// serveHTTP serves the API until ctx is done, then shuts the server down.
func (p *parts) serveHTTP(ctx context.Context) error {
	if err := serve(ctx, p.srv, p.httpLn, p.cfg.ShutdownTimeout); err != nil {
		return fmt.Errorf("hub: http: %w", err)
	}
	return nil
}

// serve runs srv on ln until ctx is done, then shuts it down within
// timeout; it returns when both are over.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// runRollups rolls the metrics up every 15 s. A rollup that keeps failing
// is retried every pass: it is said every ten minutes, not every pass (the
// count is in /metrics).
func (p *parts) runRollups(ctx context.Context) {
	rlog := &throttle.Log{Logger: p.log.With("component", "metrics"), Every: 10 * time.Minute}
	p.mstore.RunRollups(ctx, 15*time.Second, time.Now, func(err error) {
		rlog.Warn("rollup", "metrics rollups failed; retried every pass (alicia_hub_metrics_rollup_failures_total)", "err", err)
	})
}

// forwardEvent publishes an event of the hub's stream on
// alicia/v1/hub/events for integrations. One that comes while the hub's
// connection is down is not queued (the SSE stream has it).
func (p *parts) forwardEvent(ctx context.Context, e events.Event) error {
	var data map[string]any
	if len(e.Data) > 0 {
		_ = json.Unmarshal(e.Data, &data) // the bus made it from a JSON object
	}
	b, err := protocol.Encode(p.hubID, e.Time, &protocol.HubEvent{ID: e.ID, Event: e.Type, Device: e.Device, Data: data})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.client.Publish(pctx, bus.Message{Topic: protocol.HubEventsTopic, Payload: b, QoS: 1})
}
