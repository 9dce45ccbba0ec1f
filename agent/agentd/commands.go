package agentd

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// publisher is the bus as commands use it.
type publisher interface {
	Publish(ctx context.Context, m bus.Message) error
}

// commands executes the hub's commands on the device's hardware and
// publishes their results and the device's input events.
type commands struct {
	hw      Hardware // nil: no HAL
	pub     publisher
	id      string
	log     *slog.Logger
	restart func()
	sem     chan struct{} // bounds the commands running at once

	running sync.WaitGroup // the commands' goroutines
}

// handle runs one command from the cmd topic in its own goroutine (a
// pulse may take a minute; others must not wait for it). ctx is the
// subscription's: done when the session stops, which cancels the command.
func (c *commands) handle(ctx context.Context, m bus.Message) {
	_, cmd, err := protocol.DecodeAs[*protocol.Command](m.Payload)
	if err != nil {
		// Without a valid ID there is no one to answer; the hub times the
		// command out.
		c.log.Warn("bad command from the hub", "err", err)
		return
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	c.running.Go(func() {
		defer func() { <-c.sem }()
		res := c.execute(ctx, cmd)
		c.log.Info("command", "command", cmd.ID, "action", cmd.Action, "status", res.Status, "error", res.Error, "repeat", res.Repeat)
		c.publish(ctx, protocol.DeviceTopic(c.id, protocol.KindResult), &res)
		if cmd.Action == protocol.ActionAgentRestart && res.Status == protocol.ResultOK && !res.Repeat {
			c.restart()
		}
	})
}

// wait returns once every command handle started has returned. Call it
// after the subscription stopped delivering (the bus client's Run returned).
func (c *commands) wait() { c.running.Wait() }

func (c *commands) execute(ctx context.Context, cmd *protocol.Command) protocol.CommandResult {
	if c.hw != nil {
		return c.hw.Execute(ctx, cmd)
	}
	if cmd.Action == protocol.ActionAgentRestart {
		if time.Now().After(cmd.Deadline) {
			return protocol.CommandResult{ID: cmd.ID, Status: protocol.ResultExpired, Error: "arrived after its deadline; not started"}
		}
		return protocol.CommandResult{ID: cmd.ID, Status: protocol.ResultOK}
	}
	return protocol.CommandResult{ID: cmd.ID, Status: protocol.ResultInvalid, Error: "this agent runs without a HAL (--hal none)"}
}

func (c *commands) publishEvent(ctx context.Context, e protocol.DeviceEvent) {
	c.publish(ctx, protocol.DeviceTopic(c.id, protocol.KindEvent), &e)
}

func (c *commands) publish(ctx context.Context, topic string, p protocol.Payload) {
	b, err := protocol.Encode(c.id, time.Now(), p)
	if err == nil {
		err = c.pub.Publish(ctx, bus.Message{Topic: topic, Payload: b, QoS: 1})
	}
	if err != nil {
		c.log.Warn("not published", "type", p.MessageType(), "err", err)
	}
}
