package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/spec"
)

func TestConfigExportImport(t *testing.T) {
	a := newHarness(t)
	const garage = "/api/v1/config/agent/selector:room=garage"
	a.configPut(t, garage, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{"sample_interval": "30s"}, "priority": 5, "comment": "far"}).
		mustStatus(t, http.StatusCreated)
	a.configPut(t, garage, map[string]string{"If-Match": `"1"`}, map[string]any{"content": map[string]any{"sample_interval": "60s"}, "priority": 5}).
		mustStatus(t, http.StatusOK)
	a.configPut(t, "/api/v1/config/agent/default", map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{"log_level": "warn"}}).
		mustStatus(t, http.StatusCreated)

	r := a.adminDo(t, "GET", "/api/v1/config-export", nil)
	r.mustStatus(t, http.StatusOK)
	if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="alicia-config-`+testHubID+"-") {
		t.Errorf("Content-Disposition %q", cd)
	}
	file := decode[spec.ExportFile](t, r)
	if len(file.Documents) != 2 || len(file.Documents[1].Versions) != 2 || file.Documents[1].Versions[0].Comment != "far" {
		t.Fatalf("export %+v, want the default and the garage document with its two versions", file.Documents)
	}
	body := r.body

	// Into a fresh hub: a dry run writes nothing, then the import.
	b := newHarness(t)
	import_ := func(h *harness, query string, body []byte) response {
		return h.send(t, request{method: "POST", target: "/api/v1/config-import" + query, auth: "Bearer " + h.admin, body: body})
	}
	rep := decode[spec.Report](t, import_(b, "?dry_run=true", body))
	if !rep.DryRun || rep.Created != 2 || rep.VersionsWritten != 3 {
		t.Errorf("dry run report %+v, want 2 documents, 3 versions to create", rep)
	}
	b.adminDo(t, "GET", garage, nil).mustProblem(t, http.StatusNotFound)
	rep = decode[spec.Report](t, import_(b, "?dry_run=false", body))
	if rep.DryRun || rep.Created != 2 || rep.VersionsWritten != 3 {
		t.Errorf("import report %+v, want 2 documents, 3 versions created", rep)
	}
	want := decode[[]spec.Version](t, a.adminDo(t, "GET", garage+"/versions", nil))
	got := decode[[]spec.Version](t, b.adminDo(t, "GET", garage+"/versions", nil))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history after the import (-exported +imported):\n%s", diff)
	}
	// Again (without dry_run: a real import): unchanged.
	rep = decode[spec.Report](t, import_(b, "", body))
	if rep.Unchanged != 2 || rep.Created != 0 || rep.VersionsWritten != 0 {
		t.Errorf("re-import report %+v, want 2 unchanged", rep)
	}

	// A conflict: 409 with the report; nothing written.
	b.configPut(t, garage, map[string]string{"If-Match": `"2"`}, map[string]any{"content": map[string]any{}, "priority": 5}).mustStatus(t, http.StatusOK)
	r = import_(b, "?dry_run=false", body)
	if d := r.mustProblem(t, http.StatusConflict); !strings.Contains(d, "selector:room=garage") {
		t.Errorf("409 detail %q does not name the scope", d)
	}
	var conflict struct {
		Report spec.Report `json:"report"`
	}
	if err := json.Unmarshal(r.body, &conflict); err != nil || conflict.Report.Conflicts != 1 || conflict.Report.Documents[1].Outcome != spec.OutcomeConflict {
		t.Errorf("409 body %s: want the report with the garage document in conflict (%v)", r.body, err)
	}

	// Invalid files: 400 naming where; nothing written.
	c := newHarness(t)
	tampered := bytes.Replace(body, []byte(`"60s"`), []byte(`"61s"`), 1)
	badSchema := edited(t, body, func(f *spec.ExportFile) {
		f.Documents[0].Versions[0].Content = json.RawMessage(`{"log_level":"loud"}`)
		f.Documents[0].Versions[0].Hash = "ebb7e90fa510cd4039812ef2bb0124e55ddbb88a683ea9b377757ea2481a6031"
	})
	for _, tc := range []struct {
		name   string
		query  string
		body   []byte
		status int
		want   string
	}{
		{"tampered content", "?dry_run=true", tampered, http.StatusBadRequest, "agent selector:room=garage version 2: invalid: hash"},
		{"schema", "?dry_run=false", badSchema, http.StatusBadRequest, "agent default version 1: spec: agent config does not match its schema: at /log_level, enum"},
		{"unknown kind", "", bytes.ReplaceAll(body, []byte(`"kind": "agent"`), []byte(`"kind": "heater"`)), http.StatusBadRequest, `kind "heater" is not known`},
		{"not an export", "", []byte(`{"format":"x"}`), http.StatusBadRequest, `format "x"`},
		{"bad dry_run", "?dry_run=yes", body, http.StatusBadRequest, `dry_run "yes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := import_(c, tc.query, tc.body).mustProblem(t, tc.status); !strings.Contains(d, tc.want) {
				t.Errorf("detail %q does not say %q", d, tc.want)
			}
			if docs := decode[[]spec.Version](t, c.adminDo(t, "GET", "/api/v1/config/agent", nil)); len(docs) != 0 {
				t.Errorf("a refused import wrote %+v", docs)
			}
		})
	}
	c.send(t, request{method: "POST", target: "/api/v1/config-import", auth: "Bearer " + c.admin, body: body, contentType: "text/plain"}).
		mustProblem(t, http.StatusUnsupportedMediaType)
	c.send(t, request{method: "POST", target: "/api/v1/config-import", body: body}).mustProblem(t, http.StatusUnauthorized)
}

// edited decodes an export file, changes it and encodes it again.
func edited(t *testing.T, file []byte, fn func(f *spec.ExportFile)) []byte {
	t.Helper()
	var f spec.ExportFile
	if err := json.Unmarshal(file, &f); err != nil {
		t.Fatal(err)
	}
	fn(&f)
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
