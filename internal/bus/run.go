package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// session is one established MQTT connection: a paho client used for exactly
// one connection and then discarded, so that no paho state (status machine,
// message ids, routes) survives a reconnect.
type session struct {
	pc   mqtt.Client
	gen  uint64    // which connection this is; subscription.gen records it
	up   time.Time // when the CONNACK arrived
	lost chan struct{}

	lostOnce sync.Once
	lostErr  error // written before lost is closed
}

func (s *session) markLost(err error) {
	s.lostOnce.Do(func() {
		s.lostErr = err
		close(s.lost)
	})
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// Run connects and keeps the client connected until ctx is done, then
// publishes Config.Goodbye, disconnects cleanly and returns nil. A broker that
// is down or unreachable is not an error: Run retries with backoff and logs
// each failed attempt at warn. Run returns an error only for a permanent
// failure: the broker refusing the first connection for its credentials
// (wrapping ErrNotAuthorized) or its protocol version or client id. Refusals
// after a first success are retried, since they may be transient (a hub
// restarting with its credential store not yet loaded).
//
// Run may be called once. Before returning it stops the subscription workers
// and waits for running handlers and OnConnect calls.
func (c *Client) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	if c.state != stateIdle {
		c.mu.Unlock()
		cancel()
		return errors.New("bus: Run called more than once")
	}
	c.state = stateRunning
	c.runCtx = runCtx
	for _, sub := range c.subs {
		c.startWorkerLocked(sub)
	}
	c.mu.Unlock()

	err := c.loop(runCtx)

	cancel()
	c.mu.Lock()
	c.state = stateStopped
	c.sess = nil
	c.mu.Unlock()
	c.wg.Wait()
	close(c.done)
	return err
}

// loop is Run's connect/reconnect state machine.
func (c *Client) loop(ctx context.Context) error {
	minDelay := min(100*time.Millisecond, c.cfg.MaxReconnectInterval)
	delay := minDelay
	everConnected := false
	attempt := 0
	var gen uint64
	for {
		if ctx.Err() != nil {
			return nil
		}
		gen++
		s, err := c.connect(ctx, gen)
		if err == nil {
			err = c.establish(ctx, s)
			if err != nil {
				if ctx.Err() != nil && !s.isLost() {
					c.goodbye(s)
					return nil
				}
				s.pc.Disconnect(0)
				err = fmt.Errorf("bus: re-subscribing: %w", err)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !everConnected && isPermanent(err) {
				return err
			}
			attempt++
			wait := jitter(delay)
			c.log.Warn("connect failed", "broker", c.broker.String(), "attempt", attempt, "retry_in", wait, "err", err)
			if !sleepCtx(ctx, wait) {
				return nil
			}
			delay = min(2*delay, c.cfg.MaxReconnectInterval)
			continue
		}

		everConnected = true
		attempt = 0
		c.connects.Add(1)
		c.log.Info("connected", "broker", c.broker.String(), "subscriptions", c.subscriptionCount())
		c.mu.Lock()
		hooks := slices.Clone(c.onConnect)
		c.mu.Unlock()
		if len(hooks) > 0 {
			c.goOwned(func() {
				for _, f := range hooks {
					f(ctx)
				}
			})
		}

		select {
		case <-ctx.Done():
			c.setDisconnected(s)
			c.goodbye(s)
			c.disconnects.Add(1)
			c.log.Info("disconnected", "broker", c.broker.String())
			return nil
		case <-s.lost:
		}
		c.setDisconnected(s)
		c.disconnects.Add(1)
		// A connection that stayed up a while resets the backoff; one that is
		// dropped at once (e.g. a duplicate client id) keeps growing it.
		if time.Since(s.up) >= 2*c.cfg.MaxReconnectInterval {
			delay = minDelay
		}
		wait := jitter(delay)
		c.log.Warn("connection lost", "broker", c.broker.String(), "retry_in", wait, "err", s.lostErr)
		if !sleepCtx(ctx, wait) {
			return nil
		}
		delay = min(2*delay, c.cfg.MaxReconnectInterval)
	}
}

// goOwned runs f in a goroutine that Run waits for.
func (c *Client) goOwned(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRunning {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (c *Client) setDisconnected(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
		c.connectedCh = make(chan struct{})
	}
}

// connect makes one connection attempt. Cancelling ctx aborts it at once
// (closing the socket); it is otherwise bounded by ConnectTimeout.
func (c *Client) connect(ctx context.Context, gen uint64) (*session, error) {
	s := &session{gen: gen, lost: make(chan struct{})}
	var (
		abortMu   sync.Mutex
		stopAbort func() bool
	)
	o := mqtt.NewClientOptions().
		AddBroker(c.broker.String()).
		SetClientID(c.cfg.ClientID).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password).
		SetProtocolVersion(4). // explicit: no silent retry with MQTT 3.1 after a refusal
		SetCleanSession(true).
		SetResumeSubs(false).
		SetAutoReconnect(false). // we reconnect ourselves: ctx-aware, Publish fails fast while down
		SetConnectRetry(false).
		SetKeepAlive(c.cfg.KeepAlive).
		// As much slack as the broker allows the client (1.5 × keep-alive):
		// on a lossy link, a PINGREQ and its PINGRESP may both wait for a
		// TCP retransmission, and dropping a healthy connection then shows
		// the device offline and online again (a flap).
		SetPingTimeout(min(c.cfg.KeepAlive*3/2, 15*time.Second)).
		SetConnectTimeout(c.cfg.ConnectTimeout).
		SetWriteTimeout(c.cfg.ConnectTimeout).
		SetOrderMatters(true). // our route callbacks only enqueue, so order is free
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.markLost(err) }).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			conn, err := c.dial(ctx, u)
			if err != nil {
				return nil, err
			}
			stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
			abortMu.Lock()
			stopAbort = stop
			abortMu.Unlock()
			return conn, nil
		})
	w := c.cfg.Will
	if c.cfg.NewWill != nil {
		w = c.cfg.NewWill()
	}
	if w != nil {
		o.SetBinaryWill(w.Topic, w.Payload, w.QoS, w.Retained)
	}
	s.pc = mqtt.NewClient(o)
	tok := s.pc.Connect()
	<-tok.Done() // bounded: see above
	abortMu.Lock()
	if stopAbort != nil {
		stopAbort() // the connection now outlives this attempt
	}
	abortMu.Unlock()
	if err := tok.Error(); err != nil {
		return nil, c.connectError(tok, err)
	}
	s.up = time.Now()
	return s, nil
}

