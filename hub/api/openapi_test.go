package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// This file checks the server against openapi.yaml in both directions:
// every response the tests record (through harness.send) must be documented
// with a matching schema, and every documented operation must be routed.

// docURL is the base URI of the document in the schema compiler.
const docURL = "mem:///openapi.json"

var (
	contractOnce sync.Once
	theContract  *contract
	contractErr  error
)

// loadContract parses the embedded document once per test binary.
func loadContract(t testing.TB) *contract {
	t.Helper()
	contractOnce.Do(func() { theContract, contractErr = newContract(openapiYAML) })
	if contractErr != nil {
		t.Fatalf("openapi.yaml: %v", contractErr)
	}
	return theContract
}

// contract is the OpenAPI document, parsed, with compiled schemas.
type contract struct {
	doc map[string]any

	mu       sync.Mutex // guards the fields below (a Compiler is not safe for concurrent use)
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
}

func newContract(src []byte) (*contract, error) {
	doc, err := parseDocument(src)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, fmt.Errorf("add to schema compiler: %w", err)
	}
	return &contract{doc: doc, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
}

// parseDocument decodes the YAML document into the types encoding/json
// produces (string-keyed maps, json.Number), as the schema compiler wants.
func parseDocument(src []byte) (map[string]any, error) {
	var raw any
	if err := yaml.Unmarshal(src, &raw); err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	v, err := jsonCompatible(raw, "")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode as JSON: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("document is %T, want an object", doc)
	}
	return m, nil
}

// jsonCompatible converts a YAML-decoded value to JSON types; at names the
// place in the document for errors.
func jsonCompatible(v any, at string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := jsonCompatible(e, at+"/"+k)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%s: key %v is a %T, not a string (quote it; JSON has only string keys)", at, k, k)
			}
			c, err := jsonCompatible(e, at+"/"+ks)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := jsonCompatible(e, fmt.Sprintf("%s/%d", at, i))
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case nil, bool, string, int, int64, uint64, float64:
		return v, nil
	default:
		return nil, fmt.Errorf("%s: %T is not a JSON value (quote it)", at, v)
	}
}

// get returns the value at the JSON pointer tokens ptr.
func (c *contract) get(ptr ...string) (any, bool) {
	var v any = c.doc
	for _, tok := range ptr {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return v, true
}

// object returns the object at ptr, following a local $ref, and the
// pointer it was found at.
func (c *contract) object(ptr ...string) (map[string]any, []string, bool) {
	v, ok := c.get(ptr...)
	if !ok {
		return nil, nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, false
	}
	ref, ok := m["$ref"].(string)
	if !ok {
		return m, ptr, true
	}
	target, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, nil, false
	}
	var next []string
	for tok := range strings.SplitSeq(target, "/") {
		next = append(next, strings.NewReplacer("~1", "/", "~0", "~").Replace(tok))
	}
	return c.object(next...)
}

// location returns the schema compiler's URL of the JSON pointer ptr.
func location(ptr []string) string {
	var b strings.Builder
	b.WriteString(docURL + "#")
	for _, tok := range ptr {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)))
	}
	return b.String()
}

// schema compiles (once) the schema at ptr.
func (c *contract) schema(ptr []string) (*jsonschema.Schema, error) {
	loc := location(ptr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.schemas[loc]; ok {
		return s, nil
	}
	s, err := c.compiler.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("compile schema %s: %w", loc, err)
	}
	c.schemas[loc] = s
	return s, nil
}

// validate checks a JSON body against the schema at ptr.
func (c *contract) validate(ptr []string, body []byte) error {
	s, err := c.schema(ptr)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %w: %s", err, body)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("body %s: %w", bytes.TrimSpace(body), err)
	}
	return nil
}

// exchange is one request made by a test and the answer it got.
type exchange struct {
	pattern  string // the ServeMux pattern that matched; "" if none
	method   string
	target   string
	reqType  string // Content-Type of the request body
	reqBody  []byte
	hasBody  bool
	status   int
	header   http.Header
	respBody []byte
}

// check reports every way x disagrees with the document.
func (c *contract) check(x exchange) error {
	if x.pattern == "" {
		// No route: the router's 404, or 405 with the allowed methods.
		switch {
		case x.status == http.StatusMethodNotAllowed && x.header.Get("Allow") == "":
			return errors.New("no route matched: 405 without an Allow header")
		case x.status != http.StatusNotFound && x.status != http.StatusMethodNotAllowed:
			return fmt.Errorf("no route matched, yet the answer is %d, not 404 or 405", x.status)
		}
		resp, at, ok := c.object("components", "responses", "Problem")
		if !ok {
			return errors.New("components/responses/Problem is missing")
		}
		return c.checkContent(at, resp, x)
	}
	method, path, ok := strings.Cut(x.pattern, " ")
	if !ok {
		return fmt.Errorf("pattern %q has no method", x.pattern)
	}
	op := []string{"paths", path, strings.ToLower(method)}
	if _, ok := c.get(op...); !ok {
		return fmt.Errorf("%s is routed by the server but not in the document", x.pattern)
	}
	var errs []error
	if x.status >= 200 && x.status < 300 {
		errs = append(errs, c.checkRequest(op, x))
	}
	status := fmt.Sprint(x.status)
	resp, at, ok := c.object(append(op, "responses", status)...)
	if !ok {
		errs = append(errs, fmt.Errorf("%s answered %d, which the document does not list", x.pattern, x.status))
	} else {
		errs = append(errs, c.checkContent(at, resp, x))
	}
	return errors.Join(errs...)
}

