package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Config configures a Presence.
type Config struct {
	// DeviceID is the device's ID (and MQTT client ID). Required.
	DeviceID string
	// Register is the registration published at each connect. Required,
	// and valid.
	Register *protocol.Register
	// Facts, if set, is called at each connect; its facts (boot time…)
	// replace the registration's when it succeeds.
	Facts func() (protocol.Facts, error)
	// HeartbeatInterval is how often Run sends a heartbeat. Required.
	HeartbeatInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Presence keeps one bus connection's device visible: see the package doc.
type Presence struct {
	cfg         Config
	log         *slog.Logger
	statusTopic string
	goodbye     []byte
	retimed     chan struct{} // signalled by SetHeartbeat

	// mu guards the fields below.
	mu      sync.Mutex
	reg     protocol.Register // Facts refreshed at each connect
	every   time.Duration     // the heartbeat interval
	session string            // names the current connection
	client  *bus.Client       // set by Attach
}

// New checks cfg and encodes the goodbye message. It does no I/O.
func New(cfg Config) (*Presence, error) {
	if cfg.Register == nil || cfg.HeartbeatInterval <= 0 {
		return nil, errors.New("presence: a registration and a heartbeat interval are required")
	}
	if err := protocol.ValidateID(cfg.DeviceID); err != nil {
		return nil, fmt.Errorf("presence: device id: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Presence{cfg: cfg, log: cfg.Logger, statusTopic: protocol.DeviceTopic(cfg.DeviceID, protocol.KindStatus), reg: *cfg.Register,
		every: cfg.HeartbeatInterval, retimed: make(chan struct{}, 1)}
	var err error
	if p.goodbye, err = p.status(protocol.StateOffline, protocol.ReasonShutdown, ""); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	return p, nil
}

func (p *Presence) status(state, reason, session string) ([]byte, error) {
	return protocol.Encode(p.cfg.DeviceID, time.Now(), &protocol.Status{State: state, Reason: reason, Session: session})
}

// Configure sets the Will, the goodbye and the birth of the connection
// that c configures.
func (p *Presence) Configure(c *bus.Config) {
	c.NewWill = p.newWill
	c.Goodbye = []bus.Message{{Topic: p.statusTopic, Payload: p.goodbye, QoS: 1, Retained: true}}
	c.OnConnect = p.birth
}

// newWill names a new session, before each connection attempt, in the
// Will: the hub ignores a late Will of a replaced connection.
func (p *Presence) newWill() *bus.Message {
	s := protocol.NewID()[:16]
	p.mu.Lock()
	p.session = s
	p.mu.Unlock()
	will, err := p.status(protocol.StateOffline, protocol.ReasonLost, s)
	if err != nil {
		panic(err) // a constant, valid payload: cannot fail
	}
	return &bus.Message{Topic: p.statusTopic, Payload: will, QoS: 1, Retained: true}
}

// current returns the session and the client.
func (p *Presence) current() (string, *bus.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.session, p.client
}

// birth publishes the registration and "online" (retained) after each
// connect.
func (p *Presence) birth(ctx context.Context) {
	var facts *protocol.Facts
	if p.cfg.Facts != nil {
		if f, err := p.cfg.Facts(); err == nil {
			facts = &f
		}
	}
	p.mu.Lock()
	if facts != nil {
		p.reg.Facts = *facts
	}
	reg := p.reg
	session, client := p.session, p.client
	p.mu.Unlock()
	online := &protocol.Status{State: protocol.StateOnline, Reason: protocol.ReasonStartup, Session: session}
	for _, m := range []protocol.Payload{&reg, online} {
		if err := p.publishRetained(ctx, client, m); err != nil {
			p.log.Warn("publish birth message", "type", m.MessageType(), "err", err)
			return
		}
	}
	p.log.Info("connected to the hub's broker", "device", p.cfg.DeviceID)
}

// publishRetained publishes m, retained, QoS 1, on its own topic.
func (p *Presence) publishRetained(ctx context.Context, client *bus.Client, m protocol.Payload) error {
	b, err := protocol.Encode(p.cfg.DeviceID, time.Now(), m)
	if err != nil {
		return err
	}
	return client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(p.cfg.DeviceID, protocol.Kind(m.MessageType())), Payload: b, QoS: 1, Retained: true})
}

// SetHeartbeat changes the heartbeat interval at run time: the next
// heartbeat is one new interval away. The registration says the interval
// (the hub judges a device late by it), so Run publishes it again.
func (p *Presence) SetHeartbeat(d time.Duration) {
	p.mu.Lock()
	changed := d > 0 && d != p.every
	if changed {
		p.every = d
		p.reg.HeartbeatMS = d.Milliseconds()
	}
	p.mu.Unlock()
	if changed {
		select {
		case p.retimed <- struct{}{}:
		default:
		}
	}
}

// Attach subscribes to the device's own status on client, which Configure
// configured, before client runs.
func (p *Presence) Attach(client *bus.Client) error {
	p.mu.Lock()
	p.client = client
	p.mu.Unlock()
	return client.Subscribe(p.statusTopic, 1, p.restoreOnline)
}

// restoreOnline handles the device's own retained status: a late Will of a
// replaced connection overwrites it with "offline"; seen while connected,
// the agent restores its "online" so that every subscriber (not only the
// hub) sees the truth.
func (p *Presence) restoreOnline(ctx context.Context, m bus.Message) {
	if len(m.Payload) == 0 {
		return
	}
	_, st, err := protocol.DecodeAs[*protocol.Status](m.Payload)
	if err != nil || st.State != protocol.StateOffline || st.Reason != protocol.ReasonLost {
		return
	}
	cur, client := p.current()
	if st.Session == cur || !client.Connected() {
		return
	}
	b, err := p.status(protocol.StateOnline, protocol.ReasonStartup, cur)
	if err == nil {
		err = client.Publish(ctx, bus.Message{Topic: p.statusTopic, Payload: b, QoS: 1, Retained: true})
	}
	if err != nil {
		p.log.Debug("restore online status", "err", err)
		return
	}
	p.log.Info("restored the online status over a stale last will", "will_session", st.Session)
}

// Run publishes a heartbeat every interval while connected, until ctx is
// done. Attach must have been called.
func (p *Presence) Run(ctx context.Context) {
	_, client := p.current()
	start := time.Now()
	p.mu.Lock()
	every := p.every
	p.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	var seq uint64
	topic := protocol.DeviceTopic(p.cfg.DeviceID, protocol.KindHeartbeat)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.retimed:
			p.mu.Lock()
			every, reg := p.every, p.reg
			p.mu.Unlock()
			t.Reset(every)
			if client.Connected() {
				if err := p.publishRetained(ctx, client, &reg); err != nil && ctx.Err() == nil {
					p.log.Warn("publish the registration with the new heartbeat interval", "err", err)
				}
			}
			p.log.Info("heartbeat interval changed", "interval", every)
			continue
		case <-t.C:
		}
		if !client.Connected() {
			continue
		}
		seq++
		b, err := protocol.Encode(p.cfg.DeviceID, time.Now(), &protocol.Heartbeat{Seq: seq, UptimeS: int64(time.Since(start).Seconds())})
		if err == nil {
			err = client.Publish(ctx, bus.Message{Topic: topic, Payload: b, QoS: 0})
		}
		if err != nil && ctx.Err() == nil {
			p.log.Debug("heartbeat not sent", "err", err)
		}
	}
}
