package hubd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/alicia-home/alicia/hub/api"
	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/hub/brokerauth"
	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/household"
	"github.com/alicia-home/alicia/hub/ingest"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/pairing"
	"github.com/alicia-home/alicia/hub/prom"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/sniff"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/discovery"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/throttle"
)

// Hub is one running hub. Create it with New and run it with Run.
type Hub struct {
	cfg Config
	log *slog.Logger

	ready     chan struct{}
	mu        sync.Mutex // guards the fields below
	httpAddr  string
	mqttAddr  string
	mqttsAddr string
	// caFingerprint is the SHA-256 of the hub CA's public key.
	caFingerprint string
	hubID         string
	adminPath     string
}

// New validates cfg and returns a Hub. It does no I/O.
func New(cfg Config) (*Hub, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("hub: config: %w", err)
	}
	return &Hub{cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once the hub serves its API and broker.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Addrs returns the bound REST API and plain-MQTT addresses (the latter
// empty with an external broker). Valid after Ready is closed.
func (h *Hub) Addrs() (httpAddr, mqttAddr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.httpAddr, h.mqttAddr
}

// TLS returns the bound MQTT-over-TLS address (empty when off or with an
// external broker) and the hub CA's fingerprint. Valid after Ready is closed.
func (h *Hub) TLS() (mqttsAddr, caFingerprint string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mqttsAddr, h.caFingerprint
}

// ID returns the hub ID. Valid after Ready is closed.
func (h *Hub) ID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hubID
}

// Run starts every component and blocks until ctx is done or one of them
// fails; then it stops them all, flushes and closes the store.
func (h *Hub) Run(ctx context.Context) (err error) {
	cfg := h.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	db, err := store.Open(store.Options{Dir: filepath.Join(cfg.DataDir, "store"), Logger: h.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("hub: close store: %w", cerr)
		}
	}()

	hubID, err := loadOrCreateHubID(db)
	if err != nil {
		return err
	}
	toks := tokens.New(db, nil)
	adminPath := filepath.Join(cfg.DataDir, "admin.token")
	created, err := toks.EnsureAdmin(adminPath)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if created {
		h.log.Info("created the admin token", "path", adminPath)
	} else if err := toks.CheckAdminFile(adminPath); err != nil {
		h.log.Warn("the admin token file does not hold the working admin token: the REST API refuses what it holds",
			"path", adminPath, "err", err, "fix", "stop the hub, then run: "+tokens.RotateCommand+" --data-dir "+cfg.DataDir)
	}

	// Integrations' broker accounts (Home Assistant).
	accts, err := integrations.Open(db, cfg.HAPrefix, nil)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}

	// The event stream (SSE at /api/v1/events, and alicia/v1/hub/events).
	evbus := events.New(0, nil)
	// online is called when a device comes online (set once the command
	// service exists; before that no device can be online).
	var online atomic.Pointer[func(id string)]
	reg, err := registry.Open(registry.Config{TickInterval: cfg.HeartbeatTimeoutCheck, Logger: h.log.With("component", "registry"),
		OnChange: func(d registry.Device) {
			evbus.Publish(events.DeviceState, d.ID, map[string]string{"name": d.Name, "status": string(d.Status), "state": d.Status.State(), "reason": d.StatusReason})
			if f := online.Load(); f != nil && d.Status == registry.StatusOnline {
				(*f)(d.ID)
			}
		}}, db)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}

	// The hub's identity: its own CA, and a server certificate from it for
	// the API (HTTPS on the same port as HTTP) and the TLS MQTT listener.
	pkiDir := filepath.Join(cfg.DataDir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	ca, created, err := pki.LoadOrCreateCA(pkiDir, hubID, time.Now())
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if created {
		h.log.Info("created the hub CA", "dir", pkiDir, "fingerprint", ca.Fingerprint())
	}
	// Re-issued before it expires, so a hub that runs for years keeps its agents.
	// Besides the name agents pin, the certificate names this machine, so
	// that integrations (Home Assistant) can verify it by host name or
	// address.
	names, ips := serverNames()
	serverCerts, err := pki.NewServerCerts(ca, hubID, names, ips, nil)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	apiTLS := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: serverCerts.GetCertificate}

	var pprofLn net.Listener
	if cfg.PprofAddr != "" {
		if pprofLn, err = net.Listen("tcp", cfg.PprofAddr); err != nil {
			return fmt.Errorf("hub: pprof listener: %w", err)
		}
		defer pprofLn.Close()
	}
	rawHTTPLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("hub: http listener: %w", err)
	}
	defer rawHTTPLn.Close()
	httpLn := sniff.New(rawHTTPLn, apiTLS, sniff.DefaultTimeout)

	// The hub's own bus connection, and the broker behind it.
	var (
		brk        *broker.Broker
		busCfg     bus.Config
		mqttAddr   string
		brokerURLs func(*http.Request) []string
		accounts   api.Accounts
		dyn        *dynsec
		brokerRan  bool
		mqttsAddr  string
		mqttsPort  int
	)
	if cfg.Broker == "" {
		secret := randomSecret()
		auth := brokerauth.New(hubID, secret, integrations.HubScope(cfg.HAPrefix), reg, accts)
		brk, err = broker.New(broker.Config{Logger: h.log.With("component", "broker")}, auth)
		if err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		addr := cfg.MQTTAddr
		if addr == "off" {
			addr = "127.0.0.1:0" // private listener for the hub's own connection
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("hub: mqtt listener: %w", err)
		}
		if err := brk.Serve("mqtt", ln); err != nil {
			ln.Close()
			return fmt.Errorf("hub: %w", err)
		}
		// The broker closes ln when it runs; until then, an error return
		// must not leave the port bound.
		defer func() {
			if !brokerRan {
				ln.Close()
			}
		}()
		mqttAddr = ln.Addr().String()
		port := ln.Addr().(*net.TCPAddr).Port
		if cfg.MQTTSAddr != "off" {
			clientCAs := x509.NewCertPool()
			clientCAs.AddCert(ca.Cert)
			tln, err := tls.Listen("tcp", cfg.MQTTSAddr, &tls.Config{
				MinVersion:     tls.VersionTLS13,
				GetCertificate: serverCerts.GetCertificate,
				// Devices will present certificates from this CA; until
				// they do, username and password authenticate them.
				ClientAuth: tls.VerifyClientCertIfGiven,
				ClientCAs:  clientCAs,
			})
			if err != nil {
				return fmt.Errorf("hub: mqtts listener: %w", err)
			}
			if err := brk.Serve("mqtts", tln); err != nil {
				tln.Close()
				return fmt.Errorf("hub: %w", err)
			}
			defer func() {
				if !brokerRan {
					tln.Close()
				}
			}()
			mqttsPort = tln.Addr().(*net.TCPAddr).Port
			mqttsAddr = tln.Addr().String()
		}
		busCfg = bus.Config{URL: "mqtt://" + net.JoinHostPort(loopbackFor(ln.Addr()), strconv.Itoa(port)), ClientID: hubID, Username: hubID, Password: secret}
		plainOff := cfg.MQTTAddr == "off"
		loopbackOnly := ln.Addr().(*net.TCPAddr).IP.IsLoopback()
		switch {
		case plainOff && mqttsPort == 0:
			h.log.Warn("both MQTT listeners are off: no device can connect")
		case mqttsPort == 0 && loopbackOnly:
			h.log.Info("the only MQTT listener is loopback-only: only agents on this machine can connect (use --mqtts-addr or --mqtt-addr to serve the LAN)", "mqtt", mqttAddr)
		}
		// Agents get the TLS listener first, then the plain one where they
		// can reach it, on the host they reached the API on.
		brokerURLs = func(r *http.Request) []string {
			var urls []string
			host := api.HostOf(r)
			if mqttsPort != 0 {
				urls = append(urls, "mqtts://"+net.JoinHostPort(host, strconv.Itoa(mqttsPort)))
			}
			if !plainOff && (!loopbackOnly || api.IsLoopback(r.RemoteAddr)) {
				urls = append(urls, "mqtt://"+net.JoinHostPort(host, strconv.Itoa(port)))
			}
			return urls
		}
	} else {
		bu, _ := parseBrokerURL(cfg.Broker) // validated in New
		busCfg = bus.Config{URL: bu.url, ClientID: hubID, Username: bu.username, Password: bu.password}
		brokerURLs = func(*http.Request) []string { return []string{bu.url} }
		var extra []string
		if !cfg.NoHomeAssistant {
			extra = []string{cfg.HAPrefix + "/#"}
		}
		dyn = newDynsec(bu, extra, h.log.With("component", "dynsec"))
		accounts = dyn
	}
	if len(cfg.AdvertiseMQTT) > 0 {
		adv := cfg.AdvertiseMQTT
		brokerURLs = func(*http.Request) []string { return adv }
	}

	will, err := protocol.Encode(hubID, time.Now(), &protocol.HubStatus{State: protocol.StateOffline})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	busCfg.Logger = h.log
	// Registrations and statuses arrive in bursts (a hub restart with every
	// agent reconnecting, an external broker replaying retained messages):
	// queue generously rather than drop.
	busCfg.HandlerQueue = 8192
	busCfg.Will = &bus.Message{Topic: protocol.HubStatusTopic, Payload: will, QoS: 1, Retained: true}
	busCfg.Goodbye = []bus.Message{*busCfg.Will}
	var client *bus.Client
	var ha *haLink // set below unless Home Assistant discovery is off
	busCfg.OnConnect = func(ctx context.Context) {
		if ha != nil {
			defer ha.connected()
		}
		if dyn != nil {
			if err := dyn.EnsureHubRights(ctx); err != nil {
				h.log.Error("external broker: cannot grant the hub its rights", "err", err)
			}
		}
		b, err := protocol.Encode(hubID, time.Now(), &protocol.HubStatus{State: protocol.StateOnline})
		if err == nil {
			err = client.Publish(ctx, bus.Message{Topic: protocol.HubStatusTopic, Payload: b, QoS: 1, Retained: true})
		}
		if err != nil {
			h.log.Warn("publish hub status", "err", err)
		}
	}
	client, err = bus.New(busCfg)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	mstore, err := metrics.Open(db, metrics.Config{MaxSeriesPerDevice: cfg.MaxSeriesPerDevice})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	// Series of devices no longer in the registry (a delete that was
	// interrupted) are removed now; failing that, they stay harmless.
	for _, id := range mstore.Devices() {
		if _, err := reg.Get(id); errors.Is(err, registry.ErrNotFound) {
			if err := mstore.DeleteDevice(id); err != nil {
				h.log.Warn("metrics of a deleted device not removed", "device", id, "err", err)
			}
		}
	}
	mingest := metrics.NewIngester(mstore, metrics.IngesterConfig{
		// Sent after the commit: the agent may then forget the batches.
		Ack: func(ctx context.Context, dev string, ack *protocol.MetricsAck) error {
			if ha != nil {
				ha.stored(dev)
			}
			b, err := protocol.Encode(hubID, time.Now(), ack)
			if err != nil {
				return err
			}
			return client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(dev, protocol.KindAck), Payload: b, QoS: 1})
		},
		Logger: h.log.With("component", "metrics"),
	})
	// Remote commands: published on the device's cmd topic; results come
	// back through ingest.
	cmds, err := command.Open(command.Config{Devices: reg, DB: db, Logger: h.log.With("component", "command"),
		OnDone: func(r command.Record) { evbus.Publish(events.Command, r.Device, r) },
		Publish: func(ctx context.Context, dev string, c *protocol.Command) error {
			b, err := protocol.Encode(hubID, time.Now(), c)
			if err != nil {
				return err
			}
			return client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(dev, protocol.KindCommand), Payload: b, QoS: 1})
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	ing, err := ingest.New(ingest.Config{Registry: reg, Metrics: mingest, Results: cmds, Rate: cfg.DeviceMsgRate,
		Logger: h.log.With("component", "ingest"),
		Input:  func(dev string, ev *protocol.DeviceEvent) { evbus.Publish(events.DeviceInput, dev, ev) }})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}

	// Health: alert rules over the latest samples, device health states.
	var hook *health.Webhook
	if cfg.AlertWebhook != "" {
		if hook, err = health.NewWebhook(health.WebhookConfig{URL: cfg.AlertWebhook, Logger: h.log.With("component", "webhook")}); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
	}
	mon, err := health.New(health.Config{DB: db, Devices: reg.List, Latest: mstore.Latest, Logger: h.log.With("component", "health"),
		OnEvent: func(ev health.Event) {
			evbus.Publish(ev.Type, ev.Alert.Device, ev.Alert)
			if hook != nil {
				hook.Notify(ev)
			}
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	for _, kind := range []protocol.Kind{protocol.KindRegister, protocol.KindStatus, protocol.KindHeartbeat, protocol.KindMetrics, protocol.KindResult, protocol.KindEvent} {
		if err := client.Subscribe(protocol.AllDevices(kind), 1, ing.Handle); err != nil {
			return fmt.Errorf("hub: subscribe: %w", err)
		}
	}
	if !cfg.NoHomeAssistant {
		bridge, err := homeassistant.New(homeassistant.Config{Prefix: cfg.HAPrefix, Version: buildinfo.Version,
			Devices: reg.List, Latest: mstore.Latest, Logger: h.log.With("component", "homeassistant"),
			Publish: func(ctx context.Context, topic string, payload []byte, retained bool) error {
				return client.Publish(ctx, bus.Message{Topic: topic, Payload: payload, QoS: 1, Retained: retained})
			},
			// Home Assistant's switches: through the command service (and
			// its audit log), waiting for the device's result.
			Command: func(ctx context.Context, dev string, req command.Request) (command.Record, error) {
				r, err := cmds.Submit(ctx, dev, req)
				if err != nil {
					return r, err
				}
				return cmds.Wait(ctx, dev, r.ID)
			}})
		if err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		ha = newHALink(bridge, reg, evbus, h.log.With("component", "homeassistant"))
		for _, f := range bridge.Subscriptions() {
			if err := client.Subscribe(f, 1, ha.handle); err != nil {
				return fmt.Errorf("hub: subscribe: %w", err)
			}
		}
	}
	if dyn != nil {
		dyn.client = client
		if err := client.Subscribe(dynsecResponseTopic, 1, dyn.handleResponse); err != nil {
			return fmt.Errorf("hub: subscribe: %w", err)
		}
	}

	var lanWatch *household.Watcher
	if !cfg.NoMDNS {
		lanWatch = household.New(household.Config{Types: cfg.DiscoverTypes, Logger: h.log.With("component", "household")})
	}
	var brokerStats func() (int64, int64, int64, uint64, uint64)
	if brk != nil {
		brokerStats = func() (int64, int64, int64, uint64, uint64) {
			st := brk.Stats()
			return st.ClientsConnected, st.MessagesReceived, st.MessagesSent, st.Refused, st.Denied
		}
	}
	// Integration accounts live in the embedded broker; with an external
	// broker its own ACLs apply and the endpoints are left out.
	var apiIntegrations api.Integrations
	if cfg.Broker == "" {
		apiIntegrations = accts
	}
	stopping := make(chan struct{}) // closed when the HTTP server shuts down
	handler, err := api.New(api.Config{
		Integrations: apiIntegrations,
		HubID:        hubID, Devices: reg, Tokens: toks, Accounts: accounts, BrokerURLs: brokerURLs,
		CAFingerprint: ca.Fingerprint(),
		Discovered: func() []household.Service {
			if lanWatch == nil {
				return nil
			}
			return lanWatch.List()
		},
		IssueCertificate: func(id string, pub ed25519.PublicKey) ([]byte, error) {
			c, err := ca.IssueClient(id, pub, time.Now())
			if err != nil {
				return nil, err
			}
			return c.Raw, nil
		},
		Disconnect: func(id string) {
			if brk != nil {
				brk.Disconnect(id)
			}
		},
		Pairing:  &pairing.Window{},
		Commands: cmds,
		CAPEM:    ca.CertPEM(),
		Metrics:  mstore,
		Events:   evbus,
		Stopping: stopping,
		Health:   mon,
		Prometheus: prom.Handler(prom.Sources{
			Devices:   reg.List,
			Metrics:   mstore,
			Ingest:    mingest,
			StoreSize: db.Size,
			Broker:    brokerStats,
			Rejected:  func() uint64 { r, _ := ing.Stats(); return r },
			Limited:   func() uint64 { _, l := ing.Stats(); return l },
			Dropped:   func() []prom.Dropped { return append(brokerDropped(brk), httpDropped(httpLn)...) },
		}),
		Logger: h.log.With("component", "api"),
	})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(stopping) })

	// Everything that can fail is built before the first goroutine starts,
	// so an error return never leaves goroutines behind.
	var ann *discovery.Announcer
	if !cfg.NoMDNS {
		ann, err = discovery.NewAnnouncer(discovery.Announcement{
			Instance: "Alicia " + hubID,
			Port:     httpLn.Addr().(*net.TCPAddr).Port,
			TXT:      announcementTXT(hubID, ca.Fingerprint(), mqttsPort),
		}, h.log.With("component", "mdns"))
		if err != nil {
			return fmt.Errorf("hub: mdns: %w", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return db.Run(gctx) })
	g.Go(func() error { return reg.Run(gctx) })
	g.Go(func() error { return mingest.Run(gctx) })
	g.Go(func() error { return mon.Run(gctx) })
	g.Go(func() error { return cmds.Run(gctx) })
	if ha != nil {
		g.Go(func() error { ha.run(gctx); return nil })
	}
	sendQueued := func(id string) { go cmds.DeviceOnline(gctx, id) }
	online.Store(&sendQueued)
	if pprofLn != nil {
		g.Go(func() error { return servePprof(gctx, pprofLn, h.log) })
	}
	if hook != nil {
		g.Go(func() error { return hook.Run(gctx) })
	}
	g.Go(func() error {
		// A rollup that keeps failing is retried every pass: say so every
		// ten minutes, not every pass (the count is in /metrics).
		rlog := &throttle.Log{Logger: h.log.With("component", "metrics"), Every: 10 * time.Minute}
		mstore.RunRollups(gctx, 15*time.Second, time.Now, func(err error) {
			rlog.Warn("rollup", "metrics rollups failed; retried every pass (alicia_hub_metrics_rollup_failures_total)", "err", err)
		})
		return nil
	})
	g.Go(func() error { forwardEvents(gctx, evbus, client, hubID, h.log); return nil })
	// The embedded broker stops only after the hub's own connection has
	// said goodbye on it.
	brokerCtx, stopBroker := context.WithCancel(context.Background())
	defer stopBroker()
	if brk != nil {
		brokerRan = true
		g.Go(func() error { return brk.Run(brokerCtx) })
	}
	g.Go(func() error {
		defer stopBroker()
		return client.Run(gctx)
	})
	g.Go(func() error {
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("hub: http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})

	if ann != nil {
		g.Go(func() error { return lanWatch.Run(gctx) })
		g.Go(func() error {
			// mDNS is a convenience: without it agents need --hub. Its
			// failure is logged loudly by the announcer, not fatal.
			if err := ann.Run(gctx); err != nil && gctx.Err() == nil {
				h.log.Error("mDNS announcement stopped; agents must be given --hub", "err", err)
			}
			return nil
		})
	}

	h.mu.Lock()
	h.httpAddr, h.mqttAddr, h.mqttsAddr, h.hubID, h.adminPath = httpLn.Addr().String(), mqttAddr, mqttsAddr, hubID, adminPath
	h.caFingerprint = ca.Fingerprint()
	h.mu.Unlock()
	close(h.ready)
	h.log.Info("hub serving", "hub_id", hubID, "http", httpLn.Addr().String(), "mqtt", mqttAddr, "mqtts", mqttsAddr, "ca_fingerprint", ca.Fingerprint(), "external_broker", cfg.Broker != "", "data_dir", cfg.DataDir)
	return g.Wait()
}

// forwardEvents publishes the hub's events on alicia/v1/hub/events for
// integrations until ctx is done. Events that arrive while the hub's own
// connection is down are not queued (the SSE stream has them).
func forwardEvents(ctx context.Context, evbus *events.Bus, client *bus.Client, hubID string, log *slog.Logger) {
	_, sub := evbus.Subscribe(0)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				log.Warn("event forwarding fell behind; resuming with new events")
				_, sub = evbus.Subscribe(0)
				continue
			}
			var data map[string]any
			if len(e.Data) > 0 {
				_ = json.Unmarshal(e.Data, &data) // the bus made it from a JSON object
			}
			b, err := protocol.Encode(hubID, e.Time, &protocol.HubEvent{ID: e.ID, Event: e.Type, Device: e.Device, Data: data})
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err = client.Publish(pctx, bus.Message{Topic: protocol.HubEventsTopic, Payload: b, QoS: 1})
				cancel()
			}
			if err != nil && ctx.Err() == nil {
				log.Debug("event not forwarded to MQTT", "event", e.Type, "id", e.ID, "err", err)
			}
		}
	}
}

