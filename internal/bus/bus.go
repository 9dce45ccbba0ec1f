package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultKeepAlive            = 30 * time.Second
	DefaultConnectTimeout       = 10 * time.Second
	DefaultMaxReconnectInterval = 5 * time.Second
	DefaultHandlerQueue         = 256
)

const (
	// goodbyeTimeout bounds, in total, the wait for the Goodbye messages'
	// acknowledgements when Run stops.
	goodbyeTimeout = 2 * time.Second
	// disconnectQuiesce bounds paho's Disconnect (it returns as soon as the
	// DISCONNECT packet is written).
	disconnectQuiesce = 500 // milliseconds
	// maxTopicLen is MQTT's limit on a topic name or filter, in bytes.
	maxTopicLen = 65535
)

var (
	// ErrNotConnected is returned (wrapped) by Publish when there is no
	// connection to the broker, or when it is lost before the broker
	// acknowledges the message. Callers with durable needs keep their own
	// outbox and retry.
	ErrNotConnected = errors.New("bus: not connected")

	// ErrNotAuthorized is returned (wrapped) by Run when the broker refuses
	// the first connection with CONNACK "not authorized" or "bad user name or
	// password". Retrying cannot help until the credentials change.
	ErrNotAuthorized = errors.New("bus: not authorized")

	errClosed = errors.New("bus: client closed (Run has returned)")
)

// Config configures a Client. The zero value of every optional field selects
// its documented default; URL and ClientID are required.
type Config struct {
	// URL is the broker address: tcp:// or mqtt:// (plain), or ssl://, tls://
	// or mqtts:// (TLS). The port defaults to 1883 (plain) or 8883 (TLS).
	// Credentials in the URL are refused: use Username and Password.
	URL string
	// ClientID is the MQTT client identifier; it must pass
	// protocol.ValidateID. Two clients with one ID take each other's session
	// over and over: give each process its own.
	ClientID string
	// Username and Password authenticate to the broker. A Password needs a
	// Username (MQTT 3.1.1).
	Username, Password string
	// TLS configures TLS for the TLS schemes (nil: system roots, server name
	// taken from URL). Setting it with a plain scheme is an error, so that a
	// typo cannot send credentials in clear.
	TLS *tls.Config
	// KeepAlive is the MQTT keep-alive (default 30s, at least 1s). The broker
	// declares the client dead, and publishes its Will, after 1.5×KeepAlive
	// of silence; the client declares the connection dead when a PINGREQ is
	// not answered within min(KeepAlive, 10s).
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS and CONNACK),
	// the wait for each SUBACK, and each socket write (default 10s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the backoff between connection attempts
	// (default 5s). The backoff starts at 100ms (or this cap, if smaller),
	// doubles after each failure, and is jittered to between 50% and 100%.
	MaxReconnectInterval time.Duration
	// Will, if not nil, is the Last Will the broker publishes when the
	// connection dies without a DISCONNECT.
	Will *Message
	// NewWill, if not nil, is called before each connection attempt and its
	// result replaces Will for that connection. Use it when the Will must
	// describe the connection it belongs to (an agent stamps its "offline"
	// status with the connect time, so a late Will of a replaced connection
	// can be recognised as stale).
	NewWill func() *Message
	// Goodbye messages are published by Run when its ctx is done, before the
	// clean DISCONNECT; Run waits at most 2s in total for them to be written
	// and, for QoS 1 and 2, acknowledged. An agent publishes its retained
	// "offline" status here.
	Goodbye []Message
	// OnConnect, if not nil, is called after every successful connect and
	// reconnect, once all registered subscriptions are re-established, in
	// its own goroutine, with Run's context. Calls for successive
	// connections may overlap if one is slow. Run waits for it to return.
	// Use it to (re)publish birth messages.
	OnConnect func(ctx context.Context)
	// HandlerQueue is the length of each subscription's message queue
	// (default 256). When it is full, new messages for that subscription
	// are dropped and counted in Stats.Dropped.
	HandlerQueue int
	// Logger receives the client's logs (nil: discarded).
	Logger *slog.Logger
}

