package sample

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNamesListsEveryCollectorMetric: every name a collector adds (b.add
// in the package's source) is a host metric, so that no custom metric
// can take it.
func TestNamesListsEveryCollectorMetric(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`b\.add\("([a-zA-Z0-9_]+)"`)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			found++
			if !IsHostMetric(m[1]) {
				t.Errorf("%s adds %s, which names does not list", f, m[1])
			}
		}
	}
	if found < 30 {
		t.Errorf("found %d metrics in the source; the pattern lost some", found)
	}
	if IsHostMetric("boiler_temperature_celsius") {
		t.Error("boiler_temperature_celsius is a host metric")
	}
}
