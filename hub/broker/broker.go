package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Authenticator checks a client's credentials. Implementations must be safe
// for concurrent use and must not block: they run on the broker's connection
// goroutines.
type Authenticator interface {
	// Authenticate returns the identity of the client whose MQTT username is
	// username and password is password, or false if the credentials are
	// unknown or wrong.
	Authenticate(username string, password []byte) (Identity, bool)
	// Allowed reports whether an identity authenticated earlier may still
	// act (a device revoked since then may not). Called on every publish,
	// subscription and delivery: it must be cheap.
	Allowed(id Identity) bool
}

// Config configures a Broker. The zero value works.
type Config struct {
	// MaxPacketSize is the largest MQTT packet accepted, in bytes; larger
	// packets close the connection. Default 256 KiB.
	MaxPacketSize uint32
	// ConnectTimeout bounds the time from accepting a connection to having
	// its whole CONNECT packet, TLS handshake included; a client that takes
	// longer is closed. After the CONNECT, the keepalive the client asked
	// for governs. Default 10s.
	ConnectTimeout time.Duration
	// MaxConnectSize is the largest CONNECT packet accepted, in bytes after
	// its fixed header (the remaining length); a client announcing more is
	// closed before anything is allocated for its packet. Default 64 KiB, or
	// MaxPacketSize if smaller; at most MaxPacketSize.
	MaxConnectSize uint32
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
}

// Defaults of Config's fields.
const (
	DefaultMaxPacketSize  = 256 << 10
	DefaultConnectTimeout = 10 * time.Second
	DefaultMaxConnectSize = 64 << 10
)

// Broker is the embedded MQTT broker. Create it with New, add listeners with
// Serve and stop it by cancelling Run's context.
type Broker struct {
	log    *slog.Logger
	server *mqtt.Server
	auth   *authHook
	guard  guard

	mu        sync.Mutex // guards the fields below
	listeners int
}

// New returns a broker that authenticates clients with auth. It opens no
// sockets and starts no goroutines.
func New(cfg Config, auth Authenticator) (*Broker, error) {
	if auth == nil {
		return nil, errors.New("broker: nil Authenticator")
	}
	if cfg.MaxPacketSize == 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	if cfg.MaxConnectSize == 0 {
		cfg.MaxConnectSize = min(DefaultMaxConnectSize, cfg.MaxPacketSize)
	}
	if cfg.MaxConnectSize > cfg.MaxPacketSize {
		return nil, fmt.Errorf("broker: MaxConnectSize %d exceeds MaxPacketSize %d", cfg.MaxConnectSize, cfg.MaxPacketSize)
	}
	switch {
	case cfg.ConnectTimeout == 0:
		cfg.ConnectTimeout = DefaultConnectTimeout
	case cfg.ConnectTimeout < 0:
		return nil, fmt.Errorf("broker: negative ConnectTimeout %s", cfg.ConnectTimeout)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	// Sessions of clean-session clients end with the connection; persistent
	// sessions are kept at most one day rather than forever.
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi logs every connection at info; keep only its warnings.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}),
		// $SYS topics are refused to every client; publish them rarely.
		SysTopicResendInterval: 3600,
	})
	h := &authHook{auth: auth, log: log}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	g := guard{timeout: cfg.ConnectTimeout, maxSize: int(cfg.MaxConnectSize), drops: new(dropCounters)}
	return &Broker{log: log, server: srv, auth: h, guard: g}, nil
}

// Serve accepts MQTT connections on ln (plain TCP, or a TLS listener) until
// Run returns. It must be called before Run. The broker closes ln.
func (b *Broker) Serve(id string, ln net.Listener) error {
	b.mu.Lock()
	b.listeners++
	b.mu.Unlock()
	nl := &netListener{id: id, ln: ln, guard: &b.guard, log: b.log, pending: map[net.Conn]struct{}{}, live: map[net.Conn]struct{}{}}
	if err := b.server.AddListener(nl); err != nil {
		return fmt.Errorf("broker: listener %s: %w", id, err)
	}
	return nil
}

