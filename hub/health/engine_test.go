package health_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
)

// tempRule is CPU temperature > 80 for 2m, resolving below 75.
func tempRule() health.Rule {
	return health.Rule{ID: "temp", Name: "Temperature", Kind: health.KindThreshold, Metric: "temperature_celsius",
		Op: ">", Threshold: 80, For: 2 * time.Minute, ResolveMargin: 5, Severity: health.SeverityCritical,
		Suggestion: "{label:sensor} on {device_name} is at {value} °C", Enabled: true}
}

var cpuSensor = map[string]string{"sensor": "cpu_thermal"}

// feed sets the temperature of device d at time at and evaluates at the
// same time.
func (e *env) feed(d string, at time.Time, v float64) {
	e.t.Helper()
	e.src.sample(d, "temperature_celsius", cpuSensor, at, v)
	e.eval(at)
}

func (e *env) wantActive(n int) []health.Alert {
	e.t.Helper()
	a := e.eng.Active()
	if len(a) != n {
		e.t.Fatalf("Active() = %d alerts %+v, want %d", len(a), a, n)
	}
	return a
}

func (e *env) wantEvents(want ...string) []health.Event {
	e.t.Helper()
	evs := e.takeEvents()
	if want == nil {
		want = []string{}
	}
	if diff := cmp.Diff(want, eventTypes(evs)); diff != "" {
		e.t.Fatalf("events (-want +got):\n%s", diff)
	}
	return evs
}

func TestThresholdFiresOnlyAfterForHeldContinuously(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)

	e.feed("d1", t0, 85)
	e.feed("d1", t0.Add(60*time.Second), 86)
	e.feed("d1", t0.Add(90*time.Second), 79) // a dip resets the pending timer
	e.feed("d1", t0.Add(100*time.Second), 85)
	e.feed("d1", t0.Add(130*time.Second), 85) // 2m10s after the first breach, but only 30s after the dip
	e.feed("d1", t0.Add(210*time.Second), 85) // 1m50s since the dip
	e.wantActive(0)
	e.wantEvents()

	e.feed("d1", t0.Add(220*time.Second), 88) // 2m after the dip
	evs := e.wantEvents("alert_fired temp/d1")
	a := e.wantActive(1)[0]
	want := health.Alert{ID: a.ID, Rule: "temp", RuleName: "Temperature", Kind: health.KindThreshold, Device: "d1",
		DeviceName: "garage-pi", Metric: "temperature_celsius", Labels: cpuSensor, Severity: health.SeverityCritical,
		State: health.AlertFiring, Since: t0.Add(100 * time.Second), FiredAt: t0.Add(220 * time.Second), Value: 88, Threshold: 80,
		Summary: "cpu_thermal on garage-pi is at 88 °C"}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("active alert (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, evs[0].Alert); diff != "" {
		t.Errorf("event alert (-want +got):\n%s", diff)
	}
	if !evs[0].Time.Equal(t0.Add(220 * time.Second)) {
		t.Errorf("event time = %v, want %v", evs[0].Time, t0.Add(220*time.Second))
	}
	if len(a.ID) != 16 {
		t.Errorf("alert ID %q: want 16 hex digits", a.ID)
	}
}

func TestThresholdHysteresis(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	at := t0
	step := func(v float64) {
		at = at.Add(10 * time.Second)
		e.feed("d1", at, v)
	}
	for range 13 {
		step(85)
	}
	e.wantEvents("alert_fired temp/d1")

	// Hovering around the threshold, even down to the margin, keeps it
	// firing: no flapping.
	for i := range 30 {
		step([]float64{79, 81, 76, 80, 75}[i%5])
	}
	e.wantActive(1)
	e.wantEvents()

	step(74.9) // past the margin
	evs := e.wantEvents("alert_resolved temp/d1")
	e.wantActive(0)
	got := evs[0].Alert
	if got.State != health.AlertResolved || got.ResolveReason != health.ReasonRecovered || !got.ResolvedAt.Equal(at) || got.Value != 85 {
		t.Errorf("resolved alert = %+v, want state resolved, reason recovered, resolved_at %v, value 85 (as fired)", got, at)
	}
	if h := e.eng.History(0); len(h) != 1 || h[0].ID != got.ID {
		t.Errorf("History = %+v, want the resolved alert", h)
	}
}

