package hubd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/api"
	"github.com/alicia-home/alicia/hub/command"
	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/events"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/homeassistant"
	"github.com/alicia-home/alicia/hub/ingest"
	"github.com/alicia-home/alicia/hub/integrations"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/bus"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/protocol"
)

// openConfigs opens the configuration manager (versioned documents per
// kind and scope).
func (p *parts) openConfigs() error {
	cs, err := spec.Open(p.db, spec.Config{})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := cs.RegisterOwned(protocol.KindSchedule, scheduler.ScheduleSchema, scheduler.Author); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.configs = cs
	return nil
}

// openConfSync builds the sender of each device's desired configuration
// (retained, on its config topic), sent again after every connection of
// the hub's bus (the broker may have lost its retained messages).
func (p *parts) openConfSync() error {
	cs, err := confsync.Open(p.db, confsync.Config{Configs: p.configs, Devices: p.reg, Events: p.events, Holds: rolloutHolds{p},
		Logger: p.log.With("component", "confsync"),
		Publish: func(ctx context.Context, dev string, c *protocol.Config) error {
			b, err := protocol.Encode(p.hubID, time.Now(), c)
			if err != nil {
				return err
			}
			return p.client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(dev, protocol.KindConfig), Payload: b, QoS: 1, Retained: true})
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := p.client.OnConnect(cs.Resend); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.confsync = cs
	return nil
}

// rolloutHolds are the rollouts' holds as the config sender reads them:
// the rollouts are opened after it (they watch its states) and before it
// runs.
type rolloutHolds struct{ p *parts }

func (h rolloutHolds) Held(dev, kind string) (json.RawMessage, bool) {
	return h.p.rollouts.Held(dev, kind)
}

// openRollouts opens the configuration rollouts (their holds are loaded
// before the config sender's first pass).
func (p *parts) openRollouts() error {
	m, err := rollout.Open(p.db, rollout.Config{Configs: p.configs, Devices: p.reg, Health: p.health, Sync: p.confsync, Events: p.events,
		Logger: p.log.With("component", "rollout")})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.rollouts = m
	return nil
}

// openScheduler opens the job scheduler: commands through the command
// service, publishes on the hub's bus, configuration versions through the
// rollout guard.
func (p *parts) openScheduler() error {
	clock := p.cfg.Clock
	s, err := scheduler.Open(p.db, scheduler.Config{Commands: p.cmds, Configs: schedulerConfigs{p}, Schedules: deviceSchedules{p}, Events: p.events, Location: p.cfg.Location,
		Workers: p.cfg.SchedulerWorkers, Logger: p.log.With("component", "scheduler"),
		ClockOK: func() (bool, string) { return clocksync.Synced(clock) },
		Publish: func(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
			return p.client.Publish(ctx, bus.Message{Topic: topic, Payload: payload, QoS: qos, Retained: retain})
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.sched = s
	return nil
}

// handleJobRun stores the run of a device's on-device job and
// acknowledges it, so that the agent forgets it; a run that cannot be
// stored is not acknowledged, and the agent sends it again. (The
// scheduler is opened after ingest, and before anything runs.)
func (p *parts) handleJobRun(dev string, r *protocol.JobRun) {
	if err := p.sched.RecordDeviceRun(dev, r); err != nil {
		p.log.Warn("a device's job run not stored; it sends it again", "device", dev, "run", r.Run, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.publishTo(ctx, dev, protocol.KindJobAck, &protocol.JobAck{Epoch: r.Epoch, Seqs: []uint64{r.Seq}}); err != nil {
		p.log.Debug("job run not acknowledged; the agent sends it again", "device", dev, "run", r.Run, "err", err)
	}
}

// schedulerConfigs is the configuration manager as a job's config action
// uses it: a rollback written through the rollout guard, then sent.
type schedulerConfigs struct{ p *parts }

func (c schedulerConfigs) Check(kind, scope string, version uint64) error {
	sc, err := spec.ParseScope(scope)
	if err != nil {
		return err
	}
	_, err = c.p.configs.Version(kind, sc, version)
	return err
}

func (c schedulerConfigs) Restore(kind, scope string, version uint64, author, comment string) (bool, uint64, error) {
	sc, err := spec.ParseScope(scope)
	if err != nil {
		return false, 0, err
	}
	var v spec.Version
	err = c.p.rollouts.Guard(kind, func() error {
		latest, err := c.p.configs.Latest(kind, sc)
		if err != nil {
			return err
		}
		old, err := c.p.configs.Version(kind, sc, version)
		if err != nil {
			return err
		}
		if old.Hash == latest.Hash {
			v = latest
			return errUnchanged
		}
		v, err = c.p.configs.Rollback(kind, sc, version, latest.Number, author, comment)
		return err
	})
	if errors.Is(err, errUnchanged) {
		return false, v.Number, nil
	}
	if err != nil {
		return false, 0, err
	}
	c.p.confsync.Changed()
	return true, v.Number, nil
}

// deviceSchedules writes the scheduler's device schedules as documents of
// the owned kind "schedule", which the config sender delivers.
type deviceSchedules struct{ p *parts }

func (d deviceSchedules) SetSchedule(dev string, sch protocol.DeviceSchedule) error {
	content, err := json.Marshal(sch)
	if err != nil {
		return err
	}
	scope := spec.Scope{Device: dev}
	var ifv uint64
	switch latest, err := d.p.configs.Latest(protocol.KindSchedule, scope); {
	case errors.Is(err, spec.ErrNotFound):
		if len(sch.Jobs) == 0 {
			return nil // nothing given, nothing to take back
		}
	case err != nil:
		return err
	default:
		var cur protocol.DeviceSchedule
		if json.Unmarshal(latest.Content, &cur) == nil && reflect.DeepEqual(normalSchedule(cur), normalSchedule(sch)) {
			return nil
		}
		ifv = latest.Number
	}
	if _, err := d.p.configs.Put(spec.Write{Kind: protocol.KindSchedule, Scope: scope, Content: content, IfVersion: ifv, Author: scheduler.Author,
		Comment: fmt.Sprintf("%d on-device job(s)", len(sch.Jobs))}); err != nil {
		return err
	}
	d.p.confsync.Changed()
	return nil
}

// normalSchedule makes two schedules comparable whatever the spacing of
// their triggers' JSON.
func normalSchedule(s protocol.DeviceSchedule) protocol.DeviceSchedule {
	for i, j := range s.Jobs {
		var v any
		if json.Unmarshal(j.Trigger, &v) == nil {
			s.Jobs[i].Trigger, _ = json.Marshal(v)
		}
	}
	return s
}

// errUnchanged ends a Restore that has nothing to write.
var errUnchanged = errors.New("unchanged")

// openMetrics opens the time-series store. Series of devices no longer in
// the registry (a delete cut short) are removed now; failing that, they
// stay harmless.
func (p *parts) openMetrics() error {
	ms, err := metrics.Open(p.db, metrics.Config{MaxSeriesPerDevice: p.cfg.MaxSeriesPerDevice})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	for _, id := range ms.Devices() {
		if strings.HasPrefix(id, integrations.UsernamePrefix) {
			// An integration's series: kept while its account is.
			if _, err := p.accts.Get(strings.TrimPrefix(id, integrations.UsernamePrefix)); errors.Is(err, integrations.ErrNotFound) {
				if err := ms.DeleteDevice(id); err != nil {
					p.log.Warn("metrics of a deleted integration not removed", "integration", id, "err", err)
				}
			}
			continue
		}
		if _, err := p.reg.Get(id); errors.Is(err, registry.ErrNotFound) {
			if err := ms.DeleteDevice(id); err != nil {
				p.log.Warn("metrics of a deleted device not removed", "device", id, "err", err)
			}
		}
	}
	p.mstore = ms
	return nil
}

// ackMetrics tells an agent its batches are stored (the ingester's Ack):
// it may then forget them. Home Assistant's state follows.
func (p *parts) ackMetrics(ctx context.Context, dev string, ack *protocol.MetricsAck) error {
	if name, ok := strings.CutPrefix(dev, integrations.UsernamePrefix); ok {
		// An integration's batch: acknowledged on its own ack topic.
		b, err := protocol.Encode(p.hubID, time.Now(), ack)
		if err != nil {
			return err
		}
		return p.client.Publish(ctx, bus.Message{Topic: protocol.IntegrationTopic(name, protocol.KindAck), Payload: b, QoS: 1})
	}
	if p.ha != nil {
		p.ha.Stored(dev)
	}
	return p.publishTo(ctx, dev, protocol.KindAck, ack)
}

// publishTo publishes v on one of device dev's topics (QoS 1).
func (p *parts) publishTo(ctx context.Context, dev string, kind protocol.Kind, v protocol.Payload) error {
	b, err := protocol.Encode(p.hubID, time.Now(), v)
	if err != nil {
		return err
	}
	return p.client.Publish(ctx, bus.Message{Topic: protocol.DeviceTopic(dev, kind), Payload: b, QoS: 1})
}

// openCommands opens the command service: commands go out on the device's
// cmd topic, results come back through ingest, and each final record goes
// to the event stream.
func (p *parts) openCommands() error {
	ev := p.events
	cmds, err := command.Open(p.db, command.Config{Devices: p.reg, Events: ev, Logger: p.log.With("component", "command"),
		OnDone: func(r command.Record) { ev.Publish(events.Command, r.Device, r) },
		Publish: func(ctx context.Context, dev string, c *protocol.Command) error {
			return p.publishTo(ctx, dev, protocol.KindCommand, c)
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.cmds = cmds
	return nil
}

// openHomeAssistant builds the MQTT-discovery bridge and its link to the
// hub, unless discovery is off. Home Assistant's switches go through the
// command service (and its audit log), waiting for the device's result.
func (p *parts) openHomeAssistant() error {
	if p.cfg.NoHomeAssistant {
		return nil
	}
	cmds := p.cmds
	bridge, err := homeassistant.New(homeassistant.Config{Prefix: p.cfg.HAPrefix, Version: buildinfo.Version,
		Devices: p.reg.List, Latest: p.mstore.Latest, Logger: p.log.With("component", "homeassistant"),
		Publish: func(ctx context.Context, topic string, payload []byte, retained bool) error {
			return p.client.Publish(ctx, bus.Message{Topic: topic, Payload: payload, QoS: 1, Retained: retained})
		},
		Command: func(ctx context.Context, dev string, req command.Request) (command.Record, error) {
			r, err := cmds.Submit(ctx, dev, req)
			if err != nil {
				return r, err
			}
			return cmds.Wait(ctx, dev, r.ID)
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.ha = homeassistant.NewLink(bridge, p.reg, p.events, p.log.With("component", "homeassistant"))
	for _, f := range bridge.Subscriptions() {
		if err := p.client.Subscribe(f, 1, p.ha.Handle); err != nil {
			return fmt.Errorf("hub: subscribe: %w", err)
		}
	}
	// After the hub's own hooks: Home Assistant hears of the devices once
	// the hub says it is online.
	if err := p.client.OnConnect(p.ha.Connected); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// openIngest builds the metrics ingester, which acknowledges each batch
// to its agent after the commit, and subscribes the dispatcher of device
// messages to every device topic the hub reads.
func (p *parts) openIngest() error {
	p.mingest = metrics.NewIngester(p.mstore, metrics.IngesterConfig{Ack: p.ackMetrics, Logger: p.log.With("component", "metrics")})
	ev := p.events
	in, err := ingest.New(ingest.Config{Registry: p.reg, Metrics: p.mingest, Results: p.cmds, Rate: p.cfg.DeviceMsgRate,
		Logger:             p.log.With("component", "ingest"),
		Input:              func(dev string, e *protocol.DeviceEvent) { ev.Publish(events.DeviceInput, dev, e) },
		ConfigStatus:       p.confsync.HandleStatus,
		JobRun:             p.handleJobRun,
		IntegrationMetrics: p.accts.MetricsSource})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	for _, kind := range []protocol.Kind{protocol.KindRegister, protocol.KindStatus, protocol.KindHeartbeat, protocol.KindMetrics, protocol.KindResult, protocol.KindEvent, protocol.KindConfigStatus, protocol.KindJobRun} {
		if err := p.client.Subscribe(protocol.AllDevices(kind), 1, in.Handle); err != nil {
			return fmt.Errorf("hub: subscribe: %w", err)
		}
	}
	// Integrations' batches (accounts of kind metrics; the broker lets
	// each publish on its own topic only).
	if err := p.client.Subscribe(protocol.AllIntegrations(protocol.KindMetrics), 1, in.HandleIntegration); err != nil {
		return fmt.Errorf("hub: subscribe: %w", err)
	}
	p.ingest = in
	return nil
}

// integrationPush stores the metrics an integration pushes over REST
// (api.IntegrationMetrics): under the rate limit its MQTT messages share,
// committed before the answer.
type integrationPush struct{ p *parts }

func (ip integrationPush) Push(ctx context.Context, src string, m *protocol.Metrics) error {
	if !ip.p.ingest.Allow(src) {
		return api.ErrRateLimited
	}
	return ip.p.mingest.Store(ctx, src, m)
}

// metricsIntegrations are the names of the integrations of kind metrics,
// whose series /metrics exposes.
func (p *parts) metricsIntegrations() []string {
	var out []string
	for _, a := range p.accts.List() {
		if a.Kind == integrations.KindMetrics {
			out = append(out, a.Name)
		}
	}
	return out
}

// openHealth builds the alert engine over the latest samples, and the
// webhook alerts go to, if any; alerts also go to the event stream.
func (p *parts) openHealth() error {
	if p.cfg.AlertWebhook != "" {
		hook, err := health.NewWebhook(health.WebhookConfig{URL: p.cfg.AlertWebhook, Logger: p.log.With("component", "webhook")})
		if err != nil {
			return fmt.Errorf("hub: %w", err)
		}
		p.webhook = hook
	}
	ev, hook := p.events, p.webhook
	mon, err := health.Open(p.db, health.Config{Devices: p.reg.List, Latest: p.mstore.Latest, Range: p.mstore.Range, Logger: p.log.With("component", "health"),
		OnEvent: func(e health.Event) {
			ev.Publish(e.Type, e.Alert.Device, e.Alert)
			if hook != nil {
				hook.Notify(e)
			}
		}})
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.health = mon
	return nil
}
