package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/protocol"
	"github.com/alicia-home/alicia/internal/schedule"
)

// publishedMessage is an MQTT message the scheduler published.
type publishedMessage struct {
	topic, payload string
	qos            byte
	retain         bool
}

// harnessConfigs is the configuration manager as a job's config action
// uses it (the hub's goes through the rollout guard; the harness's
// writes the rollback directly).
type harnessConfigs struct{ s *spec.Store }

func (c harnessConfigs) Check(kind, scope string, version uint64) error {
	sc, err := spec.ParseScope(scope)
	if err != nil {
		return err
	}
	_, err = c.s.Version(kind, sc, version)
	return err
}

func (c harnessConfigs) Restore(kind, scope string, version uint64, author, comment string) (bool, uint64, error) {
	sc, err := spec.ParseScope(scope)
	if err != nil {
		return false, 0, err
	}
	latest, err := c.s.Latest(kind, sc)
	if err != nil {
		return false, 0, err
	}
	old, err := c.s.Version(kind, sc, version)
	if err != nil {
		return false, 0, err
	}
	if old.Hash == latest.Hash {
		return false, latest.Number, nil
	}
	v, err := c.s.Rollback(kind, sc, version, latest.Number, author, comment)
	if err != nil {
		return false, 0, err
	}
	return true, v.Number, nil
}

// lampJob is a job that turns device dev's relay on at 02:30 Berlin time.
func lampJob(id, dev string) map[string]any {
	return map[string]any{"id": id, "trigger": map[string]any{"cron": "30 2 * * *", "zone": "Europe/Berlin"},
		"action": map[string]any{"command": map[string]any{"device": dev, "action": "gpio.write", "params": map[string]any{"line": "relay", "level": true}}}}
}

// webhookJob is a job that POSTs to a URL nobody serves; cron in UTC.
func webhookJob(id, cron string) map[string]any {
	return map[string]any{"id": id, "trigger": map[string]any{"cron": cron, "zone": "UTC"},
		"action": map[string]any{"webhook": map[string]any{"url": "http://127.0.0.1:9/hook"}}}
}

func ifMatch(etag string) map[string]string { return map[string]string{"If-Match": etag} }

func (h *harness) jobDo(t *testing.T, method, target string, hdr map[string]string, body any) response {
	t.Helper()
	return h.send(t, request{method: method, target: target, auth: "Bearer " + h.admin, body: body, header: hdr})
}

// runsUntil polls job id's runs until one satisfies ok.
func (h *harness) runsUntil(t *testing.T, id string, ok func(scheduler.Run) bool) scheduler.Run {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		r := h.adminDo(t, "GET", "/api/v1/jobs/"+id+"/runs", nil)
		r.mustStatus(t, http.StatusOK)
		for _, run := range decode[[]scheduler.Run](t, r) {
			if ok(run) {
				return run
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: no such run; runs: %s", id, r.body)
		}
		time.Sleep(10 * time.Millisecond) // polling the API, with a deadline
	}
}