func TestThresholdHoveringBeforeFiringNeverFires(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	at := t0
	for i := range 120 { // 20 minutes, never 2 minutes in a row above 80
		at = at.Add(10 * time.Second)
		v := 82.0
		if i%6 == 5 {
			v = 79
		}
		e.feed("d1", at, v)
	}
	e.wantActive(0)
	e.wantEvents()
}

func TestStaleSamplesStartNothingAndResolveNothing(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)

	// A backlog of breaching samples, each older than StaleAfter (1m by
	// default) when evaluated, never fires.
	for i := range 30 {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		e.src.sample("d1", "temperature_celsius", cpuSensor, now.Add(-2*time.Minute), 90)
		e.eval(now)
	}
	e.wantActive(0)
	e.wantEvents()

	// Fresh samples fire it.
	at := t0.Add(10 * time.Minute)
	for range 13 {
		at = at.Add(10 * time.Second)
		e.feed("d1", at, 90)
	}
	e.wantEvents("alert_fired temp/d1")

	// A stale cool sample does not resolve it, however long we wait.
	e.src.sample("d1", "temperature_celsius", cpuSensor, at.Add(-5*time.Minute), 20)
	for range 10 {
		at = at.Add(time.Minute)
		e.eval(at)
	}
	e.wantActive(1)
	e.wantEvents()

	// A fresh one does.
	e.feed("d1", at, 20)
	e.wantEvents("alert_resolved temp/d1")
}

func TestStaleSampleForgetsPendingCondition(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.feed("d1", t0, 90)
	e.feed("d1", t0.Add(30*time.Second), 90)
	e.eval(t0.Add(3 * time.Minute)) // the device went quiet: its sample is stale
	// It speaks again, still hot: the timer starts over.
	e.feed("d1", t0.Add(4*time.Minute), 90)
	e.feed("d1", t0.Add(5*time.Minute), 90)
	e.wantEvents()
	e.feed("d1", t0.Add(6*time.Minute), 90)
	e.wantEvents("alert_fired temp/d1")
}

func TestSelectors(t *testing.T) {
	busy := health.Rule{ID: "busy", Name: "Busy", Kind: health.KindThreshold, Metric: "cpu_usage_ratio",
		Match: map[string]string{"cpu": "total"}, Devices: map[string]string{"room": "garage"},
		Op: ">", Threshold: 0.9, For: time.Minute, Severity: health.SeverityWarning, Enabled: true}
	e := newEnvRules(t, busy)
	e.src.device("garage", "garage-pi", registry.StatusOnline, map[string]string{"room": "garage", "floor": "0"})
	e.src.device("kitchen", "kitchen-pi", registry.StatusOnline, map[string]string{"room": "kitchen"})
	e.src.device("nolabel", "bare-pi", registry.StatusOnline, nil)
	for _, at := range []time.Time{t0, t0.Add(30 * time.Second), t0.Add(time.Minute)} {
		for _, d := range []string{"garage", "kitchen", "nolabel"} {
			e.src.sample(d, "cpu_usage_ratio", map[string]string{"cpu": "total"}, at, 0.99)
			e.src.sample(d, "cpu_usage_ratio", map[string]string{"cpu": "0"}, at, 0.99)
			e.src.sample(d, "load1", nil, at, 0.99)
		}
		e.eval(at)
	}
	a := e.wantActive(1)[0]
	if a.Device != "garage" || a.Labels["cpu"] != "total" {
		t.Errorf("alert = %+v, want only garage's cpu=total", a)
	}

	// Relabelling the device out of the rule's scope resolves it.
	e.src.device("garage", "garage-pi", registry.StatusOnline, map[string]string{"room": "attic"})
	e.eval(t0.Add(70 * time.Second))
	e.wantActive(0)
	if h := e.eng.History(1); len(h) != 1 || h[0].ResolveReason != health.ReasonOutOfScope {
		t.Errorf("History = %+v, want one alert resolved out_of_scope", h)
	}
}

