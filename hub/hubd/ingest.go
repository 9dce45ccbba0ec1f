package hubd

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// ingest turns device messages from the bus into registry updates. Bad
// messages are counted and logged with what is wrong and where, and change
// nothing.
type ingest struct {
	reg      *registry.Registry
	metrics  *metrics.Ingester
	commands *command.Service
	// input receives a device's input events.
	input    func(device string, ev *protocol.DeviceEvent)
	log      *slog.Logger
	rejected atomic.Uint64
}

func (in *ingest) handle(_ context.Context, m bus.Message) {
	id, kind, err := protocol.ParseDeviceTopic(m.Topic)
	if err != nil {
		in.reject(m, err)
		return
	}
	if len(m.Payload) == 0 {
		// An empty retained message clears a topic; nothing to apply.
		return
	}
	msg, err := protocol.Decode(m.Payload)
	if err != nil {
		in.reject(m, err)
		return
	}
	if msg.Type() != kind.Type() {
		in.reject(m, errKindMismatch{kind: kind, typ: msg.Type()})
		return
	}
	switch p := msg.Payload.(type) {
	case *protocol.Metrics, *protocol.CommandResult, *protocol.DeviceEvent:
		// The registry checks what it handles itself; these go elsewhere,
		// from an accepted device about itself only.
		if msg.Source != id {
			in.reject(m, fmt.Errorf("message on the topic of %s claims source %s", id, msg.Source))
			return
		}
		if !in.reg.Allowed(id) {
			in.reject(m, fmt.Errorf("%s: %w", id, registry.ErrUnknownDevice))
			return
		}
		switch p := p.(type) {
		case *protocol.Metrics:
			// A batch that cannot be queued is not acknowledged, so the
			// agent resends it.
			if !in.metrics.Submit(id, p) {
				in.log.Debug("metrics queue full; the agent will resend", "device", id, "seq", p.Seq)
			}
		case *protocol.CommandResult:
			in.commands.HandleResult(id, p)
		case *protocol.DeviceEvent:
			in.input(id, p)
		}
		return
	}
	if err := in.reg.Handle(id, msg); err != nil {
		in.reject(m, err)
	}
}

func (in *ingest) reject(m bus.Message, err error) {
	in.rejected.Add(1)
	in.log.Warn("device message rejected", "topic", m.Topic, "bytes", len(m.Payload), "err", err)
}

type errKindMismatch struct {
	kind protocol.Kind
	typ  protocol.Type
}

func (e errKindMismatch) Error() string {
	return "message of type " + string(e.typ) + " on a " + string(e.kind) + " topic"
}

func constantTimeEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
