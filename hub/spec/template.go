package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// Device is what a template may use of a device, and what Effective
// matches scopes on.
type Device struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Arch     string            `json:"arch"`     // e.g. "arm64", "arm/v6"
	Hostname string            `json:"hostname"` // as the device reports it
}

// Templates: a string value of a document may contain Go text/template
// actions that read the device it is rendered for, so that one document
// serves many devices, e.g. "{{.Name}}-{{.Labels.room}}". The form is
// restricted, checked when the document is written:
//
//   - fields .ID, .Name, .Arch, .Hostname, and .Labels.<key> (a missing
//     label renders as "");
//   - the functions lower, upper and default ({{default "x" .Labels.room}}:
//     the first argument when the second is empty);
//   - no if, range, with, define, template, block, variables or other
//     functions: a template fills a value, it does not compute one.
//
// The kind's schema checks the rendered value, per device (Effective),
// not the template: a document with templates is checked for what does
// not depend on them when it is written.

// templateFuncs are the functions a template may call.
var templateFuncs = template.FuncMap{
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"default": func(def, v string) string {
		if v == "" {
			return def
		}
		return v
	},
}

// deviceFields are the fields a template may read.
var deviceFields = []string{"ID", "Name", "Arch", "Hostname"}

// hasTemplate reports whether s contains a template action.
func hasTemplate(s string) bool { return strings.Contains(s, "{{") }

// parseTemplate parses s and checks that it keeps to the restricted form.
func parseTemplate(s string) (*template.Template, error) {
	t, err := template.New("value").Funcs(templateFuncs).Option("missingkey=zero").Parse(s)
	if err != nil {
		return nil, err
	}
	if err := checkNodes(t.Root.Nodes); err != nil {
		return nil, err
	}
	return t, nil
}

func checkNodes(nodes []parse.Node) error {
	for _, n := range nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				return fmt.Errorf("%q: variables are not allowed", n.String())
			}
			for i, c := range n.Pipe.Cmds {
				if err := checkCommand(c, i > 0); err != nil {
					return fmt.Errorf("%q: %w", n.String(), err)
				}
			}
		default:
			return fmt.Errorf("%q: only {{.Field}}, {{.Labels.key}} and the functions lower, upper and default are allowed", n.String())
		}
	}
	return nil
}

// funcArity is how many arguments each template function takes.
var funcArity = map[string]int{"lower": 1, "upper": 1, "default": 2}

// checkCommand checks one command of a pipeline; piped says it receives
// the previous command's value as its last argument.
func checkCommand(c *parse.CommandNode, piped bool) error {
	if fn, ok := c.Args[0].(*parse.IdentifierNode); ok {
		given := len(c.Args) - 1
		if piped {
			given++
		}
		if want, known := funcArity[fn.Ident]; known && given != want {
			return fmt.Errorf("function %s: takes %d argument(s), given %d", fn.Ident, want, given)
		}
	} else if piped || len(c.Args) > 1 {
		return fmt.Errorf("%s: a value, not a function: it takes no arguments", c.Args[0].String())
	}
	for i, a := range c.Args {
		switch a := a.(type) {
		case *parse.FieldNode:
			if err := checkField(a.Ident); err != nil {
				return err
			}
		case *parse.IdentifierNode:
			if i != 0 {
				return fmt.Errorf("function %s: only as the first word of an action", a.Ident)
			}
			if _, ok := templateFuncs[a.Ident]; !ok {
				return fmt.Errorf("function %s: want lower, upper or default", a.Ident)
			}
		case *parse.StringNode:
		default:
			return fmt.Errorf("%s: want a field, a label, a quoted string or a function", a.String())
		}
	}
	return nil
}

func checkField(ident []string) error {
	switch {
	case len(ident) == 1 && slices.Contains(deviceFields, ident[0]):
		return nil
	case len(ident) == 2 && ident[0] == "Labels" && labelKey.MatchString(ident[1]):
		return nil
	}
	return fmt.Errorf(".%s: want one of .%s or .Labels.<key>", strings.Join(ident, "."), strings.Join(deviceFields, ", ."))
}

// checkTemplates parses every templated string of a document (decoded
// JSON) and returns the first error, naming its JSON Pointer.
func checkTemplates(v any, at string) error {
	switch v := v.(type) {
	case string:
		if hasTemplate(v) {
			if _, err := parseTemplate(v); err != nil {
				return fmt.Errorf("template at %s: %w", pointerOrRoot(at), err)
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := checkTemplates(v[k], at+"/"+escapePointer(k)); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := checkTemplates(x, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// render replaces every templated string of a document (decoded JSON) by
// its rendering for d.
func render(v any, d Device, at string) (any, error) {
	switch v := v.(type) {
	case string:
		if !hasTemplate(v) {
			return v, nil
		}
		t, err := parseTemplate(v)
		if err != nil {
			return nil, fmt.Errorf("template at %s: %w", pointerOrRoot(at), err)
		}
		if d.Labels == nil {
			d.Labels = map[string]string{}
		}
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("template at %s: %w", pointerOrRoot(at), err)
		}
		return b.String(), nil
	case map[string]any:
		for k, x := range v {
			r, err := render(x, d, at+"/"+escapePointer(k))
			if err != nil {
				return nil, err
			}
			v[k] = r
		}
	case []any:
		for i, x := range v {
			r, err := render(x, d, fmt.Sprintf("%s/%d", at, i))
			if err != nil {
				return nil, err
			}
			v[i] = r
		}
	}
	return v, nil
}

func pointerOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}
