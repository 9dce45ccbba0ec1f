package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/internal/buildinfo"
)

// Defaults of WebhookConfig.
const (
	DefaultWebhookTimeout     = 10 * time.Second
	DefaultWebhookMaxAttempts = 5
	DefaultWebhookBackoff     = time.Second
	DefaultWebhookQueueLen    = 256
	// maxBackoff caps the wait between two attempts.
	maxBackoff = 5 * time.Minute
)

// WebhookConfig configures a Webhook. Only URL is required.
type WebhookConfig struct {
	// URL receives a POST of each Event as JSON. http or https.
	URL string
	// Timeout bounds one attempt (connect, send, response headers and
	// body). Default DefaultWebhookTimeout.
	Timeout time.Duration
	// MaxAttempts is how many times one event is tried before it counts
	// as failed. Default DefaultWebhookMaxAttempts.
	MaxAttempts int
	// Backoff is the wait before the second attempt; it doubles for each
	// further one, up to five minutes. Default DefaultWebhookBackoff.
	Backoff time.Duration
	// QueueLen bounds the events waiting to be sent; Notify drops (and
	// counts) events beyond it. Default DefaultWebhookQueueLen.
	QueueLen int
	// Logger; nil discards.
	Logger *slog.Logger
	// Client sends the requests. Default: a client that does not follow
	// redirects (a redirect counts as a failure).
	Client *http.Client
}

// Validate checks the URL and that no setting is negative.
func (c *WebhookConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return fmt.Errorf("health: webhook: url: %q is not a URL", c.URL)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("health: webhook: url %s: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("health: webhook: url %s: no host", u.Redacted())
	case c.Timeout < 0, c.MaxAttempts < 0, c.Backoff < 0, c.QueueLen < 0:
		return errors.New("health: webhook: Timeout, MaxAttempts, Backoff and QueueLen must not be negative")
	}
	return nil
}

// WebhookStats counts a webhook's events.
type WebhookStats struct {
	// Sent events were answered 2xx.
	Sent uint64 `json:"sent"`
	// Failed events were given up: answered 4xx or not 2xx (other than
	// 408, 429 and 5xx), or tried MaxAttempts times.
	Failed uint64 `json:"failed"`
	// Dropped events found the queue full.
	Dropped uint64 `json:"dropped"`
	// Retries counts the attempts after the first.
	Retries uint64 `json:"retries"`
}

// Webhook posts alert events to a URL, one at a time and in order, with
// retries. Notify queues; Run sends. Its methods are safe for concurrent
// use.
type Webhook struct {
	cfg    WebhookConfig
	url    string
	log    *slog.Logger
	client *http.Client
	queue  chan Event

	sent, failed, dropped, retries atomic.Uint64
}

// NewWebhook validates cfg and returns a Webhook. It starts no goroutine:
// call Run.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultWebhookTimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultWebhookMaxAttempts
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultWebhookBackoff
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultWebhookQueueLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	u, _ := url.Parse(cfg.URL)
	return &Webhook{cfg: cfg, url: cfg.URL, log: cfg.Logger.With("url", u.Redacted()), client: client,
		queue: make(chan Event, cfg.QueueLen)}, nil
}

// Notify queues ev for sending. It never blocks: when the queue is full
// the event is dropped and counted. Its signature fits Config.OnEvent.
func (w *Webhook) Notify(ev Event) {
	select {
	case w.queue <- ev:
	default:
		if w.dropped.Add(1) == 1 {
			w.log.Warn("webhook queue full; dropping events (counted in the webhook's stats)", "queue_len", w.cfg.QueueLen)
		}
	}
}

// Stats returns the webhook's counters.
func (w *Webhook) Stats() WebhookStats {
	return WebhookStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(), Retries: w.retries.Load()}
}

// Run sends the queued events until ctx is done, then returns nil; the
// events still queued are not sent.
func (w *Webhook) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.queue:
			w.send(ctx, ev)
		}
	}
}

// send posts one event, retrying network errors, 408, 429 and 5xx with
// exponential backoff.
func (w *Webhook) send(ctx context.Context, ev Event) {
	body, err := json.Marshal(ev)
	if err != nil {
		w.failed.Add(1)
		w.log.Error("webhook: encode event", "err", err)
		return
	}
	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := w.post(ctx, body)
		if err == nil {
			w.sent.Add(1)
			return
		}
		if ctx.Err() != nil {
			return // stopping; not a failure of the receiver
		}
		if !retry || attempt >= w.cfg.MaxAttempts {
			w.failed.Add(1)
			w.log.Warn("webhook: event not delivered", "type", ev.Type, "alert", ev.Alert.ID, "attempts", attempt, "err", err)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		w.retries.Add(1)
		wait = min(2*wait, maxBackoff)
	}
}

// post makes one attempt. retry reports whether a failure may succeed
// when tried again.
func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "alicia-hub/"+buildinfo.Version)
	resp, err := w.client.Do(req)
	if err != nil {
		return true, err
	}
	// Read a little of the body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c >= 500, c == http.StatusRequestTimeout, c == http.StatusTooManyRequests:
		return true, fmt.Errorf("answered %s", resp.Status)
	default:
		return false, fmt.Errorf("answered %s", resp.Status)
	}
}
