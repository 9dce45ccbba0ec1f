package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var t0 = time.Date(2026, 11, 27, 6, 30, 0, 0, time.UTC)

// golden lists one message of every type, with fixed IDs and times.
var golden = map[string]Message{
	"register": {ID: "0123456789abcdef0123456789abcdef", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Register{
		Name: "kitchen-pi", AgentVersion: "v0.1.0", HeartbeatMS: 10000,
		Facts: Facts{Hostname: "kitchen-pi", OS: "linux", Platform: "debian 12.8", Kernel: "6.6.51+rpt-rpi-v8", Arch: "arm64",
			CPUModel: "Cortex-A72", CPUCores: 4, MemoryBytes: 4 << 30, BootTime: t0.Add(-72 * time.Hour)},
	}},
	"status_online":  {ID: "11111111111111111111111111111111", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Status{State: StateOnline, Reason: ReasonStartup, Session: "5f1c0a9e2b7d4c38"}},
	"status_offline": {ID: "22222222222222222222222222222222", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Status{State: StateOffline, Reason: ReasonShutdown}},
	"status_lost":    {ID: "33333333333333333333333333333333", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Status{State: StateOffline, Reason: ReasonLost, Session: "5f1c0a9e2b7d4c38"}},
	"heartbeat":      {ID: "44444444444444444444444444444444", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Heartbeat{Seq: 42, UptimeS: 420}},
	"hub_status":     {ID: "55555555555555555555555555555555", Time: t0, Source: "hub-3f9a", Payload: &HubStatus{State: StateOnline}},
	"metrics": {ID: "66666666666666666666666666666666", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Metrics{
		Epoch: "e7c1d2a9b3f40516", Seq: 1042, Dropped: 3, Time: t0.Add(-time.Second), Points: []Point{
			{Name: "cpu_usage_ratio", Labels: map[string]string{"cpu": "total"}, Value: 0.125},
			{Name: "memory_used_bytes", Value: 1.5e9},
			{Name: "filesystem_used_ratio", Labels: map[string]string{"mount": "/", "device": "mmcblk0p2"}, Value: 0.42},
		}}},
	"hub_event": {ID: "88888888888888888888888888888888", Time: t0, Source: "hub-3f9a", Payload: &HubEvent{ID: 17, Event: "alert_fired", Device: "dk7q2m4x9p3r5t8v",
		Data: map[string]any{"rule": "disk", "summary": "disk / on kitchen-pi is 95% full: clear logs or enlarge the card"}}},
	"command": {ID: "99999999999999999999999999999999", Time: t0, Source: "hub-3f9a", Payload: &Command{ID: "c0ffee0000000001", Action: ActionGPIOWrite,
		Params: CommandParams{Line: "relay_kitchen", Level: ptr(true)}, Deadline: t0.Add(5 * time.Second)}},
	"command_result": {ID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &CommandResult{ID: "c0ffee0000000002", Status: ResultOK,
		Values: map[string]float64{"temperature_celsius": 21.5, "humidity_ratio": 0.48}}},
	"device_event": {ID: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &DeviceEvent{Event: EventGPIOEdge, Line: "GPIO27", Level: ptr(false), Time: t0}},
	"register_hardware": {ID: "cccccccccccccccccccccccccccccccc", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &Register{
		Name: "garage-pi", AgentVersion: "v0.1.0", HeartbeatMS: 10000,
		Facts: Facts{Hostname: "garage-pi", OS: "linux", Kernel: "6.6.51", Arch: "arm/v6", CPUCores: 1, MemoryBytes: 512 << 20, BootTime: t0.Add(-time.Hour)},
		Hardware: &Hardware{Backend: "periph", Model: "Raspberry Pi Zero W Rev 1.1",
			Lines: []HardwareLine{{Name: "GPIO17", Alias: "relay_garage", Direction: DirOut}, {Name: "GPIO18", PWM: true}, {Name: "GPIO27", Alias: "door", Direction: DirIn}},
			I2C:   []string{"1"}, OneWire: []string{"w1_bus_master1"},
			Sensors: []HardwareSensor{{Name: "temp_garage", Kind: SensorDS18B20, Bus: "w1_bus_master1", Device: "28-0000075a3b0c"},
				{Name: "climate", Kind: SensorBME280, Bus: "1", Address: 0x76}}},
	}},
	"config": {ID: "dddddddddddddddddddddddddddddddd", Time: t0, Source: "hub-3f9a", Payload: &Config{Configs: map[string]ConfigDoc{
		"agent": {Hash: "6a1f4d6e3b1c0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e", Content: json.RawMessage(`{"log_level":"debug","sample_interval":"30s"}`)},
	}}},
	"config_status": {ID: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &ConfigStatus{Kind: "agent",
		Hash: "6a1f4d6e3b1c0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e", State: ConfigApplied}},
	"job_run": {ID: "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", Time: t0, Source: "dk7q2m4x9p3r5t8v", Payload: &JobRun{Epoch: "e7c1d2a9b3f40516", Seq: 3,
		Job: "morning-relay", Version: 2, Run: "morning-relay.1795761000", Scheduled: t0, Started: t0, Ended: t0.Add(20 * time.Millisecond),
		Cause: "schedule", Status: JobRunOK, Attempts: 1, Result: "ok"}},
	"job_ack":     {ID: "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1", Time: t0, Source: "hub-3f9a", Payload: &JobAck{Epoch: "e7c1d2a9b3f40516", Seqs: []uint64{3}}},
	"metrics_ack": {ID: "77777777777777777777777777777777", Time: t0, Source: "hub-3f9a", Payload: &MetricsAck{Epoch: "e7c1d2a9b3f40516", Seqs: []uint64{1041, 1042}}},
}