func TestOperators(t *testing.T) {
	tests := []struct {
		op        string
		fire      float64 // a value that breaches
		noFire    float64 // a value that does not
		stay      float64 // within the margin: stays firing
		resolveAt float64 // past the margin
	}{
		{">", 10.5, 10, 9, 7.9},
		{">=", 10, 9.9, 8, 7.9},
		{"<", 9.5, 10, 11, 12.1},
		{"<=", 10, 10.1, 12, 12.1},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			r := health.Rule{ID: "r", Name: "R", Kind: health.KindThreshold, Metric: "m", Op: tt.op, Threshold: 10,
				ResolveMargin: 2, For: time.Minute, Severity: health.SeverityWarning, Enabled: true}
			e := newEnvRules(t, r)
			e.src.device("d1", "pi", registry.StatusOnline, nil)
			at := t0
			step := func(v float64) {
				at = at.Add(30 * time.Second)
				e.src.sample("d1", "m", nil, at, v)
				e.eval(at)
			}
			for range 5 {
				step(tt.noFire)
			}
			e.wantEvents()
			step(tt.fire)
			step(tt.fire)
			step(tt.fire)
			e.wantEvents("alert_fired r/d1")
			step(tt.stay)
			step(tt.noFire)
			e.wantEvents()
			step(tt.resolveAt)
			e.wantEvents("alert_resolved r/d1")
		})
	}
}

func noData() health.Rule {
	return health.Rule{ID: "nodata", Name: "No data", Kind: health.KindAbsence, For: 5 * time.Minute,
		Severity: health.SeverityCritical, Suggestion: "no data from {device_name} for {for}", Enabled: true}
}

func TestAbsenceGracePeriodAfterStart(t *testing.T) {
	e := newEnvRules(t, noData())
	// The hub was down for an hour: d1's last sample is old, d2 has none.
	e.src.device("d1", "garage-pi", registry.StatusOffline, nil)
	e.src.sample("d1", "load1", nil, t0.Add(-time.Hour), 0.1)
	e.src.device("d2", "attic-pi", registry.StatusOnline, nil)
	// Never fire for devices that are not accepted.
	e.src.device("p", "pending-pi", registry.StatusPending, nil)
	e.src.device("r", "revoked-pi", registry.StatusRevoked, nil)
	e.src.device("x", "rejected-pi", registry.StatusRejected, nil)

	for _, d := range []time.Duration{0, time.Minute, 4*time.Minute + 59*time.Second} {
		e.eval(t0.Add(d))
	}
	e.wantEvents()
	e.eval(t0.Add(5 * time.Minute))
	evs := e.wantEvents("alert_fired nodata/d1", "alert_fired nodata/d2")
	a := evs[0].Alert
	if a.Value != (65*time.Minute).Seconds() || a.Threshold != 300 || !a.Since.Equal(t0.Add(-time.Hour)) ||
		a.Summary != "no data from garage-pi for 5 minutes" {
		t.Errorf("absence alert = %+v, want value 3900 (s), threshold 300, since the last sample", a)
	}
	for range 20 {
		e.eval(t0.Add(time.Hour))
	}
	e.wantEvents()
}

func TestAbsenceFiresAfterForAndResolvesWhenDataReturns(t *testing.T) {
	e := newEnvRules(t, noData())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.src.device("d2", "attic-pi", registry.StatusOnline, nil)
	// d2 keeps sending; d1 stops at t0+1m.
	for s := time.Duration(0); s <= 10*time.Minute; s += 10 * time.Second {
		at := t0.Add(s)
		if s <= time.Minute {
			e.src.sample("d1", "load1", nil, at, 0.1)
		}
		e.src.sample("d2", "load1", nil, at, 0.1)
		e.eval(at)
		if s == 6*time.Minute-10*time.Second {
			e.wantEvents() // 4m50s of silence
		}
		if s == 6*time.Minute {
			e.wantEvents("alert_fired nodata/d1")
		}
	}
	e.wantEvents()
	e.src.sample("d1", "load1", nil, t0.Add(11*time.Minute), 0.1)
	e.eval(t0.Add(11 * time.Minute))
	e.wantEvents("alert_resolved nodata/d1")
}

