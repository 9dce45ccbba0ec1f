package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzEnroll feeds arbitrary bodies to the enrolment endpoint, the one
// route that takes input from the network before any authentication: it
// must never panic, never answer 5xx for bad input, never enrol anything
// without a valid proof, and always answer JSON or problem+json.
func FuzzEnroll(f *testing.F) {
	h := newHarness(f)
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `{"token":"x"}`,
		`{"token":"alicia_join_x.` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `","public_key":"AAAA","name":"n","signature":"AAAA"}`,
		`{"token":1,"public_key":{},"name":[],"signature":null}`,
		`{"token":"a","public_key":"` + string(bytes.Repeat([]byte("A"), 44)) + `","name":"\u0000","signature":"x"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/enroll", bytes.NewReader(body))
		req.RemoteAddr = "127.0.0.1:1"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Code == http.StatusCreated {
			t.Fatalf("enrolled with a fuzzed body %q", body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("content type %q for status %d", ct, rec.Code)
		}
	})
}

// FuzzStrictBody checks the strict decoder against encoding/json: it never
// panics, and a body it accepts decodes to the same value with
// encoding/json, every top-level key exactly a field's name.
func FuzzStrictBody(f *testing.F) {
	for _, seed := range []string{
		`{}`, `null`, `{"action":"gpio.write","params":{"line":"relay","level":true},"timeout_ms":5000}`,
		`{"action":"x","action":"y"}`, `{"Action":"x"}`, `{"params":{"level":null}}`, `{"params":{"Line":"a"}}`,
		`{"action":"a"} x`, `{"async":true,"queue_ttl_ms":18446744073710}`, `{"\u0061ction":"x"}`,
	} {
		f.Add([]byte(seed))
	}
	fields := structFields(reflect.TypeFor[CommandRequest]())
	f.Fuzz(func(t *testing.T, body []byte) {
		var strict CommandRequest
		if err := strictUnmarshal(body, &strict); err != nil {
			return
		}
		var loose CommandRequest
		if err := json.Unmarshal(body, &loose); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if diff := cmp.Diff(loose, strict); diff != "" {
			t.Fatalf("%q decodes differently (-encoding/json +strict):\n%s", body, diff)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("accepted %q, not an object: %v", body, err)
		}
		for k := range top {
			if _, ok := fields[k]; !ok {
				t.Fatalf("accepted %q with key %q", body, k)
			}
		}
	})
}

// FuzzStrictJobBody is FuzzStrictBody for a job, whose trigger and
// durations decode themselves and whose fields are an embedded struct's:
// the decoder never panics, and what it accepts encoding/json decodes the
// same.
func FuzzStrictJobBody(f *testing.F) {
	for _, seed := range []string{
		`{"id":"a","trigger":{"cron":"0 6 * * *","zone":"UTC"},"action":{"webhook":{"url":"http://x/","body":{"a":1}}}}`,
		`{"id":"a","trigger":{"every":"15m","anchor":"2026-01-01T00:00:00Z"},"jitter":"1m","retries":0}`,
		`{"trigger":{"sun":{"event":"sunset","offset":"-30m"},"zone":"UTC"},"priority":"high"}`,
		`{"trigger":{"cron":5},"grace":5}`, `{"trigger":null}`, `{"trigger":{"colour":1}}`, `{"Job":{}}`,
		`{"action":{"publish":{"topic":"t","payload":"p","qos":1}},"comment":"c","deadline":"1m"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var strict jobWrite
		if err := strictUnmarshal(body, &strict); err != nil {
			return
		}
		var loose jobWrite
		if err := json.Unmarshal(body, &loose); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if diff := cmp.Diff(loose, strict); diff != "" {
			t.Fatalf("%q decodes differently (-encoding/json +strict):\n%s", body, diff)
		}
	})
}
