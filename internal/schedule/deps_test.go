package schedule

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: the package goes into the agent (10 MB size target),
// so it uses the standard library and the cron field parser, nothing else.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/alicia-home/alicia/internal/schedule": true,
		"github.com/robfig/cron/v3":                       true,
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list listed nothing: output not understood")
	}
	for _, d := range deps {
		if !allowed[d] {
			t.Errorf("depends on %s: only the standard library and robfig/cron/v3 are allowed", d)
		}
	}
}
