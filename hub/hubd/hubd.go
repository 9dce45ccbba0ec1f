package hubd

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Hub is one running hub. Create it with New and run it with Run.
type Hub struct {
	cfg Config
	log *slog.Logger

	ready chan struct{}
	// mu guards the fields below, set once when the hub serves.
	mu        sync.Mutex
	httpAddr  string
	mqttAddr  string
	mqttsAddr string
	// caFingerprint is the SHA-256 of the hub CA's public key.
	caFingerprint string
	hubID         string
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

// Run builds every part of the hub (see build: anything that can fail,
// fails before a goroutine starts), runs them until ctx is done or one of
// them fails, then stops them all and closes the store.
func (h *Hub) Run(ctx context.Context) (err error) {
	p, err := build(h.cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := p.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return p.run(ctx, func() { h.serving(p) })
}

// serving records where p serves and closes Ready.
func (h *Hub) serving(p *parts) {
	h.mu.Lock()
	h.httpAddr, h.mqttAddr, h.mqttsAddr = p.httpLn.Addr().String(), p.broker.mqttAddr, p.broker.mqttsAddr
	h.hubID, h.caFingerprint = p.hubID, p.ca.Fingerprint()
	h.mu.Unlock()
	close(h.ready)
	h.log.Info("hub serving", "hub_id", p.hubID, "http", h.httpAddr, "mqtt", h.mqttAddr, "mqtts", h.mqttsAddr,
		"ca_fingerprint", h.caFingerprint, "external_broker", h.cfg.Broker != "", "data_dir", h.cfg.DataDir)
}
