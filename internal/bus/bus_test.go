package bus_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/mosquittotest"
)

// childEnv switches the test binary into a helper process (see willChild).
const childEnv = "BUS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "will" {
		willChild()
		return
	}
	goleak.VerifyTestMain(m)
}

// willChild connects with a Will, says "ready" on stdout once connected and
// waits to be killed.
func willChild() {
	c, err := bus.New(bus.Config{
		URL:       os.Getenv("BUS_TEST_URL"),
		ClientID:  "will-child",
		Username:  "dev",
		Password:  users["dev"],
		KeepAlive: time.Second,
		Will:      &bus.Message{Topic: "alicia/v1/will-child/status", Payload: []byte("lost"), QoS: 1},
		OnConnect: func(context.Context) { fmt.Println("ready") },
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	err = c.Run(context.Background())
	fmt.Fprintln(os.Stderr, "Run returned:", err)
	os.Exit(1)
}

func TestConfigValidate(t *testing.T) {
	ok := bus.Config{URL: "tcp://127.0.0.1:1883", ClientID: "dev-1"}
	tests := []struct {
		name    string
		mod     func(*bus.Config)
		wantErr string
	}{
		{"minimal", func(*bus.Config) {}, ""},
		{"mqtt scheme, default port", func(c *bus.Config) { c.URL = "mqtt://hub.local" }, ""},
		{"mqtts with TLS", func(c *bus.Config) { c.URL = "mqtts://hub.local"; c.TLS = &tls.Config{} }, ""},
		{"ssl", func(c *bus.Config) { c.URL = "ssl://hub.local:8883" }, ""},
		{"no URL", func(c *bus.Config) { c.URL = "" }, "URL is required"},
		{"bad scheme", func(c *bus.Config) { c.URL = "http://h:1" }, "scheme"},
		{"no host", func(c *bus.Config) { c.URL = "tcp://:1883" }, "no host"},
		{"credentials in URL", func(c *bus.Config) { c.URL = "tcp://u:p@h:1" }, "credentials"},
		{"path", func(c *bus.Config) { c.URL = "tcp://h:1/x" }, "path"},
		{"TLS with plain scheme", func(c *bus.Config) { c.TLS = &tls.Config{} }, "TLS set"},
		{"no client id", func(c *bus.Config) { c.ClientID = "" }, "client id"},
		{"wildcard client id", func(c *bus.Config) { c.ClientID = "dev/#" }, "client id"},
		{"password without user", func(c *bus.Config) { c.Password = "x" }, "without username"},
		{"keep-alive too short", func(c *bus.Config) { c.KeepAlive = time.Millisecond }, "keep-alive"},
		{"negative queue", func(c *bus.Config) { c.HandlerQueue = -1 }, "handler queue"},
		{"negative reconnect", func(c *bus.Config) { c.MaxReconnectInterval = -1 }, "reconnect"},
		{"will wildcard", func(c *bus.Config) { c.Will = &bus.Message{Topic: "a/+"} }, "will"},
		{"goodbye qos", func(c *bus.Config) { c.Goodbye = []bus.Message{{Topic: "a", QoS: 3}} }, "goodbye[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			_, err := bus.New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New: err = %v, want one containing %q", err, tt.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "bus: "):
				t.Fatalf("error %q lacks the \"bus: \" prefix", err)
			}
		})
	}
}

