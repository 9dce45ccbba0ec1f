package health_test

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/registry"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// diskTrend is the default disk_filling rule.
func diskTrend(t *testing.T) health.Rule {
	t.Helper()
	for _, r := range health.DefaultRules() {
		if r.ID == "disk_filling" {
			return r
		}
	}
	t.Fatal("no default disk_filling rule")
	return health.Rule{}
}

var rootFS = map[string]string{"mount": "/", "source": "/dev/mmcblk0p2", "fstype": "ext4"}

// series is a synthetic series: its value at a time since t0.
type series func(since time.Duration) float64

// run feeds the series to device d every 10 s from t0+from to t0+to
// (excluded) and evaluates after each sample. It stops early, and returns
// true, at the first event.
func (e *env) run(d, metric string, labels map[string]string, from, to time.Duration, f series) (at time.Duration, evented bool) {
	e.t.Helper()
	return e.runEvery(10*time.Second, d, metric, labels, from, to, f)
}

// runEvery is run with a sample (and an evaluation) every every.
func (e *env) runEvery(every time.Duration, d, metric string, labels map[string]string, from, to time.Duration, f series) (at time.Duration, evented bool) {
	e.t.Helper()
	for s := from; s < to; s += every {
		e.src.sample(d, metric, labels, t0.Add(s), f(s))
		e.eval(t0.Add(s))
		e.mu.Lock()
		n := len(e.events)
		e.mu.Unlock()
		if n > 0 {
			return s, true
		}
	}
	return to, false
}

// filling is a disk at level at t0 filling by rate per hour, with
// Gaussian noise of sd from rng (none if rng is nil).
func filling(level, rate, sd float64, rng *rand.Rand) series {
	return func(s time.Duration) float64 {
		v := level + rate*s.Hours()
		if rng != nil {
			v += rng.NormFloat64() * sd
		}
		return v
	}
}

var summaryRE = regexp.MustCompile(`^disk / on garage-pi full in ~(\d+) h \(90 % at (2026-03-\d\d \d\d:\d\d) UTC, (\d+) % now\): find what grows \(du -xh / \| sort -h\) or enlarge the card$`)

// A disk filling steadily raises "full in ~N h" before it reaches 90 %,
// with the projected time of the crossing; it resolves once the disk
// empties again.
func TestTrendFiresWithProjectedTimeAndResolvesWhenTrendReverses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		level float64 // at t0
		rate  float64 // per hour
		sd    float64
	}{
		{"fast, clean", 0.60, 0.02, 0},
		{"slow, noisy", 0.80, 0.002, 0.003},
		{"steady, noisy", 0.50, 0.01, 0.005},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvRules(t, diskTrend(t))
			e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
			rng := rand.New(rand.NewPCG(1, 2))
			f := filling(tt.level, tt.rate, tt.sd, rng)
			crossing := time.Duration((0.9 - tt.level) / tt.rate * float64(time.Hour))

			at, fired := e.run("d1", "filesystem_used_ratio", rootFS, 0, crossing, f)
			if !fired {
				t.Fatalf("no alert before the crossing at t0+%v", crossing)
			}
			evs := e.wantEvents("alert_fired disk_filling/d1")
			a := evs[0].Alert
			if at > 4*time.Hour {
				t.Errorf("fired at t0+%v, want within 4 h (3 h of window, then 15 min)", at)
			}
			if want := t0.Add(crossing); a.ProjectedAt.Sub(want).Abs() > max(crossing/20, 30*time.Minute) {
				t.Errorf("projected_at = %v, want %v ± 5 %%", a.ProjectedAt, want)
			}
			if a.Value >= 0.9 || a.Threshold != 0.9 || a.Kind != health.KindTrend || a.Metric != "filesystem_used_ratio" {
				t.Errorf("alert = %+v, want value < 0.9, threshold 0.9, kind trend", a)
			}
			m := summaryRE.FindStringSubmatch(a.Summary)
			if m == nil {
				t.Fatalf("summary = %q, want it to match %s", a.Summary, summaryRE)
			}
			eta := a.ProjectedAt.Sub(a.FiredAt)
			if m[1] != strconv.Itoa(int(eta.Round(time.Hour).Hours())) ||
				m[2] != a.ProjectedAt.Format("2006-01-02 15:04") {
				t.Errorf("summary = %q, want ~%v and %v", a.Summary, eta.Round(time.Hour), a.ProjectedAt)
			}

			// The disk is cleaned up and empties slowly: the alert
			// resolves.
			top := f(at)
			cleaned := func(s time.Duration) float64 { return top - 0.2 - tt.rate*(s-at).Hours() }
			at2, resolved := e.run("d1", "filesystem_used_ratio", rootFS, at+10*time.Second, at+6*time.Hour, cleaned)
			if !resolved {
				t.Fatal("still firing 6 h after the disk was cleaned")
			}
			evs = e.wantEvents("alert_resolved disk_filling/d1")
			if evs[0].Alert.ResolveReason != health.ReasonRecovered {
				t.Errorf("resolve reason = %q, want recovered", evs[0].Alert.ResolveReason)
			}
			t.Logf("fired at t0+%v, projected %v (true crossing t0+%v), resolved %v after the clean-up; %s",
				at, a.ProjectedAt.Sub(t0), crossing, at2-at, a.Summary)
		})
	}
}

