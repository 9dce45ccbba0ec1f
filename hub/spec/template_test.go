package spec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestTemplatesRenderPerDevice(t *testing.T) {
	e := newEnv(t)
	e.put(Scope{}, 0, 0, `{"labels":{"site":"home","where":"{{.Name}} in {{default \"nowhere\" .Labels.room}}","arch":"{{upper .Arch}}"},"sample_interval":"{{default \"10\" .Labels.interval}}s"}`)
	for _, tt := range []struct {
		dev  Device
		want string
	}{
		{Device{ID: "d1", Name: "garage-pi", Arch: "arm64", Labels: map[string]string{"room": "garage", "interval": "30"}},
			`{"labels":{"arch":"ARM64","site":"home","where":"garage-pi in garage"},"sample_interval":"30s"}`},
		{Device{ID: "d2", Name: "attic-pi", Arch: "arm/v6"},
			`{"labels":{"arch":"ARM/V6","site":"home","where":"attic-pi in nowhere"},"sample_interval":"10s"}`},
	} {
		eff, err := e.s.Effective(KindAgent, tt.dev)
		if err != nil {
			t.Fatalf("%s: %v", tt.dev.ID, err)
		}
		if string(eff.Content) != tt.want {
			t.Errorf("%s: %s, want %s", tt.dev.ID, eff.Content, tt.want)
		}
	}
	// What a device's values render to is checked against the schema.
	_, err := e.s.Effective(KindAgent, Device{ID: "d3", Labels: map[string]string{"interval": "often"}})
	var se *SchemaError
	if !errors.As(err, &se) || se.Problems[0].Pointer != "/sample_interval" || !strings.Contains(err.Error(), "d3") {
		t.Errorf("a label that renders an invalid interval: %v, want a schema error at /sample_interval naming d3", err)
	}
}

func TestTemplatesRestricted(t *testing.T) {
	e := newEnv(t)
	for _, bad := range []string{
		`{{.Secret}}`,
		`{{.Labels}}`,
		`{{.Labels.Room}}`,
		`{{if .Name}}x{{end}}`,
		`{{range .Labels}}x{{end}}`,
		`{{$x := .Name}}{{$x}}`,
		`{{printf "%s" .Name}}`,
		`{{template "x"}}`,
		`{{.Name | lower}}{{`,
		`{{call .Name}}`,
		`{{index .Labels "room"}}`,
		`{{lower .Name .ID}}`,
		`{{default .Name}}`,
		`{{.Name .ID}}`,
		`{{.Name | .ID}}`,
	} {
		content, _ := json.Marshal(map[string]any{"labels": map[string]string{"where": bad}})
		_, err := e.s.Put(Write{Kind: KindAgent, Author: "admin", Content: content})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "/labels/where") {
			t.Errorf("template %q: %v, want ErrInvalid naming /labels/where", bad, err)
		}
	}
	// Allowed forms are stored.
	for _, good := range []string{`{{.ID}}`, `{{.Hostname}}-{{.Labels.room}}`, `{{lower .Name}}`, `{{.Name | upper}}`, `{{default "x" .Labels.role}}`, `{{.Labels.role | default "x"}}`} {
		content, _ := json.Marshal(map[string]any{"labels": map[string]string{"where": good}})
		latest, _ := e.s.Latest(KindAgent, Scope{})
		if _, err := e.s.Put(Write{Kind: KindAgent, Author: "admin", IfVersion: latest.Number, Content: content}); err != nil {
			t.Errorf("template %q: %v", good, err)
		}
	}
}

// A template the restricted form accepts always renders, for any device.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{`{{.Name}}`, `{{default "x" .Labels.room}}`, `{{.Labels.a | upper}}`, `{{if .Name}}{{end}}`, `{{lower .Name .ID}}`, `plain`} {
		f.Add(s, "garage-pi", "room", "garage")
	}
	f.Fuzz(func(t *testing.T, s, name, key, value string) {
		tpl, err := parseTemplate(s)
		if err != nil {
			return
		}
		var b strings.Builder
		if err := tpl.Execute(&b, Device{ID: "d1", Name: name, Labels: map[string]string{key: value}}); err != nil {
			t.Errorf("template %q accepted, but rendering failed: %v", s, err)
		}
	})
}
