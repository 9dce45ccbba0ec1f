package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPush(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	// Flags before and after NAME=VALUE; the directory from the environment.
	err := run(context.Background(), []string{"push", "--label", "circuit=heating", "boiler_temperature_celsius=61.5", "--ha-sensor", "--help-text", "Boiler outlet."},
		env(map[string]string{"ALICIA_TEXTFILE_DIR": dir}), &out, &errOut)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, &errOut)
	}
	path := strings.TrimSpace(out.String())
	if filepath.Dir(path) != dir {
		t.Fatalf("push wrote %q, want a file in %s", path, dir)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# HELP boiler_temperature_celsius Boiler outlet.\n# TYPE boiler_temperature_celsius gauge\nboiler_temperature_celsius{circuit=\"heating\",ha=\"sensor\"} 61.5\n"
	if string(data) != want {
		t.Errorf("file:\n%s\nwant:\n%s", data, want)
	}
	// A counter by its name; --textfile-dir wins over the environment.
	other := t.TempDir()
	out.Reset()
	if err := run(context.Background(), []string{"push", "--textfile-dir", other, "boiler_starts_total=12"}, env(map[string]string{"ALICIA_TEXTFILE_DIR": dir}), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(other, "push-boiler_starts_total.prom")); !strings.Contains(string(data), "# TYPE boiler_starts_total counter\nboiler_starts_total 12\n") {
		t.Errorf("counter file: %q", data)
	}
}

func TestPushRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"push"}, "want one NAME=VALUE, got 0 arguments"},
		{[]string{"push", "a=1", "b=2"}, "want one NAME=VALUE, got 2 arguments"},
		{[]string{"push", "boiler"}, `"boiler": want NAME=VALUE`},
		{[]string{"push", "boiler=hot"}, `boiler: value "hot": want a finite number`},
		{[]string{"push", "boiler=NaN"}, `value "NaN": want a finite number`},
		{[]string{"push", "boiler=1e999"}, `value "1e999": want a finite number`},
		{[]string{"push", "boiler-temp=1"}, `metric name "boiler-temp"`},
		{[]string{"push", "rate:5m=1"}, `':' is kept for Prometheus recording rules`},
		{[]string{"push", "cpu_usage_ratio=1"}, `metric name "cpu_usage_ratio": the agent's own`},
		{[]string{"push", "sensor_temperature_celsius=1"}, `the agent's own`},
		{[]string{"push", "gpio_level=1"}, `the agent's own`},
		{[]string{"push", "agent_x=1"}, `the agent's own`},
		{[]string{"push", "--type", "counter", "boiler_starts=1"}, "a counter's name ends in _total"},
		{[]string{"push", "--type", "histogram", "x=1"}, `type "histogram": want gauge or counter`},
		{[]string{"push", "--label", "room", "x=1"}, `"room": want name=value`},
		{[]string{"push", "--label", "a=1", "--label", "a=2", "x=1"}, "label a given twice"},
		{[]string{"push", "--label", "__x=1", "x=1"}, `the "__" prefix is reserved`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, env(map[string]string{"ALICIA_TEXTFILE_DIR": dir}), &out, &errOut)
			if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.want) {
				t.Errorf("error %v (stderr %q), want %q", err, &errOut, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("files written: %v", entries)
			}
		})
	}
}
