package hubd

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/dynsec"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/household"
	"github.com/alicia-home/alicia/hub/ingest"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/hub/sniff"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/discovery"
	"github.com/alicia-home/alicia/internal/pki"
	"github.com/alicia-home/alicia/internal/store"
)

// parts are the hub's components, built by build in dependency order and
// started by run. Each field is set by one build step and read only after
// it; optional parts are nil when configured off.
type parts struct {
	cfg Config
	log *slog.Logger
	// closers release what build acquired; close calls them in reverse.
	closers []func() error

	db        *store.DB
	hubID     string
	toks      *tokens.Tokens
	accts     *integrations.Accounts
	events    *events.Bus
	reg       *registry.Registry
	ca        *pki.CA
	certs     *pki.ServerCerts
	httpLn    *sniff.Listener
	pprofLn   net.Listener // nil without --pprof-addr
	broker    *brokerSide
	client    *bus.Client
	dynsec    *dynsec.Sync // external broker only
	configs   *spec.Store
	confsync  *confsync.Sync
	rollouts  *rollout.Manager
	sched     *scheduler.Scheduler
	mstore    *metrics.Store
	mingest   *metrics.Ingester
	cmds      *command.Service
	ingest    *ingest.Dispatcher
	health    *health.Engine
	webhook   *health.Webhook      // nil without --alert-webhook
	ha        *homeassistant.Link  // nil with --no-homeassistant
	lan       *household.Watcher   // nil with --no-mdns
	announcer *discovery.Announcer // nil with --no-mdns
	srv       *http.Server
}

// build builds every part of the hub. It starts no goroutine, so a failure
// leaves nothing running: what was acquired is released before it returns.
// A new subsystem is one more step here (and a line in run).
func build(cfg Config) (p *parts, err error) {
	p = &parts{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			_ = p.close()
		}
	}()
	for _, step := range []func() error{
		p.openState, p.openIdentity, p.openListeners, p.openBroker, p.openBus,
		p.openConfigs, p.openConfSync, p.openMetrics, p.openCommands, p.openHomeAssistant, p.openIngest, p.openHealth, p.openRollouts, p.openScheduler, p.openAPI, p.openMDNS,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// onClose registers f to run at close, before what was registered earlier.
func (p *parts) onClose(f func() error) { p.closers = append(p.closers, f) }

// close releases what build acquired, latest first, and returns the first
// error.
func (p *parts) close() error {
	var first error
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	p.closers = nil
	return first
}

// closeListener is a closer for a listener that its server may already
// have closed.
func closeListener(ln net.Listener) func() error {
	return func() error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}

// openState opens the store and what lives in it: the hub ID, the admin
// token, integrations' accounts and the registry (whose changes go to the
// event stream).
func (p *parts) openState() error {
	cfg := p.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("hub: data dir: %w", err)
	}
	db, err := store.Open(store.Options{Dir: filepath.Join(cfg.DataDir, "store"), Logger: p.log.With("component", "store")})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.db = db
	p.onClose(func() error {
		if err := db.Close(); err != nil {
			return fmt.Errorf("hub: close store: %w", err)
		}
		return nil
	})
	if p.hubID, err = loadOrCreateHubID(db); err != nil {
		return err
	}
	p.toks = tokens.Open(db, tokens.Config{})
	if err := p.checkAdminToken(); err != nil {
		return err
	}
	if p.accts, err = integrations.Open(db, integrations.Config{HAPrefix: cfg.HAPrefix}); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	ev := events.New(0, nil)
	p.events = ev
	p.reg, err = registry.Open(db, registry.Config{TickInterval: cfg.HeartbeatTimeoutCheck, Logger: p.log.With("component", "registry"),
		OnChange: func(d registry.Device) { ev.Publish(events.DeviceState, d.ID, deviceState(d)) }})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// deviceState is a device_state event's data.
func deviceState(d registry.Device) map[string]string {
	return map[string]string{"name": d.Name, "status": string(d.Status), "state": d.Status.State(), "reason": d.StatusReason}
}

// checkAdminToken creates the admin token on the first start, and says so
// when the file no longer holds the working token.
func (p *parts) checkAdminToken() error {
	path := filepath.Join(p.cfg.DataDir, "admin.token")
	created, err := p.toks.EnsureAdmin(path)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if created {
		p.log.Info("created the admin token", "path", path)
	} else if err := p.toks.CheckAdminFile(path); err != nil {
		p.log.Warn("the admin token file does not hold the working admin token: the REST API refuses what it holds",
			"path", path, "err", err, "fix", "stop the hub, then run: "+tokens.RotateCommand+" --data-dir "+p.cfg.DataDir)
	}
	return nil
}

// openIdentity loads (or creates) the hub's CA and a server certificate
// from it, re-issued before it expires, for the API's HTTPS and the TLS
// MQTT listener. Besides the name agents pin, the certificate names this
// machine, so that integrations (Home Assistant) can verify it by host
// name or address.
func (p *parts) openIdentity() error {
	dir := filepath.Join(p.cfg.DataDir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	ca, created, err := pki.LoadOrCreateCA(dir, p.hubID, time.Now())
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if created {
		p.log.Info("created the hub CA", "dir", dir, "ca_fingerprint", ca.Fingerprint())
	}
	names, ips := serverNames()
	if p.certs, err = pki.NewServerCerts(ca, p.hubID, names, ips, nil); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.ca = ca
	return nil
}

// openListeners binds the REST port (HTTP and HTTPS on one port) and, if
// asked, the profiling port.
func (p *parts) openListeners() error {
	if p.cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", p.cfg.PprofAddr)
		if err != nil {
			return fmt.Errorf("hub: pprof listener: %w", err)
		}
		p.pprofLn = ln
		p.onClose(closeListener(ln))
	}
	raw, err := net.Listen("tcp", p.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("hub: http listener: %w", err)
	}
	p.httpLn = sniff.New(raw, &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: p.certs.GetCertificate}, sniff.DefaultTimeout)
	p.onClose(closeListener(p.httpLn))
	return nil
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
