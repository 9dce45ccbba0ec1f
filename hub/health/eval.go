package health

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/hub/registry"
)

// Evaluate runs one evaluation pass at now: every enabled rule against
// every accepted device it selects. Fired and resolved alerts are stored
// (synced) before their events are passed to OnEvent. If the store
// refuses the writes, the failure is logged and nothing changes: the next
// pass tries again.
//
// Threshold rules look at the latest sample of each matching series. A
// condition that holds starts a pending timer at the sample's time; the
// alert fires once a later sample, seen by a later pass, still breaches
// For after that. A sample that does not breach, or a stale one (older
// than StaleAfter), resets the timer. A firing alert resolves only when a
// fresh sample is past the margin (see Rule.ResolveMargin); a stale
// sample keeps it as it is (the absence rule is what reports silence).
//
// Absence rules fire for an accepted device (online or offline) whose
// newest matching sample, or its enrolment if it never sent one, is at
// least For old, and not before For has passed since the engine started.
// They resolve once a sample younger than For arrives.
//
// Trend and rate rules read each matching series' last Window (Config.Range)
// in buckets of Window/120 (their averages), again only once a bucket's
// time has passed since the last read. A window decides nothing (a
// firing alert stays, a pending condition is forgotten) unless it has
// enough buckets (10 for a trend, 3 for a rate) spanning at least half of
// Window, the newest of them fresh (within StaleAfter). A rate rule
// compares the change across the window (the median of its last tenth
// minus the median of its first tenth) with Threshold as a threshold rule
// compares a value, margin included. A trend rule fits a line (the
// Theil–Sen slope, anchored on the window's last tenth) and its condition
// holds when the series has not crossed Threshold yet, the line crosses it
// within Horizon, the series moves that way significantly (Mann–Kendall
// score of 3 or more: noise around a flat line does not), and steadily
// (each half of the window has at least a quarter of the whole's slope,
// so a one-off step is no trend). A firing trend alert resolves once a
// window shows the line heading away from Threshold or crossing it more
// than Horizon × (1 + ResolveMargin) away. For both, the alert fires once
// the condition has held at every read for For, counted in evaluation
// time.
//
// Alerts whose device or series left the rule's scope (device deleted,
// revoked or relabelled, rule disabled or deleted) resolve.
func (e *Engine) Evaluate(now time.Time) {
	devices := slices.Clone(e.cfg.Devices())
	slices.SortFunc(devices, func(a, b registry.Device) int { return cmp.Compare(a.ID, b.ID) })

	e.wmu.Lock()
	p := pass{e: e, now: now, seen: map[string]bool{}, pending: map[string]pendingState{}, fitted: map[string]time.Time{}}
	latest := map[string][]metrics.Sample{} // read once per pass, when a rule needs it
	for _, id := range slices.Sorted(maps.Keys(e.rule)) {
		r := e.rule[id]
		if !r.Enabled {
			continue
		}
		for _, d := range devices {
			if !d.Status.Accepted() || !selects(r.Devices, d.Labels) {
				continue
			}
			samples, ok := latest[d.ID]
			if !ok {
				samples = e.cfg.Latest(d.ID)
				latest[d.ID] = samples
			}
			switch r.Kind {
			case KindThreshold:
				p.threshold(r, d, samples)
			case KindAbsence:
				p.absence(r, d, samples)
			case KindTrend, KindRate:
				p.windowed(r, d, samples)
			}
		}
	}
	for _, a := range e.sortedActive() {
		if p.seen[a.ID] {
			continue
		}
		reason := ReasonOutOfScope
		if r, ok := e.rule[a.Rule]; !ok {
			reason = ReasonRuleDeleted
		} else if !r.Enabled {
			reason = ReasonRuleDisabled
		}
		p.changes = append(p.changes, resolved(a, reason, now))
	}
	e.pending, e.fitted = p.pending, p.fitted
	_ = e.commitLocked(p.changes, now) // logged; retried at the next pass
	e.wmu.Unlock()
	e.deliver()
}