// Noise around a flat line never fires, however near the threshold, nor
// do outliers or a one-off step (a large file copied).
func TestTrendIgnoresNoiseAndSteps(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		for _, tt := range []struct {
			name string
			f    func(rng *rand.Rand) series
		}{
			{"noise near the threshold", func(rng *rand.Rand) series {
				return func(time.Duration) float64 { return 0.88 + rng.NormFloat64()*0.01 }
			}},
			{"noise at the threshold", func(rng *rand.Rand) series {
				return func(time.Duration) float64 { return 0.895 + rng.NormFloat64()*0.02 }
			}},
			{"noise and outliers", func(rng *rand.Rand) series {
				return func(time.Duration) float64 {
					if rng.IntN(100) == 0 {
						return 0.89 + rng.Float64()*0.1
					}
					return 0.85 + rng.NormFloat64()*0.005
				}
			}},
			{"one-off steps", func(rng *rand.Rand) series {
				return func(s time.Duration) float64 {
					v := 0.70 + rng.NormFloat64()*0.001
					if s >= 4*time.Hour {
						v += 0.08 // 8 % copied in at once, kept
					}
					return v
				}
			}},
		} {
			t.Run(tt.name+"/"+strconv.Itoa(int(seed)), func(t *testing.T) {
				e := newEnvRules(t, diskTrend(t))
				e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
				rng := rand.New(rand.NewPCG(seed, 7))
				// A sample every 30 s (an agent's slower setting) keeps
				// the test short.
				if at, fired := e.runEvery(30*time.Second, "d1", "filesystem_used_ratio", rootFS, 0, 12*time.Hour, tt.f(rng)); fired {
					t.Errorf("fired at t0+%v: %+v", at, e.eng.Active())
				}
			})
		}
	}
}

