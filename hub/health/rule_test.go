package health_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/health"
)

// validThreshold is a valid threshold rule; tests change one field.
func validThreshold() health.Rule {
	return health.Rule{ID: "cpu_temp", Name: "CPU temperature", Kind: health.KindThreshold, Metric: "temperature_celsius",
		Match: map[string]string{"sensor": "cpu_thermal"}, Devices: map[string]string{"room": "garage"},
		Op: ">", Threshold: 80, For: 2 * time.Minute, ResolveMargin: 5, Severity: health.SeverityCritical,
		Suggestion: "{label:sensor} on {device_name} is {value} °C", Enabled: true}
}

func validAbsence() health.Rule {
	return health.Rule{ID: "no-data", Name: "No data", Kind: health.KindAbsence, For: 5 * time.Minute,
		Severity: health.SeverityWarning, Enabled: true}
}

func validTrend() health.Rule {
	return health.Rule{ID: "disk-trend", Name: "Disk filling", Kind: health.KindTrend, Metric: "filesystem_used_ratio",
		Match: map[string]string{"mount": "/"}, Op: ">", Threshold: 0.9, Window: 6 * time.Hour, Horizon: 72 * time.Hour,
		For: 15 * time.Minute, ResolveMargin: 0.5, Severity: health.SeverityWarning,
		Suggestion: "{label:mount} full in {eta} (at {projected_at}; {window} of data, {horizon} ahead)", Enabled: true}
}

func validRate() health.Rule {
	return health.Rule{ID: "temp-rate", Name: "Heating fast", Kind: health.KindRate, Metric: "temperature_celsius",
		Op: ">", Threshold: 5, Window: 10 * time.Minute, For: time.Minute, ResolveMargin: 1, Severity: health.SeverityWarning,
		Suggestion: "{device_name} rose by {value} °C in {window}", Enabled: true}
}

func TestValidateAcceptsValidAndDefaultRules(t *testing.T) {
	rules := append([]health.Rule{validThreshold(), validAbsence(), validTrend(), validRate()}, health.DefaultRules()...)
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", r.ID, err)
		}
	}
}