func TestRoundtrip(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c, err := bus.New(testConfig(t, b.URL(), "rt", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	before := newCollector()
	if err := c.Subscribe("rt/before/#", 1, before.handle); err != nil {
		t.Fatalf("Subscribe before Run: %v", err)
	}
	if err := c.Subscribe("rt/before/#", 1, before.handle); err == nil {
		t.Fatal("second Subscribe of the same filter: want an error")
	}
	r := run(t, c)
	waitConnected(t, r)

	after := newCollector()
	if err := r.Subscribe("rt/after", 0, after.handle); err != nil {
		t.Fatalf("Subscribe after connect: %v", err)
	}
	for _, bad := range []string{"", "rt/#/x", "rt/a+", "rt/\x00"} {
		if err := r.Subscribe(bad, 0, after.handle); err == nil {
			t.Errorf("Subscribe(%q): want an error", bad)
		}
	}

	publish(t, r, bus.Message{Topic: "rt/before/x", Payload: []byte("one"), QoS: 1})
	if m := before.next(t, 5*time.Second); m.Topic != "rt/before/x" || string(m.Payload) != "one" || m.QoS != 1 || m.Retained {
		t.Errorf("got %+v, want rt/before/x \"one\" qos 1 not retained", m)
	}

	// Order is kept within a subscription.
	for i := range 50 {
		publish(t, r, bus.Message{Topic: "rt/after", Payload: []byte(strconv.Itoa(i))})
	}
	for i := range 50 {
		if m := after.next(t, 5*time.Second); string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %d: payload %q, out of order", i, m.Payload)
		}
	}

	// A retained message reaches a later subscriber, marked retained.
	publish(t, r, bus.Message{Topic: "rt/ret", Payload: []byte("kept"), QoS: 1, Retained: true})
	ret := newCollector()
	if err := r.Subscribe("rt/ret", 1, ret.handle); err != nil {
		t.Fatal(err)
	}
	if m := ret.next(t, 5*time.Second); string(m.Payload) != "kept" || !m.Retained {
		t.Errorf("got %+v, want retained \"kept\"", m)
	}

	if err := r.Publish(context.Background(), bus.Message{Topic: "rt/+"}); err == nil || errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Publish to a wildcard topic: err = %v, want a validation error", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := r.Stats(); s.Connects != 1 || s.Disconnects != 1 || s.Dropped != 0 {
		t.Errorf("Stats = %+v, want 1 connect, 1 disconnect, 0 dropped", s)
	}
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "dev", "nope"},
		{"unknown user", "mallory", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, b.URL(), "bad-"+tc.user, "dev")
			cfg.Username, cfg.Password = tc.user, tc.pw
			r := newRunning(t, cfg)
			err := r.wait(t, 5*time.Second)
			if !errors.Is(err, bus.ErrNotAuthorized) {
				t.Fatalf("Run = %v, want ErrNotAuthorized", err)
			}
			if !strings.HasPrefix(err.Error(), "bus: ") {
				t.Errorf("error %q lacks the \"bus: \" prefix", err)
			}
		})
	}
}

func TestBrokerStartsLate(t *testing.T) {
	t.Parallel()
	b := mosquittotest.New(t, mosquittotest.Options{Users: users})
	cfg := testConfig(t, b.URL(), "late", "dev")
	logs := withRecorder(t, &cfg, "late")
	got := newCollector()
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("late/x", 1, got.handle); err != nil {
		t.Fatal(err)
	}
	r := run(t, c)
	eventually(t, 5*time.Second, "two failed attempts logged at warn", func() bool {
		return logs.count("level=WARN", "connect failed", "refused") >= 2
	})
	if r.Connected() {
		t.Fatal("Connected with no broker")
	}
	b.Start()
	waitConnected(t, r)
	publish(t, r, bus.Message{Topic: "late/x", Payload: []byte("hi"), QoS: 1})
	got.next(t, 5*time.Second)
}

func TestRunStopsWhileRetrying(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "tcp://127.0.0.1:"+strconv.Itoa(mosquittotest.FreePort(t)), "nobroker", "dev")
	cfg.MaxReconnectInterval = time.Minute // Run must not sit out a backoff when cancelled
	logs := withRecorder(t, &cfg, "nobroker")
	r := newRunning(t, cfg)
	eventually(t, 5*time.Second, "a failed attempt", func() bool { return logs.count("connect failed") > 0 })
	start := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil (an absent broker is not an error)", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Run took %s to return after cancel", d)
	}
	if err := r.WaitConnected(context.Background()); err == nil {
		t.Error("WaitConnected after Run returned: want an error")
	}
}