func ptr[T any](v T) *T { return &v }

func TestGolden(t *testing.T) {
	for name, m := range golden {
		t.Run(name, func(t *testing.T) {
			got, err := EncodeMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, bytes.TrimSpace(want)) {
				t.Errorf("encoding changed:\n got %s\nwant %s", got, want)
			}
			dec, err := Decode(want)
			if err != nil {
				t.Fatalf("decode golden: %v", err)
			}
			if diff := cmp.Diff(&m, dec); diff != "" {
				t.Errorf("decode(golden) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEveryTypeHasGolden(t *testing.T) {
	seen := map[Type]bool{}
	for _, m := range golden {
		seen[m.Payload.MessageType()] = true
	}
	for typ := range maxSize {
		if !seen[typ] {
			t.Errorf("message type %q has no golden file", typ)
		}
		if newPayload(typ) == nil {
			t.Errorf("message type %q has a size limit but no payload", typ)
		}
	}
}

// metricsWith replaces the points of the golden metrics message.
func metricsWith(t *testing.T, golden, points string) string {
	t.Helper()
	i := strings.Index(golden, `"points":`)
	j := strings.LastIndex(golden, "]")
	if i < 0 || j < i {
		t.Fatalf("golden metrics message has no points: %s", golden)
	}
	return golden[:i] + `"points":` + points + golden[j+1:]
}

// withID replaces the ID of the golden heartbeat message.
func withID(t *testing.T, golden, id string) string {
	t.Helper()
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(golden, `"id":"44444444444444444444444444444444"`, `"id":`+string(b), 1)
}

func TestDecodeRejects(t *testing.T) {
	valid := func(t *testing.T, name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, tc := range []struct {
		name      string
		in        func(t *testing.T) string
		wantField string
		wantText  string
	}{
		{"empty", func(*testing.T) string { return "" }, "", "empty message"},
		{"not json", func(*testing.T) string { return "hello" }, "", "invalid character"},
		{"array", func(*testing.T) string { return "[]" }, "", "cannot unmarshal array"},
		{"trailing", func(t *testing.T) string { return valid(t, "heartbeat") + "{}" }, "", "trailing data"},
		{"unknown envelope field", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"v":1`, `"v":1,"extra":true`, 1)
		}, "", `unknown field "extra"`},
		{"wrong version", func(t *testing.T) string { return strings.Replace(valid(t, "heartbeat"), `"v":1`, `"v":2`, 1) }, "v", "protocol version 2"},
		{"missing id", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"id":"44444444444444444444444444444444"`, `"id":""`, 1)
		}, "id", "empty"},
		{"id with a slash", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "a/b") }, "id", `byte 1 is '/'`},
		{"id with a plus", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "a+b") }, "id", `byte 1 is '+'`},
		{"id a hash", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "#") }, "id", `byte 0 is '#'`},
		{"id with a control character", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "a\x01") }, "id", `byte 1 is '\x01'`},
		{"id with a space", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "a b") }, "id", `byte 1 is ' '`},
		{"id not ASCII", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "é") }, "id", "byte 0"},
		{"id starting with a dash", func(t *testing.T) string { return withID(t, valid(t, "heartbeat"), "-a") }, "id", "must not start"},
		{"id over 64 bytes", func(t *testing.T) string {
			return withID(t, valid(t, "heartbeat"), strings.Repeat("x", MaxIDLen+1))
		}, "id", "longer than 64"},
		{"bad source", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"source":"dk7q2m4x9p3r5t8v"`, `"source":"a/#"`, 1)
		}, "source", "invalid id"},
		{"unknown type", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"type":"heartbeat"`, `"type":"nope"`, 1)
		}, "type", `unknown message type "nope"`},
		{"null payload", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"payload":{"seq":42,"uptime_s":420}`, `"payload":null`, 1)
		}, "payload", "required"},
		{"payload wrong type", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"seq":42`, `"seq":"x"`, 1)
		}, "payload.seq", "cannot unmarshal"},
		{"payload unknown field", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"seq":42`, `"seq":42,"evil":1`, 1)
		}, "payload", `unknown field "evil"`},
		{"payload invalid", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"seq":42`, `"seq":0`, 1)
		}, "payload.seq", "at least 1"},
		{"nested invalid", func(t *testing.T) string {
			return strings.Replace(valid(t, "register"), `"hostname":"kitchen-pi"`, `"hostname":""`, 1)
		}, "payload.facts.hostname", "required"},
		{"control char", func(t *testing.T) string {
			return strings.Replace(valid(t, "register"), `"name":"kitchen-pi"`, `"name":"kitchen\u0000pi"`, 1)
		}, "payload.name", "control character"},
		{"bad state", func(t *testing.T) string {
			return strings.Replace(valid(t, "status_online"), `"state":"online"`, `"state":"meh"`, 1)
		}, "payload.state", `"meh" is not`},
		{"bad session", func(t *testing.T) string {
			return strings.Replace(valid(t, "status_lost"), `"session":"5f1c0a9e2b7d4c38"`, `"session":"a/b"`, 1)
		}, "payload.session", "invalid id"},
		{"metrics without points", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[]`)
		}, "payload.points", "at least one point"},
		{"metric name with a dash", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[{"name":"cpu-usage","value":1}]`)
		}, "payload.points[0].name", "not allowed"},
		{"metric name starting with a digit", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[{"name":"ok","value":1},{"name":"9lives","value":1}]`)
		}, "payload.points[1].name", "not allowed"},
		{"reserved label", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[{"name":"x","labels":{"__name__":"y"},"value":1}]`)
		}, "payload.points[0].labels", "reserved"},
		{"label value with a control character", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[{"name":"x","labels":{"mount":"/a\u0001"},"value":1}]`)
		}, "payload.points[0].labels.mount", "control character"},
		{"value not a number", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), `[{"name":"x","value":"NaN"}]`)
		}, "payload.points.value", "cannot unmarshal"},
		{"too many points", func(t *testing.T) string {
			return metricsWith(t, valid(t, "metrics"), "["+strings.Repeat(`{"name":"x","value":1},`, MaxPoints)+`{"name":"x","value":1}]`)
		}, "payload.points", "limit 2048"},
		{"seq zero", func(t *testing.T) string {
			return strings.Replace(valid(t, "metrics"), `"seq":1042`, `"seq":0`, 1)
		}, "payload.seq", "at least 1"},
		{"bad epoch", func(t *testing.T) string {
			return strings.Replace(valid(t, "metrics"), `"epoch":"e7c1d2a9b3f40516"`, `"epoch":"a/b"`, 1)
		}, "payload.epoch", "not allowed"},
		{"event data not an object", func(t *testing.T) string {
			m := valid(t, "hub_event")
			return m[:strings.Index(m, `"data":`)] + `"data":["x"]}}`
		}, "payload.data", "cannot unmarshal array"},
		{"ack without seqs", func(t *testing.T) string {
			return strings.Replace(valid(t, "metrics_ack"), `"seqs":[1041,1042]`, `"seqs":[]`, 1)
		}, "payload.seqs", "want 1 to"},
		{"oversize", func(*testing.T) string { return `{"pad":"` + strings.Repeat("x", MaxMessageSize) + `"}` }, "", "too large"},
		{"oversize for type", func(t *testing.T) string {
			return strings.Replace(valid(t, "heartbeat"), `"v":1`, `"v":1`+strings.Repeat(" ", 5000), 1)
		}, "", "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in(t)))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode error = %v, want a *DecodeError", err)
			}
			if de.Field != tc.wantField {
				t.Errorf("Field = %q, want %q (err: %v)", de.Field, tc.wantField, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestDecodeAsWrongType(t *testing.T) {
	b, err := Encode("dev1", t0, &Heartbeat{Seq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeAs[*Register](b); err == nil || !strings.Contains(err.Error(), `got "heartbeat", want "register"`) {
		t.Fatalf("DecodeAs[*Register](heartbeat) error = %v", err)
	}
	_, hb, err := DecodeAs[*Heartbeat](b)
	if err != nil || hb.Seq != 1 {
		t.Fatalf("DecodeAs[*Heartbeat] = %+v, %v", hb, err)
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	if _, err := Encode("dev1", t0, &Status{State: "up"}); err == nil {
		t.Error("Encode accepted an invalid status")
	}
	if _, err := Encode("bad/id", t0, &Heartbeat{Seq: 1}); err == nil {
		t.Error("Encode accepted an invalid source")
	}
	if _, err := EncodeMessage(Message{ID: "a/b", Time: t0, Source: "dev1", Payload: &Heartbeat{Seq: 1}}); err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("EncodeMessage with ID a/b: %v, want an error naming the id", err)
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "dk7q2m4x9p3r5t8v", "hub-3f9a", "A.b_c-1", strings.Repeat("x", MaxIDLen)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "+", "#", "a/b", "a+b", "a#", "$SYS", "a b", "a\x00b", "a\nb", "-a", ".a", "é", strings.Repeat("x", MaxIDLen+1)} {
		if err := ValidateID(bad); err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", bad)
		}
	}
}

func TestTopics(t *testing.T) {
	if got, want := DeviceTopic("dev1", KindStatus), "alicia/v1/devices/dev1/status"; got != want {
		t.Errorf("DeviceTopic = %q, want %q", got, want)
	}
	if got, want := AllDevices(KindHeartbeat), "alicia/v1/devices/+/heartbeat"; got != want {
		t.Errorf("AllDevices = %q, want %q", got, want)
	}
	if got, want := DeviceSubtree("dev1"), "alicia/v1/devices/dev1/#"; got != want {
		t.Errorf("DeviceSubtree = %q, want %q", got, want)
	}
	id, kind, err := ParseDeviceTopic("alicia/v1/devices/dev1/register")
	if err != nil || id != "dev1" || kind != KindRegister {
		t.Errorf("ParseDeviceTopic = %q, %q, %v", id, kind, err)
	}
	for _, bad := range []string{"alicia/v2/devices/dev1/register", "alicia/v1/devices/dev1", "alicia/v1/devices/dev1/register/x",
		"alicia/v1/devices/+/register", "alicia/v1/devices//register", "alicia/v1/devices/dev1/unknown"} {
		if _, _, err := ParseDeviceTopic(bad); err == nil {
			t.Errorf("ParseDeviceTopic(%q) = nil error", bad)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("DeviceTopic with an invalid id did not panic")
		}
	}()
	DeviceTopic("a/b", KindStatus)
}

// FuzzDecode checks that no input makes Decode panic, and that whatever it
// accepts re-encodes to a message that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		out, err := EncodeMessage(*m)
		if err != nil {
			t.Fatalf("accepted message does not re-encode: %v", err)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		// An empty map and none are the same message (omitempty drops it).
		if diff := cmp.Diff(m, m2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip changed the message:\n%s", diff)
		}
	})
}

func TestIntegrationTopics(t *testing.T) {
	if got, want := IntegrationTopic("power", KindAck), "alicia/v1/integrations/power/ack"; got != want {
		t.Errorf("IntegrationTopic = %q, want %q", got, want)
	}
	if got, want := AllIntegrations(KindMetrics), "alicia/v1/integrations/+/metrics"; got != want {
		t.Errorf("AllIntegrations = %q, want %q", got, want)
	}
	name, kind, err := ParseIntegrationTopic("alicia/v1/integrations/power/metrics")
	if err != nil || name != "power" || kind != KindMetrics {
		t.Errorf("ParseIntegrationTopic = %q, %q, %v", name, kind, err)
	}
	for _, bad := range []string{"alicia/v1/devices/d1/metrics", "alicia/v1/integrations/power", "alicia/v1/integrations/power/metrics/x",
		"alicia/v1/integrations/+/metrics", "alicia/v1/integrations//metrics", "alicia/v1/integrations/power/ack", "alicia/v1/integrations/power/status"} {
		if _, _, err := ParseIntegrationTopic(bad); err == nil {
			t.Errorf("ParseIntegrationTopic(%q) = nil error", bad)
		}
	}
}
