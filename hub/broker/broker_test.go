package broker_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/hub/broker"
	"github.com/alicia-home/alicia/internal/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait for something that should happen promptly.
const wait = 10 * time.Second

// quiet is how long a refused operation may take to be answered.
const quiet = 5 * time.Second

// fakeAuth is an Authenticator over a fixed table of users.
type fakeAuth struct {
	mu    sync.Mutex
	users map[string]user
}

type user struct {
	password string
	id       broker.Identity
}

func newAuth() *fakeAuth {
	return &fakeAuth{users: map[string]user{
		"hub-1": {"hub-secret", broker.Identity{Role: broker.RoleHub, ID: "hub-1"}},
		"dev-a": {"secret-a", broker.Identity{Role: broker.RoleDevice, ID: "dev-a"}},
		"dev-b": {"secret-b", broker.Identity{Role: broker.RoleDevice, ID: "dev-b"}},
		"int-ha": {"secret-ha", broker.Identity{Role: broker.RoleIntegration, ID: "int-ha",
			Scope: broker.Scope{Publish: []string{"homeassistant/status"}, Read: []string{"homeassistant/"}}}},
	}}
}

func (a *fakeAuth) Authenticate(username string, password []byte) (broker.Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.users[username]
	if !ok || u.password != string(password) {
		return broker.Identity{}, false
	}
	return u.id, true
}

// Allowed: a revoked (removed) user may no longer act.
func (a *fakeAuth) Allowed(id broker.Identity) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.users[id.ID]
	return ok
}

func (a *fakeAuth) revoke(username string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.users, username)
}

func (a *fakeAuth) password(username string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.users[username].password
}

// testBroker is a running Broker on a loopback port.
type testBroker struct {
	*broker.Broker
	auth *fakeAuth
	addr string
}

// start runs a broker until the test ends; cleanup stops it and waits for
// Run to return.
func start(t *testing.T, cfg broker.Config) *testBroker {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with more listeners, which serve adds.
func startWith(t *testing.T, cfg broker.Config, serve func(*broker.Broker)) *testBroker {
	t.Helper()
	auth := newAuth()
	b, err := broker.New(cfg, auth)
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve("test", ln); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if serve != nil {
		serve(b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Run did not return within %s of cancel", wait)
		}
	})
	return &testBroker{Broker: b, auth: auth, addr: ln.Addr().String()}
}

// msg is a message a client received.
type msg struct {
	Topic    string
	Payload  string
	Retained bool
}

// client is a connected paho client that records what it receives.
type client struct {
	mqtt.Client
	t        *testing.T
	received chan msg
	lost     chan error
}

// clientOpts returns MQTT 3.1.1 options for clientID with user's
// credentials (no credentials for user ""), without automatic reconnects.
func (b *testBroker) clientOpts(clientID, username, password string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + b.addr).
		SetClientID(clientID).
		SetUsername(username).
		SetPassword(password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(wait).
		SetWriteTimeout(wait).
		SetKeepAlive(30 * time.Second)
	return o
}

