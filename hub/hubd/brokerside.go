package hubd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/alicia-home/alicia/hub/api"
	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/hub/brokerauth"
	"github.com/alicia-home/alicia/hub/dynsec"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/prom"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// brokerSide is the broker the hub and its devices use: the embedded one
// (brk set) or an external one (external set).
type brokerSide struct {
	// busCfg is the hub's own connection to it.
	busCfg bus.Config
	// urls are the broker URLs given to an agent that enrols.
	urls func(*http.Request) []string
	// brk is the embedded broker; nil with an external broker.
	brk *broker.Broker
	// external is the external broker's URL; nil with the embedded one.
	external *brokerURL
	// The embedded broker's bound listeners ("" when off), and the TLS
	// one's port (0 when off), which the mDNS announcement carries.
	mqttAddr, mqttsAddr string
	mqttsPort           int
}

// openBroker prepares the embedded broker on its listeners, or the
// connection to an external one. Agents are given --advertise-mqtt if set.
func (p *parts) openBroker() error {
	if p.cfg.Broker != "" {
		bu, _ := parseBrokerURL(p.cfg.Broker) // validated in New
		p.broker = &brokerSide{external: &bu, busCfg: bus.Config{URL: bu.url, ClientID: p.hubID, Username: bu.username, Password: bu.password},
			urls: func(*http.Request) []string { return []string{bu.url} }}
	} else if err := p.openEmbeddedBroker(); err != nil {
		return err
	}
	if adv := p.cfg.AdvertiseMQTT; len(adv) > 0 {
		p.broker.urls = func(*http.Request) []string { return adv }
	}
	return nil
}

// openEmbeddedBroker builds the embedded broker on its plain listener
// (loopback by default; a private one for the hub's own connection when
// off) and its TLS one, and the hub's connection with a per-run secret.
func (p *parts) openEmbeddedBroker() error {
	cfg := p.cfg
	secret := randomSecret()
	auth := brokerauth.New(p.hubID, secret, integrations.HubScope(cfg.HAPrefix), p.reg, p.accts)
	brk, err := broker.New(broker.Config{Logger: p.log.With("component", "broker")}, auth)
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
	// The broker closes its listeners when it runs; until then, close
	// must not leave the ports bound.
	p.onClose(closeListener(ln))
	if err := brk.Serve("mqtt", ln); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	side := &brokerSide{brk: brk, mqttAddr: ln.Addr().String()}
	if cfg.MQTTSAddr != "off" {
		clientCAs := x509.NewCertPool()
		clientCAs.AddCert(p.ca.Cert)
		tln, err := tls.Listen("tcp", cfg.MQTTSAddr, &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: p.certs.GetCertificate,
			// Devices will present certificates from this CA; until they
			// do, username and password authenticate them.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  clientCAs,
		})
		if err != nil {
			return fmt.Errorf("hub: mqtts listener: %w", err)
		}
		p.onClose(closeListener(tln))
		if err := brk.Serve("mqtts", tln); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		side.mqttsPort, side.mqttsAddr = tln.Addr().(*net.TCPAddr).Port, tln.Addr().String()
	}
	port := ln.Addr().(*net.TCPAddr).Port
	side.busCfg = bus.Config{URL: "mqtt://" + net.JoinHostPort(loopbackFor(ln.Addr()), strconv.Itoa(port)), ClientID: p.hubID, Username: p.hubID, Password: secret}
	plainOff := cfg.MQTTAddr == "off"
	loopbackOnly := ln.Addr().(*net.TCPAddr).IP.IsLoopback()
	switch {
	case plainOff && side.mqttsPort == 0:
		p.log.Warn("both MQTT listeners are off: no device can connect")
	case side.mqttsPort == 0 && loopbackOnly:
		p.log.Info("the only MQTT listener is loopback-only: only agents on this machine can connect (use --mqtts-addr or --mqtt-addr to serve the LAN)", "mqtt", side.mqttAddr)
	}
	// Agents get the TLS listener first, then the plain one where they can
	// reach it, on the host they reached the API on.
	mqttsPort := side.mqttsPort
	side.urls = func(r *http.Request) []string {
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
	p.broker = side
	return nil
}