func TestValidateRefusesInvalidRules(t *testing.T) {
	tests := []struct {
		name   string
		base   func() health.Rule
		change func(*health.Rule)
		want   string
	}{
		{"empty id", validThreshold, func(r *health.Rule) { r.ID = "" },
			`id: "" is not a rule ID: use 1 to 63 bytes of a-z, 0-9, '_', '-', starting with a letter or digit`},
		{"uppercase id", validThreshold, func(r *health.Rule) { r.ID = "CPU" }, `id: "CPU" is not a rule ID`},
		{"id starting with -", validThreshold, func(r *health.Rule) { r.ID = "-x" }, `id: "-x" is not a rule ID`},
		{"id with a slash", validThreshold, func(r *health.Rule) { r.ID = "a/b" }, `id: "a/b" is not a rule ID`},
		{"id of 64 bytes", validThreshold, func(r *health.Rule) { r.ID = strings.Repeat("a", 64) }, `id: "` + strings.Repeat("a", 64) + `" is not a rule ID`},
		{"blank name", validThreshold, func(r *health.Rule) { r.Name = "  " }, `name: must not be blank`},
		{"two-line name", validThreshold, func(r *health.Rule) { r.Name = "a\nb" }, `name: contains a control character`},
		{"kind", validThreshold, func(r *health.Rule) { r.Kind = "slope" }, `kind: "slope" is not one of threshold, absence, trend, rate`},
		{"no metric", validThreshold, func(r *health.Rule) { r.Metric = "" }, `metric: required for a threshold rule`},
		{"bad metric", validThreshold, func(r *health.Rule) { r.Metric = "cpu-usage" }, `metric: "cpu-usage" is not a metric name`},
		{"bad match label", validThreshold, func(r *health.Rule) { r.Match = map[string]string{"1x": "a"} }, `match: label name "1x"`},
		{"reserved match label", validThreshold, func(r *health.Rule) { r.Match = map[string]string{"__name__": "a"} }, `match: label name "__name__": the "__" prefix is reserved`},
		{"match without metric", validAbsence, func(r *health.Rule) { r.Match = map[string]string{"cpu": "total"} }, `match: needs a metric`},
		{"bad device label", validThreshold, func(r *health.Rule) { r.Devices = map[string]string{"Room": "x"} }, `devices: label key "Room"`},
		{"device label value", validThreshold, func(r *health.Rule) { r.Devices = map[string]string{"room": "a\tb"} }, `devices: value of "room"`},
		{"op =>", validThreshold, func(r *health.Rule) { r.Op = "=>" }, `op: "=>" is not one of >, <, >=, <=`},
		{"op missing", validThreshold, func(r *health.Rule) { r.Op = "" }, `op: "" is not one of >, <, >=, <=`},
		{"op on absence", validAbsence, func(r *health.Rule) { r.Op = ">" }, `op: must be empty for an absence rule`},
		{"threshold on absence", validAbsence, func(r *health.Rule) { r.Threshold = 3 }, `threshold: must be 0 for an absence rule`},
		{"margin on absence", validAbsence, func(r *health.Rule) { r.ResolveMargin = 1 }, `resolve_margin: must be 0 for an absence rule`},
		{"negative margin", validThreshold, func(r *health.Rule) { r.ResolveMargin = -1 }, `resolve_margin: -1 must be a finite number, 0 or more`},
		{"negative for", validThreshold, func(r *health.Rule) { r.For = -time.Minute }, `for: "-1m" must be positive`},
		{"zero for", validAbsence, func(r *health.Rule) { r.For = 0 }, `for: "0s" must be positive`},
		{"for too long", validThreshold, func(r *health.Rule) { r.For = 8 * 24 * time.Hour }, `for: "192h" is longer than 168h`},
		{"severity", validThreshold, func(r *health.Rule) { r.Severity = "info" }, `severity: "info" is not one of warning, critical`},
		{"unknown placeholder", validThreshold, func(r *health.Rule) { r.Suggestion = "{host} is hot" },
			`suggestion: unknown placeholder {host}; use {device}, {device_name}, {rule}, {metric}, {value}, {value_pct}, {threshold}, {threshold_pct}, {for}, {severity}, {window}, {horizon}, {eta}, {projected_at} or {label:NAME}`},
		{"unclosed placeholder", validThreshold, func(r *health.Rule) { r.Suggestion = "disk {label:mount is full" }, `suggestion: "{label:mount is full" is not closed with "}"`},
		{"stray brace", validThreshold, func(r *health.Rule) { r.Suggestion = "a } b" }, `suggestion: "}" without "{"`},
		{"bad label placeholder", validThreshold, func(r *health.Rule) { r.Suggestion = "{label:a-b}" }, `suggestion: placeholder {label:a-b}: label name "a-b"`},
		{"template syntax", validThreshold, func(r *health.Rule) { r.Suggestion = "{{.Value}}" }, `suggestion: unknown placeholder {{.Value}`},
		{"two lines", validThreshold, func(r *health.Rule) { r.Suggestion = "a\nb" }, `suggestion: must be one line`},
		{"trend without metric", validTrend, func(r *health.Rule) { r.Metric = "" }, `metric: required for a trend rule`},
		{"rate without metric", validRate, func(r *health.Rule) { r.Metric = "" }, `metric: required for a rate rule`},
		{"trend op >=", validTrend, func(r *health.Rule) { r.Op = ">=" }, `op: ">=" is not one of >, < (the direction of the crossing)`},
		{"rate op", validRate, func(r *health.Rule) { r.Op = "rising" }, `op: "rising" is not one of >, <, >=, <=`},
		{"trend threshold NaN", validTrend, func(r *health.Rule) { r.Threshold = math.NaN() }, `threshold: NaN is not a finite number`},
		{"trend negative margin", validTrend, func(r *health.Rule) { r.ResolveMargin = -0.5 }, `resolve_margin: -0.5 must be a finite number, 0 or more`},
		{"trend without window", validTrend, func(r *health.Rule) { r.Window = 0 }, `window: "0s" must be between 1m and 168h`},
		{"rate window too short", validRate, func(r *health.Rule) { r.Window = 30 * time.Second }, `window: "30s" must be between 1m and 168h`},
		{"trend window too long", validTrend, func(r *health.Rule) { r.Window = 8 * 24 * time.Hour }, `window: "192h" must be between 1m and 168h`},
		{"window on threshold", validThreshold, func(r *health.Rule) { r.Window = time.Hour }, `window: only for trend and rate rules`},
		{"trend without horizon", validTrend, func(r *health.Rule) { r.Horizon = 0 }, `horizon: "0s" must be positive`},
		{"horizon too long", validTrend, func(r *health.Rule) { r.Horizon = 31 * 24 * time.Hour }, `horizon: "744h" is longer than 720h`},
		{"horizon on rate", validRate, func(r *health.Rule) { r.Horizon = time.Hour }, `horizon: only for trend rules`},
		{"horizon on absence", validAbsence, func(r *health.Rule) { r.Horizon = time.Hour }, `horizon: only for trend rules`},
		{"for on trend", validTrend, func(r *health.Rule) { r.For = 0 }, `for: "0s" must be positive`},
		{"eta on threshold", validThreshold, func(r *health.Rule) { r.Suggestion = "full in {eta}" }, `suggestion: placeholder {eta} is only for trend rules`},
		{"window on absence", validAbsence, func(r *health.Rule) { r.Suggestion = "{window}" }, `suggestion: placeholder {window} is only for trend and rate rules`},
		{"projected_at on rate", validRate, func(r *health.Rule) { r.Suggestion = "{projected_at}" }, `suggestion: placeholder {projected_at} is only for trend rules`},
		{"long suggestion", validThreshold, func(r *health.Rule) { r.Suggestion = strings.Repeat("x", 257) }, `suggestion: longer than 256 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.base()
			tt.change(&r)
			err := r.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Validate() = %q, want it to start with %q", err, tt.want)
			}
			if !errors.Is(err, health.ErrInvalid) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRule(t *testing.T) {
	got, err := health.DecodeRule([]byte(`{"id":"disk","name":"Disk","kind":"threshold","metric":"filesystem_used_ratio",
		"match":{"mount":"/"},"devices":{"room":"garage"},"op":">","threshold":0.9,"for":"5m","resolve_margin":0.02,
		"severity":"warning","suggestion":"disk {label:mount} is {value_pct} full"}`))
	if err != nil {
		t.Fatalf("DecodeRule: %v", err)
	}
	want := health.Rule{ID: "disk", Name: "Disk", Kind: health.KindThreshold, Metric: "filesystem_used_ratio",
		Match: map[string]string{"mount": "/"}, Devices: map[string]string{"room": "garage"}, Op: ">", Threshold: 0.9,
		For: 5 * time.Minute, ResolveMargin: 0.02, Severity: health.SeverityWarning,
		Suggestion: "disk {label:mount} is {value_pct} full", Enabled: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DecodeRule (-want +got):\n%s", diff)
	}

	// The wire form round-trips, "enabled": false included.
	want.Enabled = false
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"for":"5m"`) || !strings.Contains(string(b), `"enabled":false`) {
		t.Errorf("Marshal = %s, want \"for\":\"5m\" and \"enabled\":false", b)
	}
	got, err = health.DecodeRule(b)
	if err != nil {
		t.Fatalf("DecodeRule(Marshal): %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeTrendRule(t *testing.T) {
	in := `{"id":"disk-trend","name":"Disk filling","kind":"trend","metric":"filesystem_used_ratio","match":{"mount":"/"},` +
		`"op":">","threshold":0.9,"window":"6h","horizon":"72h","for":"15m","resolve_margin":0.5,"severity":"warning",` +
		`"suggestion":"{label:mount} full in {eta} (at {projected_at}; {window} of data, {horizon} ahead)"}`
	got, err := health.DecodeRule([]byte(in))
	if err != nil {
		t.Fatalf("DecodeRule: %v", err)
	}
	if diff := cmp.Diff(validTrend(), got); diff != "" {
		t.Errorf("DecodeRule (-want +got):\n%s", diff)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"window":"6h","horizon":"72h"`) {
		t.Errorf("Marshal = %s, want \"window\":\"6h\",\"horizon\":\"72h\"", b)
	}
	// A threshold rule has neither.
	b, err = json.Marshal(validThreshold())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "window") || strings.Contains(string(b), "horizon") {
		t.Errorf("Marshal(threshold rule) = %s, want no window or horizon", b)
	}
}

func TestDecodeRuleIsStrict(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown field", `{"id":"a","treshold":3}`, `treshold: unknown field`},
		{"expression smuggled in", `{"id":"a","expr":"value > 3"}`, `expr: unknown field`},
		{"bad duration", `{"id":"a","for":"2 minutes"}`, `for: "2 minutes" is not a duration`},
		{"bad window", `{"id":"a","window":"6 hours"}`, `window: "6 hours" is not a duration`},
		{"bad horizon", `{"id":"a","horizon":"3d"}`, `horizon: "3d" is not a duration`},
		{"wrong type", `{"id":"a","threshold":"80"}`, `threshold: string is not a JSON float64`},
		{"two objects", `{"id":"a"} {"id":"b"}`, `invalid JSON: data after the rule object`},
		{"trailing garbage", `{"id":"a"}]`, `invalid JSON`},
		{"empty", ``, `invalid JSON: empty body`},
		{"not an object", `[1]`, `invalid JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := health.DecodeRule([]byte(tt.in))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("DecodeRule(%s) = %v, want an error starting with %q", tt.in, err, tt.want)
			}
			if !errors.Is(err, health.ErrInvalid) {
				t.Errorf("DecodeRule(%s) = %v, does not wrap ErrInvalid", tt.in, err)
			}
		})
	}
}