// dial connects with o, returning the client and CONNECT's error.
func dial(t *testing.T, o *mqtt.ClientOptions) (*client, error) {
	t.Helper()
	c := &client{t: t, received: make(chan msg, 256), lost: make(chan error, 1)}
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		c.received <- msg{m.Topic(), string(m.Payload()), m.Retained()}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { c.lost <- err })
	c.Client = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		t.Fatalf("CONNECT as %s not answered within %s", o.ClientID, wait)
	}
	if err := tok.Error(); err != nil {
		return c, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// connect connects as user (client ID = username) and fails the test on error.
func (b *testBroker) connect(t *testing.T, username string, opts ...func(*mqtt.ClientOptions)) *client {
	t.Helper()
	o := b.clientOpts(username, username, b.auth.password(username))
	for _, f := range opts {
		f(o)
	}
	c, err := dial(t, o)
	if err != nil {
		t.Fatalf("connect as %s: %v", username, err)
	}
	return c
}

// subscribe subscribes to filters at QoS 1 and returns the SUBACK codes.
func (c *client) subscribe(filters ...string) map[string]byte {
	c.t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(wait) {
		c.t.Fatalf("SUBSCRIBE %v not answered within %s", filters, wait)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("SUBSCRIBE %v: %v", filters, err)
	}
	return tok.(*mqtt.SubscribeToken).Result()
}

// mustSubscribe subscribes and fails unless every filter was granted.
func (c *client) mustSubscribe(filters ...string) {
	c.t.Helper()
	for f, code := range c.subscribe(filters...) {
		if code == 0x80 {
			c.t.Fatalf("subscription to %s refused", f)
		}
	}
}

func (c *client) publish(topic string, qos byte, retained bool, payload string) {
	c.t.Helper()
	tok := c.Publish(topic, qos, retained, payload)
	if !tok.WaitTimeout(wait) {
		c.t.Fatalf("PUBLISH to %s not done within %s", topic, wait)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("PUBLISH to %s: %v", topic, err)
	}
}

// next returns the next message received, failing after wait.
func (c *client) next() msg {
	c.t.Helper()
	select {
	case m := <-c.received:
		return m
	case <-time.After(wait):
		c.t.Fatalf("no message received within %s", wait)
		return msg{}
	}
}

// expect fails unless the next message received has want's topic and
// payload (and is flagged retained, if want is): anything else arriving
// first was delivered but should not have been.
func (c *client) expect(want msg) {
	c.t.Helper()
	got := c.next()
	if got.Topic != want.Topic || got.Payload != want.Payload || want.Retained && !got.Retained {
		c.t.Fatalf("received %+v, want %+v", got, want)
	}
}

// waitLost waits for the connection-lost handler.
func (c *client) waitLost() error {
	c.t.Helper()
	select {
	case err := <-c.lost:
		return err
	case <-time.After(wait):
		c.t.Fatalf("connection not closed within %s", wait)
		return nil
	}
}

func statusTopic(id string) string { return protocol.DeviceTopic(id, protocol.KindStatus) }

// eventually polls cond every few milliseconds until it holds, failing
// after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(wait)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("%s: not true within %s", what, wait)
		case <-tick.C:
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := broker.New(broker.Config{}, nil); err == nil {
		t.Error("New with a nil Authenticator succeeded")
	}
	b, err := broker.New(broker.Config{}, newAuth())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Error("Run without listeners succeeded")
	}
}

func TestConnectRefused(t *testing.T) {
	b := start(t, broker.Config{})
	for _, c := range []struct {
		name               string
		clientID, username string
		password           string
	}{
		{"anonymous", "dev-a", "", ""},
		{"username without password", "dev-a", "dev-a", ""},
		{"unknown user", "dev-z", "dev-z", "secret-a"},
		{"wrong password", "dev-a", "dev-a", "secret-b"},
		{"empty client id", "", "dev-a", "secret-a"},
		{"client id with +", "a+b", "dev-a", "secret-a"},
		{"client id with /", "a/b", "dev-a", "secret-a"},
		{"client id #", "#", "dev-a", "secret-a"},
		{"client id with control character", "dev-a\x01", "dev-a", "secret-a"},
		{"client id and username with +", "a+b", "a+b", "secret-a"},
		{"client id differs from username", "dev-b", "dev-a", "secret-a"},
		{"client id of another valid user", "dev-a", "dev-b", "secret-b"},
		{"hub password for a device", "dev-a", "dev-a", "hub-secret"},
		{"device with a suffixed client id", "dev-a-2", "dev-a", "secret-a"},
		{"integration with a foreign client id", "dev-a", "int-ha", "secret-ha"},
		{"integration with a client id merely starting like it", "int-hax", "int-ha", "secret-ha"},
		{"integration with the client id of integration int-ha-2", "int-ha-2", "int-ha", "secret-ha"},
		{"device with an integration's connection suffix", "dev-a.2", "dev-a", "secret-a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := b.Stats().Refused
			if _, err := dial(t, b.clientOpts(c.clientID, c.username, c.password)); err == nil {
				t.Fatalf("CONNECT as client %q user %q was accepted", c.clientID, c.username)
			}
			if after := b.Stats().Refused; after != before+1 {
				t.Errorf("Stats.Refused went from %d to %d, want +1", before, after)
			}
		})
	}
	if got := b.Stats().ClientsConnected; got != 0 {
		t.Errorf("ClientsConnected = %d after refusals only", got)
	}
	// The right credentials work; an integration may open several
	// connections named <username>.<suffix>.
	b.connect(t, "dev-a")
	b.connect(t, "hub-1")
	b.connect(t, "int-ha")
	if _, err := dial(t, b.clientOpts("int-ha.2", "int-ha", "secret-ha")); err != nil {
		t.Errorf("an integration's second connection int-ha.2: %v", err)
	}
}

