package protocol

import "fmt"

// HubEventsTopic carries the hub's events (HubEvent, QoS 1, not retained)
// for integrations: device joined, left and changed state, alerts fired
// and resolved. Devices may not subscribe to it.
const HubEventsTopic = Root + "/hub/events"

// HubEvent is one event of the hub's event stream, as published on
// HubEventsTopic. The same events are served as Server-Sent Events at
// GET /api/v1/events.
type HubEvent struct {
	// ID increases by one per event for the hub's lifetime.
	ID uint64 `json:"id"`
	// Event is the type: device_joined, device_left, device_state,
	// alert_fired, alert_resolved.
	Event string `json:"event"`
	// Device is the device concerned, if any.
	Device string `json:"device,omitempty"`
	// Data is the event's details.
	Data map[string]any `json:"data,omitempty"`
}

// MessageType implements Payload.
func (*HubEvent) MessageType() Type { return TypeHubEvent }

// Validate implements Payload.
func (e *HubEvent) Validate() error {
	if e.ID == 0 {
		return fieldError("id", fmt.Errorf("must be at least 1"))
	}
	if err := checkToken("event", e.Event, 64); err != nil {
		return err
	}
	if e.Device != "" {
		if err := ValidateID(e.Device); err != nil {
			return fieldError("device", err)
		}
	}
	return nil
}