func TestAbsenceOfOneMetric(t *testing.T) {
	r := noData()
	r.ID, r.Metric, r.Match = "notemp", "temperature_celsius", map[string]string{"sensor": "cpu_thermal"}
	e := newEnvRules(t, r)
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	for s := time.Duration(0); s <= 6*time.Minute; s += 30 * time.Second {
		at := t0.Add(s)
		e.src.sample("d1", "load1", nil, at, 0.1)                                              // other metric
		e.src.sample("d1", "temperature_celsius", map[string]string{"sensor": "nvme"}, at, 40) // other series
		e.eval(at)
	}
	e.wantEvents("alert_fired notemp/d1")
	e.src.sample("d1", "temperature_celsius", cpuSensor, t0.Add(7*time.Minute), 50)
	e.eval(t0.Add(7 * time.Minute))
	e.wantEvents("alert_resolved notemp/d1")
}

func TestRevokedDeviceAlertsResolve(t *testing.T) {
	e := newEnvRules(t, noData())
	e.src.device("d1", "garage-pi", registry.StatusOffline, nil)
	e.src.device("d2", "attic-pi", registry.StatusOffline, nil)
	e.eval(t0.Add(5 * time.Minute))
	e.wantEvents("alert_fired nodata/d1", "alert_fired nodata/d2")
	e.src.device("d1", "garage-pi", registry.StatusRevoked, nil)
	e.src.remove("d2")
	e.eval(t0.Add(6 * time.Minute))
	evs := e.wantEvents("alert_resolved nodata/d1", "alert_resolved nodata/d2")
	for _, ev := range evs {
		if ev.Alert.ResolveReason != health.ReasonOutOfScope {
			t.Errorf("%s resolved with %q, want %q", ev.Alert.Device, ev.Alert.ResolveReason, health.ReasonOutOfScope)
		}
	}
}

func TestActiveAlertsSurviveRestart(t *testing.T) {
	e := newEnvRules(t, tempRule(), noData())
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.src.device("d2", "attic-pi", registry.StatusOffline, nil) // silent
	for s := time.Duration(0); s <= 5*time.Minute; s += 10 * time.Second {
		e.feed("d1", t0.Add(s), 90)
	}
	e.wantEvents("alert_fired temp/d1", "alert_fired nodata/d2")
	before := e.eng.Active()

	// The hub stops for ten minutes.
	e.clk.Set(t0.Add(15 * time.Minute))
	e.reopen()
	if diff := cmp.Diff(before, e.eng.Active()); diff != "" {
		t.Fatalf("Active after reopen (-before +after):\n%s", diff)
	}
	// Still hot, still silent, in and after the grace period: no event.
	for s := 15 * time.Minute; s <= 25*time.Minute; s += 10 * time.Second {
		e.feed("d1", t0.Add(s), 90)
	}
	e.wantEvents()
	e.wantActive(2)

	e.feed("d1", t0.Add(26*time.Minute), 60)
	e.src.sample("d2", "load1", nil, t0.Add(26*time.Minute), 0.1)
	e.eval(t0.Add(26 * time.Minute))
	e.wantEvents("alert_resolved temp/d1", "alert_resolved nodata/d2")

	e.reopen()
	e.wantActive(0)
	if h := e.eng.History(0); len(h) != 2 {
		t.Errorf("History after reopen = %d alerts, want 2", len(h))
	}
}