func TestJobsCompareAndSet(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	h.connect(t, dev, simHardware)

	r := h.adminDo(t, "POST", "/api/v1/jobs", lampJob("lamp", dev))
	r.mustStatus(t, http.StatusCreated)
	if got := r.header.Get("ETag"); got != `"1"` {
		t.Errorf("create: ETag %s, want \"1\"", got)
	}
	if got := r.header.Get("Location"); got != "/api/v1/jobs/lamp" {
		t.Errorf("create: Location %s", got)
	}
	v1 := decode[scheduler.Version](t, r)
	if v1.Number != 1 || v1.Author != "admin" || !v1.Time.Equal(t0) || v1.Job.Action.Command.Device != dev {
		t.Errorf("create: %+v", v1)
	}
	// The ID is taken.
	if d := h.adminDo(t, "POST", "/api/v1/jobs", lampJob("lamp", dev)).mustProblem(t, http.StatusPreconditionFailed); !strings.Contains(d, "at version 1") {
		t.Errorf("create again: %q", d)
	}
	r = h.adminDo(t, "GET", "/api/v1/jobs/lamp", nil)
	r.mustStatus(t, http.StatusOK)
	if st := decode[scheduler.Status](t, r); r.header.Get("ETag") != `"1"` || !st.Next.Equal(time.Date(2026, 3, 2, 1, 30, 0, 0, time.UTC)) {
		t.Errorf("get: ETag %s, %+v", r.header.Get("ETag"), st)
	}

	changed := lampJob("lamp", dev)
	changed["comment"] = "later"
	changed["trigger"] = map[string]any{"cron": "45 2 * * *", "zone": "Europe/Berlin"}
	for _, tc := range []struct {
		name   string
		target string
		hdr    map[string]string
		body   any
		status int
		detail string
	}{
		{"no precondition", "/api/v1/jobs/lamp", nil, changed, http.StatusPreconditionRequired, "If-Match"},
		{"malformed If-Match", "/api/v1/jobs/lamp", ifMatch("one"), changed, http.StatusBadRequest, `If-Match "one"`},
		{"If-None-Match on a job that exists", "/api/v1/jobs/lamp", map[string]string{"If-None-Match": "*"}, changed, http.StatusPreconditionFailed, "at version 1, not 0"},
		{"If-Match on a job that does not exist", "/api/v1/jobs/nolamp", ifMatch(`"1"`), lampJob("nolamp", dev), http.StatusNotFound, "job nolamp does not exist"},
		{"another job's ID in the body", "/api/v1/jobs/other", map[string]string{"If-None-Match": "*"}, changed, http.StatusBadRequest, `id "lamp": the job at this URL is "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := h.jobDo(t, "PUT", tc.target, tc.hdr, tc.body).mustProblem(t, tc.status); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q, want it to say %q", d, tc.detail)
			}
		})
	}
	r = h.jobDo(t, "PUT", "/api/v1/jobs/lamp", ifMatch(`"1"`), changed)
	r.mustStatus(t, http.StatusOK)
	if v2 := decode[scheduler.Version](t, r); r.header.Get("ETag") != `"2"` || v2.Number != 2 || v2.Comment != "later" {
		t.Errorf("put: ETag %s, %+v", r.header.Get("ETag"), v2)
	}
	// The writer that read version 1 too has lost.
	if d := h.jobDo(t, "PUT", "/api/v1/jobs/lamp", ifMatch(`"1"`), lampJob("lamp", dev)).mustProblem(t, http.StatusPreconditionFailed); !strings.Contains(d, "at version 2, not 1") {
		t.Errorf("stale put: %q", d)
	}
	// Created with If-None-Match: *, the id taken from the URL.
	noID := lampJob("", dev)
	delete(noID, "id")
	r = h.jobDo(t, "PUT", "/api/v1/jobs/porch", map[string]string{"If-None-Match": "*"}, noID)
	r.mustStatus(t, http.StatusCreated)
	if v := decode[scheduler.Version](t, r); r.header.Get("ETag") != `"1"` || v.Job.ID != "porch" {
		t.Errorf("put new: ETag %s, %+v", r.header.Get("ETag"), v)
	}

	// Delete needs the current version.
	h.jobDo(t, "DELETE", "/api/v1/jobs/lamp", nil, nil).mustProblem(t, http.StatusPreconditionRequired)
	h.jobDo(t, "DELETE", "/api/v1/jobs/lamp", ifMatch(`"1"`), nil).mustProblem(t, http.StatusPreconditionFailed)
	h.jobDo(t, "DELETE", "/api/v1/jobs/nolamp", ifMatch(`"1"`), nil).mustProblem(t, http.StatusNotFound)
	h.jobDo(t, "DELETE", "/api/v1/jobs/lamp", ifMatch(`"2"`), nil).mustStatus(t, http.StatusNoContent)
	h.adminDo(t, "GET", "/api/v1/jobs/lamp", nil).mustProblem(t, http.StatusNotFound)
	h.adminDo(t, "POST", "/api/v1/jobs/lamp/run", nil).mustProblem(t, http.StatusNotFound)

	// Its history stays, newest first, the last version saying deleted.
	r = h.adminDo(t, "GET", "/api/v1/jobs/lamp/versions", nil)
	r.mustStatus(t, http.StatusOK)
	type row struct {
		N       uint64
		Deleted bool
		Cron    string
		Comment string
	}
	var got []row
	for _, v := range decode[[]scheduler.Version](t, r) {
		got = append(got, row{v.Number, v.Deleted, v.Job.Trigger.Cron, v.Comment})
	}
	want := []row{{3, true, "45 2 * * *", ""}, {2, false, "45 2 * * *", "later"}, {1, false, "30 2 * * *", ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	h.adminDo(t, "GET", "/api/v1/jobs/nolamp/versions", nil).mustProblem(t, http.StatusNotFound)

	// A deleted job is created again over If-None-Match: *.
	r = h.jobDo(t, "PUT", "/api/v1/jobs/lamp", map[string]string{"If-None-Match": "*"}, lampJob("lamp", dev))
	r.mustStatus(t, http.StatusCreated)
	if r.header.Get("ETag") != `"4"` {
		t.Errorf("recreated: ETag %s, want \"4\"", r.header.Get("ETag"))
	}
	r = h.adminDo(t, "GET", "/api/v1/jobs", nil)
	r.mustStatus(t, http.StatusOK)
	var ids []string
	for _, st := range decode[[]scheduler.Status](t, r) {
		ids = append(ids, st.Job.ID)
	}
	if diff := cmp.Diff([]string{"lamp", "porch"}, ids); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

// TestJobsRefuseInvalid checks that every invalid job is a 400 whose
// detail names the field and the reason.
func TestJobsRefuseInvalid(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	h.connect(t, dev, simHardware)
	good := `"trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}`
	tests := []struct {
		name, body string
		want       []string
	}{
		{"malformed cron", `{"id":"a","trigger":{"cron":"61 6 * * *","zone":"UTC"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`trigger: cron "61 6 * * *": minute field "61"`, "above maximum (59)"}},
		{"never fires", `{"id":"a","trigger":{"cron":"0 0 30 2 *","zone":"UTC"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`trigger: cron "0 0 30 2 *": never fires: February has no 30th`}},
		{"unknown zone", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"Mars/Olympus"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`trigger: zone "Mars/Olympus": unknown time zone`}},
		{"no zone", `{"id":"a","trigger":{"cron":"0 6 * * *"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`trigger: cron trigger needs a "zone"`}},
		{"a one-off in the past", `{"id":"a","trigger":{"at":"2026-02-01T00:00:00Z"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{"trigger: ", "2026-02-01"}},
		{"two kinds", `{"id":"a","trigger":{"cron":"0 6 * * *","every":"1h","zone":"UTC"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`trigger: set exactly one of "cron", "every", "at" and "sun"`}},
		{"empty action", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{}}`,
			[]string{"action: set exactly one of command, webhook, publish and config"}},
		{"unknown device", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"command":{"device":"nodevice","action":"gpio.write","params":{"line":"relay","level":true}}}}`,
			[]string{"action.command.device: nodevice: no such device"}},
		{"unknown line", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"command":{"device":"` + dev + `","action":"gpio.write","params":{"line":"GPIO99","level":true}}}}`,
			[]string{"action.command: ", "GPIO99"}},
		{"the hub's own topic", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"publish":{"topic":"alicia/x","payload":"on"}}}`,
			[]string{`action.publish.topic: "alicia/x": topics under alicia/ and $ are the hub's and the devices' own`}},
		{"no such configuration version", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"config":{"kind":"agent","scope":"default","version":7}}}`,
			[]string{"action.config: ", "version 7"}},
		{"bad ID", `{"id":"A b",` + good + `}`, []string{`id: "A b": want 1 to 40 of a-z`}},
		{"bad policy", `{"id":"a",` + good + `,"missed":"later"}`, []string{`missed: "later": want skip, run_once or run_all`}},
		{"jitter over the limit", `{"id":"a",` + good + `,"jitter":"2h"}`, []string{"jitter: 2h0m0s: want 0 to 1h0m0s"}},
		{"unknown field", `{"id":"a",` + good + `,"color":"red"}`, []string{`"color": unknown field`}},
		{"unknown field in the trigger", `{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC","colour":1},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`"trigger.colour": unknown field`}},
		{"wrong type", `{"id":"a",` + good + `,"priority":"high"}`, []string{`"priority": got a JSON string, want an integer`}},
		{"wrong type in the trigger", `{"id":"a","trigger":{"cron":5,"zone":"UTC"},"action":{"webhook":{"url":"http://127.0.0.1:9/"}}}`,
			[]string{`"trigger.cron": got a JSON number, want a string (byte 29)`}},
		{"wrong type of duration", `{"id":"a",` + good + `,"jitter":5}`, []string{`"jitter": duration: want a string such as "15m", got 5`}},
		{"malformed duration", `{"id":"a",` + good + `,"grace":"soon"}`, []string{`"grace": duration "soon"`}},
		{"null trigger", `{"id":"a","trigger":null,"action":{}}`, []string{`"trigger": null is not allowed`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := h.adminDo(t, "POST", "/api/v1/jobs", tc.body).mustProblem(t, http.StatusBadRequest)
			for _, w := range tc.want {
				if !strings.Contains(d, w) {
					t.Errorf("detail %q, want it to say %q", d, w)
				}
			}
		})
	}
	if r := h.adminDo(t, "GET", "/api/v1/jobs", nil); string(r.body) != "[]\n" {
		t.Errorf("jobs stored: %s", r.body)
	}
	for _, tc := range []struct{ target, body, want string }{
		{"/api/v1/jobs/preview", `{}`, "trigger: required"},
		{"/api/v1/jobs/preview?n=0", `{"trigger":{"every":"1m"}}`, `n "0": want 1 to 1000`},
		{"/api/v1/jobs/preview", `{"trigger":{"cron":"0 0 31 4,6 *","zone":"UTC"}}`, "never fires: none of April, June has a 31st"},
	} {
		if d := h.adminDo(t, "POST", tc.target, tc.body).mustProblem(t, http.StatusBadRequest); !strings.Contains(d, tc.want) {
			t.Errorf("POST %s %s: %q, want it to say %q", tc.target, tc.body, d, tc.want)
		}
	}
}

// TestJobsNextAcrossDST previews a 02:30 Europe/Berlin job over the last
// Sunday of March (2026-03-29: 02:30 does not exist, it runs at 03:00)
// and the last of October (02:30 happens twice, it runs the first time).
func TestJobsNextAcrossDST(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	h.connect(t, dev, simHardware)
	h.clock.Set(time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC))
	h.adminDo(t, "POST", "/api/v1/jobs", lampJob("lamp", dev)).mustStatus(t, http.StatusCreated)

	r := h.adminDo(t, "GET", "/api/v1/jobs/lamp/next?n=4", nil)
	r.mustStatus(t, http.StatusOK)
	type fire struct {
		At, Wall string
		Note     string
	}
	show := func(fs []schedule.Fire) []fire {
		var out []fire
		for _, f := range fs {
			out = append(out, fire{f.At.UTC().Format(time.RFC3339), f.Wall.Format(time.RFC3339), f.Note})
		}
		return out
	}
	want := []fire{
		{"2026-03-28T01:30:00Z", "2026-03-28T02:30:00+01:00", ""},
		{"2026-03-29T01:00:00Z", "2026-03-29T03:00:00+02:00", "moved from 02:30: it does not exist on 2026-03-29 (clocks go forward from 02:00 to 03:00)"},
		{"2026-03-30T00:30:00Z", "2026-03-30T02:30:00+02:00", ""},
		{"2026-03-31T00:30:00Z", "2026-03-31T02:30:00+02:00", ""},
	}
	if diff := cmp.Diff(want, show(decode[[]schedule.Fire](t, r))); diff != "" {
		t.Errorf("next (-want +got):\n%s", diff)
	}
	// The same trigger, not stored, through preview: it reaches October.
	r = h.adminDo(t, "POST", "/api/v1/jobs/preview?n=300", `{"trigger":{"cron":"30 2 * * *","zone":"Europe/Berlin"}}`)
	r.mustStatus(t, http.StatusOK)
	fires := show(decode[[]schedule.Fire](t, r))
	if len(fires) != 300 {
		t.Fatalf("preview: %d fires, want 300", len(fires))
	}
	var noted []fire
	for _, f := range fires {
		if f.Note != "" {
			noted = append(noted, f)
		}
	}
	want = []fire{want[1], {"2026-10-25T00:30:00Z", "2026-10-25T02:30:00+02:00",
		"first of two 02:30s on 2026-10-25 (clocks go back from 03:00 to 02:00): runs only at the first"}}
	if diff := cmp.Diff(want, noted); diff != "" {
		t.Errorf("preview's notes (-want +got):\n%s", diff)
	}
	if i := slices.IndexFunc(fires, func(f fire) bool { return f.At == "2026-10-26T01:30:00Z" }); i < 0 || fires[i-1].At != "2026-10-25T00:30:00Z" {
		t.Errorf("the repeated 02:30 runs twice or not at all: %v", fires[i-2:i+1])
	}
	h.adminDo(t, "GET", "/api/v1/jobs/lamp/next?n=1001", nil).mustProblem(t, http.StatusBadRequest)
	h.adminDo(t, "GET", "/api/v1/jobs/nolamp/next", nil).mustProblem(t, http.StatusNotFound)
}

// TestJobsPauseResumeRunNow runs a command job by hand, and on schedule
// after a pause: each run is in its history, its command in the audit log
// as sent by the scheduler.
func TestJobsPauseResumeRunNow(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	h.connect(t, dev, simHardware)
	answer := func(_ string, c *protocol.Command) *protocol.CommandResult {
		return &protocol.CommandResult{ID: c.ID, Status: protocol.ResultOK}
	}
	h.answer.Store(&answer)
	job := lampJob("lamp", dev)
	job["trigger"] = map[string]any{"every": "1h"}
	h.adminDo(t, "POST", "/api/v1/jobs", job).mustStatus(t, http.StatusCreated)

	r := h.adminDo(t, "POST", "/api/v1/jobs/lamp/pause", nil)
	r.mustStatus(t, http.StatusOK)
	if st := decode[scheduler.Status](t, r); !st.Paused || !st.Next.IsZero() {
		t.Errorf("paused: %+v", st)
	}
	if st := decode[scheduler.Status](t, h.adminDo(t, "GET", "/api/v1/jobs/lamp", nil)); !st.Paused {
		t.Errorf("get after pause: %+v", st)
	}
	// A paused job runs by hand.
	r = h.adminDo(t, "POST", "/api/v1/jobs/lamp/run", nil)
	r.mustStatus(t, http.StatusAccepted)
	manual := decode[scheduler.Run](t, r)
	if manual.Cause != "manual" || manual.Status != scheduler.RunRunning || !manual.Scheduled.Equal(t0) || manual.Version != 1 {
		t.Errorf("run now: %+v", manual)
	}
	done := h.runsUntil(t, "lamp", func(r scheduler.Run) bool { return r.ID == manual.ID && r.Status != scheduler.RunRunning })
	if done.Status != scheduler.RunOK || done.Attempts != 1 || done.Result != "command "+manual.ID+".1: ok" {
		t.Errorf("manual run: %+v", done)
	}
	audit := decode[AuditList](t, h.adminDo(t, "GET", "/api/v1/audit?device="+dev, nil))
	if len(audit.Commands) != 1 || audit.Commands[0].ID != manual.ID+".1" || audit.Commands[0].Actor != "scheduler:lamp" {
		t.Errorf("audit: %+v", audit.Commands)
	}

	// Resumed, it fires from now: at 13:00, an hour on.
	r = h.adminDo(t, "POST", "/api/v1/jobs/lamp/resume", nil)
	r.mustStatus(t, http.StatusOK)
	if st := decode[scheduler.Status](t, r); st.Paused || !st.Next.Equal(t0.Add(time.Hour)) {
		t.Errorf("resumed: %+v", st)
	}
	h.clock.Advance(time.Hour)
	fired := h.runsUntil(t, "lamp", func(r scheduler.Run) bool { return r.Cause == "schedule" && r.Status == scheduler.RunOK })
	if fired.ID != fmt.Sprintf("lamp.%d", t0.Add(time.Hour).Unix()) || !fired.Scheduled.Equal(t0.Add(time.Hour)) {
		t.Errorf("scheduled run: %+v", fired)
	}
	r = h.adminDo(t, "GET", "/api/v1/jobs/lamp/runs?limit=1", nil)
	r.mustStatus(t, http.StatusOK)
	if runs := decode[[]scheduler.Run](t, r); len(runs) != 1 || runs[0].ID != fired.ID {
		t.Errorf("runs?limit=1: %+v, want the newest, %s", runs, fired.ID)
	}
	h.adminDo(t, "GET", "/api/v1/jobs/lamp/runs?limit=101", nil).mustProblem(t, http.StatusBadRequest)
	h.adminDo(t, "GET", "/api/v1/jobs/nolamp/runs", nil).mustProblem(t, http.StatusNotFound)
	for _, a := range []string{"pause", "resume"} {
		h.adminDo(t, "POST", "/api/v1/jobs/nolamp/"+a, nil).mustProblem(t, http.StatusNotFound)
	}
}

// TestJobActions runs a job of each other action by hand.
func TestJobActions(t *testing.T) {
	h := newHarness(t)
	keys := make(chan string, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys <- r.Header.Get("Idempotency-Key")
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	const doc = "/api/v1/config/agent/default"
	h.configPut(t, doc, map[string]string{"If-None-Match": "*"}, map[string]any{"content": map[string]any{"log_level": "info"}}).mustStatus(t, http.StatusCreated)
	h.configPut(t, doc, ifMatch(`"1"`), map[string]any{"content": map[string]any{"log_level": "debug"}}).mustStatus(t, http.StatusOK)

	run := func(t *testing.T, id string, action map[string]any) scheduler.Run {
		t.Helper()
		h.adminDo(t, "POST", "/api/v1/jobs", map[string]any{"id": id, "trigger": map[string]any{"cron": "@daily", "zone": "UTC"}, "action": action}).mustStatus(t, http.StatusCreated)
		r := h.adminDo(t, "POST", "/api/v1/jobs/"+id+"/run", nil)
		r.mustStatus(t, http.StatusAccepted)
		started := decode[scheduler.Run](t, r)
		return h.runsUntil(t, id, func(r scheduler.Run) bool { return r.ID == started.ID && r.Status != scheduler.RunRunning })
	}
	t.Run("webhook", func(t *testing.T) {
		r := run(t, "hook", map[string]any{"webhook": map[string]any{"url": hook.URL + "/x", "body": map[string]any{"light": "on"}}})
		if r.Status != scheduler.RunOK || r.Result != "webhook answered 204" {
			t.Errorf("run: %+v", r)
		}
		if key := <-keys; key != r.ID {
			t.Errorf("Idempotency-Key %q, want the run's ID %q", key, r.ID)
		}
	})
	t.Run("publish", func(t *testing.T) {
		r := run(t, "bell", map[string]any{"publish": map[string]any{"topic": "home/bell", "payload": "ring", "qos": 1}})
		if r.Status != scheduler.RunOK {
			t.Errorf("run: %+v", r)
		}
		if m := <-h.published; m != (publishedMessage{"home/bell", "ring", 1, false}) {
			t.Errorf("published %+v", m)
		}
	})
	t.Run("config", func(t *testing.T) {
		r := run(t, "quiet", map[string]any{"config": map[string]any{"kind": "agent", "scope": "default", "version": 1}})
		if r.Status != scheduler.RunOK || r.Result != "agent default version 3 written (the content of version 1)" {
			t.Errorf("run: %+v", r)
		}
		v := decode[spec.Version](t, h.adminDo(t, "GET", doc, nil))
		if v.Number != 3 || v.Author != "scheduler:quiet" || string(v.Content) != `{"log_level":"info"}` {
			t.Errorf("the document: %+v", v)
		}
	})
}

// TestJobWaitsForClock shows a calendar job waiting while the clock is
// not trusted; an interval job does not wait.
func TestJobWaitsForClock(t *testing.T) {
	h := newHarness(t)
	h.adminDo(t, "POST", "/api/v1/jobs", webhookJob("daily", "@daily")).mustStatus(t, http.StatusCreated)
	every := webhookJob("often", "")
	every["trigger"] = map[string]any{"every": "1h"}
	h.adminDo(t, "POST", "/api/v1/jobs", every).mustStatus(t, http.StatusCreated)
	why := "the kernel clock is not synchronised"
	h.clockWhy.Store(&why)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) { // polling the scheduler's loop
		r := h.adminDo(t, "GET", "/api/v1/jobs", nil)
		r.mustStatus(t, http.StatusOK)
		got := map[string]string{}
		for _, st := range decode[[]scheduler.Status](t, r) {
			got[st.Job.ID] = st.Waiting
		}
		want := map[string]string{"daily": "waiting for a synchronised clock: " + why, "often": ""}
		if cmp.Equal(want, got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting: %v, want %v", got, want)
		}
	}
}
