package textfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "textfile") // created by Write
	m := Metric{Name: "boiler_temperature_celsius", Labels: map[string]string{"circuit": `a "b" \ c`}, Value: 61.5, Help: `Outlet \ temperature.`, HASensor: true}
	path, err := Write(dir, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != dir || !strings.HasPrefix(filepath.Base(path), "push-boiler_temperature_celsius-") || !strings.HasSuffix(path, ".prom") {
		t.Errorf("path %s", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP boiler_temperature_celsius Outlet \\ temperature.
# TYPE boiler_temperature_celsius gauge
boiler_temperature_celsius{circuit="a \"b\" \\ c",ha="sensor"} 61.5
`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (the agent runs as another user)", fi.Mode().Perm())
	}

	// A new value replaces the file; a counter and the same name with
	// other labels get files of their own; no temporary file is left.
	m.Value = 62
	if p2, err := Write(dir, m, nil); err != nil || p2 != path {
		t.Fatalf("Write again: %s, %v; want %s", p2, err, path)
	}
	if _, err := Write(dir, Metric{Name: "boiler_starts_total", Value: 3}, nil); err != nil {
		t.Fatal(err)
	}
	m.Labels = map[string]string{"circuit": "hot water"}
	if _, err := Write(dir, m, nil); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 3 || names[0] != "push-boiler_starts_total.prom" {
		t.Errorf("files %v, want the counter's and two series' files, nothing else", names)
	}
	c, _ := New(Config{Dir: dir})
	got := c.Collect()
	wantPts := []protocol.Point{
		{Name: "boiler_starts_total", Value: 3},
		{Name: "boiler_temperature_celsius", Labels: map[string]string{"circuit": `a "b" \ c`, "ha": "sensor"}, Value: 62},
		{Name: "boiler_temperature_celsius", Labels: map[string]string{"circuit": "hot water", "ha": "sensor"}, Value: 62},
	}
	// The two series' files sort by their hash: compare as a set.
	if len(got) == 3 && got[1].Labels["circuit"] == "hot water" {
		got[1], got[2] = got[2], got[1]
	}
	if diff := cmp.Diff(wantPts, got); diff != "" {
		t.Errorf("collected (-want +got):\n%s", diff)
	}
}

func TestWriteRefuses(t *testing.T) {
	reserved := func(n string) bool { return n == "cpu_usage_ratio" }
	for _, tc := range []struct {
		name string
		m    Metric
		want string
	}{
		{"colon", Metric{Name: "a:b"}, `metric name "a:b": ':' is kept`},
		{"bad name", Metric{Name: "boiler-temp"}, `metric name "boiler-temp": byte 6 ('-') not allowed`},
		{"host name", Metric{Name: "cpu_usage_ratio"}, `metric name "cpu_usage_ratio": the agent's own`},
		{"agent prefix", Metric{Name: "agent_outbox_batches"}, `metric name "agent_outbox_batches": the agent's own`},
		{"counter without _total", Metric{Name: "boiler_starts", Type: TypeCounter}, "metric boiler_starts (counter): a counter's name ends in _total"},
		{"gauge with _total", Metric{Name: "boiler_starts_total", Type: TypeGauge}, "metric boiler_starts_total (gauge): a gauge's name does not end in _total"},
		{"unknown type", Metric{Name: "x", Type: "summary"}, `type "summary": want gauge or counter`},
		{"label name", Metric{Name: "x", Labels: map[string]string{"1a": "b"}}, `label name "1a"`},
		{"label value", Metric{Name: "x", Labels: map[string]string{"a": "b\tc"}}, "label a: control character"},
		{"ha label", Metric{Name: "x", Labels: map[string]string{"ha": "switch"}, HASensor: true}, `label ha="switch"`},
		{"two-line help", Metric{Name: "x", Help: "a\nb"}, "help text: one line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Write(dir, tc.m, reserved)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("files left: %v", entries)
			}
		})
	}
}
