package textfile

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCollect(t *testing.T) {
	host := map[string]bool{"cpu_usage_ratio": true, "temperature_celsius": true}
	for _, tc := range []struct {
		name  string
		files map[string]string
		cfg   Config
		want  []protocol.Point
		logs  []string // substrings of the log, one line each
	}{
		{
			name:  "two files",
			files: map[string]string{"a.prom": "boiler_temperature_celsius 61.5\n", "b.prom": "# TYPE boiler_starts_total counter\nboiler_starts_total 3\n"},
			want:  []protocol.Point{{Name: "boiler_temperature_celsius", Value: 61.5}, {Name: "boiler_starts_total", Value: 3}},
		},
		{
			name:  "other files left alone",
			files: map[string]string{"a.prom.tmp-123": "x 1\n", ".hidden.prom": "y 1\n", "notes.txt": "z 1\n", "c.prom": "c_value 1\n"},
			want:  []protocol.Point{{Name: "c_value", Value: 1}},
		},
		{
			name: "host and hub names refused",
			files: map[string]string{"a.prom": `cpu_usage_ratio{cpu="total"} 0.99
temperature_celsius{sensor="cpu"} 20
agent_goroutines 1
alicia_device_up 0
go_goroutines 1
process_cpu_seconds_total 1
promhttp_metric_handler_requests_total 1
cpu_usage_ratio_custom 0.5
`},
			want: []protocol.Point{{Name: "cpu_usage_ratio_custom", Value: 0.5}},
			logs: []string{"a.prom:1: cpu_usage_ratio: the name is the agent's own", "a.prom:2: temperature_celsius", "a.prom:3: agent_goroutines", "a.prom:4: alicia_device_up",
				"a.prom:5: go_goroutines", "a.prom:6: process_cpu_seconds_total", "a.prom:7: promhttp_metric_handler_requests_total"},
		},
		{
			name:  "a series in two files: the first kept",
			files: map[string]string{"a.prom": `x_value{k="v"} 1` + "\n", "b.prom": `x_value{k="v"} 2` + "\n" + `x_value{k="w"} 3` + "\n"},
			want:  []protocol.Point{{Name: "x_value", Labels: map[string]string{"k": "v"}, Value: 1}, {Name: "x_value", Labels: map[string]string{"k": "w"}, Value: 3}},
			logs:  []string{`b.prom:1: x_value{k="v"}: also in a.prom, whose sample is kept`},
		},
		{
			name:  "bad lines logged with file and line, good ones kept",
			files: map[string]string{"a.prom": "ok_value 1\nbad:name 2\nnan_value NaN\n"},
			want:  []protocol.Point{{Name: "ok_value", Value: 1}},
			logs:  []string{`a.prom:2: metric name "bad:name"`, "a.prom:3: nan_value: value NaN"},
		},
		{
			name:  "points bounded",
			files: map[string]string{"a.prom": "p1 1\np2 2\np3 3\n", "b.prom": "p4 4\n"},
			cfg:   Config{MaxPoints: 2},
			want:  []protocol.Point{{Name: "p1", Value: 1}, {Name: "p2", Value: 2}},
			logs:  []string{"more than 2 custom points; a.prom:3 and what follows are left out"},
		},
		{
			name:  "files bounded",
			files: map[string]string{"a.prom": "p1 1\n", "b.prom": "p2 2\n", "c.prom": "p3 3\n"},
			cfg:   Config{MaxFiles: 2},
			want:  []protocol.Point{{Name: "p1", Value: 1}, {Name: "p2", Value: 2}},
			logs:  []string{"3 .prom files in", "limit 2; read the first 2 in name order"},
		},
		{
			name:  "file size bounded",
			files: map[string]string{"a.prom": "p1 1\n" + strings.Repeat("# padding\n", 10), "b.prom": "p2 2\n"},
			cfg:   Config{MaxFileBytes: 50},
			want:  []protocol.Point{{Name: "p2", Value: 2}},
			logs:  []string{"a.prom: larger than 50 bytes; left out"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			var logBuf bytes.Buffer
			cfg := tc.cfg
			cfg.Dir, cfg.Logger = dir, slog.New(slog.NewTextHandler(&logBuf, nil))
			cfg.Reserved = func(n string) bool { return host[n] }
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Collect()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("points (-want +got):\n%s", diff)
			}
			logs := strings.ReplaceAll(logBuf.String(), `\"`, `"`) // the text handler quotes the error
			for _, w := range tc.logs {
				if !strings.Contains(logs, w) {
					t.Errorf("log lacks %q:\n%s", w, logs)
				}
			}
			if len(tc.logs) == 0 && logs != "" {
				t.Errorf("unexpected log:\n%s", logs)
			}
		})
	}
}

func TestCollectMissingDir(t *testing.T) {
	var logBuf bytes.Buffer
	c, err := New(Config{Dir: filepath.Join(t.TempDir(), "none"), Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Collect(); len(got) != 0 {
		t.Errorf("points %v from a missing directory", got)
	}
	if logBuf.Len() != 0 {
		t.Errorf("a missing directory is logged: %s", &logBuf)
	}
}

// TestCollectSkipsFIFO: a FIFO named *.prom is refused, not waited on (a
// blocking open would stall every collection).
func TestCollectSkipsFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "a.prom"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	writeFiles(t, dir, map[string]string{"b.prom": "p 1\n"})
	var logBuf bytes.Buffer
	c, _ := New(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	done := make(chan []protocol.Point)
	go func() { done <- c.Collect() }()
	select {
	case got := <-done:
		if diff := cmp.Diff([]protocol.Point{{Name: "p", Value: 1}}, got); diff != "" {
			t.Errorf("points (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Collect blocked on a FIFO")
	}
	if !strings.Contains(logBuf.String(), "a.prom: not a regular file") {
		t.Errorf("log lacks the FIFO:\n%s", &logBuf)
	}
}

// TestCollectThrottlesLogs: a persisting problem is logged once per 10
// minutes, not at every collection.
func TestCollectThrottlesLogs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.prom": "bad:name 1\n"})
	var logBuf bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	c, _ := New(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logBuf, nil)), Now: func() time.Time { return now }})
	for range 5 {
		c.Collect()
		now = now.Add(10 * time.Second)
	}
	if n := strings.Count(logBuf.String(), "a.prom:1:"); n != 1 {
		t.Errorf("logged %d times in 50 s, want once:\n%s", n, &logBuf)
	}
	now = now.Add(10 * time.Minute)
	c.Collect()
	if n := strings.Count(logBuf.String(), "a.prom:1:"); n != 2 {
		t.Errorf("logged %d times after 10 minutes more, want twice", n)
	}
}