func TestConnectRefusedReturnCode(t *testing.T) {
	b := start(t, broker.Config{})
	o := b.clientOpts("dev-a", "dev-a", "wrong")
	c := &client{t: t, received: make(chan msg, 1), lost: make(chan error, 1)}
	c.Client = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		t.Fatal("CONNECT not answered")
	}
	switch rc := tok.(*mqtt.ConnectToken).ReturnCode(); rc {
	case packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised:
	default:
		t.Errorf("CONNACK return code %#x, want %#x or %#x", rc, packets.ErrRefusedBadUsernameOrPassword, packets.ErrRefusedNotAuthorised)
	}
}

func TestWillOutsideOwnSubtreeRefused(t *testing.T) {
	b := start(t, broker.Config{})
	for _, topic := range []string{
		statusTopic("dev-b"),
		protocol.HubStatusTopic,
		"alicia/v1/devices/dev-a", // the parent, not inside the subtree
		"alicia/v1/devices/dev-ab/status",
		"other/topic",
		"$SYS/broker/x",
	} {
		t.Run(topic, func(t *testing.T) {
			o := b.clientOpts("dev-a", "dev-a", "secret-a").SetWill(topic, "lost", 1, true)
			if _, err := dial(t, o); err == nil {
				t.Fatalf("CONNECT with a Last Will on %s was accepted", topic)
			}
		})
	}
	o := b.clientOpts("dev-a", "dev-a", "secret-a").SetWill(statusTopic("dev-a"), "lost", 1, true)
	if _, err := dial(t, o); err != nil {
		t.Fatalf("CONNECT with a Last Will on its own status topic: %v", err)
	}
}

func TestDevicePublishConfined(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.Root + "/#")
	dev := b.connect(t, "dev-a")

	before := b.Stats().Denied
	dev.publish(statusTopic("dev-a"), 1, false, "mine")
	hub.expect(msg{Topic: statusTopic("dev-a"), Payload: "mine"})

	forbidden := []string{
		statusTopic("dev-b"),
		protocol.HubStatusTopic,
		"alicia/v1/devices/dev-ab/status",
		"alicia/v1/devices/dev-a",
		"alicia/v1/other",
		"other/topic",
	}
	for _, topic := range forbidden {
		dev.publish(topic, 0, false, "forbidden")
	}
	// The broker handles one connection's packets in order: once the
	// marker arrives, any forbidden message would have arrived before it.
	dev.publish(protocol.DeviceTopic("dev-a", protocol.KindHeartbeat), 0, false, "marker")
	hub.expect(msg{Topic: protocol.DeviceTopic("dev-a", protocol.KindHeartbeat), Payload: "marker"})
	if got := b.Stats().Denied - before; got != uint64(len(forbidden)) {
		t.Errorf("Stats.Denied grew by %d, want %d", got, len(forbidden))
	}
}

// TestDeniedQoS1PublishClosesConnection: MQTT 3.1.1 has no way to refuse a
// QoS 1 publish, so the broker closes the connection; the message is not
// delivered.
func TestDeniedQoS1PublishClosesConnection(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.Root + "/#")
	dev := b.connect(t, "dev-a")
	dev.Publish(statusTopic("dev-b"), 1, false, "forbidden") // never acknowledged
	dev.waitLost()
	hub.publish(statusTopic("dev-b"), 0, false, "marker")
	hub.expect(msg{Topic: statusTopic("dev-b"), Payload: "marker"})
}

