package agentd

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseAgentKind(t *testing.T) {
	level := new(slog.LevelVar)
	a, err := New(Config{StateDir: t.TempDir(), SampleInterval: 10 * time.Second, HeartbeatInterval: 10 * time.Second, LogLevel: level})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		content string
		want    func(settings) bool
		err     string // "" accepted, else a part of the error
	}{
		{`{}`, func(s settings) bool {
			return s.sampleInterval == 10*time.Second && s.collectors == nil && s.brokerURL == ""
		}, ""},
		{`{"sample_interval":"1s","heartbeat":"2m","log_level":"debug"}`, func(s settings) bool {
			return s.sampleInterval == time.Second && s.heartbeat == 2*time.Minute && s.logLevel == slog.LevelDebug
		}, ""},
		{`{"collectors":["cpu","memory"]}`, func(s settings) bool { return len(s.collectors) == 2 }, ""},
		{`{"broker_url":"mqtts://hub.lan:8883"}`, func(s settings) bool { return s.brokerURL == "mqtts://hub.lan:8883" }, ""},
		{`{"broker_url":"mqtt://127.0.0.1:1883"}`, func(s settings) bool { return s.brokerURL == "mqtt://127.0.0.1:1883" }, ""},
		{`{"board":"line GPIO17 relay out\n"}`, nil, "board:"},
		{`{"board":"# nothing declared\n"}`, func(s settings) bool { return s.board != nil }, ""},
		{`{"sample_interval":"500ms"}`, nil, `sample_interval "500ms": want a duration from 1s to 60m`},
		{`{"heartbeat":"2h"}`, nil, "heartbeat"},
		{`{"collectors":[]}`, nil, "collectors: an empty list"},
		{`{"collectors":["gpu"]}`, nil, `unknown collector "gpu"`},
		{`{"log_level":"DEBUG"}`, nil, "log_level"},
		{`{"broker_url":"mqtt://hub.lan:1883"}`, nil, "plain MQTT only to this machine"},
		{`{"broker_url":"mqtts://hub.lan"}`, nil, "want mqtts://HOST:PORT"},
		{`{"broker_url":"http://hub.lan:80"}`, nil, `scheme "http"`},
		{`{"labels":{"room":"garage"}}`, nil, `unknown field "labels"`},
		{`{} {}`, nil, "data after the object"},
		{`[1]`, nil, "not an agent configuration"},
	} {
		s, err := a.parseAgentKind([]byte(tc.content))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v, want accepted", tc.content, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.content, err, tc.err)
		case tc.err == "" && !tc.want(s):
			t.Errorf("%s: settings %+v", tc.content, s)
		}
	}
}