// A window with too few samples, or too short a span of them, decides
// nothing: neither a fire nor a resolve.
func TestTrendNeedsEnoughPoints(t *testing.T) {
	steep := filling(0.5, 0.1, 0, nil) // 90 % in 4 h
	t.Run("short span", func(t *testing.T) {
		e := newEnvRules(t, diskTrend(t))
		e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
		// 2 h 50 min of samples: under half the window.
		if at, fired := e.run("d1", "filesystem_used_ratio", rootFS, 0, 170*time.Minute, steep); fired {
			t.Errorf("fired at t0+%v on less than half a window", at)
		}
	})
	t.Run("few points", func(t *testing.T) {
		// Samples stay fresh for an hour, so that only their number
		// counts.
		e := newEnv(t, health.Config{StaleAfter: time.Hour})
		for _, r := range e.eng.Rules() {
			if err := e.eng.DeleteRule(r.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.eng.PutRule(diskTrend(t)); err != nil {
			t.Fatal(err)
		}
		e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
		// A sample every 40 minutes: 9 in 6 h, under the 10 a fit needs.
		for s := time.Duration(0); s < 6*time.Hour; s += 40 * time.Minute {
			e.src.sample("d1", "filesystem_used_ratio", rootFS, t0.Add(s), filling(0.5, 0.05, 0, nil)(s))
			for ev := s; ev < s+40*time.Minute; ev += time.Minute {
				e.eval(t0.Add(ev))
			}
		}
		e.wantEvents()
	})
	t.Run("stale", func(t *testing.T) {
		e := newEnvRules(t, diskTrend(t))
		e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
		// The condition holds from the first fit spanning half the
		// window (3 h), but the samples stop before For has passed:
		// evaluations without fresh samples decide nothing.
		e.run("d1", "filesystem_used_ratio", rootFS, 0, 3*time.Hour+5*time.Minute, filling(0.5, 0.01, 0, nil))
		for s := 3*time.Hour + 5*time.Minute; s < 5*time.Hour; s += time.Minute {
			e.eval(t0.Add(s))
		}
		e.wantEvents()
	})
}

// A firing trend alert stays while the projection is within Horizon ×
// (1 + margin), and resolves past it.
func TestTrendHysteresis(t *testing.T) {
	r := diskTrend(t)
	e := newEnvRules(t, r)
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	// 0.4 to go at 0.4/60 per hour: 60 h away, within 72 h.
	at, fired := e.run("d1", "filesystem_used_ratio", rootFS, 0, 8*time.Hour, filling(0.5, 0.4/60, 0, nil))
	if !fired {
		t.Fatal("no alert for a crossing 60 h away")
	}
	e.wantEvents("alert_fired disk_filling/d1")
	// Slower: about 90 h away, past the horizon but within 108 h.
	lvl := 0.5 + 0.4/60*at.Hours()
	rate := (0.9 - lvl) / 90
	slower := func(s time.Duration) float64 { return lvl + rate*(s-at).Hours() }
	if at2, ev := e.run("d1", "filesystem_used_ratio", rootFS, at+10*time.Second, at+8*time.Hour, slower); ev {
		t.Fatalf("resolved %v after slowing to ~90 h: want it kept within the margin", at2-at)
	}
	e.wantActive(1)
	// Slower still: about 200 h away.
	end := at + 8*time.Hour
	lvl2 := slower(end)
	rate2 := (0.9 - lvl2) / 200
	slowest := func(s time.Duration) float64 { return lvl2 + rate2*(s-end).Hours() }
	if _, ev := e.run("d1", "filesystem_used_ratio", rootFS, end, end+8*time.Hour, slowest); !ev {
		t.Fatal("still firing with the crossing ~200 h away")
	}
	e.wantEvents("alert_resolved disk_filling/d1")
}

// A trend rule reads its window once per bucket (Window/120), not at
// every evaluation, and keeps its alert between reads.
func TestTrendReadsWindowOncePerBucket(t *testing.T) {
	e := newEnvRules(t, diskTrend(t))
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	e.run("d1", "filesystem_used_ratio", rootFS, 0, time.Hour, filling(0.5, 0.01, 0, nil))
	e.src.mu.Lock()
	n := e.src.ranges
	e.src.mu.Unlock()
	// 360 evaluations in an hour, a read every 3 minutes: 20 (+1).
	if n < 20 || n > 21 {
		t.Errorf("Range called %d times in an hour of 10-second evaluations, want 20 or 21", n)
	}
}

// A failing Range is logged once and decides nothing; an alert stays.
func TestTrendRangeFailure(t *testing.T) {
	logger, logs := testkit.NewLogger()
	e := newEnv(t, health.Config{Logger: logger})
	for _, r := range e.eng.Rules() {
		if err := e.eng.DeleteRule(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.eng.PutRule(diskTrend(t)); err != nil {
		t.Fatal(err)
	}
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	at, fired := e.run("d1", "filesystem_used_ratio", rootFS, 0, 8*time.Hour, filling(0.5, 0.02, 0, nil))
	if !fired {
		t.Fatal("no alert")
	}
	e.wantEvents("alert_fired disk_filling/d1")
	e.src.mu.Lock()
	e.src.rangeErr = errors.New("disk I/O error")
	e.src.mu.Unlock()
	// The disk is emptied, but the window cannot be read.
	e.run("d1", "filesystem_used_ratio", rootFS, at+10*time.Second, at+time.Hour, func(time.Duration) float64 { return 0.1 })
	e.wantEvents()
	e.wantActive(1)
	if got := strings.Count(logs.String(), "disk I/O error"); got != 1 {
		t.Errorf("the Range error is logged %d times, want once:\n%s", got, logs)
	}
}

// rateRule is "temperature rising (or falling) by more than 5 in 10m".
func rateRule(op string, threshold float64) health.Rule {
	return health.Rule{ID: "temp_rate", Name: "Temperature change", Kind: health.KindRate, Metric: "temperature_celsius",
		Op: op, Threshold: threshold, Window: 10 * time.Minute, For: time.Minute, ResolveMargin: 1,
		Severity: health.SeverityWarning, Enabled: true}
}

func TestRateRule(t *testing.T) {
	ramp := func(from, perMin float64, start time.Duration) series {
		return func(s time.Duration) float64 {
			if s < start {
				return from
			}
			return from + perMin*(s-start).Minutes()
		}
	}
	tests := []struct {
		name      string
		rule      health.Rule
		f         series
		wantFire  bool
		wantValue float64 // about
	}{
		{"rising 0.8/min", rateRule(">", 5), ramp(20, 0.8, 30*time.Minute), true, 5},
		{"rising 0.4/min", rateRule(">", 5), ramp(20, 0.4, 30*time.Minute), false, 0},
		{"falling 0.8/min", rateRule("<", -5), ramp(60, -0.8, 30*time.Minute), true, -5},
		{"rising, watching falls", rateRule("<", -5), ramp(20, 0.8, 30*time.Minute), false, 0},
		{"one spike", func() health.Rule { r := rateRule(">", 5); r.For = 10 * time.Second; return r }(),
			func(s time.Duration) float64 {
				if s == 40*time.Minute || s == 40*time.Minute+10*time.Second {
					return 40
				}
				return 20
			}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnvRules(t, tt.rule)
			e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
			at, fired := e.run("d1", "temperature_celsius", cpuSensor, 0, time.Hour, tt.f)
			if fired != tt.wantFire {
				t.Fatalf("fired = %v (at t0+%v, %+v), want %v", fired, at, e.eng.Active(), tt.wantFire)
			}
			if !fired {
				return
			}
			a := e.wantEvents("alert_fired temp_rate/d1")[0].Alert
			if a.Value < tt.wantValue-1 || a.Value > tt.wantValue+3 || (tt.wantValue > 0) != (a.Value > 0) {
				t.Errorf("value = %v, want about %v", a.Value, tt.wantValue)
			}
			if !strings.HasPrefix(a.Summary, "Temperature change: temperature_celsius on garage-pi changed by ") ||
				!strings.HasSuffix(a.Summary, " in 10 minutes ("+tt.rule.Op+" "+strconv.FormatFloat(tt.rule.Threshold, 'f', -1, 64)+")") {
				t.Errorf("summary = %q", a.Summary)
			}
			// Steady again: the change over the window falls back past
			// the margin and the alert resolves.
			top := tt.f(at)
			if _, ev := e.run("d1", "temperature_celsius", cpuSensor, at+10*time.Second, at+30*time.Minute,
				func(time.Duration) float64 { return top }); !ev {
				t.Fatal("still firing after 30 min of a steady value")
			}
			e.wantEvents("alert_resolved temp_rate/d1")
		})
	}
}

// A firing rate alert stays while the change is within the margin below
// the threshold.
func TestRateHysteresis(t *testing.T) {
	e := newEnvRules(t, rateRule(">", 5))
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	at, fired := e.run("d1", "temperature_celsius", cpuSensor, 0, time.Hour, func(s time.Duration) float64 { return 20 + 0.8*s.Minutes() })
	if !fired {
		t.Fatal("no alert")
	}
	e.wantEvents("alert_fired temp_rate/d1")
	// Rising by 0.5 a minute: about 4.5 in the window, within the margin.
	top := 20 + 0.8*at.Minutes()
	if _, ev := e.run("d1", "temperature_celsius", cpuSensor, at+10*time.Second, at+30*time.Minute,
		func(s time.Duration) float64 { return top + 0.5*(s-at).Minutes() }); ev {
		t.Fatalf("resolved while rising by about 4.5 in 10 min: %+v", e.takeEvents())
	}
	e.wantActive(1)
}

// A hub seeded by the previous version (a JSON list of seven defaults)
// gets disk_filling once: deleting it keeps it deleted.
func TestDiskFillingAddedOnceOnUpgrade(t *testing.T) {
	e := newEnv(t, health.Config{})
	err := e.db.Update(func(tx *store.Tx) error {
		if err := tx.Delete(e.db.Keyspace("health_rule"), "disk_filling"); err != nil {
			return err
		}
		return tx.Put(e.db.Keyspace("health_meta"), "seeded",
			[]byte(`["cpu_temperature","disk_full","memory_high","filesystem_readonly","cpu_busy","series_limit","no_data"]`))
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if r, err := e.eng.Rule("disk_filling"); err != nil || r.Kind != health.KindTrend {
		t.Fatalf("disk_filling after an upgrade = %+v, %v; want the trend rule", r, err)
	}
	if err := e.eng.DeleteRule("disk_filling"); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if _, err := e.eng.Rule("disk_filling"); !errors.Is(err, health.ErrNotFound) {
		t.Errorf("deleted disk_filling came back after a restart: %v", err)
	}
}

// A "<" trend projects a crossing downwards: a battery running flat.
func TestTrendDownwards(t *testing.T) {
	r := health.Rule{ID: "battery", Name: "Battery", Kind: health.KindTrend, Metric: "battery_ratio", Op: "<", Threshold: 0.2,
		Window: 2 * time.Hour, Horizon: 24 * time.Hour, For: 10 * time.Minute, ResolveMargin: 0.5,
		Severity: health.SeverityWarning, Enabled: true}
	e := newEnvRules(t, r)
	e.src.device("d1", "garage-pi", registry.StatusOnline, nil)
	// 80 % falling by 5 % an hour: 20 % in 12 h.
	at, fired := e.run("d1", "battery_ratio", nil, 0, 12*time.Hour, filling(0.8, -0.05, 0, nil))
	if !fired {
		t.Fatal("no alert for a battery running flat")
	}
	a := e.wantEvents("alert_fired battery/d1")[0].Alert
	if want := t0.Add(12 * time.Hour); a.ProjectedAt.Sub(want).Abs() > 10*time.Minute {
		t.Errorf("projected_at = %v, want %v", a.ProjectedAt, want)
	}
	if want := "Battery: battery_ratio on garage-pi reaches 0.2 in ~11 h (at 2026-03-02 00:00 UTC), at its rate of the last 2 hours"; a.Summary != want {
		t.Errorf("summary = %q, want %q (fired at t0+%v)", a.Summary, want, at)
	}
	// Charging: the line turns away and the alert resolves.
	low := filling(0.8, -0.05, 0, nil)(at)
	if _, ev := e.run("d1", "battery_ratio", nil, at+10*time.Second, at+2*time.Hour,
		func(s time.Duration) float64 { return low + 0.1*(s-at).Hours() }); !ev {
		t.Fatal("still firing while charging")
	}
	e.wantEvents("alert_resolved battery/d1")
}