func TestReconnectAfterBrokerKill(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	var onConnect atomic.Int32
	cfg := testConfig(t, b.URL(), "phoenix", "dev")
	var c *bus.Client
	// OnConnect runs after re-subscription: its message to our own
	// subscription must come back.
	cfg.OnConnect = func(ctx context.Context) {
		n := onConnect.Add(1)
		if err := c.Publish(ctx, bus.Message{Topic: "phoenix/cmd", Payload: fmt.Appendf(nil, "hello-%d", n), QoS: 1}); err != nil {
			t.Errorf("OnConnect publish: %v", err)
		}
	}
	got := newCollector()
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("phoenix/cmd", 1, got.handle); err != nil {
		t.Fatal(err)
	}
	sub := run(t, c)
	pub := newRunning(t, testConfig(t, b.URL(), "phoenix-obs", "obs"))
	waitConnected(t, sub)
	waitConnected(t, pub)
	got.nextPayload(t, 5*time.Second, "hello-1")
	publish(t, pub, bus.Message{Topic: "phoenix/cmd", Payload: []byte("before"), QoS: 1})
	got.nextPayload(t, 5*time.Second, "before")

	b.Kill()
	eventually(t, 5*time.Second, "disconnect noticed", func() bool { return !sub.Connected() })
	err = sub.Publish(context.Background(), bus.Message{Topic: "phoenix/x", QoS: 1})
	if !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Publish while the broker is down = %v, want ErrNotConnected", err)
	}

	b.Start() // same port
	waitConnected(t, sub)
	waitConnected(t, pub)
	got.nextPayload(t, 5*time.Second, "hello-2")
	publish(t, pub, bus.Message{Topic: "phoenix/cmd", Payload: []byte("after"), QoS: 1})
	got.nextPayload(t, 5*time.Second, "after")

	if s, n := sub.Stats(), onConnect.Load(); s.Connects != 2 || s.Disconnects != 1 || n != 2 {
		t.Errorf("Stats = %+v, OnConnect calls = %d; want 2 connects, 1 disconnect, 2 calls", s, n)
	}
}

func TestWillOnCrash(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	obs := newRunning(t, testConfig(t, b.URL(), "will-obs", "obs"))
	got := newCollector()
	if err := obs.Subscribe("alicia/v1/will-child/status", 1, got.handle); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, obs)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=will", "BUS_TEST_URL="+b.URL())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill() // our child, by PID
			_ = cmd.Wait()
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("child did not connect within 10s")
	}
	select {
	case m := <-got:
		t.Fatalf("message before the kill: %+v", m)
	default:
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	start := time.Now()
	m := got.next(t, 5*time.Second) // keep-alive 1s: the broker must not wait longer than 1.5s anyway
	if string(m.Payload) != "lost" {
		t.Fatalf("got %+v, want the will \"lost\"", m)
	}
	t.Logf("will delivered %s after SIGKILL", time.Since(start))
}

func TestGoodbyeWithoutWill(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	const status = "alicia/v1/gb/status"
	obs := newRunning(t, testConfig(t, b.URL(), "gb-obs", "obs"))
	got := newCollector()
	if err := obs.Subscribe(status, 1, got.handle); err != nil {
		t.Fatal(err)
	}
	sentinel := newCollector()
	if err := obs.Subscribe("gb/sentinel", 1, sentinel.handle); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, obs)

	cfg := testConfig(t, b.URL(), "gb", "dev")
	cfg.KeepAlive = time.Second
	cfg.Will = &bus.Message{Topic: status, Payload: []byte("lost"), QoS: 1, Retained: true}
	cfg.Goodbye = []bus.Message{
		{Topic: status, Payload: []byte("offline"), QoS: 1, Retained: true},
		{Topic: "gb/last-words", Payload: []byte("bye"), QoS: 0},
	}
	var c *bus.Client
	born := make(chan error, 1)
	cfg.OnConnect = func(ctx context.Context) {
		born <- c.Publish(ctx, bus.Message{Topic: status, Payload: []byte("online"), QoS: 1, Retained: true})
	}
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev := run(t, c)
	if err := <-born; err != nil {
		t.Fatalf("birth: %v", err)
	}
	got.nextPayload(t, 5*time.Second, "online")

	if err := dev.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if skipped := got.nextPayload(t, 5*time.Second, "offline"); len(skipped) > 0 {
		t.Errorf("before goodbye: %+v", skipped)
	}
	// The broker handles the client's DISCONNECT before two later round trips
	// of the observer; a will would have been delivered by then.
	for i := range 2 {
		publish(t, obs, bus.Message{Topic: "gb/sentinel", Payload: []byte{byte(i)}, QoS: 1})
		sentinel.next(t, 5*time.Second)
	}
	select {
	case m := <-got:
		t.Errorf("after goodbye: %+v (a will means no clean DISCONNECT)", m)
	default:
	}
	late := newCollector()
	if err := obs.Subscribe(status, 1, late.handle); err == nil {
		t.Fatal("duplicate subscribe accepted")
	}
	if err := obs.Subscribe("alicia/v1/+/status", 1, late.handle); err != nil {
		t.Fatal(err)
	}
	if m := late.next(t, 5*time.Second); string(m.Payload) != "offline" || !m.Retained {
		t.Errorf("retained status = %+v, want \"offline\"", m)
	}
}

