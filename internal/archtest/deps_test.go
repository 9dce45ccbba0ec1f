package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/alicia-home/alicia"

// goList runs go list in the module root and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// deps returns every package the given package (and its imports) needs to
// build, test files excluded: what ends up in the binary.
func deps(t *testing.T, pkg string) []string {
	return goList(t, "-deps", "-f", "{{.ImportPath}}", pkg)
}

// rule forbids packages matching any of the prefixes in the dependencies of pkgs.
type rule struct {
	name      string
	pkgs      string // a go list pattern
	forbidden []string
}

var rules = []rule{
	{"agent binary has no broker, no badger, no hub code", "./agent", []string{
		"github.com/mochi-mqtt/", "github.com/dgraph-io/", mod + "/hub",
	}},
	{"agent packages never import hub packages", "./agent/...", []string{mod + "/hub", "github.com/mochi-mqtt/", "github.com/dgraph-io/"}},
	{"hub binary has no hardware access and no agent code", "./hub", []string{
		"periph.io/", mod + "/hal", mod + "/agent",
	}},
	{"hub packages never import agent or hal", "./hub/...", []string{"periph.io/", mod + "/hal", mod + "/agent"}},
	{"internal packages never import agent, hub or hal", "./internal/...", []string{mod + "/agent", mod + "/hub", mod + "/hal"}},
	{"test helpers never reach the binaries", "./agent", []string{mod + "/internal/netnstest", mod + "/internal/mosquittotest", mod + "/internal/testkit"}},
	{"test helpers never reach the hub binary", "./hub", []string{mod + "/internal/netnstest", mod + "/internal/mosquittotest", mod + "/internal/testkit"}},
	{"hal never imports hub or agent", "./hal/...", []string{mod + "/hub", mod + "/agent", "github.com/mochi-mqtt/", "github.com/dgraph-io/"}},
	// The agent's parts are wired by agentd alone: none reaches the root or
	// another part.
	{"enrol stands alone", "./agent/enrol", []string{mod + "/agent/agentd", mod + "/agent/presence", mod + "/agent/telemetry"}},
	{"presence stands alone", "./agent/presence", []string{mod + "/agent/agentd", mod + "/agent/enrol", mod + "/agent/telemetry"}},
	{"telemetry stands alone", "./agent/telemetry", []string{mod + "/agent/agentd", mod + "/agent/enrol", mod + "/agent/presence"}},
	{"confapply stands alone", "./agent/confapply", []string{mod + "/agent/agentd", mod + "/agent/enrol", mod + "/agent/presence", mod + "/agent/telemetry"}},
	{"jobs stands alone", "./agent/jobs", []string{mod + "/agent/agentd", mod + "/agent/enrol", mod + "/agent/presence", mod + "/agent/telemetry", mod + "/agent/confapply"}},
}

// importers says which packages alone may import a package (test files
// aside): the parts of a composition root are imported by the root only.
var importers = map[string][]string{
	mod + "/agent/agentd":    {mod + "/agent"},
	mod + "/agent/enrol":     {mod + "/agent/agentd"},
	mod + "/agent/presence":  {mod + "/agent/agentd"},
	mod + "/agent/telemetry": {mod + "/agent/agentd"},
	mod + "/agent/confapply": {mod + "/agent/agentd"},
	mod + "/agent/jobs":      {mod + "/agent/agentd"},
	mod + "/agent/textfile":  {mod + "/agent/agentd", mod + "/agent"},
	mod + "/hub/hubd":        {mod + "/hub"},
	// The hub's components that only its root wires, so that the root
	// stays the one place that sees every part.
	mod + "/hub/api":           {mod + "/hub/hubd"},
	mod + "/hub/brokerauth":    {mod + "/hub/hubd"},
	mod + "/hub/confsync":      {mod + "/hub/hubd", mod + "/hub/api", mod + "/hub/rollout"},
	mod + "/hub/dynsec":        {mod + "/hub/hubd"},
	mod + "/hub/homeassistant": {mod + "/hub/hubd"},
	mod + "/hub/ingest":        {mod + "/hub/hubd"},
	mod + "/hub/prom":          {mod + "/hub/hubd"},
	mod + "/hub/rollout":       {mod + "/hub/hubd", mod + "/hub/api"},
	mod + "/hub/scheduler":     {mod + "/hub/hubd", mod + "/hub/api"},
	mod + "/hub/sniff":         {mod + "/hub/hubd"},
}

// TestOnlyTheRootImportsItsParts checks importers against the imports of
// every package (test files excluded).
func TestOnlyTheRootImportsItsParts(t *testing.T) {
	seen := map[string]bool{}
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", "./...") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			allowed, ruled := importers[imp]
			if !ruled {
				continue
			}
			seen[imp] = true
			if !slices.Contains(allowed, pkg) {
				t.Errorf("%s imports %s, which only %v may import", pkg, imp, allowed)
			}
		}
	}
	// A rule nobody's import matched is a rule that cannot fire.
	for pkg := range importers {
		if !seen[pkg] {
			t.Errorf("nothing imports %s: the rule for it cannot fire (renamed?)", pkg)
		}
	}
}

func TestImportDirections(t *testing.T) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			for _, pkg := range goList(t, r.pkgs) {
				if strings.HasPrefix(pkg, mod+"/internal/archtest") {
					continue
				}
				for _, d := range deps(t, pkg) {
					for _, f := range r.forbidden {
						if d == f || strings.HasPrefix(d, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
							t.Errorf("%s imports %s (forbidden: %s)", pkg, d, f)
						}
					}
				}
			}
		})
	}
}

// TestProtocolIsStandardLibraryOnly: the wire protocol must stay free of
// dependencies so any client can vendor it.
func TestProtocolIsStandardLibraryOnly(t *testing.T) {
	for _, d := range goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./internal/protocol") {
		if d != mod+"/internal/protocol" {
			t.Errorf("internal/protocol depends on %s", d)
		}
	}
}

// TestRulesCanFail checks that the rules' patterns match real import paths:
// the hub binary must contain mochi and badger, and the agent paho, so a
// rule forbidding them would fire.
func TestRulesCanFail(t *testing.T) {
	has := func(pkg, prefix string) bool {
		for _, d := range deps(t, pkg) {
			if strings.HasPrefix(d, prefix) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct{ pkg, prefix string }{
		{"./hub", "github.com/mochi-mqtt/"},
		{"./hub", "github.com/dgraph-io/"},
		{"./hub", mod + "/hub/registry"},
		{"./agent", "github.com/eclipse/paho.mqtt.golang"},
		{"./agent", mod + "/agent/agentd"},
	} {
		if !has(c.pkg, c.prefix) {
			t.Errorf("%s does not depend on %s: the import rules would not notice a change of layout", c.pkg, c.prefix)
		}
	}
}