func TestDefaultRules(t *testing.T) {
	byID := map[string]health.Rule{}
	for _, r := range health.DefaultRules() {
		byID[r.ID] = r
	}
	for id, want := range map[string]struct {
		metric    string
		op        string
		threshold float64
		margin    float64
		dur       time.Duration
		severity  string
		enabled   bool
	}{
		"cpu_temperature": {"temperature_celsius", ">", 80, 5, 2 * time.Minute, health.SeverityCritical, true},
		"disk_full":       {"filesystem_used_ratio", ">", 0.9, 0.02, 5 * time.Minute, health.SeverityWarning, true},
		"memory_high":     {"memory_used_ratio", ">", 0.9, 0.05, 5 * time.Minute, health.SeverityWarning, true},
		"no_data":         {"", "", 0, 0, 5 * time.Minute, health.SeverityCritical, true},
	} {
		r, ok := byID[id]
		if !ok {
			t.Errorf("DefaultRules has no %s", id)
			continue
		}
		if r.Metric != want.metric || r.Op != want.op || r.Threshold != want.threshold || r.ResolveMargin != want.margin ||
			r.For != want.dur || r.Severity != want.severity || r.Enabled != want.enabled {
			t.Errorf("default %s = %+v, want %+v", id, r, want)
		}
	}
	if r := byID["no_data"]; r.Kind != health.KindAbsence {
		t.Errorf("no_data kind = %q, want absence", r.Kind)
	}
	r := byID["disk_filling"]
	if r.Kind != health.KindTrend || r.Metric != "filesystem_used_ratio" || r.Op != ">" || r.Threshold != 0.9 ||
		r.Window != 6*time.Hour || r.Horizon != 72*time.Hour || !r.Enabled {
		t.Errorf("disk_filling = %+v, want an enabled trend of filesystem_used_ratio past 0.9 within 72h over 6h", r)
	}
}
