package homeassistant_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/bus"
)

// linkDevices adapts the test source to LinkDevices.
type linkDevices struct{ *source }

func (d linkDevices) List() []registry.Device { return d.Devices() }
func (d linkDevices) Get(id string) (registry.Device, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dev, ok := d.devices[id]; ok {
		return dev, nil
	}
	return registry.Device{}, errors.New("not found")
}

// The Link carries out Home Assistant's commands in goroutines it owns
// (Run returns only when they have), ignores retained commands, and
// announces after a connect.
func TestLinkRunsCommandsAndStops(t *testing.T) {
	e := newEnv(t, homeassistant.Config{})
	l := homeassistant.NewLink(e.b, linkDevices{e.src}, events.New(0, nil), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()

	l.Handle(ctx, bus.Message{Topic: "alicia/v1/ha/" + kitchenID + "/relay_kitchen/set", Payload: []byte("ON"), Retained: true})
	l.Handle(ctx, bus.Message{Topic: "alicia/v1/ha/" + kitchenID + "/relay_kitchen/set", Payload: []byte("OFF")})
	l.Connected(ctx)
	deadline := time.Now().Add(10 * time.Second)
	var calls []commandCall
	for len(calls) == 0 && time.Now().Before(deadline) {
		calls = append(calls, e.cmd.take()...)
		time.Sleep(10 * time.Millisecond) // polling the workers
	}
	if len(calls) != 1 || *calls[0].Req.Params.Level {
		t.Errorf("commands %+v, want one OFF (the retained ON ignored)", calls)
	}
	for !hasTopic(e.rec.take(), configTopic(kitchenID)) {
		if time.Now().After(deadline) {
			t.Fatal("no announcement after Connected")
		}
		time.Sleep(10 * time.Millisecond) // polling the announcement
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func hasTopic(msgs []message, topic string) bool {
	for _, m := range msgs {
		if m.Topic == topic {
			return true
		}
	}
	return false
}
