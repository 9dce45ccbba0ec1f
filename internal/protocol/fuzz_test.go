package protocol

import (
	"strings"
	"testing"
)

// deviceKinds are the kinds a device publishes, in a fixed order.
var deviceKinds = []Kind{KindRegister, KindStatus, KindHeartbeat, KindMetrics, KindResult, KindEvent}

// FuzzValidateID: ValidateID never panics; what it accepts is 1 to
// MaxIDLen bytes of [A-Za-z0-9._-] not starting with '.' or '-', and makes
// a topic of every kind that ParseDeviceTopic reads back.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"dkitchen2345kitchen23", "hub-1", "a", "", ".hidden", "-x", "a/b", "+", "#", "$SYS", "é", "a b",
		strings.Repeat("x", MaxIDLen), strings.Repeat("x", MaxIDLen+1), "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := ValidateID(s); err != nil {
			if !strings.HasPrefix(err.Error(), "invalid id") {
				t.Fatalf("ValidateID(%q) = %q, want an error starting with \"invalid id\"", s, err)
			}
			return
		}
		if len(s) == 0 || len(s) > MaxIDLen || s[0] == '.' || s[0] == '-' {
			t.Fatalf("ValidateID accepted %q: empty, too long or a leading '.' or '-'", s)
		}
		if i := strings.IndexFunc(s, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-')
		}); i >= 0 {
			t.Fatalf("ValidateID accepted %q, with %q at byte %d", s, s[i], i)
		}
		for _, k := range deviceKinds {
			topic := DeviceTopic(s, k)
			id, kind, err := ParseDeviceTopic(topic)
			if err != nil || id != s || kind != k {
				t.Fatalf("ParseDeviceTopic(DeviceTopic(%q, %q)) = %q, %q, %v", s, k, id, kind, err)
			}
		}
	})
}

// FuzzParseDeviceTopic: ParseDeviceTopic never panics; a topic it accepts
// has a valid ID and a kind a device publishes, and is exactly the topic
// DeviceTopic builds from them.
func FuzzParseDeviceTopic(f *testing.F) {
	for _, s := range []string{DevicesPrefix + "d1/heartbeat", DevicesPrefix + "d1/ack", DevicesPrefix + "d1/cmd", DevicesPrefix + "d1/metrics/x",
		DevicesPrefix + "+/status", DevicesPrefix + "/register", DevicesPrefix + "d1/", "alicia/v2/devices/d1/status", HubStatusTopic, "",
		DevicesPrefix + "d1/result", DevicesPrefix + "d1/event", DevicesPrefix + "d1//status"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		id, kind, err := ParseDeviceTopic(topic)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "protocol: topic ") {
				t.Fatalf("ParseDeviceTopic(%q) = %q, want an error naming the topic", topic, err)
			}
			return
		}
		if err := ValidateID(id); err != nil {
			t.Fatalf("ParseDeviceTopic(%q) accepted the ID %q: %v", topic, id, err)
		}
		if !kinds[kind] || kind == KindAck || kind == KindCommand {
			t.Fatalf("ParseDeviceTopic(%q) accepted the kind %q, which devices do not publish", topic, kind)
		}
		if got := DeviceTopic(id, kind); got != topic {
			t.Fatalf("ParseDeviceTopic(%q) = %q, %q; DeviceTopic of those is %q", topic, id, kind, got)
		}
	})
}