// pass is the state of one evaluation.
type pass struct {
	e   *Engine
	now time.Time
	// seen holds the IDs of the alerts in scope in this pass.
	seen map[string]bool
	// pending is the next Engine.pending, fitted the next Engine.fitted.
	pending map[string]pendingState
	fitted  map[string]time.Time
	changes []Alert
}

func (p *pass) threshold(r Rule, d registry.Device, samples []metrics.Sample) {
	e := p.e
	for _, s := range samples {
		if s.Name != r.Metric || !selects(r.Match, s.Labels) {
			continue
		}
		id := alertID(r.ID, d.ID, s.Labels)
		p.seen[id] = true
		fresh := p.now.Sub(s.Time) <= e.cfg.StaleAfter
		if a, ok := e.active[id]; ok {
			if fresh && r.recovered(s.Value) {
				p.changes = append(p.changes, resolved(a, ReasonRecovered, p.now))
			}
			continue
		}
		if !fresh || !r.breached(s.Value) {
			continue // any pending condition is forgotten
		}
		ps, ok := e.pending[id]
		if !ok {
			ps = pendingState{rule: r.ID, device: d.ID, since: s.Time}
		}
		p.pending[id] = ps // kept until the alert is stored
		if s.Time.Sub(ps.since) >= r.For {
			p.changes = append(p.changes, p.fire(r, d, id, s.Name, s.Labels, ps.since, s.Value, r.Threshold, time.Time{}))
		}
	}
}

func (p *pass) absence(r Rule, d registry.Device, samples []metrics.Sample) {
	e := p.e
	id := alertID(r.ID, d.ID, nil)
	p.seen[id] = true
	var newest time.Time
	for _, s := range samples {
		if r.Metric != "" && (s.Name != r.Metric || !selects(r.Match, s.Labels)) {
			continue
		}
		if r.Metric == "" && s.Name == metrics.SeriesLimitedName {
			continue // made by the hub, not data from the device
		}
		if s.Time.After(newest) {
			newest = s.Time
		}
	}
	if a, ok := e.active[id]; ok {
		if !newest.IsZero() && p.now.Sub(newest) < r.For {
			p.changes = append(p.changes, resolved(a, ReasonRecovered, p.now))
		}
		return
	}
	// Silent since the newest sample, else since enrolment; but the
	// clock starts no earlier than the engine (the grace period).
	last := newest
	if last.IsZero() {
		last = d.EnrolledAt
	}
	if last.IsZero() {
		last = e.start
	}
	if p.now.Sub(last) < r.For || p.now.Sub(e.start) < r.For {
		return
	}
	silence := p.now.Sub(last)
	p.changes = append(p.changes, p.fire(r, d, id, r.Metric, r.Match, last, silence.Seconds(), r.For.Seconds(), time.Time{}))
}

