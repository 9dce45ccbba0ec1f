// Package dynsec gives devices their own accounts and roles on an external
// Mosquitto broker through its dynamic-security plugin, so that with an
// external broker, too, each device has its own password and may only use
// its own topics. The hub's broker account needs the plugin's admin
// rights. Only the hub's root (hub/hubd) imports it.
//
// The broker keeps the accounts (in its dynamic-security file); this
// package keeps nothing but the commands awaiting an answer. A command
// the broker does not answer within 10 s fails, and the caller (device
// enrolment, revocation) fails with it.
package dynsec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/protocol"
)

// Mosquitto's dynamic-security plugin takes JSON commands on this topic and
// answers on ResponseTopic.
const (
	commandTopic = "$CONTROL/dynamic-security/v1"
	// ResponseTopic is where the plugin answers: subscribe Sync.HandleResponse to it.
	ResponseTopic = "$CONTROL/dynamic-security/v1/response"
	hubRole       = "alicia-hub"
)

// Client is the hub's connection to the broker.
type Client interface {
	WaitConnected(ctx context.Context) error
	Publish(ctx context.Context, m bus.Message) error
}

// Sync sends the plugin its commands. Create it with New; its methods
// are safe for concurrent use.
type Sync struct {
	hubUser string
	// extra are topic filters the hub needs besides alicia/# (Home
	// Assistant's discovery prefix).
	extra  []string
	log    *slog.Logger
	client Client

	seq     atomic.Uint64
	mu      sync.Mutex // guards pending
	pending map[string]chan dynsecResponse

	hubRightsOK atomic.Bool // EnsureHubRights succeeded in this process
}

type dynsecResponse struct {
	Command         string `json:"command"`
	Error           string `json:"error,omitempty"`
	CorrelationData string `json:"correlationData,omitempty"`
}

// New returns a Sync that sends its commands over c, as broker user
// hubUser (whose rights EnsureHubRights sets: alicia/# and extra).
func New(c Client, hubUser string, extra []string, log *slog.Logger) *Sync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sync{client: c, hubUser: hubUser, extra: extra, log: log, pending: map[string]chan dynsecResponse{}}
}

// HandleResponse takes the plugin's answers (a bus.Handler for ResponseTopic).
func (d *Sync) HandleResponse(_ context.Context, m bus.Message) {
	var body struct {
		Responses []dynsecResponse `json:"responses"`
	}
	if err := json.Unmarshal(m.Payload, &body); err != nil {
		d.log.Warn("bad dynamic-security response", "err", err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range body.Responses {
		if ch, ok := d.pending[r.CorrelationData]; ok {
			ch <- r
			delete(d.pending, r.CorrelationData)
		}
	}
}

// run sends commands and waits for each answer. Errors of commands whose
// names are in tolerate (e.g. deleting what does not exist) are ignored.
func (d *Sync) run(ctx context.Context, cmds []map[string]any, tolerate ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	chans := make([]chan dynsecResponse, len(cmds))
	d.mu.Lock()
	for i, c := range cmds {
		id := "alicia-" + strconv.FormatUint(d.seq.Add(1), 10)
		c["correlationData"] = id
		chans[i] = make(chan dynsecResponse, 1)
		d.pending[id] = chans[i]
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		for _, c := range cmds {
			delete(d.pending, c["correlationData"].(string))
		}
		d.mu.Unlock()
	}()
	payload, err := json.Marshal(map[string]any{"commands": cmds})
	if err != nil {
		return fmt.Errorf("dynsec: %w", err)
	}
	// Mosquitto disconnects a client whose roles change, so the hub's own
	// connection may be briefly down (notably right after EnsureHubRights):
	// wait for it and retry a few times.
	for attempt := 1; ; attempt++ {
		if err := d.client.WaitConnected(ctx); err != nil {
			return fmt.Errorf("dynsec: broker not connected: %w", err)
		}
		err := d.client.Publish(ctx, bus.Message{Topic: commandTopic, Payload: payload, QoS: 1})
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrNotConnected) || attempt == 5 {
			return fmt.Errorf("dynsec: send: %w", err)
		}
	}
	var errs []error
	for i, ch := range chans {
		select {
		case r := <-ch:
			if r.Error != "" && !slices.Contains(tolerate, r.Command) {
				errs = append(errs, fmt.Errorf("%s: %s", r.Command, r.Error))
			}
		case <-ctx.Done():
			return fmt.Errorf("dynsec: no answer to %v from the broker (is the dynamic-security plugin loaded and the hub account its admin?): %w", cmds[i]["command"], ctx.Err())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dynsec: %w", errors.Join(errs...))
	}
	return nil
}

func deviceRole(id string) string { return "alicia-device-" + id }

// EnsureHubRights gives the hub's own account the right to use alicia/#.
func (d *Sync) EnsureHubRights(ctx context.Context) (err error) {
	if d.hubRightsOK.Load() {
		return nil
	}
	defer func() {
		if err == nil {
			d.hubRightsOK.Store(true)
		}
	}()
	var acls []map[string]any
	for _, topic := range append([]string{protocol.Root[:strings.IndexByte(protocol.Root, '/')] + "/#"}, d.extra...) {
		acls = append(acls,
			map[string]any{"acltype": "publishClientSend", "topic": topic, "allow": true},
			map[string]any{"acltype": "publishClientReceive", "topic": topic, "allow": true},
			map[string]any{"acltype": "subscribePattern", "topic": topic, "allow": true})
	}
	return d.run(ctx, []map[string]any{
		{"command": "createRole", "rolename": hubRole, "acls": acls},
		{"command": "addClientRole", "username": d.hubUser, "rolename": hubRole, "priority": 10},
	}, "createRole", "addClientRole")
}

// Provision creates (or re-creates) the device's account with its own role.
func (d *Sync) Provision(ctx context.Context, id, password string) error {
	own := protocol.DeviceSubtree(id)
	return d.run(ctx, []map[string]any{
		{"command": "deleteClient", "username": id},
		{"command": "deleteRole", "rolename": deviceRole(id)},
		{"command": "createRole", "rolename": deviceRole(id), "acls": []map[string]any{
			// The hub's acknowledgements, commands and configs are the hub's to
			// publish: denied first (a higher priority is checked first).
			{"acltype": "publishClientSend", "topic": protocol.DeviceTopic(id, protocol.KindAck), "priority": 1, "allow": false},
			{"acltype": "publishClientSend", "topic": protocol.DeviceTopic(id, protocol.KindCommand), "priority": 1, "allow": false},
			{"acltype": "publishClientSend", "topic": protocol.DeviceTopic(id, protocol.KindConfig), "priority": 1, "allow": false},
			{"acltype": "publishClientSend", "topic": own, "allow": true},
			{"acltype": "subscribePattern", "topic": own, "allow": true},
			{"acltype": "subscribeLiteral", "topic": protocol.HubStatusTopic, "allow": true},
		}},
		{"command": "createClient", "username": id, "password": password, "clientid": id, "roles": []map[string]any{{"rolename": deviceRole(id)}}},
	}, "deleteClient", "deleteRole")
}

// Remove deletes the device's account and role; deleting the client also
// disconnects it.
func (d *Sync) Remove(ctx context.Context, id string) error {
	return d.run(ctx, []map[string]any{
		{"command": "deleteClient", "username": id},
		{"command": "deleteRole", "rolename": deviceRole(id)},
	}, "deleteClient", "deleteRole")
}