// Message is an MQTT application message, published or received.
type Message struct {
	// Topic is the topic name; no wildcards when publishing.
	Topic string
	// Payload is the message body (may be empty).
	Payload []byte
	// QoS is 0, 1 or 2. On a received message it is the delivery QoS, at
	// most the subscription's.
	QoS byte
	// Retained asks the broker to keep the message for later subscribers;
	// on a received message it marks one the broker had kept.
	Retained bool
}

// Handler processes a message received on a subscription. Calls for one
// subscription are sequential, in arrival order, on that subscription's
// worker goroutine; handlers of different subscriptions run concurrently.
// ctx is done when Run is stopping: a handler must then return promptly,
// because Run waits for it. A Handler may call any Client method.
type Handler func(ctx context.Context, m Message)

// Stats are counters since New.
type Stats struct {
	// Connects counts successful connections (subscriptions re-established).
	Connects uint64
	// Disconnects counts ends of those connections, lost or clean.
	Disconnects uint64
	// Dropped counts received messages discarded because their
	// subscription's handler queue was full.
	Dropped uint64
}

// Validate reports whether c is usable. Zero values of optional fields are
// valid (they select defaults).
func (c *Config) Validate() error {
	_, useTLS, err := parseBrokerURL(c.URL)
	if err != nil {
		return err
	}
	if err := protocol.ValidateID(c.ClientID); err != nil {
		return fmt.Errorf("bus: config: client id: %w", err)
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("bus: config: password set without username")
	}
	if c.TLS != nil && !useTLS {
		return fmt.Errorf("bus: config: TLS set but URL %q is not ssl://, tls:// or mqtts://", c.URL)
	}
	switch {
	case c.KeepAlive < 0 || (c.KeepAlive > 0 && c.KeepAlive < time.Second):
		return fmt.Errorf("bus: config: keep-alive %s: must be 0 (default) or at least 1s", c.KeepAlive)
	case c.KeepAlive > 65535*time.Second:
		return fmt.Errorf("bus: config: keep-alive %s: longer than MQTT's 65535s", c.KeepAlive)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("bus: config: connect timeout %s: negative", c.ConnectTimeout)
	case c.MaxReconnectInterval < 0:
		return fmt.Errorf("bus: config: max reconnect interval %s: negative", c.MaxReconnectInterval)
	case c.HandlerQueue < 0:
		return fmt.Errorf("bus: config: handler queue %d: negative", c.HandlerQueue)
	}
	if c.Will != nil {
		if err := validateMessage(*c.Will); err != nil {
			return fmt.Errorf("bus: config: will: %w", err)
		}
	}
	for i, m := range c.Goodbye {
		if err := validateMessage(m); err != nil {
			return fmt.Errorf("bus: config: goodbye[%d]: %w", i, err)
		}
	}
	return nil
}

