package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDocListsEveryRoute keeps the package doc's route list true: every
// pattern registered on the mux (read from api.go's source) is listed in
// doc.go, and doc.go lists no other.
func TestDocListsEveryRoute(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			p, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			registered = append(registered, p)
		}
		return true
	})
	if len(registered) < 10 {
		t.Fatalf("found %d registrations in api.go: the test no longer reads them", len(registered))
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	route := regexp.MustCompile(`(?m)^//\s+(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)`)
	var listed []string
	for _, m := range route.FindAllStringSubmatch(string(doc), -1) {
		listed = append(listed, m[1]+" "+m[2])
	}
	for _, p := range registered {
		if !slices.Contains(listed, p) {
			t.Errorf("doc.go does not list %s", p)
		}
	}
	for _, p := range listed {
		if !slices.Contains(registered, p) {
			t.Errorf("doc.go lists %s, which api.go does not register", p)
		}
	}
	if t.Failed() {
		t.Logf("registered:\n%s", strings.Join(registered, "\n"))
	}
}