func TestSlowHandlerIsolated(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	cfg := testConfig(t, b.URL(), "slow", "dev")
	cfg.KeepAlive = time.Second // paho's ping times out after 1s if the router stalls
	cfg.HandlerQueue = 2
	logs := withRecorder(t, &cfg, "slow")
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	slow := newCollector()
	if err := c.Subscribe("slow/#", 1, func(ctx context.Context, m bus.Message) {
		if string(m.Payload) == "0" {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		slow <- m
	}); err != nil {
		t.Fatal(err)
	}
	fast := newCollector()
	if err := c.Subscribe("fast/#", 1, fast.handle); err != nil {
		t.Fatal(err)
	}
	r := run(t, c)
	pub := newRunning(t, testConfig(t, b.URL(), "slow-pub", "obs"))
	waitConnected(t, r)
	waitConnected(t, pub)

	publish(t, pub, bus.Message{Topic: "slow/x", Payload: []byte("0"), QoS: 1})
	<-started
	const n = 20
	for i := 1; i < n; i++ { // 2 fit in the queue, 17 are dropped
		publish(t, pub, bus.Message{Topic: "slow/x", Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	// Sent after the slow ones on the same connection, so the broker has
	// routed all of those by the time the first fast one arrives. The fast
	// queue is as short as the slow one: wait for each message.
	for i := range n {
		publish(t, pub, bus.Message{Topic: "fast/x", Payload: []byte(strconv.Itoa(i)), QoS: 1})
		if m := fast.next(t, 5*time.Second); string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("fast message %d: payload %q", i, m.Payload)
		}
	}
	if got := r.Stats().Dropped; got != n-3 {
		t.Errorf("Stats.Dropped = %d, want %d", got, n-3)
	}
	if got := logs.count("level=WARN", "message dropped"); got != 1 {
		t.Errorf("%d drop warnings, want 1 (rate-limited)", got)
	}

	// Keep the handler blocked for 2.5 keep-alives: the connection must
	// stay up and the other subscription keep working.
	<-time.After(2500 * time.Millisecond)
	if s := r.Stats(); s.Disconnects != 0 || !r.Connected() {
		t.Fatalf("connection dropped while a handler blocked: %+v connected=%v", s, r.Connected())
	}
	publish(t, pub, bus.Message{Topic: "fast/x", Payload: []byte("later"), QoS: 1})
	fast.nextPayload(t, 5*time.Second, "later")

	close(release)
	for _, want := range []string{"0", "1", "2"} {
		if m := slow.next(t, 5*time.Second); string(m.Payload) != want {
			t.Errorf("slow got %q, want %q", m.Payload, want)
		}
	}
	select {
	case m := <-slow:
		t.Errorf("slow got %q; it should have been dropped", m.Payload)
	default:
	}
}

func TestPublishNotConnected(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	c, err := bus.New(testConfig(t, b.URL(), "nc", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	msg := bus.Message{Topic: "nc/x", Payload: []byte("p"), QoS: 1}
	if err := c.Publish(context.Background(), msg); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Publish before Run = %v, want ErrNotConnected", err)
	}
	r := run(t, c)
	waitConnected(t, r)
	publish(t, r, msg)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(context.Background(), msg); !errors.Is(err, bus.ErrNotConnected) {
		t.Errorf("Publish after Run = %v, want ErrNotConnected", err)
	}
	if err := c.Subscribe("nc/y", 0, newCollector().handle); err == nil {
		t.Error("Subscribe after Run returned: want an error")
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run: want an error")
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	files, ca := writeCerts(t)
	b := mosquittotest.New(t, mosquittotest.Options{Users: users, TLS: &files})
	b.Start()
	url := "ssl://" + b.Addr()

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	cfg := testConfig(t, url, "tls", "dev")
	cfg.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	r := newRunning(t, cfg)
	got := newCollector()
	if err := r.Subscribe("tls/x", 1, got.handle); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, r)
	publish(t, r, bus.Message{Topic: "tls/x", Payload: []byte("secret"), QoS: 1})
	if m := got.next(t, 5*time.Second); string(m.Payload) != "secret" {
		t.Errorf("got %q", m.Payload)
	}

	// A hub proving itself with another CA is refused, and retried (not fatal).
	other, _ := newCA(t, "impostor CA")
	wrong := x509.NewCertPool()
	wrong.AddCert(other)
	cfg = testConfig(t, "mqtts://"+b.Addr(), "tls-wrong", "dev")
	cfg.TLS = &tls.Config{RootCAs: wrong}
	logs := withRecorder(t, &cfg, "tls-wrong")
	w := newRunning(t, cfg)
	eventually(t, 5*time.Second, "a certificate error logged", func() bool {
		return logs.count("level=WARN", "connect failed", "certificate") > 0
	})
	if w.Connected() {
		t.Error("connected through a server certificate from an unknown CA")
	}
	if err := w.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	f := startFakeBroker(t)
	cfg := testConfig(t, f.url(), "refused", "dev")
	logs := withRecorder(t, &cfg, "refused")
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Refused on connect: logged, the connection still comes up.
	if err := c.Subscribe("denied/early", 1, newCollector().handle); err != nil {
		t.Fatal(err)
	}
	r := run(t, c)
	waitConnected(t, r)
	if logs.count("level=ERROR", "denied/early", "0x80") != 1 {
		t.Error("refusal at connect not logged at error")
	}

	err = r.Subscribe("denied/x", 1, newCollector().handle)
	if err == nil || !strings.Contains(err.Error(), "0x80") {
		t.Fatalf("Subscribe refused by broker = %v, want a 0x80 error", err)
	}
	// The refusal undid the registration: the filter may be tried again.
	if err := r.Subscribe("denied/x", 1, newCollector().handle); err == nil || strings.Contains(err.Error(), "already") {
		t.Errorf("second Subscribe = %v, want the broker's refusal again", err)
	}
	if err := r.Subscribe("ok/x", 1, newCollector().handle); err != nil {
		t.Errorf("Subscribe granted = %v", err)
	}
}

// Hooks added with OnConnect run after every connect, after
// Config.OnConnect; adding one once Run started is an error.
func TestOnConnectHooks(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	cfg := testConfig(t, b.URL(), "hooked", "dev")
	calls := make(chan string, 4)
	cfg.OnConnect = func(context.Context) { calls <- "config" }
	c, err := bus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.OnConnect(func(context.Context) { calls <- "added" }); err != nil {
		t.Fatal(err)
	}
	sub := run(t, c)
	waitConnected(t, sub)
	got := map[string]bool{}
	for range 2 {
		select {
		case s := <-calls:
			got[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("hooks called: %v, want config and added", got)
		}
	}
	if err := c.OnConnect(func(context.Context) {}); err == nil {
		t.Error("OnConnect after Run started succeeded")
	}
}
