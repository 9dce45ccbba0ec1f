package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
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