func TestHistoryOrderAndBounds(t *testing.T) {
	e := newEnv(t, health.Config{HistoryLimit: 3, HistoryAge: 24 * time.Hour})
	for _, r := range e.eng.Rules() {
		if err := e.eng.DeleteRule(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	r := tempRule()
	r.For = time.Second
	if _, err := e.eng.PutRule(r); err != nil {
		t.Fatal(err)
	}
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	// Five alerts, fired and resolved one after the other.
	var resolvedAt []time.Time
	at := t0
	for range 5 {
		e.feed("d1", at, 90)
		e.feed("d1", at.Add(time.Second), 91)
		at = at.Add(time.Minute)
		e.feed("d1", at, 50)
		resolvedAt = append(resolvedAt, at)
		at = at.Add(time.Minute)
	}
	check := func(what string) {
		t.Helper()
		h := e.eng.History(0)
		var got []time.Time
		for _, a := range h {
			got = append(got, a.ResolvedAt)
		}
		want := []time.Time{resolvedAt[4], resolvedAt[3], resolvedAt[2]} // newest first, three kept
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: History resolved_at (-want +got):\n%s", what, diff)
		}
		if h := e.eng.History(2); len(h) != 2 || !h[0].ResolvedAt.Equal(resolvedAt[4]) {
			t.Errorf("%s: History(2) = %+v, want the two newest", what, h)
		}
	}
	check("in memory")
	e.reopen()
	check("after reopen")

	// A day later, they are all too old.
	e.eval(resolvedAt[4].Add(24*time.Hour + time.Second))
	if h := e.eng.History(0); len(h) != 0 {
		t.Errorf("History a day later = %d alerts, want 0", len(h))
	}
	e.reopen()
	if h := e.eng.History(0); len(h) != 0 {
		t.Errorf("History a day later, after reopen = %d alerts, want 0", len(h))
	}
}

func TestDefaultRulesStoredOnce(t *testing.T) {
	e := newEnv(t, health.Config{})
	if diff := cmp.Diff(health.DefaultRules(), e.eng.Rules(), cmpByID()); diff != "" {
		t.Fatalf("Rules on first start (-want +got):\n%s", diff)
	}
	if err := e.eng.DeleteRule("cpu_busy"); err != nil {
		t.Fatal(err)
	}
	disk, err := e.eng.Rule("disk_full")
	if err != nil {
		t.Fatal(err)
	}
	disk.Threshold = 0.8
	if created, err := e.eng.PutRule(disk); err != nil || created {
		t.Fatalf("PutRule(disk_full) = %v, %v; want replaced", created, err)
	}
	want := e.eng.Rules()
	e.reopen()
	if diff := cmp.Diff(want, e.eng.Rules()); diff != "" {
		t.Errorf("Rules after reopen (-want +got):\n%s", diff)
	}
	if _, err := e.eng.Rule("cpu_busy"); !errors.Is(err, health.ErrNotFound) {
		t.Errorf("deleted default came back: Rule(cpu_busy) err = %v", err)
	}
}

func TestRulesCRUD(t *testing.T) {
	e := newEnvRules(t)
	if got := e.eng.Rules(); len(got) != 0 {
		t.Fatalf("Rules = %+v, want none", got)
	}
	b, a := tempRule(), noData()
	b.ID, b.Match = "b_temp", map[string]string{"sensor": "cpu_thermal"}
	for _, r := range []health.Rule{b, a} {
		if created, err := e.eng.PutRule(r); err != nil || !created {
			t.Fatalf("PutRule(%s) = %v, %v; want created", r.ID, created, err)
		}
	}
	b.Name = "Hot CPU"
	if created, err := e.eng.PutRule(b); err != nil || created {
		t.Fatalf("PutRule(%s) again = %v, %v; want replaced", b.ID, created, err)
	}
	bad := b
	bad.For = -time.Minute
	if _, err := e.eng.PutRule(bad); !errors.Is(err, health.ErrInvalid) || !strings.Contains(err.Error(), `for: "-1m" must be positive`) {
		t.Errorf("PutRule(invalid) = %v, want ErrInvalid about for", err)
	}
	want := []health.Rule{b, a} // by ID
	if diff := cmp.Diff(want, e.eng.Rules()); diff != "" {
		t.Errorf("Rules (-want +got):\n%s", diff)
	}
	// Callers cannot change the engine's rules through maps they passed
	// or got back.
	b.Match["sensor"] = "changed"
	got, err := e.eng.Rule("b_temp")
	if err != nil {
		t.Fatal(err)
	}
	got.Match["sensor"] = "changed too"
	e.eng.Rules()[0].Match["sensor"] = "changed again"
	b.Match = map[string]string{"sensor": "cpu_thermal"}
	want = []health.Rule{b, a}
	if diff := cmp.Diff(want, e.eng.Rules()); diff != "" {
		t.Errorf("Rules after changing returned maps (-want +got):\n%s", diff)
	}
	e.reopen()
	if diff := cmp.Diff(want, e.eng.Rules()); diff != "" {
		t.Errorf("Rules after reopen (-want +got):\n%s", diff)
	}
	if err := e.eng.DeleteRule("nodata"); err != nil {
		t.Fatal(err)
	}
	if err := e.eng.DeleteRule("nodata"); !errors.Is(err, health.ErrNotFound) {
		t.Errorf("DeleteRule twice = %v, want ErrNotFound", err)
	}
	if _, err := e.eng.Rule("nodata"); !errors.Is(err, health.ErrNotFound) {
		t.Errorf("Rule(deleted) = %v, want ErrNotFound", err)
	}
	e.reopen()
	if diff := cmp.Diff([]health.Rule{b}, e.eng.Rules()); diff != "" {
		t.Errorf("Rules after delete and reopen (-want +got):\n%s", diff)
	}
}

func TestTooManyRules(t *testing.T) {
	e := newEnvRules(t)
	for i := range health.MaxRules {
		r := noData()
		r.ID = fmt.Sprintf("r%d", i)
		if _, err := e.eng.PutRule(r); err != nil {
			t.Fatalf("PutRule #%d: %v", i, err)
		}
	}
	r := noData()
	if _, err := e.eng.PutRule(r); !errors.Is(err, health.ErrInvalid) {
		t.Errorf("PutRule beyond MaxRules = %v, want ErrInvalid", err)
	}
	r.ID = "r0" // replacing is fine
	if _, err := e.eng.PutRule(r); err != nil {
		t.Errorf("PutRule(existing) at MaxRules: %v", err)
	}
}

// fireTemp makes rule temp fire for d1.
func (e *env) fireTemp() {
	e.t.Helper()
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	for s := time.Duration(0); s <= 2*time.Minute; s += 10 * time.Second {
		e.feed("d1", t0.Add(s), 90)
	}
	e.wantEvents("alert_fired temp/d1")
}

func TestDeleteRuleResolvesItsAlerts(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.fireTemp()
	e.clk.Set(t0.Add(3 * time.Minute))
	if err := e.eng.DeleteRule("temp"); err != nil {
		t.Fatal(err)
	}
	evs := e.wantEvents("alert_resolved temp/d1")
	if a := evs[0].Alert; a.ResolveReason != health.ReasonRuleDeleted || !a.ResolvedAt.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("resolved alert = %+v, want reason rule_deleted at the clock's time", a)
	}
	e.wantActive(0)
	e.reopen()
	e.wantActive(0)
	if h := e.eng.History(0); len(h) != 1 || h[0].ResolveReason != health.ReasonRuleDeleted {
		t.Errorf("History after reopen = %+v, want the deleted rule's alert", h)
	}
}

