package api

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/rollout"
)

// fakeSync is a config sender whose devices never report.
type fakeSync struct {
	mu      sync.Mutex
	changed int
}

func (f *fakeSync) State(string) map[string]confsync.KindState { return nil }

func (f *fakeSync) Changed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed++
}

func TestRolloutsOverREST(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"one", "two"} {
		h.connect(t, h.enroll(t, n).DeviceID, nil)
	}
	const doc = "/api/v1/config/agent/default"
	h.configPut(t, doc, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{"log_level": "info"}}).mustStatus(t, http.StatusCreated)
	v1 := map[string]string{"If-Match": `"1"`}
	for _, tc := range []struct {
		rollout any
		want    string
	}{
		{map[string]any{"max_parallel": 0}, "rollout.max_parallel: 0 out of range"},
		{map[string]any{"min_healthy_time": "soon"}, "rollout.min_healthy_time"},
		{map[string]any{"canary": "1"}, "rollout.canary: got a JSON string"},
		{map[string]any{"paralel": 2}, `unknown field \"paralel\"`},
	} {
		r := h.configPut(t, doc, v1, map[string]any{"content": map[string]any{"log_level": "debug"}, "rollout": tc.rollout})
		r.mustStatus(t, http.StatusBadRequest)
		if !strings.Contains(string(r.body), tc.want) {
			t.Errorf("rollout %v: %s; want it to say %q", tc.rollout, r.body, tc.want)
		}
	}
	r := h.configPut(t, doc, v1, map[string]any{"content": map[string]any{"log_level": "debug"},
		"rollout": map[string]any{"canary": 1, "max_parallel": 1, "min_healthy_time": "1m"}})
	r.mustStatus(t, http.StatusAccepted)
	ro := decode[rollout.Rollout](t, r)
	if ro.State != rollout.StateRunning || ro.ToVersion != 2 || len(ro.Devices) != 2 || r.header.Get("ETag") != `"2"` ||
		r.header.Get("Location") != "/api/v1/rollouts/"+ro.ID {
		t.Fatalf("started: %+v, ETag %s, Location %s", ro, r.header.Get("ETag"), r.header.Get("Location"))
	}
	// Other writes of the kind wait for it.
	r = h.configPut(t, doc, map[string]string{"If-Match": `"2"`}, map[string]any{"content": map[string]any{}})
	r.mustStatus(t, http.StatusConflict)
	if !strings.Contains(string(r.body), ro.ID+"/cancel") {
		t.Errorf("409 %s does not say how to end the rollout", r.body)
	}
	h.send(t, request{method: "POST", target: doc + "/rollback", auth: "Bearer " + h.admin, body: map[string]any{"version": 1},
		header: map[string]string{"If-Match": `"2"`}}).mustStatus(t, http.StatusConflict)
	if list := decode[[]rollout.Rollout](t, h.adminDo(t, "GET", "/api/v1/rollouts", nil)); len(list) != 1 || list[0].ID != ro.ID {
		t.Errorf("list: %+v", list)
	}
	base := "/api/v1/rollouts/" + ro.ID
	if got := decode[rollout.Rollout](t, h.adminDo(t, "POST", base+"/pause", nil)); got.State != rollout.StatePaused {
		t.Errorf("pause: %s", got.State)
	}
	h.adminDo(t, "POST", base+"/pause", nil).mustStatus(t, http.StatusConflict)
	if got := decode[rollout.Rollout](t, h.adminDo(t, "POST", base+"/resume", nil)); got.State != rollout.StateRunning {
		t.Errorf("resume: %s", got.State)
	}
	got := decode[rollout.Rollout](t, h.adminDo(t, "POST", base+"/cancel", nil))
	if got.State != rollout.StateCancelled || got.RevertVersion != 3 {
		t.Errorf("cancel: %s, revert version %d", got.State, got.RevertVersion)
	}
	if got := decode[rollout.Rollout](t, h.adminDo(t, "GET", base, nil)); got.State != rollout.StateCancelled {
		t.Errorf("get after cancel: %s", got.State)
	}
	h.adminDo(t, "GET", "/api/v1/rollouts/nope", nil).mustStatus(t, http.StatusNotFound)
	// Writes go through again.
	h.configPut(t, doc, map[string]string{"If-Match": `"3"`}, map[string]any{"content": map[string]any{}}).mustStatus(t, http.StatusOK)
	// A rollout cannot create a document: there is no old version to keep.
	r = h.configPut(t, "/api/v1/config/agent/selector:room=garage", map[string]string{"If-None-Match": "*"},
		map[string]any{"content": map[string]any{}, "rollout": map[string]any{}})
	r.mustStatus(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "create agent selector room=garage without one first") && !strings.Contains(string(r.body), "without one first") {
		t.Errorf("create with a rollout: %s", r.body)
	}
}