// serverNames returns this machine's names and addresses for the hub's
// server certificate: localhost, the host name and its mDNS .local name,
// and every interface address (a hub whose address changes gets the new
// one at its next start or certificate renewal).
func serverNames() ([]string, []net.IP) {
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		h = strings.TrimSuffix(h, ".local")
		names = append(names, h, h+".local")
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				ips = append(ips, n.IP)
			}
		}
	}
	return names, ips
}

// loopbackFor returns the address the hub itself dials to reach a listener
// bound to addr: the loopback address when it listens on every interface.
func loopbackFor(addr net.Addr) string {
	ip := addr.(*net.TCPAddr).IP
	switch {
	case ip.IsUnspecified() && ip.To4() == nil:
		return "::1"
	case ip.IsUnspecified():
		return "127.0.0.1"
	}
	return ip.String()
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// loadOrCreateHubID returns the hub's stable ID, creating it on first start.
func loadOrCreateHubID(db *store.DB) (string, error) {
	meta := db.Keyspace("meta")
	b, err := meta.Get("hub_id")
	if err == nil {
		return string(b), nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("hub: read hub id: %w", err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := "hub-" + hex.EncodeToString(r[:])
	if err := meta.Put("hub_id", []byte(id)); err != nil {
		return "", fmt.Errorf("hub: save hub id: %w", err)
	}
	return id, nil
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

// brokerDropped returns the embedded broker's connections closed before
// authentication, as labelled in the hub's metrics; none with an external
// broker (brk nil).
func brokerDropped(brk *broker.Broker) []prom.Dropped {
	if brk == nil {
		return nil
	}
	d := brk.Stats().Dropped
	return []prom.Dropped{
		{Listener: "mqtt", Reason: "connect_timeout", Count: d.ConnectTimeout},
		{Listener: "mqtt", Reason: "connect_too_large", Count: d.ConnectTooLarge},
		{Listener: "mqtt", Reason: "connect_malformed", Count: d.ConnectMalformed},
		{Listener: "mqtt", Reason: "tls_handshake_timeout", Count: d.TLSHandshakeTimeout},
		{Listener: "mqtt", Reason: "tls_handshake_failed", Count: d.TLSHandshakeFailed},
	}
}

// httpDropped labels the HTTP port's dropped connections for /metrics.
func httpDropped(ln *sniff.Listener) []prom.Dropped {
	c := ln.Counts()
	return []prom.Dropped{
		{Listener: "http", Reason: "first_byte_timeout", Count: c.Silent},
		{Listener: "http", Reason: "tls_handshake_timeout", Count: c.TLSTimeout},
		{Listener: "http", Reason: "tls_handshake_failed", Count: c.TLSFailed},
	}
}
