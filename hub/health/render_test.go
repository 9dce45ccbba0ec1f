package health

import (
	"testing"
	"time"
)

func TestRenderSuggestion(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var filling Rule
	for _, r := range DefaultRules() {
		if r.ID == "disk_filling" {
			filling = r
		}
	}
	disk := Rule{ID: "disk_full", Name: "Disk full", Kind: KindThreshold, Metric: "filesystem_used_ratio", Op: ">",
		Threshold: 0.9, For: 5 * time.Minute, Severity: SeverityWarning,
		Suggestion: "disk {label:mount} on {device_name} is {value_pct} full: clear logs or enlarge the card"}
	tests := []struct {
		name string
		rule Rule
		f    facts
		want string
	}{
		{"disk", disk, facts{device: "d1", deviceName: "garage-pi", labels: map[string]string{"mount": "/"}, value: 0.953},
			"disk / on garage-pi is 95 % full: clear logs or enlarge the card"},
		{"missing label and name", disk, facts{device: "d1", value: 0.9},
			"disk ? on d1 is 90 % full: clear logs or enlarge the card"},
		{"every placeholder", Rule{Name: "Hot", Kind: KindThreshold, Metric: "temperature_celsius", Threshold: 0.5, For: 90 * time.Second,
			Severity: SeverityCritical, Suggestion: "{device}|{device_name}|{rule}|{metric}|{value}|{value_pct}|{threshold}|{threshold_pct}|{for}|{severity}|{label:sensor}"},
			facts{device: "d1", deviceName: "pi", labels: map[string]string{"sensor": "cpu"}, value: 81.2345},
			"d1|pi|Hot|temperature_celsius|81.23|8123 %|0.5|50 %|90 seconds|critical|cpu"},
		{"substitutions are not parsed again", disk, facts{device: "d1", deviceName: "{device}", labels: map[string]string{"mount": "{value}\n"}, value: 1},
			"disk {value}  on {device} is 100 % full: clear logs or enlarge the card"},
		{"absence", DefaultRules()[len(DefaultRules())-1], facts{device: "d1", deviceName: "garage-pi", value: 400},
			"no data from garage-pi for 5 minutes: is it powered and on the network?"},
		{"absence value", Rule{Name: "Silent", Kind: KindAbsence, For: time.Hour, Suggestion: "{device_name} silent for {value} (limit {for})"},
			facts{device: "d1", deviceName: "pi", value: 3*3600 + 20},
			"pi silent for 3 hours (limit 1 hour)"},
		{"generic threshold", Rule{Name: "Hot", Kind: KindThreshold, Metric: "temperature_celsius", Op: ">", Threshold: 80, For: 2 * time.Minute},
			facts{device: "d1", deviceName: "pi", value: 85},
			"Hot: temperature_celsius on pi is 85 (> 80 for 2 minutes)"},
		{"generic absence", Rule{Name: "No data", Kind: KindAbsence, For: 5 * time.Minute},
			facts{device: "d1", deviceName: "pi", value: 75},
			"No data: no data from pi for 75 seconds"},
		{"generic trend", Rule{Name: "Filling", Kind: KindTrend, Metric: "filesystem_used_ratio", Op: ">", Threshold: 0.9,
			Window: 6 * time.Hour, Horizon: 72 * time.Hour},
			facts{device: "d1", deviceName: "pi", value: 0.8, now: now, projected: now.Add(61*time.Hour + 20*time.Minute)},
			"Filling: filesystem_used_ratio on pi reaches 0.9 in ~3 d (at 2026-03-04 01:20 UTC), at its rate of the last 6 hours"},
		{"generic rate", Rule{Name: "Heating", Kind: KindRate, Metric: "temperature_celsius", Op: "<", Threshold: -5, Window: 10 * time.Minute},
			facts{device: "d1", deviceName: "pi", value: -6.25},
			"Heating: temperature_celsius on pi changed by -6.25 in 10 minutes (< -5)"},
		{"disk filling", filling, facts{device: "d1", deviceName: "garage-pi", labels: map[string]string{"mount": "/"}, value: 0.8123,
			now: now, projected: now.Add(14*time.Hour + 10*time.Minute)},
			"disk / on garage-pi full in ~14 h (90 % at 2026-03-02 02:10 UTC, 81 % now): find what grows (du -xh / | sort -h) or enlarge the card"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rule.Suggestion != "" {
				if err := validateSuggestion(tt.rule.Suggestion, tt.rule.Kind); err != nil {
					t.Fatalf("suggestion %q: %v", tt.rule.Suggestion, err)
				}
			}
			if got := tt.rule.render(tt.f); got != tt.want {
				t.Errorf("render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDurationFormats(t *testing.T) {
	for d, want := range map[time.Duration][2]string{
		2 * time.Minute:                  {"2m", "2 minutes"},
		time.Minute:                      {"1m", "1 minute"},
		90 * time.Minute:                 {"1h30m", "90 minutes"},
		2 * time.Hour:                    {"2h", "2 hours"},
		45 * time.Second:                 {"45s", "45 seconds"},
		-time.Minute:                     {"-1m", "-1m"},
		0:                                {"0s", "0s"},
		1500 * time.Millisecond:          {"1.5s", "1.5s"},
		10*time.Minute + 30*time.Second:  {"10m30s", "10m30s"},
		168 * time.Hour:                  {"168h", "168 hours"},
		2*time.Hour + 30*time.Second + 1: {"2h0m30.000000001s", "2h0m30.000000001s"},
	} {
		if got := formatDuration(d); got != want[0] {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want[0])
		}
		if got := humanDuration(d); got != want[1] {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want[1])
		}
	}
}

func TestFormatETA(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Hour:                      "under a minute",
		30 * time.Second:                "under a minute",
		time.Minute:                     "~1 min",
		40*time.Minute + 31*time.Second: "~41 min",
		119 * time.Minute:               "~119 min",
		2 * time.Hour:                   "~2 h",
		14*time.Hour + 29*time.Minute:   "~14 h",
		47*time.Hour + 59*time.Minute:   "~48 h",
		48 * time.Hour:                  "~2 d",
		60 * time.Hour:                  "~3 d",
		59 * time.Hour:                  "~2 d",
		30 * 24 * time.Hour:             "~30 d",
	} {
		if got := formatETA(d); got != want {
			t.Errorf("formatETA(%v) = %q, want %q", d, got, want)
		}
	}
}