// checkRequest checks a request body the server accepted against the
// operation's requestBody: the server must not accept what the document
// forbids.
func (c *contract) checkRequest(op []string, x exchange) error {
	rb, at, ok := c.object(append(op, "requestBody")...)
	if !ok {
		if x.hasBody && len(x.reqBody) > 0 {
			return fmt.Errorf("%s accepted a request body the document does not define", x.pattern)
		}
		return nil
	}
	if !x.hasBody || len(x.reqBody) == 0 {
		if required, _ := rb["required"].(bool); required {
			return fmt.Errorf("%s accepted a request without the required body", x.pattern)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(x.reqType)
	if err != nil {
		return fmt.Errorf("request Content-Type %q: %w", x.reqType, err)
	}
	content, _ := rb["content"].(map[string]any)
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s accepted a %s body; the document allows %v", x.pattern, mt, slices.Sorted(maps.Keys(content)))
	}
	if _, ok := media["schema"]; !ok {
		return nil
	}
	if err := c.validate(append(at, "content", mt, "schema"), x.reqBody); err != nil {
		return fmt.Errorf("%s accepted a request the document forbids: %w", x.pattern, err)
	}
	return nil
}

// checkContent checks the response's media type and body against the
// response object resp found at the pointer at.
func (c *contract) checkContent(at []string, resp map[string]any, x exchange) error {
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(x.respBody) != 0 {
			return fmt.Errorf("%s %d: the document defines no body, the server sent %q", x.pattern, x.status, x.respBody)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(x.header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s %d: Content-Type %q: %w", x.pattern, x.status, x.header.Get("Content-Type"), err)
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %d: Content-Type %s is not documented; the document has %v", x.pattern, x.status, mt, slices.Sorted(maps.Keys(content)))
	}
	if mt == "application/problem+json" {
		var p problem
		if err := json.Unmarshal(x.respBody, &p); err != nil || p.Status != x.status {
			return fmt.Errorf("%s %d: problem status %d does not match the HTTP status (err %v)", x.pattern, x.status, p.Status, err)
		}
	}
	if _, ok := media["schema"]; !ok {
		return nil
	}
	if err := c.validate(append(at, "content", mt, "schema"), x.respBody); err != nil {
		return fmt.Errorf("%s %d: %w", x.pattern, x.status, err)
	}
	return nil
}

// TestOpenAPIServed checks that the document is served as YAML and is
// OpenAPI 3.1.
func TestOpenAPIServed(t *testing.T) {
	h := newHarness(t)
	resp := h.send(t, request{method: "GET", target: "/api/v1/openapi.yaml"})
	resp.mustStatus(t, http.StatusOK)
	if got := resp.header.Get("Content-Type"); got != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", got)
	}
	if !bytes.Equal(resp.body, openapiYAML) {
		t.Errorf("served document differs from the embedded openapi.yaml")
	}
	var doc struct {
		OpenAPI string         `yaml:"openapi"`
		Info    map[string]any `yaml:"info"`
		Paths   map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(resp.body, &doc); err != nil {
		t.Fatalf("served document is not YAML: %v", err)
	}
	if !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(doc.OpenAPI) {
		t.Errorf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	if doc.Info["title"] == nil || len(doc.Paths) == 0 {
		t.Errorf("document lacks info.title or paths: %+v", doc)
	}
}

// TestOpenAPISchemasCompile compiles every schema in the document, so that
// a broken schema fails even if no test response reaches it.
func TestOpenAPISchemasCompile(t *testing.T) {
	c := loadContract(t)
	schemas, _, ok := c.object("components", "schemas")
	if !ok || len(schemas) == 0 {
		t.Fatal("components/schemas is missing")
	}
	var ptrs [][]string
	for name := range schemas {
		ptrs = append(ptrs, []string{"components", "schemas", name})
	}
	paths, _ := c.get("paths")
	for path, item := range paths.(map[string]any) {
		for method := range item.(map[string]any) {
			op := []string{"paths", path, method}
			if rb, at, ok := c.object(append(op, "requestBody")...); ok {
				for mt := range rb["content"].(map[string]any) {
					ptrs = append(ptrs, append(at, "content", mt, "schema"))
				}
			}
			responses, _, _ := c.object(append(op, "responses")...)
			for status := range responses {
				resp, at, ok := c.object(append(op, "responses", status)...)
				if !ok {
					t.Errorf("%s %s: response %s: unresolvable", method, path, status)
					continue
				}
				content, _ := resp["content"].(map[string]any)
				for mt, media := range content {
					if _, ok := media.(map[string]any)["schema"]; ok {
						ptrs = append(ptrs, append(at, "content", mt, "schema"))
					}
				}
			}
		}
	}
	for _, p := range ptrs {
		if _, err := c.schema(p); err != nil {
			t.Error(err)
		}
	}
}

// TestOpenAPIOperationsRouted checks that every operation in the document
// reaches its own route, not another pattern.
func TestOpenAPIOperationsRouted(t *testing.T) {
	h := newHarness(t)
	c := loadContract(t)
	paths, _ := c.get("paths")
	param := regexp.MustCompile(`\{[^}/]+\}`)
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	n := 0
	for path, item := range paths.(map[string]any) {
		for method := range item.(map[string]any) {
			if !slices.Contains(methods, method) {
				continue // parameters, summary, …
			}
			n++
			want := strings.ToUpper(method) + " " + path
			req := httptest.NewRequest(strings.ToUpper(method), param.ReplaceAllString(path, "x"), nil)
			req.Header.Set("Authorization", "Bearer "+h.admin)
			h.handler.ServeHTTP(httptest.NewRecorder(), req)
			if req.Pattern != want {
				t.Errorf("%s %s is routed to pattern %q, want %q", strings.ToUpper(method), path, req.Pattern, want)
			}
		}
	}
	if n == 0 {
		t.Fatal("the document has no operations")
	}
}

// TestContractCatchesMismatches makes sure the contract check can fail.
func TestContractCatchesMismatches(t *testing.T) {
	c := loadContract(t)
	okDevice := `{"id":"d1","name":"pi","status":"offline","health":"offline","state":"accepted","status_reason":"enrolled","status_since":"2026-03-01T12:00:00Z",` +
		`"labels":{},"public_key":"AAAA","enrolled_at":"2026-03-01T12:00:00Z"}`
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	good := exchange{pattern: "GET /api/v1/devices/{id}", method: "GET", status: 200, header: jsonHeader, respBody: []byte(okDevice)}
	if err := c.check(good); err != nil {
		t.Fatalf("a valid exchange fails the check: %v", err)
	}
	tests := []struct {
		name string
		edit func(x *exchange)
	}{
		{"undocumented route", func(x *exchange) { x.pattern = "GET /api/v1/nothing" }},
		{"undocumented status", func(x *exchange) { x.status = 418 }},
		{"undocumented media type", func(x *exchange) { x.header = http.Header{"Content-Type": {"text/plain"}} }},
		{"unknown property", func(x *exchange) {
			x.respBody = []byte(strings.Replace(okDevice, `"labels"`, `"secret_hash":"x","labels"`, 1))
		}},
		{"bad status enum", func(x *exchange) { x.respBody = []byte(strings.Replace(okDevice, `"offline"`, `"asleep"`, 1)) }},
		{"bad date-time", func(x *exchange) {
			x.respBody = []byte(strings.Replace(okDevice, `2026-03-01T12:00:00Z`, `yesterday`, 1))
		}},
		{"bad base64", func(x *exchange) { x.respBody = []byte(strings.Replace(okDevice, `"AAAA"`, `"!!"`, 1)) }},
		{"no route", func(x *exchange) { x.pattern = "" }},
		{"no route, plain-text 404", func(x *exchange) {
			x.pattern, x.status, x.header, x.respBody = "", 404, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, []byte("404 page not found\n")
		}},
		{"405 without Allow", func(x *exchange) {
			x.pattern, x.status, x.header = "", 405, http.Header{"Content-Type": {"application/problem+json"}}
			x.respBody = []byte(`{"type":"about:blank","title":"Method Not Allowed","status":405,"detail":"x"}`)
		}},
		{"body on 204", func(x *exchange) { x.method, x.pattern, x.status = "DELETE", "DELETE /api/v1/devices/{id}", 204 }},
		{"problem status mismatch", func(x *exchange) {
			x.status = 404
			x.header = http.Header{"Content-Type": {"application/problem+json"}}
			x.respBody = []byte(`{"type":"about:blank","title":"Not Found","status":400}`)
		}},
		{"accepted an invalid request", func(x *exchange) {
			x.pattern, x.method, x.status = "POST /api/v1/join-tokens", "POST", 201
			x.respBody = []byte(`{"token":"alicia_join_x","uses":1,"expires_at":"2026-03-01T12:00:00Z"}`)
			x.hasBody, x.reqType, x.reqBody = true, "application/json", []byte(`{"uses":0}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := good
			tt.edit(&x)
			if err := c.check(x); err == nil {
				t.Errorf("check passed; want an error")
			}
		})
	}
}

// TestJSONCompatible checks the YAML conversion refuses what JSON cannot hold.
func TestJSONCompatible(t *testing.T) {
	for _, src := range []string{"responses:\n  200: {description: x}\n", "date: 2026-03-01T12:00:00Z\n"} {
		var raw any
		if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
			t.Fatal(err)
		}
		if _, err := jsonCompatible(raw, ""); err == nil {
			t.Errorf("jsonCompatible(%q) succeeded; want an error", src)
		}
	}
}