// Run starts serving on the listeners added with Serve and blocks until ctx
// is done; then it disconnects every client and closes the listeners. The
// Last Will of each client it closes is published to the clients not yet
// closed, so a subscriber that wants none (the hub's own connection) must
// disconnect before ctx is done.
func (b *Broker) Run(ctx context.Context) error {
	b.mu.Lock()
	n := b.listeners
	b.mu.Unlock()
	if n == 0 {
		return errors.New("broker: no listeners")
	}
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	<-ctx.Done()
	return b.server.Close()
}

// Disconnect closes the live session of the client with the given ID, if
// any, and reports whether there was one. Used when a device is deleted or
// revoked.
func (b *Broker) Disconnect(clientID string) bool {
	cl, ok := b.server.Clients.Get(clientID)
	if !ok || cl.Closed() {
		return false
	}
	_ = b.server.DisconnectClient(cl, packets.ErrNotAuthorized)
	return true
}

// Stats are counters of the broker's activity.
type Stats struct {
	ClientsConnected int64
	MessagesReceived int64  // PUBLISH packets received from clients
	MessagesSent     int64  // PUBLISH packets sent to clients
	Refused          uint64 // connections refused by authentication
	Denied           uint64 // publishes and subscriptions refused by ACL
	Pending          int64  // connections accepted whose CONNECT is still awaited
	Dropped          Dropped
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{
		ClientsConnected: atomic.LoadInt64(&b.server.Info.ClientsConnected),
		MessagesReceived: atomic.LoadInt64(&b.server.Info.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&b.server.Info.MessagesSent),
		Refused:          b.auth.refused.Load(),
		Denied:           b.auth.denied.Load(),
		Pending:          b.guard.drops.pending.Load(),
		Dropped:          b.guard.drops.load(),
	}
}

// authHook is the mochi hook that authenticates clients and enforces ACLs.
type authHook struct {
	mqtt.HookBase
	auth Authenticator
	log  *slog.Logger

	// ids maps a connected client ID to the session (connection) that
	// holds it and its identity. Entries are written on authentication and
	// read on every ACL check.
	ids     sync.Map // string → session
	refused atomic.Uint64
	denied  atomic.Uint64
}

// session is one authenticated connection. Keeping the connection beside
// the identity lets a closing connection forget only its own entry, never
// that of a newer connection with the same client ID.
type session struct {
	cl *mqtt.Client
	id Identity
}

var _ mqtt.Hook = (*authHook)(nil)

func (h *authHook) ID() string { return "alicia-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck || b == mqtt.OnDisconnect
}

// OnConnectAuthenticate refuses empty and invalid client IDs and usernames,
// a client ID that differs from the username, unknown credentials and a
// Last Will outside the client's own topics.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	refuse := func(reason string) bool {
		h.refused.Add(1)
		h.log.Warn("mqtt connection refused", "client", pk.Connect.ClientIdentifier, "username", user, "remote", cl.Net.Remote, "reason", reason)
		return false
	}
	if err := protocol.ValidateID(pk.Connect.ClientIdentifier); err != nil {
		return refuse("client id: " + err.Error())
	}
	if !pk.Connect.UsernameFlag || !pk.Connect.PasswordFlag {
		return refuse("anonymous")
	}
	if err := protocol.ValidateID(user); err != nil {
		return refuse("username: " + err.Error())
	}
	id, ok := h.auth.Authenticate(user, pk.Connect.Password)
	if !ok {
		return refuse("unknown client or wrong password")
	}
	if !id.mayUseClientID(user, pk.Connect.ClientIdentifier) {
		return refuse("client id is neither the username nor, for an integration, <username>" + ConnectionSeparator + "<suffix>")
	}
	// On a TLS listener a device must present its client certificate (the
	// listener has verified it against the hub CA), issued for its own ID.
	if tc, isTLS := tlsConn(cl.Net.Conn); isTLS {
		certs := tc.ConnectionState().PeerCertificates
		switch {
		case len(certs) > 0 && certs[0].Subject.CommonName != user:
			return refuse("client certificate is for " + certs[0].Subject.CommonName)
		case len(certs) == 0 && id.Role == RoleDevice:
			return refuse("a device must present its client certificate over TLS")
		}
	}
	if pk.Connect.WillFlag && !id.mayPublish(pk.Connect.WillTopic) {
		return refuse("last will topic " + pk.Connect.WillTopic + " not allowed")
	}
	h.ids.Store(cl.ID, &session{cl: cl, id: id})
	return true
}