func TestDeviceSubscribeConfined(t *testing.T) {
	b := start(t, broker.Config{})
	dev := b.connect(t, "dev-a")
	refused := []string{
		"#",
		"+",
		"alicia/#",
		"alicia/v1/#",
		"alicia/v1/devices/#",
		"alicia/v1/devices/+/status",
		"+/v1/devices/dev-a/status",
		"alicia/+/devices/dev-a/status",
		"$SYS/#",
		"$share/g/alicia/v1/devices/dev-a/#",
		"alicia/v1/devices/dev-b/#",
		"alicia/v1/devices/dev-b/status",
		"alicia/v1/devices/dev-ab/#",
		"alicia/v1/hub/#",
	}
	allowed := []string{
		"alicia/v1/devices/dev-a/#",
		"alicia/v1/devices/dev-a/status",
		"alicia/v1/devices/dev-a/+",
		protocol.HubStatusTopic,
	}
	before := b.Stats().Denied
	got := dev.subscribe(append(refused, allowed...)...)
	for _, f := range refused {
		if code, ok := got[f]; !ok || code != 0x80 {
			t.Errorf("SUBACK for %s: %#x (present %v), want 0x80", f, code, ok)
		}
	}
	for _, f := range allowed {
		if code, ok := got[f]; !ok || code == 0x80 {
			t.Errorf("SUBACK for %s: %#x (present %v), want a granted QoS", f, code, ok)
		}
	}
	if d := b.Stats().Denied - before; d != uint64(len(refused)) {
		t.Errorf("Stats.Denied grew by %d, want %d", d, len(refused))
	}

	// The refused subscriptions deliver nothing: dev-b's status reaches the
	// hub, then a marker the hub sends to dev-a is the first thing dev-a gets.
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(statusTopic("dev-b"))
	other := b.connect(t, "dev-b")
	other.publish(statusTopic("dev-b"), 1, false, "b-status")
	hub.expect(msg{Topic: statusTopic("dev-b"), Payload: "b-status"})
	hub.publish(statusTopic("dev-a"), 1, false, "marker")
	dev.expect(msg{Topic: statusTopic("dev-a"), Payload: "marker"})

	// The allowed hub status subscription works.
	hub.publish(protocol.HubStatusTopic, 1, false, "hub-online")
	dev.expect(msg{Topic: protocol.HubStatusTopic, Payload: "hub-online"})
}

func TestHubRights(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	got := hub.subscribe("#", "$SYS/#", "other/#", "alicia/v1/#", "alicia/v1/devices/+/status")
	want := map[string]bool{"#": false, "$SYS/#": false, "other/#": false, "alicia/v1/#": true, "alicia/v1/devices/+/status": true}
	for f, ok := range want {
		if (got[f] != 0x80) != ok {
			t.Errorf("hub SUBACK for %s: %#x, want allowed=%v", f, got[f], ok)
		}
	}
	hub.publish("other/topic", 0, false, "forbidden")
	hub.publish(protocol.HubStatusTopic, 0, false, "marker")
	hub.expect(msg{Topic: protocol.HubStatusTopic, Payload: "marker"})
	// A hub message to a device reaches it.
	dev := b.connect(t, "dev-a")
	dev.mustSubscribe(protocol.DeviceSubtree("dev-a"))
	hub.publish("alicia/v1/devices/dev-a/command", 1, false, "cmd")
	dev.expect(msg{Topic: "alicia/v1/devices/dev-a/command", Payload: "cmd"})
}

func TestDisconnect(t *testing.T) {
	b := start(t, broker.Config{})
	if b.Disconnect("dev-a") {
		t.Error("Disconnect of a client that never connected returned true")
	}
	dev := b.connect(t, "dev-a")
	eventually(t, "one client connected", func() bool { return b.Stats().ClientsConnected == 1 })
	if !b.Disconnect("dev-a") {
		t.Fatal("Disconnect of a live session returned false")
	}
	dev.waitLost()
	eventually(t, "no client connected", func() bool { return b.Stats().ClientsConnected == 0 })
	if b.Disconnect("dev-a") {
		t.Error("Disconnect of a closed session returned true")
	}
	if b.Disconnect("nobody") {
		t.Error("Disconnect of an unknown ID returned true")
	}

	// Revocation: the authenticator forgets the device, the broker closes
	// its session, and it cannot come back.
	dev = b.connect(t, "dev-a")
	b.auth.revoke("dev-a")
	if !b.Disconnect("dev-a") {
		t.Fatal("Disconnect of a revoked device's live session returned false")
	}
	dev.waitLost()
	if _, err := dial(t, b.clientOpts("dev-a", "dev-a", "secret-a")); err == nil {
		t.Error("a revoked device connected again")
	}
}

// TestWillOnAbruptClose cuts a device's TCP connection under it: the broker
// publishes its Last Will, retained, to the hub.
func TestWillOnAbruptClose(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.AllDevices(protocol.KindStatus))

	conns := make(chan net.Conn, 1)
	dev := b.connect(t, "dev-a", func(o *mqtt.ClientOptions) {
		o.SetWill(statusTopic("dev-a"), "lost", 1, true)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, wait)
			if err == nil {
				conns <- c
			}
			return c, err
		})
	})
	dev.publish(statusTopic("dev-a"), 1, false, "online")
	hub.expect(msg{Topic: statusTopic("dev-a"), Payload: "online"})

	// Paho does not report a connection closed under it; the broker does.
	(<-conns).Close()
	hub.expect(msg{Topic: statusTopic("dev-a"), Payload: "lost"})

	// The Will was retained: a late subscriber sees it.
	late := b.connect(t, "dev-a")
	late.mustSubscribe(statusTopic("dev-a"))
	late.expect(msg{Topic: statusTopic("dev-a"), Payload: "lost", Retained: true})
}