// permanentError marks a refusal that retrying cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

func (c *Client) connectError(tok mqtt.Token, err error) error {
	var rc byte = packets.ErrNetworkError
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		rc = ct.ReturnCode()
	}
	switch rc {
	case packets.ErrRefusedNotAuthorised, packets.ErrRefusedBadUsernameOrPassword:
		return permanentError{fmt.Errorf("%w: broker %s refused client %q (user %q): %w",
			ErrNotAuthorized, c.broker, c.cfg.ClientID, c.cfg.Username, err)}
	case packets.ErrRefusedBadProtocolVersion, packets.ErrRefusedIDRejected:
		return permanentError{fmt.Errorf("bus: broker %s refused client %q: %w", c.broker, c.cfg.ClientID, err)}
	}
	return fmt.Errorf("bus: connect to %s: %w", c.broker, err)
}

func (c *Client) dial(ctx context.Context, u *url.URL) (net.Conn, error) {
	d := &net.Dialer{Timeout: c.cfg.ConnectTimeout}
	if c.useTLS {
		td := &tls.Dialer{NetDialer: d, Config: c.cfg.TLS}
		return td.DialContext(ctx, "tcp", u.Host)
	}
	return d.DialContext(ctx, "tcp", u.Host)
}

// establish (re-)subscribes every registered subscription on s, then marks the
// client connected. Subscriptions registered meanwhile are picked up by the
// next round, so none is missed.
func (c *Client) establish(ctx context.Context, s *session) error {
	for {
		c.mu.Lock()
		var pending []*subscription
		for _, sub := range c.subs {
			if sub.gen != s.gen {
				sub.gen = s.gen
				pending = append(pending, sub)
			}
		}
		if len(pending) == 0 {
			c.sess = s
			close(c.connectedCh)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()

		// Send all SUBSCRIBEs, then collect the SUBACKs.
		toks := make([]mqtt.Token, len(pending))
		for i, sub := range pending {
			toks[i] = s.pc.Subscribe(sub.filter, sub.qos, sub.deliver)
		}
		timer := time.NewTimer(c.cfg.ConnectTimeout)
		for i, tok := range toks {
			select {
			case <-tok.Done():
			case <-s.lost:
				timer.Stop()
				return fmt.Errorf("connection lost: %w", s.lostErr)
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
				return fmt.Errorf("no SUBACK within %s", c.cfg.ConnectTimeout)
			}
			if err := tok.Error(); err != nil {
				timer.Stop()
				return fmt.Errorf("subscribe %q: %w", pending[i].filter, err)
			}
			if err := subackError(pending[i].filter, tok); err != nil {
				// It was accepted before; it stays registered and is tried
				// again on the next connect.
				c.log.Error("subscription refused by broker", "filter", pending[i].filter, "err", err)
			}
		}
		timer.Stop()
	}
}

// subackError reports a SUBACK failure (0x80) for the filter of tok.
func subackError(filter string, tok mqtt.Token) error {
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	for _, granted := range st.Result() {
		if granted == 0x80 {
			return fmt.Errorf("bus: subscribe %q: refused by broker (SUBACK 0x80)", filter)
		}
	}
	return nil
}

// goodbye publishes Config.Goodbye on s (at most goodbyeTimeout in total for
// the writes and acknowledgements) and disconnects cleanly, so the broker
// discards the Will.
func (c *Client) goodbye(s *session) {
	if len(c.cfg.Goodbye) > 0 {
		timer := time.NewTimer(goodbyeTimeout)
		toks := make([]mqtt.Token, len(c.cfg.Goodbye))
		for i, m := range c.cfg.Goodbye {
			toks[i] = s.pc.Publish(m.Topic, m.QoS, m.Retained, m.Payload)
		}
	wait:
		for i, tok := range toks {
			select {
			case <-tok.Done():
				if err := tok.Error(); err != nil {
					c.log.Warn("goodbye not delivered", "topic", c.cfg.Goodbye[i].Topic, "err", err)
				}
			case <-s.lost:
				c.log.Warn("goodbye not delivered: connection lost", "err", s.lostErr)
				break wait
			case <-timer.C:
				c.log.Warn("goodbye not acknowledged in time", "topic", c.cfg.Goodbye[i].Topic, "timeout", goodbyeTimeout)
				break wait
			}
		}
		timer.Stop()
	}
	s.pc.Disconnect(disconnectQuiesce)
}

// Publish sends m. It returns at once an error wrapping ErrNotConnected when
// the client is not connected; it never queues. QoS 0 returns once the
// message is written to the socket; QoS 1 (2) once the broker's PUBACK
// (PUBCOMP) arrives. Either wait is bounded by ctx; if the connection is lost
// first, the error wraps ErrNotConnected. A nil error is not proof of
// storage, only of the broker's acknowledgement. Publish does not keep
// m.Payload after it returns. It is safe for concurrent use.
func (c *Client) Publish(ctx context.Context, m Message) error {
	if err := validateMessage(m); err != nil {
		return fmt.Errorf("bus: publish: %w", err)
	}
	s := c.session()
	if s == nil {
		return fmt.Errorf("%w: publish %q", ErrNotConnected, m.Topic)
	}
	// paho keeps the slice for retransmission; the caller may reuse it.
	tok := s.pc.Publish(m.Topic, m.QoS, m.Retained, append([]byte(nil), m.Payload...))
	select {
	case <-tok.Done():
	case <-s.lost:
		return fmt.Errorf("%w: publish %q: connection lost", ErrNotConnected, m.Topic)
	case <-ctx.Done():
		return fmt.Errorf("bus: publish %q: %w", m.Topic, ctx.Err())
	}
	if err := tok.Error(); err != nil {
		if errors.Is(err, mqtt.ErrNotConnected) || s.isLost() || c.session() != s {
			return fmt.Errorf("%w: publish %q: %w", ErrNotConnected, m.Topic, err)
		}
		return fmt.Errorf("bus: publish %q: %w", m.Topic, err)
	}
	return nil
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
