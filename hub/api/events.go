package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/alicia-home/alicia/hub/events"
)

// sseHeartbeat is how often an idle event stream gets a comment line, so
// that proxies and clients see the connection is alive.
const sseHeartbeat = 15 * time.Second

// streamQuery reads where a stream resumes (Last-Event-ID, or
// ?last_event_id=N) and which event types it wants (?type=…); problem
// says what is wrong with them, if anything.
func streamQuery(r *http.Request) (after uint64, types []string, problem string) {
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return 0, nil, fmt.Sprintf("Last-Event-ID %q: want the id of the last event received", last)
		}
		after = n
	}
	types = r.URL.Query()["type"]
	for _, t := range types {
		if !slices.Contains(events.Types, t) {
			return 0, nil, fmt.Sprintf("type %q: want one of %v", t, events.Types)
		}
	}
	return after, types, ""
}

// streamEvents serves GET /api/v1/events as Server-Sent Events. A client
// resumes with the Last-Event-ID header (EventSource sends it on
// reconnect) or ?last_event_id=N; ?type=… (repeatable) filters the types.
// Each event's data is the JSON of events.Event.
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request) {
	after, types, problem := streamQuery(r)
	if problem != "" {
		writeProblem(w, http.StatusBadRequest, problem)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	replay, sub := s.cfg.Events.Subscribe(after)
	defer sub.Close()
	send := func(e events.Event) error {
		if len(types) > 0 && e.Type != events.Reset && !slices.Contains(types, e.Type) {
			return nil
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if e.Type == events.Reset {
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, b)
		} else {
			_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	// Ask EventSource clients to retry after 2 s when the stream breaks,
	// and show a person at a terminal (curl -N) at once that the stream
	// is open: events may be seconds away.
	if _, err := fmt.Fprintf(w, "retry: 2000\n: alicia hub %s: event stream open, waiting for events\n\n", s.cfg.HubID); err != nil {
		return
	}
	for _, e := range replay {
		if send(e) != nil {
			return
		}
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.cfg.Stopping:
			// The hub stops; the client reconnects with Last-Event-ID
			// to the next hub.
			return
		case e, ok := <-sub.C:
			if !ok {
				// Too slow: the client reconnects with Last-Event-ID.
				s.log.Warn("event stream client too slow; disconnected", "remote", r.RemoteAddr)
				return
			}
			if send(e) != nil {
				return
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