// parseBrokerURL returns the normalised broker URL (with a port) and whether
// it uses TLS.
func parseBrokerURL(raw string) (*url.URL, bool, error) {
	if raw == "" {
		return nil, false, errors.New("bus: config: URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, false, fmt.Errorf("bus: config: URL: %w", err)
	}
	var useTLS bool
	port := "1883"
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		useTLS, port = true, "8883"
	default:
		return nil, false, fmt.Errorf("bus: config: URL %q: scheme must be tcp, mqtt, ssl, tls or mqtts", raw)
	}
	if u.User != nil {
		return nil, false, errors.New("bus: config: URL must not contain credentials (use Username and Password)")
	}
	if u.Hostname() == "" {
		return nil, false, fmt.Errorf("bus: config: URL %q: no host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, false, fmt.Errorf("bus: config: URL %q: unexpected path, query or fragment", raw)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return &url.URL{Scheme: strings.ToLower(u.Scheme), Host: net.JoinHostPort(u.Hostname(), port)}, useTLS, nil
}

// validateMessage checks a message to publish (topic name without wildcards).
func validateMessage(m Message) error {
	if err := validateTopic(m.Topic, false); err != nil {
		return err
	}
	if m.QoS > 2 {
		return fmt.Errorf("topic %q: qos %d: must be 0, 1 or 2", m.Topic, m.QoS)
	}
	return nil
}

// validateTopic checks a topic name (wildcards false) or filter (true) against
// MQTT 3.1.1 §4.7. A malformed one would make the broker drop the connection.
func validateTopic(s string, wildcards bool) error {
	switch {
	case s == "":
		return errors.New("empty topic")
	case len(s) > maxTopicLen:
		return fmt.Errorf("topic %.32q…: longer than %d bytes", s, maxTopicLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("topic %q: not valid UTF-8", s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("topic %q: contains NUL", s)
	}
	if !wildcards {
		if strings.ContainsAny(s, "+#") {
			return fmt.Errorf("topic %q: wildcards are not allowed in a topic name", s)
		}
		return nil
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("filter %q: '#' must be the last level", s)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("filter %q: a wildcard must fill a whole level", s)
		}
	}
	return nil
}

// Client is one MQTT connection, kept up by Run. All methods are safe for
// concurrent use by multiple goroutines, including from handlers and
// OnConnect.
type Client struct {
	cfg    Config // defaults applied
	broker *url.URL
	useTLS bool
	log    *slog.Logger

	connects, disconnects, dropped atomic.Uint64

	mu          sync.Mutex // guards the fields below
	subs        map[string]*subscription
	sess        *session      // non-nil while connected with subscriptions re-established
	connectedCh chan struct{} // closed when sess becomes non-nil; replaced when it becomes nil
	state       runState
	onConnect   []func(context.Context) // Config.OnConnect, then those added with OnConnect
	runCtx      context.Context         // Run's context, for goroutines started after Run began
	wg          sync.WaitGroup          // workers and OnConnect calls; Add only while state == running
	done        chan struct{}           // closed when Run returns
}

type runState int

const (
	stateIdle runState = iota
	stateRunning
	stateStopped
)

// New validates cfg and returns a Client with defaults applied. It does no
// I/O and starts no goroutines; call Run to connect.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	broker, useTLS, _ := parseBrokerURL(cfg.URL)
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxReconnectInterval == 0 {
		cfg.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if cfg.HandlerQueue == 0 {
		cfg.HandlerQueue = DefaultHandlerQueue
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Copy what the caller could mutate after New returns.
	if cfg.Will != nil {
		w := cloneMessage(*cfg.Will)
		cfg.Will = &w
	}
	goodbye := make([]Message, len(cfg.Goodbye))
	for i, m := range cfg.Goodbye {
		goodbye[i] = cloneMessage(m)
	}
	cfg.Goodbye = goodbye
	c := &Client{
		cfg:         cfg,
		broker:      broker,
		useTLS:      useTLS,
		log:         logger.With("client_id", cfg.ClientID),
		subs:        make(map[string]*subscription),
		connectedCh: make(chan struct{}),
		done:        make(chan struct{}),
	}
	if cfg.OnConnect != nil {
		c.onConnect = append(c.onConnect, cfg.OnConnect)
	}
	return c, nil
}

// OnConnect adds f to the functions called after every successful connect
// and reconnect, as Config.OnConnect is: all of them in turn, in the order
// they were added (Config.OnConnect first), in one goroutine Run waits
// for. It lets a component that is built after
// the client, and uses it, register its own birth messages. Call it
// before Run: it reports an error once Run has started.
func (c *Client) OnConnect(f func(ctx context.Context)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateIdle {
		return errors.New("bus: OnConnect after Run started")
	}
	c.onConnect = append(c.onConnect, f)
	return nil
}

func cloneMessage(m Message) Message {
	m.Payload = append([]byte(nil), m.Payload...)
	return m
}

// Connected reports whether the client is connected and its subscriptions are
// re-established. The answer may be stale as soon as it is returned.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// WaitConnected blocks until the client is connected (see Connected), ctx is
// done (it returns an error wrapping ctx.Err()) or Run has returned.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	connected, ch := c.sess != nil, c.connectedCh
	stopped := c.state == stateStopped
	c.mu.Unlock()
	switch {
	case connected:
		return nil
	case stopped:
		return errClosed
	}
	select {
	case <-ch:
		return nil
	case <-c.done:
		return errClosed
	case <-ctx.Done():
		return fmt.Errorf("bus: wait connected: %w", ctx.Err())
	}
}

// Stats returns the counters. It may be called at any time.
func (c *Client) Stats() Stats {
	return Stats{
		Connects:    c.connects.Load(),
		Disconnects: c.disconnects.Load(),
		Dropped:     c.dropped.Load(),
	}
}

// session returns the current connection, or nil.
func (c *Client) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}