// OnACLCheck allows a publish (write) or a subscription/delivery (read)
// only within the client's rights.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	v, ok := h.ids.Load(cl.ID)
	if !ok || v.(*session).cl != cl {
		h.denied.Add(1)
		return false
	}
	id := v.(*session).id
	if !h.auth.Allowed(id) {
		h.denied.Add(1)
		return false
	}
	var allowed bool
	switch {
	case write:
		allowed = id.mayPublish(topic)
	case isFilter(topic):
		allowed = id.maySubscribe(topic)
	default:
		allowed = id.mayReceive(topic) || id.maySubscribe(topic)
	}
	if !allowed {
		h.denied.Add(1)
		h.log.Warn("mqtt access denied", "client", cl.ID, "topic", topic, "write", write)
	}
	return allowed
}

// OnDisconnect forgets the identity of a client whose connection ended,
// unless a newer connection with the same ID has replaced it. (mochi marks
// the old client as taken over only after it closed it, so the old
// connection's OnDisconnect may run before IsTakenOver reports true.)
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if v, ok := h.ids.Load(cl.ID); ok && v.(*session).cl == cl {
		h.ids.CompareAndDelete(cl.ID, v)
	}
}

func isFilter(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '#' {
			return true
		}
	}
	return false
}

// netListener adapts an already-bound net.Listener to mochi's Listener, so
// that the hub binds its sockets itself (and reports a busy port at once),
// and admits each connection through the guard before mochi sees it.
type netListener struct {
	id    string
	ln    net.Listener
	guard *guard
	log   *slog.Logger

	wg sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	closed  bool
	pending map[net.Conn]struct{} // connections in guard.admit
	live    map[net.Conn]struct{} // connections handed to mochi, until their session ends
}

var _ listeners.Listener = (*netListener)(nil)

func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return // closed
		}
		if !l.track(conn) {
			_ = conn.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c, err := l.guard.admit(conn)
			if !l.admitted(conn, err) {
				_ = conn.Close()
				return
			}
			defer l.ended(conn)
			_ = establish(l.id, c) // errors are per-client and already logged by mochi
		}()
	}
}

// track records conn as awaiting its CONNECT, unless the listener closed.
func (l *netListener) track(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[conn] = struct{}{}
	l.guard.drops.pending.Add(1)
	return true
}

// admitted forgets conn, whose admission ended with err, and reports
// whether it goes on to mochi: admitted, and the listener still open. A
// refusal is counted (unless the listener closed it) before conn leaves
// Stats.Pending.
func (l *netListener) admitted(conn net.Conn, err error) bool {
	var ae *admitError
	refused := errors.As(err, &ae) && ae.reason != ""
	l.mu.Lock()
	open := !l.closed
	if refused && open {
		l.guard.drops.count(ae.reason)
	}
	delete(l.pending, conn)
	l.guard.drops.pending.Add(-1)
	if open && err == nil {
		l.live[conn] = struct{}{}
	}
	l.mu.Unlock()
	if refused && open {
		l.log.Debug("mqtt connection dropped before CONNECT", "listener", l.id, "remote", conn.RemoteAddr().String(), "reason", ae.reason, "err", ae.err)
	}
	return open && err == nil
}

// ended forgets conn, whose mochi session has ended.
func (l *netListener) ended(conn net.Conn) {
	l.mu.Lock()
	delete(l.live, conn)
	l.mu.Unlock()
}

func (l *netListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for c := range l.pending {
		_ = c.Close() // its admit returns at once
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(l.id)
	// A connection admitted just before the close may not be one of
	// mochi's clients yet, so closeClients missed it: close every
	// connection handed to mochi, so that every session ends.
	// The TCP connection under TLS is closed: a TLS close would first
	// send a close_notify, which waits for a writer stuck on a client that
	// reads nothing.
	l.mu.Lock()
	for c := range l.live {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// minLevel drops records below level before they reach the wrapped handler.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
