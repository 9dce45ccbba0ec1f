package rollout

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/hub/spec"
)

// stepLocked moves rollout r on by what its devices say now. It works on
// a copy and keeps it once saved: a failed save changes nothing, and the
// next step tries again. m.mu must be held.
func (m *Manager) stepLocked(r *Rollout) error {
	if r.ToVersion == 0 {
		return m.recoverStartLocked(r)
	}
	now := m.cfg.Now().UTC()
	n := r.clone()
	var failed []string
	alerts := m.cfg.Health.Active()
	for i := range n.Devices {
		d := &n.Devices[i]
		if d.State != DeviceUpdating && d.State != DeviceVerifying {
			continue
		}
		m.watch(n, d, alerts, now)
		if d.State == DeviceFailed {
			n.Failures++
			failed = append(failed, d.ID)
		}
	}
	changed := failed != nil || !slices.Equal(n.Devices, r.Devices)
	if n.Failures-n.FailureBase > n.Strategy.MaxFailures {
		if n.Strategy.AutoRevert {
			reason := fmt.Sprintf("%d of %d devices failed, more than max_failures %d: reverted to version %d", n.Failures, len(n.Devices),
				n.Strategy.MaxFailures, n.FromVersion)
			m.rollouts[r.ID] = n // the failures are part of what is saved with the revert
			if err := m.revertLocked(n, StateReverted, reason, failed); err != nil {
				m.rollouts[r.ID] = r
				return err
			}
			return nil
		}
		if n.State == StateRunning {
			n.State = StatePaused
			n.Reason = fmt.Sprintf("%d of %d devices failed, more than max_failures %d; auto_revert is off: resume to go on anyway, or cancel to revert",
				n.Failures, len(n.Devices), n.Strategy.MaxFailures)
			changed = true
		}
	}
	var released []string
	if n.State == StateRunning && !slices.ContainsFunc(n.Devices, inProgress) {
		if slices.ContainsFunc(n.Devices, func(d DeviceProgress) bool { return d.State == DeviceHeld }) {
			released = m.releaseBatch(n, now)
		} else {
			n.State, n.Ended = StateSucceeded, now
			n.Reason = fmt.Sprintf("every device released; %d failed", n.Failures)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	n.Updated = now
	if err := m.save(n, nil, released); err != nil {
		return err
	}
	m.rollouts[r.ID] = n
	m.publishFailed(n, failed)
	switch {
	case released != nil:
		m.release(n.Kind, released)
		m.publish(n, "batch", "", released)
		m.log.Info("rollout batch released", "rollout", n.ID, "batch", n.Batch, "devices", released)
	case n.State == StateSucceeded:
		m.releaseAll(n.Kind)
		m.publish(n, "finished", "", nil)
		m.log.Info("rollout succeeded", "rollout", n.ID, "failures", n.Failures)
	case n.State == StatePaused && r.State == StateRunning:
		m.publish(n, "paused", "", nil)
		m.log.Warn("rollout paused on failures", "rollout", n.ID, "failures", n.Failures)
	}
	return nil
}

func inProgress(d DeviceProgress) bool {
	return d.State == DeviceUpdating || d.State == DeviceVerifying
}

func (m *Manager) publishFailed(r *Rollout, failed []string) {
	for _, id := range failed {
		m.publish(r, "device_failed", id, nil)
		m.log.Warn("rollout: device failed", "rollout", r.ID, "device", id)
	}
}

// fail ends a device's part in a rollout as failed.
func fail(d *DeviceProgress, now time.Time, format string, args ...any) {
	d.State, d.Reason, d.EndedAt = DeviceFailed, fmt.Sprintf(format, args...), now
}

// watch looks at a released device: has it applied the change, did it
// refuse it, is it still healthy, is it too late.
func (m *Manager) watch(r *Rollout, d *DeviceProgress, alerts []health.Alert, now time.Time) {
	deadline := time.Duration(r.Strategy.ProgressDeadline)
	minHealthy := time.Duration(r.Strategy.MinHealthyTime)
	ks, reported := m.cfg.Sync.State(d.ID)[r.Kind]
	switch {
	case reported && ks.State == confsync.StateError:
		fail(d, now, "the hub could not make its configuration: %s", ks.Reason)
		return
	case reported && ks.Desired == d.ToHash && (ks.State == confsync.StateRejected || ks.State == confsync.StateReverted):
		fail(d, now, "the device %s the change: %s", ks.State, ks.Reason)
		return
	}
	if d.State == DeviceUpdating {
		if !reported || ks.State != confsync.StateApplied || ks.Applied != d.ToHash {
			if now.Sub(d.ReleasedAt) > deadline {
				state := "no report"
				if reported {
					state = ks.State
				}
				fail(d, now, "not applied within progress_deadline %s (its config state: %s)", deadline, state)
			}
			return
		}
		d.State, d.AppliedAt = DeviceVerifying, now
	}
	for _, a := range alerts {
		if a.Device == d.ID && !a.FiredAt.Before(d.ReleasedAt) {
			fail(d, now, "alert %s (%s) fired after the change: %s", a.RuleName, a.Severity, a.Summary)
			return
		}
	}
	dev, err := m.cfg.Devices.Get(d.ID)
	if errors.Is(err, registry.ErrNotFound) {
		d.State, d.Reason, d.EndedAt = DeviceSkipped, "deleted while it was watched", now
		return
	}
	if st := m.cfg.Health.DeviceState(dev); err != nil || st != health.StateOnline && st != health.StateDegraded {
		// Healthy time must be unbroken; an absence long past the
		// deadline is a failure (the change may have cut it off).
		d.HealthySince = time.Time{}
		if now.Sub(d.ReleasedAt) > deadline+minHealthy {
			fail(d, now, "not healthy (%s) for min_healthy_time %s within progress_deadline %s after its release", st, minHealthy, deadline)
		}
		return
	}
	if d.HealthySince.IsZero() {
		d.HealthySince = now
	}
	if now.Sub(d.HealthySince) >= minHealthy {
		d.State, d.EndedAt = DeviceHealthy, now
	}
}

// releaseBatch releases the next batch: the canary batch first, then
// MaxParallel devices at a time, online devices before the others. A
// device offline when its batch comes is released unwatched (skipped); it
// gets the change when it returns. It returns the released devices.
func (m *Manager) releaseBatch(r *Rollout, now time.Time) []string {
	size := r.Strategy.MaxParallel
	if r.Batch == 0 && r.Strategy.Canary > 0 {
		size = r.Strategy.Canary
	}
	type cand struct {
		i      int
		dev    registry.Device
		err    error
		online bool
	}
	var cands []cand
	for i, d := range r.Devices {
		if d.State != DeviceHeld {
			continue
		}
		dev, err := m.cfg.Devices.Get(d.ID)
		st := ""
		if err == nil {
			st = m.cfg.Health.DeviceState(dev)
		}
		cands = append(cands, cand{i: i, dev: dev, err: err, online: st == health.StateOnline || st == health.StateDegraded})
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		switch {
		case a.online == b.online:
			return 0
		case a.online:
			return -1
		}
		return 1
	})
	r.Batch++
	var released []string
	for _, c := range cands[:min(size, len(cands))] {
		d := &r.Devices[c.i]
		d.Batch, d.ReleasedAt = r.Batch, now
		released = append(released, d.ID)
		if c.err != nil {
			d.State, d.Reason, d.EndedAt = DeviceSkipped, "no longer in the registry", now
			continue
		}
		eff, err := m.cfg.Configs.Effective(r.Kind, specDevice(c.dev))
		switch {
		case err != nil:
			d.State, d.Reason, d.EndedAt = DeviceFailed, "its new configuration: "+err.Error(), now
			r.Failures++
		case !c.online:
			d.ToHash, d.State, d.EndedAt = eff.Hash, DeviceSkipped, now
			d.Reason = "offline when its batch came: it gets the change when it returns, unwatched"
		case eff.Hash == d.FromHash:
			d.ToHash, d.State, d.EndedAt, d.Reason = eff.Hash, DeviceHealthy, now, "its configuration no longer changes"
		default:
			d.ToHash, d.State = eff.Hash, DeviceUpdating
		}
	}
	return released
}

// revertLocked ends r as state (StateReverted or StateCancelled): the
// document's FromVersion content is written back as a new version by
// "rollout <id>", then every hold is dropped, so that every device the
// change reached gets its old configuration and the others keep it. A
// revert the hub already wrote before it stopped is found, not written
// twice. m.mu must be held.
func (m *Manager) revertLocked(r *Rollout, state, reason string, failed []string) error {
	now := m.cfg.Now().UTC()
	n := r.clone()
	latest, err := m.cfg.Configs.Latest(n.Kind, n.Scope)
	if err != nil {
		return err
	}
	switch {
	case latest.Number == n.ToVersion:
		v, err := m.cfg.Configs.Rollback(n.Kind, n.Scope, n.FromVersion, n.ToVersion, n.author(), fmt.Sprintf("rollout %s %s", n.ID, state))
		if err != nil {
			return err
		}
		n.RevertVersion = v.Number
	case latest.RolledBackTo == n.FromVersion && latest.Author == n.author():
		n.RevertVersion = latest.Number
	default:
		state = StateFailed
		reason = fmt.Sprintf("%s; but the document is at version %d, written by %s since: not reverted", reason, latest.Number, latest.Author)
	}
	n.State, n.Reason, n.Ended, n.Updated = state, reason, now, now
	for i := range n.Devices {
		d := &n.Devices[i]
		if d.State == DeviceHeld || d.State == DeviceFailed || state == StateFailed {
			continue
		}
		d.State = DeviceReverted
		if d.EndedAt.IsZero() {
			d.EndedAt = now
		}
	}
	if err := m.save(n, nil, nil); err != nil {
		return err
	}
	m.rollouts[n.ID] = n
	m.releaseAll(n.Kind)
	m.publishFailed(n, failed)
	m.publish(n, "finished", "", nil)
	m.log.Warn("rollout ended", "rollout", n.ID, "state", n.State, "reason", n.Reason, "revert_version", n.RevertVersion)
	return nil
}

// recoverStartLocked settles a rollout whose record was saved but whose
// write the hub may not have made before it stopped: if the document is
// one version past FromVersion, by the rollout's author, the write was
// made and the rollout goes on; otherwise it never started. m.mu must be
// held.
func (m *Manager) recoverStartLocked(r *Rollout) error {
	latest, err := m.cfg.Configs.Latest(r.Kind, r.Scope)
	if err != nil && !errors.Is(err, spec.ErrNotFound) {
		return err
	}
	if err == nil && latest.Number == r.FromVersion+1 && latest.Author == r.Author && latest.RolledBackTo == 0 {
		m.begunLocked(r, latest.Number)
		return nil
	}
	n := r.clone()
	now := m.cfg.Now().UTC()
	n.State, n.Reason, n.Ended, n.Updated = StateFailed, "the hub stopped before the change was written: nothing changed", now, now
	if err := m.save(n, nil, nil); err != nil {
		return err
	}
	m.rollouts[n.ID] = n
	m.releaseAll(n.Kind)
	m.publish(n, "finished", "", nil)
	return nil
}
