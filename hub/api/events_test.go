package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/events"
)

// sseClient reads a Server-Sent Events stream.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

func (h *harness) openStream(t *testing.T, srv *httptest.Server, query, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &sseClient{t: t, resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return c
}

type sseEvent struct {
	id, event string
	data      events.Event
}

// next reads the next event (skipping retry and comment lines).
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	var e sseEvent
	got := make(chan bool, 1)
	go func() {
		for c.sc.Scan() {
			line := c.sc.Text()
			switch {
			case line == "" && e.event != "":
				got <- true
				return
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(line[6:]), &e.data); err != nil {
					c.t.Errorf("data %q: %v", line, err)
				}
			}
		}
		got <- false
	}()
	select {
	case ok := <-got:
		if !ok {
			c.t.Fatalf("stream ended: %v", c.sc.Err())
		}
	case <-time.After(5 * time.Second):
		c.t.Fatal("no event within 5 s")
	}
	return e
}

func TestEventStream(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewServer(h.handler) // loopback: the admin token suffices
	t.Cleanup(srv.Close)

	c := h.openStream(t, srv, "", "")
	if ct := c.resp.Header.Get("Content-Type"); c.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", c.resp.StatusCode, ct)
	}
	// Enrolment and deletion through the API publish events.
	enr := h.enroll(t, "porch")
	e := c.next()
	if e.event != events.DeviceJoined || e.data.Device != enr.DeviceID || e.id != "1" || e.data.ID != 1 {
		t.Fatalf("first event = %+v", e)
	}
	h.adminDo(t, "DELETE", "/api/v1/devices/"+enr.DeviceID, nil).mustStatus(t, http.StatusNoContent)
	if e := c.next(); e.event != events.DeviceLeft || e.data.Device != enr.DeviceID || e.id != "2" {
		t.Fatalf("second event = %+v", e)
	}
	h.events.Publish(events.AlertFired, "dx", map[string]string{"rule": "disk"})

	// Resume after event 1: events 2 and 3 are replayed.
	r := h.openStream(t, srv, "", "1")
	if e := r.next(); e.id != "2" {
		t.Errorf("replay starts with %+v, want event 2", e)
	}
	if e := r.next(); e.id != "3" || e.event != events.AlertFired {
		t.Errorf("replay then %+v, want alert event 3", e)
	}
	// A type filter, resuming with the query parameter.
	f := h.openStream(t, srv, "?type=alert_fired&last_event_id=0", "")
	h.events.Publish(events.DeviceState, "dx", nil)
	h.events.Publish(events.AlertFired, "dy", nil)
	if e := f.next(); e.event != events.AlertFired || e.data.Device != "dy" {
		t.Errorf("filtered stream gave %+v, want only the alert of dy", e)
	}
	// An ID from before a restart (unknown): a reset, then the ring.
	x := h.openStream(t, srv, "", "999")
	if e := x.next(); e.event != events.Reset || e.id != "" {
		t.Errorf("resume from an unknown ID: %+v, want a reset without id", e)
	}

	for _, tt := range []struct{ query, lastID string }{{"?type=nope", ""}, {"", "abc"}} {
		b := h.openStream(t, srv, tt.query, tt.lastID)
		if b.resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q / Last-Event-ID %q: status %d, want 400", tt.query, tt.lastID, b.resp.StatusCode)
		}
	}
	resp, err := http.Get(srv.URL + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", resp.StatusCode)
	}
}
