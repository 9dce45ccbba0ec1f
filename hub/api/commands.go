package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Commands is the hub's command service (hub/command) as the API uses it.
type Commands interface {
	Submit(ctx context.Context, dev string, req command.Request) (command.Record, error)
	Wait(ctx context.Context, dev, id string) (command.Record, error)
	Get(dev, id string) (command.Record, error)
	Audit(dev string, limit int) ([]command.Record, error)
}

// CommandRequest is the body of POST /api/v1/devices/{id}/commands.
type CommandRequest struct {
	Action string                 `json:"action"`
	Params protocol.CommandParams `json:"params"`
	// TimeoutMS bounds the wait for the device's result (default 5000,
	// at most 120000).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	// QueueTTLMS queues the command for that long if the device is
	// offline, instead of failing with 409.
	QueueTTLMS int64 `json:"queue_ttl_ms,omitempty"`
	// Async answers 202 with the command's record at once; poll GET
	// /api/v1/devices/{id}/commands/{cid} for the result.
	Async bool `json:"async,omitempty"`
}

// AuditList answers GET /api/v1/audit.
type AuditList struct {
	Commands []command.Record `json:"commands"`
}

// commandStatus is the HTTP status of a command's record: 200 when the
// device did it, 422 when the device refused or failed it (the record
// says why), 504 when no result came in time, 202 while it is queued or
// on its way.
func commandStatus(r command.Record) int {
	switch r.Status {
	case protocol.ResultOK:
		return http.StatusOK
	case protocol.ResultFailed, protocol.ResultInvalid, protocol.ResultExpired:
		return http.StatusUnprocessableEntity
	case command.StatusTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusAccepted
}

// postCommand sends a command to a device and, unless async, answers with
// its result.
func (s *server) postCommand(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req CommandRequest
	if !decodeBody(w, r, &req) {
		return
	}
	// Checked in milliseconds, before the multiplication into a
	// time.Duration that a large value would wrap past these bounds.
	for _, f := range []struct {
		key string
		ms  int64
		max time.Duration
	}{{"timeout_ms", req.TimeoutMS, command.MaxTimeout}, {"queue_ttl_ms", req.QueueTTLMS, command.MaxQueueTTL}} {
		if f.ms < 0 || f.ms > f.max.Milliseconds() {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("%s: %d out of range [0, %d]", f.key, f.ms, f.max.Milliseconds()))
			return
		}
	}
	rec, err := s.cfg.Commands.Submit(r.Context(), id, command.Request{
		Action: req.Action, Params: req.Params, Actor: "admin",
		Timeout: time.Duration(req.TimeoutMS) * time.Millisecond, QueueTTL: time.Duration(req.QueueTTLMS) * time.Millisecond,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("command", "device", id, "command", rec.ID, "action", rec.Action, "status", rec.Status)
	if req.Async || rec.Final() || rec.Status == command.StatusQueued {
		writeJSON(w, commandStatus(rec), rec)
		return
	}
	// The service times the command out a little after its deadline; the
	// request's own context ends the wait if the client goes away.
	rec, err = s.cfg.Commands.Wait(r.Context(), id, rec.ID)
	if err != nil {
		// The record was just made: failing to read it is the hub's fault.
		s.internalError(w, r, fmt.Errorf("wait for command %s of %s: %w", rec.ID, id, err))
		return
	}
	writeJSON(w, commandStatus(rec), rec)
}

func (s *server) getCommand(w http.ResponseWriter, r *http.Request) {
	rec, err := s.cfg.Commands.Get(r.PathValue("id"), r.PathValue("cid"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// listAudit answers the commands sent, newest first (?device=ID,
// ?limit=N: default 100, at most 10000).
func (s *server) listAudit(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("limit: %q: want a number from 1 to 10000", v))
			return
		}
		limit = n
	}
	dev := r.URL.Query().Get("device")
	if dev != "" {
		if err := protocol.ValidateID(dev); err != nil {
			writeProblem(w, http.StatusBadRequest, "device: "+err.Error())
			return
		}
	}
	recs, err := s.cfg.Commands.Audit(dev, limit)
	if err != nil {
		s.internalError(w, r, fmt.Errorf("read the audit log: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, AuditList{Commands: recs})
}
