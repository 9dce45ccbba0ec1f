package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestStrictBody sends bodies that encoding/json alone would take (or take
// wrongly) to the routes that read one: each is refused with a problem
// naming what is wrong.
func TestStrictBody(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	rule := `{"name":"Hot","kind":"threshold","metric":"temperature_celsius","op":">","threshold":60,"for":"1m","severity":"warning"}`
	tests := []struct {
		name          string
		method, path  string
		body          string
		contentType   string // default application/json
		noContentType bool
		wantStatus    int
		wantDetail    string // substring of the problem detail
	}{
		// The probe's findings.
		{name: "duplicate key, last would win", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":1,"uses":1000}`, wantStatus: 400, wantDetail: `"uses": duplicate key (byte 10)`},
		{name: "key in another case", method: "POST", path: "/api/v1/join-tokens", body: `{"Uses":5}`, wantStatus: 400, wantDetail: `did you mean "uses"`},
		{name: "key in upper case", method: "POST", path: "/api/v1/join-tokens", body: `{"TTL":"1h"}`, wantStatus: 400, wantDetail: `"TTL": unknown field`},
		{name: "key with a Kelvin sign", method: "POST", path: "/api/v1/integrations", body: `{"name":"ha","\u212aind":"homeassistant"}`, wantStatus: 400, wantDetail: "unknown field"},
		{name: "null body", method: "POST", path: "/api/v1/join-tokens", body: `null`, wantStatus: 400, wantDetail: "not null"},
		{name: "null enrolment", method: "POST", path: "/api/v1/enroll", body: `null`, wantStatus: 400, wantDetail: "not null"},
		{name: "string body", method: "POST", path: "/api/v1/join-tokens", body: `"uses"`, wantStatus: 400, wantDetail: "not a string"},
		{name: "number body", method: "POST", path: "/api/v1/join-tokens", body: `3`, wantStatus: 400, wantDetail: "not a number"},
		{name: "array body", method: "POST", path: "/api/v1/join-tokens", body: `[{"uses":3}]`, wantStatus: 400, wantDetail: "not an array"},
		{name: "text/plain", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":3}`, contentType: "text/plain", wantStatus: 415, wantDetail: "text/plain"},
		{name: "form type", method: "POST", path: "/api/v1/integrations", body: `{"name":"ha","kind":"homeassistant"}`, contentType: "application/x-www-form-urlencoded", wantStatus: 415, wantDetail: "application/json"},
		{name: "no Content-Type", method: "POST", path: "/api/v1/enroll", body: `{}`, noContentType: true, wantStatus: 415, wantDetail: "missing"},
		{name: "other charset", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":3}`, contentType: "application/json; charset=latin1", wantStatus: 415, wantDetail: "charset"},
		{name: "other parameter", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":3}`, contentType: "application/json; x=y", wantStatus: 415, wantDetail: "x=y"},
		{name: "bad media type", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":3}`, contentType: "json/", wantStatus: 415, wantDetail: "json/"},
		{name: "text/plain on an empty optional body", method: "POST", path: "/api/v1/pairing", body: ``, contentType: "text/plain", wantStatus: 415, wantDetail: "text/plain"},

		// The rest of the rules.
		{name: "null field", method: "POST", path: "/api/v1/join-tokens", body: `{"uses":null}`, wantStatus: 400, wantDetail: `"uses": null is not allowed`},
		{name: "null name", method: "PATCH", path: "/api/v1/devices/" + dev, body: `{"name":null}`, wantStatus: 400, wantDetail: `"name": null`},
		{name: "null labels", method: "PATCH", path: "/api/v1/devices/" + dev, body: `{"labels":null}`, wantStatus: 400, wantDetail: `"labels": null`},
		{name: "duplicate label", method: "PATCH", path: "/api/v1/devices/" + dev, body: `{"labels":{"room":"a","room":"b"}}`, wantStatus: 400, wantDetail: `"labels.room": duplicate key`},
		{name: "nested key in another case", method: "POST", path: "/api/v1/devices/" + dev + "/commands", body: `{"action":"gpio.read","params":{"Line":"relay"}}`, wantStatus: 400, wantDetail: `"params.Line": unknown field`},
		{name: "nested duplicate", method: "POST", path: "/api/v1/devices/" + dev + "/commands", body: `{"action":"gpio.read","params":{"line":"a","line":"b"}}`, wantStatus: 400, wantDetail: `"params.line": duplicate key`},
		{name: "nested null", method: "POST", path: "/api/v1/devices/" + dev + "/commands", body: `{"action":"gpio.write","params":{"line":"a","level":null}}`, wantStatus: 400, wantDetail: `"params.level": null`},
		{name: "nested unknown field", method: "POST", path: "/api/v1/devices/" + dev + "/commands", body: `{"action":"gpio.read","params":{"pin":4}}`, wantStatus: 400, wantDetail: `"params.pin": unknown field`},
		{name: "wrong type", method: "POST", path: "/api/v1/devices/" + dev + "/commands", body: `{"action":"gpio.read","timeout_ms":"5s"}`, wantStatus: 400, wantDetail: `"timeout_ms": got a JSON string, want an integer`},
		{name: "trailing data", method: "POST", path: "/api/v1/devices/" + dev + "/approve", body: `{"code":"x"} {}`, wantStatus: 400, wantDetail: "trailing data"},
		{name: "trailing garbage", method: "POST", path: "/api/v1/devices/" + dev + "/approve", body: `{"code":"x"}]`, wantStatus: 400, wantDetail: "trailing data"},
		{name: "truncated", method: "POST", path: "/api/v1/pair", body: `{"name":"x"`, wantStatus: 400, wantDetail: "ends in the middle"},
		{name: "syntax error", method: "POST", path: "/api/v1/pair", body: `{"name" "x"}`, wantStatus: 400, wantDetail: "invalid JSON at byte"},
		{name: "whitespace only", method: "POST", path: "/api/v1/enroll", body: "  \n", wantStatus: 400, wantDetail: "invalid JSON"},
		{name: "empty required body", method: "POST", path: "/api/v1/enroll", body: "", wantStatus: 400, wantDetail: "empty body"},
		{name: "oversize", method: "POST", path: "/api/v1/integrations", body: oversize, wantStatus: 413, wantDetail: "65536"},

		// Alert rules are health's wire type: the same rules, keys in lowercase.
		{name: "rule key in another case", method: "PUT", path: "/api/v1/alerts/rules/hot", body: strings.Replace(rule, `"name"`, `"Name"`, 1), wantStatus: 400, wantDetail: `did you mean "name"`},
		{name: "rule duplicate key", method: "PUT", path: "/api/v1/alerts/rules/hot", body: strings.Replace(rule, `"for":"1m"`, `"for":"1m","for":"1s"`, 1), wantStatus: 400, wantDetail: `"for": duplicate key`},
		{name: "rule duplicate nested key", method: "PUT", path: "/api/v1/alerts/rules/hot", body: strings.Replace(rule, `"for":"1m"`, `"for":"1m","devices":{"room":"a","room":"b"}`, 1), wantStatus: 400, wantDetail: `"devices.room": duplicate key`},
		{name: "rule null body", method: "PUT", path: "/api/v1/alerts/rules/hot", body: `null`, wantStatus: 400, wantDetail: "not null"},
		{name: "rule as text/plain", method: "PUT", path: "/api/v1/alerts/rules/hot", body: rule, contentType: "text/plain", wantStatus: 415, wantDetail: "text/plain"},
		{name: "rule oversize", method: "PUT", path: "/api/v1/alerts/rules/hot", body: `{"name":"` + strings.Repeat("x", maxRuleBody) + `"}`, wantStatus: 413, wantDetail: "16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.send(t, request{method: tt.method, target: tt.path, auth: "Bearer " + h.admin, body: tt.body,
				contentType: tt.contentType, noContentType: tt.noContentType})
			if detail := resp.mustProblem(t, tt.wantStatus); !strings.Contains(detail, tt.wantDetail) {
				t.Errorf("detail %q does not mention %q", detail, tt.wantDetail)
			}
			if tt.wantStatus == http.StatusUnsupportedMediaType {
				if got := resp.header.Get("Accept"); got != "application/json" {
					t.Errorf("415 with Accept %q, want application/json", got)
				}
			}
		})
	}
	// Nothing above changed the device or made a token or rule.
	if d := h.device(t, dev); d.Name != "pi" || len(d.Labels) != 0 {
		t.Errorf("device changed by refused requests: %+v", d)
	}
	h.adminDo(t, "GET", "/api/v1/alerts/rules/hot", nil).mustProblem(t, http.StatusNotFound)
}

// TestStrictBodyAccepts checks what the strict decoder still takes.
func TestStrictBodyAccepts(t *testing.T) {
	h := newHarness(t)
	dev := h.enroll(t, "pi").DeviceID
	tests := []struct {
		name         string
		method, path string
		body         any // nil: none
		contentType  string
		wantStatus   int
	}{
		{"charset utf-8", "POST", "/api/v1/join-tokens", `{"uses":2}`, "application/json; charset=utf-8", 201},
		{"charset UTF-8, type in capitals", "POST", "/api/v1/join-tokens", `{"uses":2}`, "Application/JSON; Charset=UTF-8", 201},
		{"optional body left out, no type", "POST", "/api/v1/join-tokens", nil, "", 201},
		{"optional body empty", "POST", "/api/v1/pairing", "", "", 200},
		{"whitespace around the object", "POST", "/api/v1/join-tokens", " \n{\"uses\" : 2 }\n", "", 201},
		{"null label removes it", "PATCH", "/api/v1/devices/" + dev, `{"labels":{"room":null}}`, "", 200},
		{"escaped key", "PATCH", "/api/v1/devices/" + dev, `{"n\u0061me":"kitchen"}`, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.send(t, request{method: tt.method, target: tt.path, auth: "Bearer " + h.admin, body: tt.body, contentType: tt.contentType})
			resp.mustStatus(t, tt.wantStatus)
		})
	}
	if d := h.device(t, dev); d.Name != "kitchen" {
		t.Errorf("name = %q after a patch with an escaped key, want kitchen", d.Name)
	}
}
