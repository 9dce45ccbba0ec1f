package health_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/health"
)

// hookURL is where the tests' webhooks post: the receiver answers in
// memory, so no request leaves the process.
const hookURL = "http://receiver.test/hook"

// receiver is the webhook's HTTP transport: it answers each request with
// the next of its status codes (the last one repeats), or with a refused
// connection while down, and records the requests and when they came (in
// the test's bubble, where time only passes when every goroutine waits).
type receiver struct {
	mu       sync.Mutex
	statuses []int
	down     bool
	bodies   [][]byte
	types    []string
	times    []time.Time
}

func newReceiver(statuses ...int) *receiver { return &receiver{statuses: statuses} }

// RoundTrip implements http.RoundTripper.
func (r *receiver) RoundTrip(req *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(req.Body)
	req.Body.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.times = append(r.times, time.Now())
	if r.down {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	r.bodies = append(r.bodies, b)
	r.types = append(r.types, req.Method+" "+req.Header.Get("Content-Type"))
	rec := httptest.NewRecorder()
	rec.WriteHeader(r.statuses[min(len(r.bodies), len(r.statuses))-1])
	return rec.Result(), nil
}

func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bodies)
}

// startWebhook returns a webhook to hookURL that posts through rcv.
func startWebhook(t *testing.T, rcv *receiver, cfg health.WebhookConfig) *health.Webhook {
	t.Helper()
	cfg.URL = hookURL
	cfg.Client = &http.Client{Transport: rcv}
	w, err := health.NewWebhook(cfg)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	return w
}

func run(t *testing.T, w *health.Webhook) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitStats lets 10 s pass in the test's bubble (every backoff the tests
// provoke ends well within them), waits for the webhook to be idle and
// checks its stats.
func waitStats(t *testing.T, w *health.Webhook, want health.WebhookStats) {
	t.Helper()
	time.Sleep(10 * time.Second) // the bubble's clock: no real wait
	synctest.Wait()
	if got := w.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

func testEvent() health.Event {
	return health.Event{Type: health.EventAlertFired, Time: t0,
		Alert: health.Alert{ID: "0123456789abcdef", Rule: "disk_full", RuleName: "Disk full", Kind: health.KindThreshold,
			Device: "d1", DeviceName: "garage-pi", Metric: "filesystem_used_ratio", Labels: map[string]string{"mount": "/"},
			Severity: health.SeverityWarning, State: health.AlertFiring, Since: t0.Add(-5 * time.Minute), FiredAt: t0,
			Value: 0.95, Threshold: 0.9, Summary: "disk / on garage-pi is 95 % full: clear logs or enlarge the card"}}
}

func TestWebhookRetriesServerErrorsThenSucceeds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(500, 503, 200)
		w := startWebhook(t, rcv, health.WebhookConfig{})
		run(t, w)
		start := time.Now()
		w.Notify(testEvent())
		waitStats(t, w, health.WebhookStats{Sent: 1, Retries: 2})
		if n := rcv.requests(); n != 3 {
			t.Fatalf("requests = %d, want 3", n)
		}
		// The default backoff: one second before the second attempt, then
		// twice as long.
		var after []time.Duration
		for _, at := range rcv.times {
			after = append(after, at.Sub(start))
		}
		if d := cmp.Diff([]time.Duration{0, health.DefaultWebhookBackoff, 3 * health.DefaultWebhookBackoff}, after); d != "" {
			t.Errorf("attempts after Notify (-want +got):\n%s", d)
		}

		// Each attempt posted the event as JSON.
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		for i, b := range rcv.bodies {
			if rcv.types[i] != "POST application/json" {
				t.Errorf("request %d: %s, want POST application/json", i, rcv.types[i])
			}
			var got health.Event
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("request %d: body %s: %v", i, b, err)
			}
			if diff := cmp.Diff(testEvent(), got); diff != "" {
				t.Errorf("request %d: event (-want +got):\n%s", i, diff)
			}
		}
		for _, field := range []string{`"type":"alert_fired"`, `"fired_at":"2026-03-01T12:00:00Z"`, `"summary":"disk / on garage-pi`} {
			if !strings.Contains(string(rcv.bodies[0]), field) {
				t.Errorf("payload %s lacks %s", rcv.bodies[0], field)
			}
		}
	})
}

func TestWebhookDoesNotRetryClientErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(400, 200)
		w := startWebhook(t, rcv, health.WebhookConfig{})
		run(t, w)
		w.Notify(testEvent())
		waitStats(t, w, health.WebhookStats{Failed: 1})
		// The next event goes through: the 400 was not retried.
		w.Notify(testEvent())
		waitStats(t, w, health.WebhookStats{Failed: 1, Sent: 1})
		if n := rcv.requests(); n != 2 {
			t.Errorf("requests = %d, want 2", n)
		}
	})
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(502)
		w := startWebhook(t, rcv, health.WebhookConfig{MaxAttempts: 3})
		run(t, w)
		w.Notify(testEvent())
		waitStats(t, w, health.WebhookStats{Failed: 1, Retries: 2})
		if n := rcv.requests(); n != 3 {
			t.Errorf("requests = %d, want 3", n)
		}
	})
}

func TestWebhookRetriesNetworkErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(200)
		rcv.down = true // connection refused
		w := startWebhook(t, rcv, health.WebhookConfig{MaxAttempts: 4})
		run(t, w)
		w.Notify(testEvent())
		waitStats(t, w, health.WebhookStats{Failed: 1, Retries: 3})
	})
}

func TestWebhookQueueOverflowDropsAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(204)
		w := startWebhook(t, rcv, health.WebhookConfig{QueueLen: 2})
		// Not running yet: the queue fills, and Notify never blocks.
		for range 5 {
			w.Notify(testEvent())
		}
		if got := w.Stats(); got != (health.WebhookStats{Dropped: 3}) {
			t.Fatalf("Stats after 5 events in a queue of 2 = %+v, want 3 dropped", got)
		}
		run(t, w)
		waitStats(t, w, health.WebhookStats{Sent: 2, Dropped: 3})
		if n := rcv.requests(); n != 2 {
			t.Errorf("requests = %d, want 2", n)
		}
	})
}

func TestWebhookStopsRetryingWhenCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rcv := newReceiver(500)
		w := startWebhook(t, rcv, health.WebhookConfig{Backoff: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		w.Notify(testEvent())
		synctest.Wait() // Run has posted and waits out its backoff
		if rcv.requests() == 0 {
			t.Fatal("no request")
		}
		cancel() // during the hour of backoff
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if got := w.Stats(); got.Failed != 0 || got.Sent != 0 {
			t.Errorf("Stats = %+v, want neither sent nor failed", got)
		}
	})
}

func TestWebhookConfigValidate(t *testing.T) {
	for _, u := range []string{"", "ftp://example.com/x", "http://", "example.com/hook", "://x", "file:///etc/passwd"} {
		if _, err := health.NewWebhook(health.WebhookConfig{URL: u}); err == nil {
			t.Errorf("NewWebhook(%q) succeeded", u)
		}
	}
	if _, err := health.NewWebhook(health.WebhookConfig{URL: "https://u:secret@ntfy.example/alerts", MaxAttempts: -1}); err == nil ||
		strings.Contains(err.Error(), "secret") {
		t.Errorf("NewWebhook(MaxAttempts: -1) = %v, want an error that hides the password", err)
	}
	for _, u := range []string{"http://192.168.1.5:8080/hook", "https://u:secret@ntfy.example/alerts"} {
		if _, err := health.NewWebhook(health.WebhookConfig{URL: u}); err != nil {
			t.Errorf("NewWebhook(%q): %v", u, err)
		}
	}
}

// The webhook's Notify fits Config.OnEvent.
var _ func(health.Event) = (*health.Webhook)(nil).Notify
