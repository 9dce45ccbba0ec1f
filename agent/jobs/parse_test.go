package jobs

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const relay = `"action": "gpio.write", "params": {"line": "relay", "level": true}`
	for _, tc := range []struct {
		name    string
		content string
		hw      bool
		want    string // "" accepts
	}{
		{"empty", `{}`, true, ""},
		{"no jobs", `{"jobs": []}`, false, ""},
		{"a relay job", `{"jobs": [{"id": "morning", "version": 2, "trigger": {"cron": "30 6 * * *", "zone": "Europe/Berlin"}, ` + relay + `}]}`, true, ""},
		{"by line name", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.write", "params": {"line": "GPIO17", "level": false}}]}`, true, ""},
		{"sun with where", `{"jobs": [{"id": "dusk", "trigger": {"sun": {"event": "sunset"}, "zone": "Europe/Berlin"}, "where": [52.5, 13.4], ` + relay + `}]}`, true, ""},
		{"unknown line", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.write", "params": {"line": "GPIO5", "level": true}}]}`, true,
			`job "a": params.line: "GPIO5" is not a line of this device (it has GPIO17 (relay), GPIO27)`},
		{"write to an input", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.write", "params": {"line": "GPIO27", "level": true}}]}`, true,
			`"GPIO27" (GPIO27) is an input`},
		{"no hardware", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, ` + relay + `}]}`, false, "this agent runs without hardware"},
		{"invalid trigger", `{"jobs": [{"id": "a", "trigger": {"cron": "61 * * * *", "zone": "UTC"}, ` + relay + `}]}`, true, `job "a": trigger: cron "61 * * * *"`},
		{"unknown trigger field", `{"jobs": [{"id": "a", "trigger": {"cron": "* * * * *", "zone": "UTC", "tz": "x"}, ` + relay + `}]}`, true, `job "a": trigger:`},
		{"sun without where", `{"jobs": [{"id": "dusk", "trigger": {"sun": {"event": "sunset"}, "zone": "Europe/Berlin"}, ` + relay + `}]}`, true,
			"a sun trigger needs where"},
		{"bad params", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.write", "params": {"line": "relay"}}]}`, true, "params.level"},
		{"restart", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "agent.restart", "params": {}}]}`, true, "agent.restart is not"},
		{"bad id", `{"jobs": [{"id": "Morning", "trigger": {"every": "1m"}, ` + relay + `}]}`, true, `id "Morning"`},
		{"no id", `{"jobs": [{"trigger": {"every": "1m"}, ` + relay + `}]}`, true, `jobs[0]: id ""`},
		{"twice", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, ` + relay + `}, {"id": "a", "trigger": {"every": "2m"}, ` + relay + `}]}`, true, `job "a": the ID appears twice`},
		{"bad policy", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "missed": "later", ` + relay + `}]}`, true, `missed "later"`},
		{"bad limit", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "missed_limit": 101, ` + relay + `}]}`, true, "missed_limit 101"},
		{"bad grace", `{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "grace_s": -5, ` + relay + `}]}`, true, "grace_s -5"},
		{"unknown field", `{"jobs": [], "paused": true}`, true, `unknown field "paused"`},
		{"not an object", `[1]`, true, "not a schedule"},
		{"trailing data", `{} {}`, true, "data after the object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hw
			if !tc.hw {
				h = nil
			}
			s, err := Parse([]byte(tc.content), h)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, %v; want an error containing %q", s, err, tc.want)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse([]byte(`{"jobs": [{"id": "a", "trigger": {"every": "1m"}, "action": "gpio.read", "params": {"line": "GPIO27"}}]}`), hw)
	if err != nil {
		t.Fatal(err)
	}
	j := s.jobs[0]
	if j.Missed != MissedRunOnce || j.MissedLimit != DefaultMissedLimit || j.grace != DefaultGrace {
		t.Errorf("defaults: missed %q, limit %d, grace %s", j.Missed, j.MissedLimit, j.grace)
	}
}