// windowed evaluates a trend or rate rule for device d over each
// matching series' window (see Evaluate). samples are the device's latest
// values: a series that has one stays in scope even if its window is
// empty.
func (p *pass) windowed(r Rule, d registry.Device, samples []metrics.Sample) {
	e := p.e
	for _, s := range samples {
		if s.Name == r.Metric && selects(r.Match, s.Labels) {
			p.seen[alertID(r.ID, d.ID, s.Labels)] = true
		}
	}
	key := r.ID + "\x00" + d.ID
	last, ok := e.fitted[key]
	if ok && p.now.Sub(last) < fitStep(r) && !p.now.Before(last) {
		p.carry(r, d, key, last)
		return
	}
	step := fitStep(r)
	series, err := e.cfg.Range(metrics.Query{Device: d.ID, Name: r.Metric, Labels: r.Match, From: p.now.Add(-r.Window), To: p.now, Step: step})
	if err != nil {
		if !e.rangeFailing {
			e.log.Warn("read a window of samples; retrying at the next evaluation", "rule", r.ID, "device", d.ID, "err", err)
			e.rangeFailing = true
		}
		p.carry(r, d, key, last)
		return
	}
	e.rangeFailing = false
	p.fitted[key] = p.now
	minPts := minRatePoints
	if r.Kind == KindTrend {
		minPts = minTrendPoints
	}
	for _, sr := range series {
		id := alertID(r.ID, d.ID, sr.Labels)
		p.seen[id] = true
		pts, ok := windowPoints(sr.Points, step, r.Window, e.cfg.StaleAfter, p.now, minPts)
		if !ok {
			continue // no decision: an active alert stays, a pending one is forgotten
		}
		var (
			value     float64
			projected time.Time
			holds     bool // the condition to fire holds
			recovered bool // a firing alert resolves
		)
		if r.Kind == KindRate {
			value = windowChange(pts)
			holds, recovered = r.breached(value), r.recovered(value)
		} else {
			f := fitTrend(pts)
			value = f.level
			secs, heads := r.crossing(f)
			up := r.Op == ">" || r.Op == ">="
			significant := up && f.z >= trendZ || !up && f.z <= -trendZ
			holds = heads && significant && f.steady && !r.breached(f.level) && secs <= r.Horizon.Seconds()
			recovered = !heads || secs > r.Horizon.Seconds()*(1+r.ResolveMargin)
			if heads {
				projected = p.now.Add(time.Duration(secs * float64(time.Second)))
			}
		}
		if a, ok := e.active[id]; ok {
			if recovered {
				p.changes = append(p.changes, resolved(a, ReasonRecovered, p.now))
			}
			continue
		}
		if !holds {
			continue // any pending condition is forgotten
		}
		ps, ok := e.pending[id]
		if !ok {
			ps = pendingState{rule: r.ID, device: d.ID, since: p.now}
		}
		p.pending[id] = ps
		if p.now.Sub(ps.since) >= r.For {
			p.changes = append(p.changes, p.fire(r, d, id, sr.Name, sr.Labels, ps.since, value, r.Threshold, projected))
		}
	}
}

// carry keeps what the last fit of rule r for device d decided, in a pass
// that does not fit again: its alerts stay in scope and its pending
// conditions pending.
func (p *pass) carry(r Rule, d registry.Device, key string, last time.Time) {
	if !last.IsZero() {
		p.fitted[key] = last
	}
	for id, a := range p.e.active {
		if a.Rule == r.ID && a.Device == d.ID {
			p.seen[id] = true
		}
	}
	for id, ps := range p.e.pending {
		if ps.rule == r.ID && ps.device == d.ID {
			p.pending[id] = ps
		}
	}
}

func (p *pass) fire(r Rule, d registry.Device, id, metric string, labels map[string]string, since time.Time, value, threshold float64, projected time.Time) Alert {
	a := Alert{ID: id, Rule: r.ID, RuleName: r.Name, Kind: r.Kind, Device: d.ID, DeviceName: d.Name, Metric: metric,
		Labels: maps.Clone(labels), Severity: r.Severity, State: AlertFiring, Since: since.UTC(), FiredAt: p.now.UTC(),
		Value: value, Threshold: threshold,
		Summary: r.render(facts{device: d.ID, deviceName: d.Name, labels: labels, value: value, projected: projected, now: p.now})}
	if !projected.IsZero() {
		a.ProjectedAt = projected.UTC().Truncate(time.Second)
	}
	return a
}

// breached reports whether v meets a threshold rule's condition.
func (r Rule) breached(v float64) bool {
	switch r.Op {
	case ">":
		return v > r.Threshold
	case ">=":
		return v >= r.Threshold
	case "<":
		return v < r.Threshold
	case "<=":
		return v <= r.Threshold
	}
	return false
}

// recovered reports whether v is past the resolve margin of a firing
// threshold rule.
func (r Rule) recovered(v float64) bool {
	switch r.Op {
	case ">", ">=":
		return v < r.Threshold-r.ResolveMargin
	case "<", "<=":
		return v > r.Threshold+r.ResolveMargin
	}
	return false
}

// selects reports whether every entry of sel equals the label in labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
