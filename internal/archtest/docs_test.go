package archtest

import (
	"strings"
	"testing"
)

// TestEveryPackageIsDocumented: every package has a doc comment that starts
// the way go doc expects ("Package x ..." or, for main, "Command x ...").
func TestEveryPackageIsDocumented(t *testing.T) {
	lines := goList(t, "-f", "{{.ImportPath}}|{{.Name}}|{{.Doc}}", "./...")
	// goList splits on whitespace; rejoin by package.
	var pkgs []string
	for _, l := range lines {
		if strings.HasPrefix(l, mod) && strings.Contains(l, "|") {
			pkgs = append(pkgs, l)
		} else if len(pkgs) > 0 {
			pkgs[len(pkgs)-1] += " " + l
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages; go list output not understood", len(pkgs))
	}
	for _, p := range pkgs {
		parts := strings.SplitN(p, "|", 3)
		path, name, doc := parts[0], parts[1], parts[2]
		want := "Package " + name + " "
		if name == "main" {
			want = "Command "
		}
		if !strings.HasPrefix(doc, want) {
			t.Errorf("%s: package doc %q should start with %q", path, doc, want)
		}
	}
}
