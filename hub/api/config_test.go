package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/alicia-home/alicia/hub/spec"
)

// configPut writes a document with the given preconditions.
func (h *harness) configPut(t *testing.T, target string, hdr map[string]string, body any) response {
	t.Helper()
	return h.send(t, request{method: "PUT", target: target, auth: "Bearer " + h.admin, body: body, header: hdr})
}

func TestConfigWriteReadHistoryRollback(t *testing.T) {
	h := newHarness(t)
	const doc = "/api/v1/config/agent/selector:room=garage"
	// A write must say what it replaces.
	h.configPut(t, doc, nil, map[string]any{"content": map[string]any{"sample_interval": "30s"}}).mustStatus(t, http.StatusPreconditionRequired)
	r := h.configPut(t, doc, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{"sample_interval": "30s"}, "priority": 5, "comment": "garage is far"})
	r.mustStatus(t, http.StatusCreated)
	if r.header.Get("ETag") != `"1"` {
		t.Errorf("ETag %q, want \"1\"", r.header.Get("ETag"))
	}
	v1 := decode[spec.Version](t, r)
	if v1.Author != "admin" || v1.Priority != 5 || v1.Comment != "garage is far" || v1.Scope.Selector["room"] != "garage" {
		t.Errorf("version 1 = %+v", v1)
	}
	// Creating it again, or writing over a stale version, is a lost race.
	h.configPut(t, doc, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{}}).mustStatus(t, http.StatusPreconditionFailed)
	r = h.configPut(t, doc, map[string]string{"If-Match": `"1"`}, map[string]any{"content": map[string]any{"sample_interval": "60s", "log_level": "debug"}, "priority": 5})
	r.mustStatus(t, http.StatusOK)
	h.configPut(t, doc, map[string]string{"If-Match": `"1"`}, map[string]any{"content": map[string]any{}}).mustStatus(t, http.StatusPreconditionFailed)
	// A schema error names the pointer and the rule; nothing is stored.
	r = h.configPut(t, doc, map[string]string{"If-Match": `"2"`}, map[string]any{"content": map[string]any{"sample_interval": "often"}})
	r.mustStatus(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "/sample_interval") || !strings.Contains(string(r.body), "pattern") {
		t.Errorf("schema error %s does not name /sample_interval and its rule", r.body)
	}
	r = h.adminDo(t, "GET", doc, nil)
	r.mustStatus(t, http.StatusOK)
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("latest ETag %q, want \"2\"", r.header.Get("ETag"))
	}
	hist := decode[[]spec.Version](t, h.adminDo(t, "GET", doc+"/versions", nil))
	if len(hist) != 2 || hist[0].Number != 1 || hist[1].Number != 2 {
		t.Fatalf("history %+v, want versions 1 and 2", hist)
	}
	diff := h.adminDo(t, "GET", doc+"/diff?from=1&to=2", nil)
	diff.mustStatus(t, http.StatusOK)
	if !strings.Contains(string(diff.body), `"pointer":"/log_level","op":"add"`) {
		t.Errorf("diff 1 → 2: %s", diff.body)
	}
	// Rollback: a new version 3 equal to version 1.
	h.send(t, request{method: "POST", target: doc + "/rollback", auth: "Bearer " + h.admin, body: map[string]any{"version": 1}}).mustStatus(t, http.StatusPreconditionRequired)
	r = h.send(t, request{method: "POST", target: doc + "/rollback", auth: "Bearer " + h.admin, body: map[string]any{"version": 1},
		header: map[string]string{"If-Match": `"2"`}})
	r.mustStatus(t, http.StatusOK)
	v3 := decode[spec.Version](t, r)
	if v3.Number != 3 || v3.Hash != v1.Hash || v3.RolledBackTo != 1 {
		t.Errorf("rollback = %+v, want version 3 with version 1's content", v3)
	}
	if got := decode[spec.Version](t, h.adminDo(t, "GET", doc+"/versions/3", nil)); got.Hash != v1.Hash {
		t.Errorf("version 3 = %+v", got)
	}
	docs := decode[[]spec.Version](t, h.adminDo(t, "GET", "/api/v1/config/agent", nil))
	if len(docs) != 1 || docs[0].Number != 3 {
		t.Errorf("documents %+v, want the garage selector's version 3", docs)
	}
}

