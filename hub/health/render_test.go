package health

import (
	"testing"
	"time"
)

func TestRenderSuggestion(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rule.Suggestion != "" {
				if err := validateSuggestion(tt.rule.Suggestion); err != nil {
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
