package textfile_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alicia-home/alicia/agent/textfile"
)

// A device's own Go program hands the agent a metric with the standard
// library alone: it writes the file next to its final name and renames it
// into place, so the agent never reads half a file. (docs/metrics.md shows
// the body of writeMetric; TestDocsShowTheExample keeps them the same.)
func Example_goProgram() {
	dir, _ := os.MkdirTemp("", "textfile") // on a device: /var/lib/alicia-agent-textfile
	defer os.RemoveAll(dir)
	if err := writeMetric(dir, 61.5); err != nil {
		fmt.Println(err)
		return
	}
	// What the agent collects from it at its next collection:
	c, _ := textfile.New(textfile.Config{Dir: dir})
	for _, p := range c.Collect() {
		fmt.Println(p.Name, p.Labels, p.Value)
	}
	// Output: boiler_temperature_celsius map[circuit:heating ha:sensor] 61.5
}

// writeMetric is the example program's function.
func writeMetric(dir string, celsius float64) error {
	// docs:begin
	body := fmt.Sprintf("# TYPE boiler_temperature_celsius gauge\n"+
		"boiler_temperature_celsius{circuit=\"heating\",ha=\"sensor\"} %g\n", celsius)
	tmp, err := os.CreateTemp(dir, ".boiler.prom.tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	if _, err := tmp.WriteString(body); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil { // the agent runs as its own user
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "boiler.prom"))
	// docs:end
}

// TestDocsShowTheExample: the Go example of docs/metrics.md is the body of
// writeMetric, which Example_goProgram runs.
func TestDocsShowTheExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "\t// docs:"+"begin\n")
	body, _, _ = strings.Cut(body, "\t// docs:"+"end\n")
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "```go\n")
	block, _, _ = strings.Cut(block, "```\n")
	block = strings.ReplaceAll(block, "\n  ", "\n") // the block is in a list item
	if !ok || body == "" || !strings.Contains(block, body) {
		t.Errorf("docs/metrics.md's go block does not hold writeMetric's body:\n%s\n--- want within it ---\n%s", block, body)
	}
}