func TestPutRuleChanges(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.fireTemp()

	// Only the wording changes: the alert stays.
	r := tempRule()
	r.Name, r.Severity, r.Suggestion = "Heat", health.SeverityWarning, "hot"
	if _, err := e.eng.PutRule(r); err != nil {
		t.Fatal(err)
	}
	e.wantEvents()
	e.wantActive(1)

	// The condition changes: resolved, and it fires again after For.
	r.Threshold = 85
	if _, err := e.eng.PutRule(r); err != nil {
		t.Fatal(err)
	}
	evs := e.wantEvents("alert_resolved temp/d1")
	if evs[0].Alert.ResolveReason != health.ReasonRuleChanged {
		t.Errorf("reason = %q, want %q", evs[0].Alert.ResolveReason, health.ReasonRuleChanged)
	}
	e.feed("d1", t0.Add(3*time.Minute), 90)
	e.wantEvents()
	e.feed("d1", t0.Add(5*time.Minute), 90)
	evs = e.wantEvents("alert_fired temp/d1")
	if evs[0].Alert.Summary != "hot" || evs[0].Alert.Severity != health.SeverityWarning {
		t.Errorf("refired alert = %+v, want the new wording", evs[0].Alert)
	}

	// Disabled: resolved, and nothing fires while disabled.
	r.Enabled = false
	if _, err := e.eng.PutRule(r); err != nil {
		t.Fatal(err)
	}
	evs = e.wantEvents("alert_resolved temp/d1")
	if evs[0].Alert.ResolveReason != health.ReasonRuleDisabled {
		t.Errorf("reason = %q, want %q", evs[0].Alert.ResolveReason, health.ReasonRuleDisabled)
	}
	for s := 5 * time.Minute; s <= 15*time.Minute; s += 10 * time.Second {
		e.feed("d1", t0.Add(s), 90)
	}
	e.wantEvents()
}

