package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name string
		p    Payload
		want string // "" for valid
	}{
		{"valid", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h, Content: json.RawMessage(`{"a":1}`)}}}, ""},
		{"empty", &Config{}, ""},
		{"bad kind", &Config{Configs: map[string]ConfigDoc{"Agent": {Hash: h, Content: json.RawMessage(`{}`)}}}, "configs"},
		{"short hash", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: "ab", Content: json.RawMessage(`{}`)}}}, "configs.agent.hash"},
		{"upper-case hash", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: strings.ToUpper(h), Content: json.RawMessage(`{}`)}}}, "configs.agent.hash"},
		{"array content", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h, Content: json.RawMessage(`[1]`)}}}, "configs.agent.content"},
		{"no content", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h}}}, "configs.agent.content"},
		{"content with spaces", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h, Content: json.RawMessage(`{"a": 1}`)}}}, "configs.agent.content"},
		{"content with a raw ampersand", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h, Content: json.RawMessage(`{"a":"&"}`)}}}, "configs.agent.content"},
		{"content escaped as encoding/json does", &Config{Configs: map[string]ConfigDoc{"agent": {Hash: h, Content: json.RawMessage(`{"a":"\u0026"}`)}}}, ""},
		{"applied", &ConfigStatus{Kind: "agent", Hash: h, State: ConfigApplied}, ""},
		{"rejected with a reason", &ConfigStatus{Kind: "agent", Hash: h, State: ConfigRejected, Reason: "sample_interval: too short"}, ""},
		{"rejected without a reason", &ConfigStatus{Kind: "agent", Hash: h, State: ConfigRejected}, "reason"},
		{"unknown state", &ConfigStatus{Kind: "agent", Hash: h, State: "done"}, "state"},
		{"control character in the reason", &ConfigStatus{Kind: "agent", Hash: h, State: ConfigReverted, Reason: "lost\nthe hub"}, "reason"},
	} {
		err := tt.p.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want an error about %s", tt.name, err, tt.want)
		}
	}
	// A device may publish its status, never the hub's config.
	if _, k, err := ParseDeviceTopic(DeviceTopic("d1", KindConfigStatus)); err != nil || k != KindConfigStatus || k.Type() != TypeConfigStatus {
		t.Errorf("config_status topic: %v %v", k, err)
	}
	if _, _, err := ParseDeviceTopic(DeviceTopic("d1", KindConfig)); err == nil {
		t.Error("ParseDeviceTopic accepts the config topic, which only the hub publishes")
	}
}