// openBus builds the hub's own connection: its Will and goodbye say
// "offline" on alicia/v1/hub/status, its connect hooks say "online" (after
// granting the hub its rights on an external broker).
func (p *parts) openBus() error {
	will, err := protocol.Encode(p.hubID, time.Now(), &protocol.HubStatus{State: protocol.StateOffline})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	cfg := p.broker.busCfg
	cfg.Logger = p.log.With("component", "bus")
	// Registrations and statuses arrive in bursts (a hub restart with every
	// agent reconnecting, an external broker replaying retained messages):
	// queue generously rather than drop.
	cfg.HandlerQueue = 8192
	cfg.Will = &bus.Message{Topic: protocol.HubStatusTopic, Payload: will, QoS: 1, Retained: true}
	cfg.Goodbye = []bus.Message{*cfg.Will}
	if p.client, err = bus.New(cfg); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if ext := p.broker.external; ext != nil {
		var extra []string
		if !p.cfg.NoHomeAssistant {
			extra = []string{p.cfg.HAPrefix + "/#"}
		}
		p.dynsec = dynsec.New(p.client, ext.username, extra, p.log.With("component", "dynsec"))
		if err := p.client.Subscribe(dynsec.ResponseTopic, 1, p.dynsec.HandleResponse); err != nil {
			return fmt.Errorf("hub: subscribe: %w", err)
		}
		if err := p.client.OnConnect(p.grantHubRights); err != nil {
			return fmt.Errorf("hub: %w", err)
		}
	}
	if err := p.client.OnConnect(p.sayOnline); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// grantHubRights gives the hub's account its rights on the external
// broker (a connect hook).
func (p *parts) grantHubRights(ctx context.Context) {
	if err := p.dynsec.EnsureHubRights(ctx); err != nil {
		p.log.Error("external broker: cannot grant the hub its rights", "err", err)
	}
}

// sayOnline publishes the hub's retained "online" status (a connect hook).
func (p *parts) sayOnline(ctx context.Context) {
	b, err := protocol.Encode(p.hubID, time.Now(), &protocol.HubStatus{State: protocol.StateOnline})
	if err == nil {
		err = p.client.Publish(ctx, bus.Message{Topic: protocol.HubStatusTopic, Payload: b, QoS: 1, Retained: true})
	}
	if err != nil {
		p.log.Warn("publish hub status", "err", err)
	}
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

// stats returns the embedded broker's counters for /metrics; nil with an
// external broker.
func (b *brokerSide) stats() func() (int64, int64, int64, uint64, uint64) {
	if b.brk == nil {
		return nil
	}
	return func() (int64, int64, int64, uint64, uint64) {
		st := b.brk.Stats()
		return st.ClientsConnected, st.MessagesReceived, st.MessagesSent, st.Refused, st.Denied
	}
}

// dropped returns the embedded broker's connections closed before
// authentication, as labelled in the hub's metrics; none with an external
// broker.
func (b *brokerSide) dropped() []prom.Dropped {
	if b.brk == nil {
		return nil
	}
	d := b.brk.Stats().Dropped
	return []prom.Dropped{
		{Listener: "mqtt", Reason: "connect_timeout", Count: d.ConnectTimeout},
		{Listener: "mqtt", Reason: "connect_too_large", Count: d.ConnectTooLarge},
		{Listener: "mqtt", Reason: "connect_malformed", Count: d.ConnectMalformed},
		{Listener: "mqtt", Reason: "tls_handshake_timeout", Count: d.TLSHandshakeTimeout},
		{Listener: "mqtt", Reason: "tls_handshake_failed", Count: d.TLSHandshakeFailed},
	}
}

// disconnect closes a device's session on the embedded broker (an external
// broker's is closed by deleting the device's account there).
func (b *brokerSide) disconnect(id string) {
	if b.brk != nil {
		b.brk.Disconnect(id)
	}
}