func TestEventsInOrderOutsideLocks(t *testing.T) {
	e := newEnvRules(t)
	var seen []string
	e.cfg.OnEvent = func(ev health.Event) {
		// The engine may be called back, and already shows the change.
		active := false
		for _, a := range e.eng.Active() {
			active = active || a.ID == ev.Alert.ID
		}
		_ = e.eng.States()
		_ = e.eng.Rules()
		seen = append(seen, fmt.Sprintf("%s %s active=%v", ev.Type, ev.Alert.Device, active))
	}
	e.reopen()
	r := tempRule()
	r.For = time.Minute
	if _, err := e.eng.PutRule(r); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"d1", "d2", "d3"} {
		e.src.device(d, d, registry.StatusOnline, nil)
	}
	e.src.sample("d1", "temperature_celsius", cpuSensor, t0, 90)
	e.src.sample("d2", "temperature_celsius", cpuSensor, t0, 90)
	e.eval(t0)
	e.src.sample("d1", "temperature_celsius", cpuSensor, t0.Add(time.Minute), 90)
	e.src.sample("d2", "temperature_celsius", cpuSensor, t0.Add(time.Minute), 90)
	e.src.sample("d3", "temperature_celsius", cpuSensor, t0.Add(time.Minute), 90)
	e.eval(t0.Add(time.Minute))
	e.src.sample("d1", "temperature_celsius", cpuSensor, t0.Add(2*time.Minute), 20)
	e.src.sample("d3", "temperature_celsius", cpuSensor, t0.Add(2*time.Minute), 90)
	e.eval(t0.Add(2 * time.Minute))
	want := []string{
		"alert_fired d1 active=true",
		"alert_fired d2 active=true",
		"alert_resolved d1 active=false",
		"alert_fired d3 active=true",
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestDeviceState(t *testing.T) {
	e := newEnvRules(t, tempRule())
	e.src.device("hot", "hot-pi", registry.StatusOnline, nil)
	e.src.device("cool", "cool-pi", registry.StatusOnline, nil)
	e.src.device("off", "off-pi", registry.StatusOffline, nil)
	never := e.src.device("never", "new-pi", registry.StatusOffline, nil)
	never.FirstSeen, never.LastSeen = time.Time{}, time.Time{}
	e.src.mu.Lock()
	e.src.devices["never"] = never
	e.src.mu.Unlock()
	e.src.device("pend", "pending-pi", registry.StatusPending, nil)
	e.src.device("rev", "revoked-pi", registry.StatusRevoked, nil)
	e.src.device("rej", "rejected-pi", registry.StatusRejected, nil)
	for s := time.Duration(0); s <= 2*time.Minute; s += 10 * time.Second {
		e.src.sample("hot", "temperature_celsius", cpuSensor, t0.Add(s), 90)
		e.src.sample("cool", "temperature_celsius", cpuSensor, t0.Add(s), 40)
		e.eval(t0.Add(s))
	}
	want := map[string]string{
		"hot": health.StateDegraded, "cool": health.StateOnline, "off": health.StateOffline, "never": health.StateUnknown,
		"pend": health.StateUnknown, "rev": health.StateUnknown, "rej": health.StateUnknown,
	}
	if diff := cmp.Diff(want, e.eng.States()); diff != "" {
		t.Errorf("States (-want +got):\n%s", diff)
	}
	// An offline device with a firing alert is offline, not degraded.
	e.src.device("hot", "hot-pi", registry.StatusOffline, nil)
	if got := e.eng.DeviceState(registry.Device{ID: "hot", Status: registry.StatusOffline, LastSeen: t0}); got != health.StateOffline {
		t.Errorf("DeviceState(offline with alert) = %q, want offline", got)
	}
}

func TestConfigValidate(t *testing.T) {
	e := newEnvRules(t)
	ok := health.Config{Devices: e.src.Devices, Latest: e.src.Latest}
	if _, err := health.Open(nil, ok); err == nil {
		t.Error("no store: Open succeeded")
	}
	for name, change := range map[string]func(*health.Config){
		"no Devices":        func(c *health.Config) { c.Devices = nil },
		"no Latest":         func(c *health.Config) { c.Latest = nil },
		"negative interval": func(c *health.Config) { c.Interval = -time.Second },
	} {
		c := ok
		change(&c)
		if _, err := health.Open(e.db, c); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

// cmpByID compares rule lists regardless of order.
func cmpByID() cmp.Option {
	return cmp.Transformer("byID", func(rs []health.Rule) map[string]health.Rule {
		m := map[string]health.Rule{}
		for _, r := range rs {
			m[r.ID] = r
		}
		return m
	})
}