func TestConfigErrors(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		method, target string
		body           any
		hdr            map[string]string
		want           int
	}{
		{"GET", "/api/v1/config/nope", nil, nil, http.StatusNotFound},
		{"GET", "/api/v1/config/agent/default", nil, nil, http.StatusNotFound},
		{"GET", "/api/v1/config/agent/room=garage", nil, nil, http.StatusBadRequest},
		{"GET", "/api/v1/config/agent/default/versions/0", nil, nil, http.StatusBadRequest},
		{"GET", "/api/v1/config/agent/default/diff", nil, nil, http.StatusBadRequest},
		{"PUT", "/api/v1/config/agent/default", map[string]any{"content": []int{1}}, map[string]string{"If-None-Match": "*"}, http.StatusBadRequest},
		{"PUT", "/api/v1/config/agent/default", map[string]any{"contents": map[string]any{}}, map[string]string{"If-None-Match": "*"}, http.StatusBadRequest},
		{"PUT", "/api/v1/config/agent/default", map[string]any{"content": map[string]any{}}, map[string]string{"If-Match": "soon"}, http.StatusBadRequest},
		{"PUT", "/api/v1/config/agent/default", map[string]any{"content": map[string]any{}, "priority": 3}, map[string]string{"If-None-Match": "*"}, http.StatusBadRequest},
		{"PUT", "/api/v1/config/nope/default", map[string]any{"content": map[string]any{}}, map[string]string{"If-None-Match": "*"}, http.StatusNotFound},
		{"GET", "/api/v1/devices/nobody/config/agent", nil, nil, http.StatusNotFound},
	} {
		r := h.send(t, request{method: tc.method, target: tc.target, auth: "Bearer " + h.admin, body: tc.body, header: tc.hdr})
		if r.status != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.target, r.status, r.body, tc.want)
		}
	}
	// Without the admin token, nothing.
	h.send(t, request{method: "GET", target: "/api/v1/config"}).mustStatus(t, http.StatusUnauthorized)
	kinds := h.adminDo(t, "GET", "/api/v1/config", nil)
	kinds.mustStatus(t, http.StatusOK)
	if !strings.Contains(string(kinds.body), `"name":"agent"`) {
		t.Errorf("kinds %s, want agent", kinds.body)
	}
}

// N racing writers over the same version: exactly one 2xx, the others 412.
func TestConfigRaceOneWinner(t *testing.T) {
	h := newHarness(t)
	const doc = "/api/v1/config/agent/default"
	h.configPut(t, doc, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{}}).mustStatus(t, http.StatusCreated)
	const n = 12
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.configPut(t, doc, map[string]string{"If-Match": `"1"`}, map[string]any{"content": map[string]any{"heartbeat": strings.Repeat("1", 1) + string(rune('0'+i%10)) + "s"}})
			statuses <- r.status
		}()
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for st := range statuses {
		got[st]++
	}
	if got[http.StatusOK] != 1 || got[http.StatusPreconditionFailed] != n-1 {
		t.Errorf("statuses %v, want one 200 and %d 412", got, n-1)
	}
}

func TestEffectiveConfigOfADevice(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "garage-pi").DeviceID
	h.adminDo(t, "PATCH", "/api/v1/devices/"+dev, map[string]any{"labels": map[string]string{"room": "garage"}}).mustStatus(t, http.StatusOK)
	h.configPut(t, "/api/v1/config/agent/default", map[string]string{"If-None-Match": "*"},
		map[string]any{"content": map[string]any{"sample_interval": "10s", "log_level": "info", "board": "# {{.Name}}\n"}}).mustStatus(t, http.StatusCreated)
	h.configPut(t, "/api/v1/config/agent/selector:room=garage", map[string]string{"If-None-Match": "*"},
		map[string]any{"content": map[string]any{"sample_interval": "30s"}}).mustStatus(t, http.StatusCreated)
	r := h.adminDo(t, "GET", "/api/v1/devices/"+dev+"/config/agent", nil)
	r.mustStatus(t, http.StatusOK)
	var eff struct {
		Content struct {
			SampleInterval string `json:"sample_interval"`
			LogLevel       string `json:"log_level"`
			Board          string `json:"board"`
		} `json:"content"`
		Sources map[string]int    `json:"sources"`
		Layers  []json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(r.body, &eff); err != nil {
		t.Fatal(err)
	}
	if eff.Content.SampleInterval != "30s" || eff.Content.LogLevel != "info" || eff.Content.Board != "# garage-pi\n" || eff.Sources["/sample_interval"] != 1 ||
		eff.Sources["/log_level"] != 0 || len(eff.Layers) != 2 {
		t.Errorf("effective config %s", r.body)
	}
}
