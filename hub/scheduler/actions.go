package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Doer does an HTTP request (*http.Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// defaultWebhookClient does not follow redirects: a webhook's URL is
// where it goes.
func defaultWebhookClient() Doer {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// result is what an attempt did.
type result struct {
	text string
	// queued: the command waits for its device (a final run status).
	queued bool
	// permanent: trying again cannot help.
	permanent bool
}

func (r result) String() string { return r.text }

func (r result) status() string {
	if r.queued {
		return RunQueued
	}
	return RunOK
}

// commandRequest is the command request of job j's run attempt, ID id.
func commandRequest(j Job, id string) command.Request {
	c := j.Action.Command
	return command.Request{ID: id, Action: c.Action, Params: c.Params, Actor: "scheduler:" + j.ID,
		Timeout: time.Duration(c.Timeout), QueueTTL: time.Duration(c.QueueTTL)}
}

// act does j's action once, for run r.
func (s *Scheduler) act(ctx context.Context, j Job, r Run) (result, error) {
	a := j.Action
	switch {
	case a.Command != nil:
		return s.actCommand(ctx, j, r)
	case a.Webhook != nil:
		return s.actWebhook(ctx, j, r)
	case a.Publish != nil:
		p := a.Publish
		if err := s.cfg.Publish(ctx, p.Topic, []byte(p.Payload), p.QoS, p.Retain); err != nil {
			return result{}, fmt.Errorf("publish on %s: %w", p.Topic, err)
		}
		return result{text: "published on " + p.Topic}, nil
	case a.Config != nil:
		c := a.Config
		changed, v, err := s.cfg.Configs.Restore(c.Kind, c.Scope, c.Version, "scheduler:"+j.ID, "run "+r.ID)
		if err != nil {
			return result{permanent: true}, fmt.Errorf("configuration %s %s: %w", c.Kind, c.Scope, err)
		}
		if !changed {
			return result{text: fmt.Sprintf("%s %s already has version %d's content", c.Kind, c.Scope, c.Version)}, nil
		}
		return result{text: fmt.Sprintf("%s %s version %d written (the content of version %d)", c.Kind, c.Scope, v, c.Version)}, nil
	}
	return result{permanent: true}, errors.New("no action")
}

// actCommand sends the command with an ID of the run's attempt, so that a
// run resumed after a crash finds its command instead of sending it
// again, and waits for its result.
func (s *Scheduler) actCommand(ctx context.Context, j Job, r Run) (result, error) {
	c := j.Action.Command
	id := fmt.Sprintf("%s.%d", r.ID, r.Attempts)
	rec, err := s.cfg.Commands.Submit(ctx, c.Device, commandRequest(j, id))
	switch {
	case errors.Is(err, command.ErrOffline):
		return result{permanent: true}, fmt.Errorf("%w (the job's rule for an offline device: fail; set queue_ttl to queue)", err)
	case errors.Is(err, command.ErrInvalid), errors.Is(err, command.ErrNotFound):
		return result{permanent: true}, err
	case err != nil:
		return result{}, err
	}
	if !rec.Final() {
		wctx := ctx
		if rec.Status == command.StatusQueued {
			// Queued: the run ends at once; the command goes when the
			// device returns, and its outcome is in the audit log.
			return result{text: "command " + rec.ID + " queued for the offline device", queued: true}, nil
		}
		if rec, err = s.cfg.Commands.Wait(wctx, c.Device, rec.ID); err != nil {
			return result{text: "command " + rec.ID}, err
		}
	}
	text := fmt.Sprintf("command %s: %s", rec.ID, rec.Status)
	switch rec.Status {
	case protocol.ResultOK:
		return result{text: text}, nil
	case protocol.ResultInvalid, protocol.ResultExpired:
		return result{text: text, permanent: true}, fmt.Errorf("%s: %s", text, rec.Error)
	}
	return result{text: text}, fmt.Errorf("%s: %s", text, rec.Error)
}

// actWebhook POSTs the job's body (or a description of the run).
func (s *Scheduler) actWebhook(ctx context.Context, j Job, r Run) (result, error) {
	w := j.Action.Webhook
	body := []byte(w.Body)
	if len(body) == 0 {
		body, _ = json.Marshal(map[string]any{"job": j.ID, "run": r.ID, "scheduled": r.Scheduled})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return result{permanent: true}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "alicia-hub/"+buildinfo.Version)
	req.Header.Set("Idempotency-Key", r.ID)
	resp, err := s.cfg.Webhook.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	text := fmt.Sprintf("webhook answered %d", resp.StatusCode)
	switch {
	case resp.StatusCode/100 == 2:
		return result{text: text}, nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return result{text: text, permanent: true}, errors.New(text)
	}
	return result{text: text}, errors.New(text)
}