// TestNoWillOnCleanDisconnect: a device that says goodbye with DISCONNECT
// has its Will discarded.
func TestNoWillOnCleanDisconnect(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.AllDevices(protocol.KindStatus))
	dev := b.connect(t, "dev-a", func(o *mqtt.ClientOptions) {
		o.SetWill(statusTopic("dev-a"), "lost", 1, false)
	})
	dev.Disconnect(1000)
	eventually(t, "only the hub connected", func() bool { return b.Stats().ClientsConnected == 1 })
	other := b.connect(t, "dev-b")
	other.publish(statusTopic("dev-b"), 1, false, "marker")
	hub.expect(msg{Topic: statusTopic("dev-b"), Payload: "marker"})
}

func TestMaxPacketSize(t *testing.T) {
	const limit = 1024
	b := start(t, broker.Config{MaxPacketSize: limit})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.Root + "/#")
	dev := b.connect(t, "dev-a")

	topic := statusTopic("dev-a")
	small := strings.Repeat("s", limit-100)
	dev.publish(topic, 0, false, small)
	hub.expect(msg{Topic: topic, Payload: small})

	dev.Publish(topic, 0, false, strings.Repeat("L", 2*limit))
	dev.waitLost()
	hub.publish(topic, 0, false, "marker")
	hub.expect(msg{Topic: topic, Payload: "marker"})
}

// TestDefaultMaxPacketSize: the zero Config accepts a full-size protocol
// message (64 KiB) and refuses one over DefaultMaxPacketSize.
func TestDefaultMaxPacketSize(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.Root + "/#")
	dev := b.connect(t, "dev-a")
	topic := protocol.DeviceTopic("dev-a", protocol.KindRegister)
	full := strings.Repeat("r", protocol.MaxMessageSize)
	dev.publish(topic, 1, false, full)
	hub.expect(msg{Topic: topic, Payload: full})
	dev.Publish(topic, 0, false, strings.Repeat("L", broker.DefaultMaxPacketSize))
	dev.waitLost()
}

// TestSessionTakeover connects the same device again and again, as an agent
// does after a network change. Each new connection replaces the previous
// one and must keep its rights: a takeover must not lose the identity the
// broker checks ACLs against.
func TestSessionTakeover(t *testing.T) {
	b := start(t, broker.Config{})
	hub := b.connect(t, "hub-1")
	hub.mustSubscribe(protocol.AllDevices(protocol.KindHeartbeat))
	topic := protocol.DeviceTopic("dev-a", protocol.KindHeartbeat)
	var prev *client
	for i := range 30 {
		dev := b.connect(t, "dev-a")
		if prev != nil {
			prev.waitLost()
		}
		payload := fmt.Sprintf("hb-%d", i)
		dev.publish(topic, 0, false, payload)
		select {
		case got := <-hub.received:
			if got != (msg{Topic: topic, Payload: payload}) {
				t.Fatalf("after takeover %d the hub received %+v, want %q", i, got, payload)
			}
		case <-time.After(wait):
			t.Fatalf("after takeover %d the device's publish was not delivered (stats %+v)", i, b.Stats())
		}
		prev = dev
	}
	if d := b.Stats().Denied; d != 0 {
		t.Errorf("Stats.Denied = %d after legitimate publishes only", d)
	}
}

func TestStats(t *testing.T) {
	b := start(t, broker.Config{})
	if s := b.Stats(); s != (broker.Stats{}) {
		t.Fatalf("Stats of a new broker = %+v, want zero", s)
	}
	for _, pw := range []string{"wrong", "also-wrong"} {
		if _, err := dial(t, b.clientOpts("dev-a", "dev-a", pw)); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	dev := b.connect(t, "dev-a")
	dev.subscribe("#", "alicia/v1/devices/dev-b/#")
	dev.publish(statusTopic("dev-b"), 0, false, "x")
	dev.mustSubscribe(protocol.DeviceSubtree("dev-a")) // round trip: the publish was handled
	// The denied PUBLISH still counts as received (and was sent to nobody).
	want := broker.Stats{ClientsConnected: 1, MessagesReceived: 1, Refused: 2, Denied: 3}
	if s := b.Stats(); s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}
