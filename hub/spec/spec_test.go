package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 12, 8, 6, 30, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	dir string
	db  *store.DB
	s   *Store
	clk *testkit.Clock
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), clk: testkit.NewClock(t0)}
	e.open()
	return e
}

func (e *env) open() {
	e.t.Helper()
	db := testkit.OpenStore(e.t, e.dir)
	s, err := Open(db, Config{Now: e.clk.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	// These tests merge nested objects: the agent kind gets a labels
	// object here (a kind registered by a service could have one).
	if err := s.Register(KindAgent, agentSchemaWithLabels(e.t)); err != nil {
		e.t.Fatal(err)
	}
	e.db, e.s = db, s
}

// agentSchemaWithLabels is the agent kind's schema with a "labels" object
// of string values, its keys as registry labels are.
func agentSchemaWithLabels(t *testing.T) []byte {
	t.Helper()
	var sch map[string]any
	if err := json.Unmarshal(agentSchema, &sch); err != nil {
		t.Fatal(err)
	}
	sch["properties"].(map[string]any)["labels"] = map[string]any{
		"type":                 "object",
		"maxProperties":        32,
		"propertyNames":        map[string]any{"pattern": "^[a-z][a-z0-9._-]{0,62}$"},
		"additionalProperties": map[string]any{"type": "string", "maxLength": 255},
	}
	b, err := json.Marshal(sch)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

// put writes content (JSON) at scope over version ifv and fails the test
// on error.
func (e *env) put(scope Scope, prio int, ifv uint64, content string) Version {
	e.t.Helper()
	v, err := e.s.Put(Write{Kind: KindAgent, Scope: scope, Priority: prio, IfVersion: ifv, Content: json.RawMessage(content), Author: "admin"})
	if err != nil {
		e.t.Fatalf("Put %s %s: %v", scope, content, err)
	}
	return v
}

func TestSchemaErrorsNamePointerAndRule(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.Put(Write{Kind: KindAgent, Author: "admin",
		Content: json.RawMessage(`{"sample_interval":"10x","collectors":["cpu","gpu"],"bogus":1}`)})
	var se *SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("Put = %v, want a *SchemaError", err)
	}
	got := map[string]string{}
	for _, p := range se.Problems {
		got[p.Pointer] = p.Rule
		if p.Message == "" {
			t.Errorf("problem at %q has no message", p.Pointer)
		}
	}
	want := map[string]string{"/sample_interval": "pattern", "/collectors/1": "enum", "": "additionalProperties"}
	for ptr, rule := range want {
		if got[ptr] != rule {
			t.Errorf("problem at %q: rule %q, want %q (all: %v)", ptr, got[ptr], rule, got)
		}
	}
	if !errors.Is(err, ErrSchema) {
		t.Errorf("errors.Is(%v, ErrSchema) = false", err)
	}
	if !strings.Contains(err.Error(), "at /sample_interval, pattern:") {
		t.Errorf("error %q does not name the pointer and the rule", err)
	}
	if _, err := e.s.Latest(KindAgent, Scope{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a refused write: %v, want nothing stored", err)
	}
	// A label key the registry would refuse; a null (removal) is not
	// checked, a value of the wrong type is.
	for content, want := range map[string]Problem{
		`{"labels":{"Room":"x"}}`:               {Pointer: "/labels", Rule: "propertyNames"},
		`{"labels":{"room":1}}`:                 {Pointer: "/labels/room", Rule: "type"},
		`{"labels":{"room":null},"board":null}`: {},
	} {
		_, err := e.s.Put(Write{Kind: KindAgent, Author: "admin", Content: json.RawMessage(content)})
		if want == (Problem{}) {
			if err != nil {
				t.Errorf("%s: %v, want it stored", content, err)
			}
			continue
		}
		if !errors.As(err, &se) || se.Problems[0].Pointer != want.Pointer || se.Problems[0].Rule != want.Rule {
			t.Errorf("%s: %v, want a problem at %s (%s)", content, err, want.Pointer, want.Rule)
		}
	}
}

func TestInvalidWrites(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name string
		w    Write
		want error
	}{
		{"not an object", Write{Kind: KindAgent, Author: "a", Content: json.RawMessage(`[1]`)}, ErrInvalid},
		{"two values", Write{Kind: KindAgent, Author: "a", Content: json.RawMessage(`{} {}`)}, ErrInvalid},
		{"not JSON", Write{Kind: KindAgent, Author: "a", Content: json.RawMessage(`{`)}, ErrInvalid},
		{"too large", Write{Kind: KindAgent, Author: "a", Content: json.RawMessage(`{"board":"` + strings.Repeat("x", MaxContent) + `"}`)}, ErrInvalid},
		{"no author", Write{Kind: KindAgent, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"priority on the default", Write{Kind: KindAgent, Author: "a", Priority: 1, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"device and selector", Write{Kind: KindAgent, Author: "a", Scope: Scope{Device: "d1", Selector: map[string]string{"room": "x"}}, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"bad device id", Write{Kind: KindAgent, Author: "a", Scope: Scope{Device: "a/b"}, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"bad selector key", Write{Kind: KindAgent, Author: "a", Scope: Scope{Selector: map[string]string{"Room": "x"}}, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"selector value with a slash", Write{Kind: KindAgent, Author: "a", Scope: Scope{Selector: map[string]string{"room": "a/b"}}, Content: json.RawMessage(`{}`)}, ErrInvalid},
		{"unknown kind", Write{Kind: "nope", Author: "a", Content: json.RawMessage(`{}`)}, ErrUnknownKind},
	} {
		if _, err := e.s.Put(tt.w); !errors.Is(err, tt.want) {
			t.Errorf("%s: Put = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// N writers race for each version: exactly one wins, the others get
// ErrConflict, and the versions go 1, 2, 3 with no gap.
func TestCompareAndSetRace(t *testing.T) {
	e := newEnv(t)
	const writers, rounds = 16, 3
	for round := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.s.Put(Write{Kind: KindAgent, Author: fmt.Sprintf("writer-%d", i), IfVersion: uint64(round),
					Content: json.RawMessage(fmt.Sprintf(`{"sample_interval":"%ds"}`, i+1))})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, ErrConflict):
					conflicts++
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || conflicts != writers-1 {
			t.Fatalf("round %d: %d wins, %d conflicts; want exactly one winner", round, wins, conflicts)
		}
	}
	h, err := e.s.History(KindAgent, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range h {
		if v.Number != uint64(i+1) {
			t.Errorf("history[%d] is version %d, want %d", i, v.Number, i+1)
		}
	}
}

func TestHistoryRollbackAndDiff(t *testing.T) {
	e := newEnv(t)
	garage := Scope{Selector: map[string]string{"room": "garage"}}
	v1 := e.put(garage, 5, 0, `{"sample_interval":"10s","collectors":["cpu","memory"]}`)
	e.clk.Advance(time.Minute)
	v2 := e.put(garage, 5, 1, `{"sample_interval":"30s","collectors":["cpu"],"log_level":"debug"}`)
	if v1.Number != 1 || v2.Number != 2 || v1.Hash == v2.Hash || !v2.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("versions %+v, %+v", v1, v2)
	}
	if _, err := e.s.Put(Write{Kind: KindAgent, Scope: garage, IfVersion: 1, Author: "late", Content: json.RawMessage(`{}`)}); !errors.Is(err, ErrConflict) {
		t.Errorf("a write over version 1 after version 2: %v, want ErrConflict", err)
	}
	v3, err := e.s.Rollback(KindAgent, garage, 1, 2, "admin", "")
	if err != nil {
		t.Fatal(err)
	}
	if v3.Number != 3 || v3.Hash != v1.Hash || string(v3.Content) != string(v1.Content) || v3.RolledBackTo != 1 || v3.Priority != 5 ||
		v3.Comment != "rollback to version 1" {
		t.Errorf("rollback = %+v, want version 3 with version 1's content and priority", v3)
	}
	changes, err := Diff(v2.Content, v3.Content)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Pointer: "/collectors", Op: "replace", From: []any{"cpu"}, To: []any{"cpu", "memory"}},
		{Pointer: "/log_level", Op: "remove", From: "debug"},
		{Pointer: "/sample_interval", Op: "replace", From: "30s", To: "10s"},
	}
	if d := cmp.Diff(want, changes); d != "" {
		t.Errorf("diff v2 → v3 (-want +got):\n%s", d)
	}
	// Durable: everything is there after a restart, and numbering goes on.
	e.reopen()
	h, err := e.s.History(KindAgent, garage)
	if err != nil || len(h) != 3 || h[0].Author != "admin" {
		t.Fatalf("history after a restart: %+v, %v", h, err)
	}
	if v := e.put(garage, 5, 3, `{}`); v.Number != 4 {
		t.Errorf("next version after a restart: %d, want 4", v.Number)
	}
	if _, err := e.s.Version(KindAgent, garage, 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("Version 9: %v, want ErrNotFound", err)
	}
}

func TestEffectiveLayersAndProvenance(t *testing.T) {
	e := newEnv(t)
	e.put(Scope{}, 0, 0, `{"sample_interval":"10s","collectors":["cpu","memory"],"labels":{"room":"unknown","site":"home"}}`)
	e.put(Scope{Selector: map[string]string{"role": "sensor"}}, 10, 0, `{"sample_interval":"5s","log_level":"debug"}`)
	e.put(Scope{Selector: map[string]string{"room": "garage"}}, 0, 0, `{"sample_interval":"30s","heartbeat":"20s"}`)
	e.put(Scope{Device: "d1"}, 0, 0, `{"labels":{"room":null,"floor":"1"}}`)
	for _, tt := range []struct {
		device  string
		labels  map[string]string
		content string
		sources map[string]int
		layers  int
	}{
		{"d1", map[string]string{"room": "garage", "role": "sensor"},
			`{"collectors":["cpu","memory"],"heartbeat":"20s","labels":{"floor":"1","site":"home"},"log_level":"debug","sample_interval":"5s"}`,
			map[string]int{"/collectors": 0, "/heartbeat": 1, "/labels/site": 0, "/labels/floor": 3, "/log_level": 2, "/sample_interval": 2}, 4},
		{"d2", map[string]string{"room": "garage"},
			`{"collectors":["cpu","memory"],"heartbeat":"20s","labels":{"room":"unknown","site":"home"},"sample_interval":"30s"}`,
			map[string]int{"/collectors": 0, "/heartbeat": 1, "/labels/room": 0, "/labels/site": 0, "/sample_interval": 1}, 2},
		{"d3", nil, `{"collectors":["cpu","memory"],"labels":{"room":"unknown","site":"home"},"sample_interval":"10s"}`,
			map[string]int{"/collectors": 0, "/labels/room": 0, "/labels/site": 0, "/sample_interval": 0}, 1},
	} {
		eff, err := e.s.Effective(KindAgent, Device{ID: tt.device, Labels: tt.labels})
		if err != nil {
			t.Fatal(err)
		}
		if string(eff.Content) != tt.content {
			t.Errorf("%s: content %s, want %s", tt.device, eff.Content, tt.content)
		}
		if d := cmp.Diff(tt.sources, eff.Sources); d != "" {
			t.Errorf("%s: sources (-want +got):\n%s", tt.device, d)
		}
		if len(eff.Layers) != tt.layers || len(eff.Hash) != 64 {
			t.Errorf("%s: %d layers, hash %q; want %d layers", tt.device, len(eff.Layers), eff.Hash, tt.layers)
		}
	}
	// The order of layers: the selector of priority 0 before the one of 10.
	eff, _ := e.s.Effective(KindAgent, Device{ID: "d1", Labels: map[string]string{"room": "garage", "role": "sensor"}})
	if got := []string{eff.Layers[1].Scope.String(), eff.Layers[2].Scope.String()}; got[0] != "selector/room=garage" || got[1] != "selector/role=sensor" {
		t.Errorf("selector layers in order %v, want room=garage (priority 0) then role=sensor (10)", got)
	}
	// Equal content gives an equal hash, whatever produced it.
	a, _ := e.s.Effective(KindAgent, Device{ID: "d3"})
	b, _ := e.s.Effective(KindAgent, Device{ID: "d4", Labels: map[string]string{"room": "attic"}})
	if a.Hash != b.Hash {
		t.Errorf("equal effective configs, different hashes: %s, %s", a.Hash, b.Hash)
	}
}

func TestRegisterKind(t *testing.T) {
	e := newEnv(t)
	if err := e.s.Register("tts", []byte(`{"type":"object","properties":{"voice":{"type":"string"}},"additionalProperties":false}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Put(Write{Kind: "tts", Author: "svc", Content: json.RawMessage(`{"voice":"en"}`)}); err != nil {
		t.Errorf("a valid tts document: %v", err)
	}
	var se *SchemaError
	if _, err := e.s.Put(Write{Kind: "tts", Author: "svc", Content: json.RawMessage(`{"voice":1}`)}); !errors.As(err, &se) || se.Problems[0].Pointer != "/voice" {
		t.Errorf("an invalid tts document: %v, want a schema error at /voice", err)
	}
	for _, bad := range []struct{ name, schema string }{
		{"Bad/Name", `{}`},
		{"x", `{`},
		{"x", `{"type":"nope"}`},
	} {
		if err := e.s.Register(bad.name, []byte(bad.schema)); err == nil {
			t.Errorf("Register(%q, %s) succeeded", bad.name, bad.schema)
		}
	}
	if got := e.s.Kinds(); fmt.Sprint(got) != "[agent tts]" {
		t.Errorf("Kinds = %v", got)
	}
}

func TestParseSelector(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // canonical form, "" for an error
	}{
		{"room=garage", "room=garage"},
		{"role=sensor, room=garage", "role=sensor,room=garage"},
		{"room=garage,room=attic", ""},
		{"room", ""},
		{"=x", ""},
		{"room=", ""},
		{"Room=x", ""},
		{"room=a\u202eb", ""},
	} {
		sel, err := ParseSelector(tt.in)
		got := ""
		if err == nil {
			got = SelectorString(sel)
		}
		if got != tt.want {
			t.Errorf("ParseSelector(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestScopeParam(t *testing.T) {
	for _, s := range []Scope{{}, {Device: "d1"}, {Selector: map[string]string{"role": "sensor", "room": "garage"}}} {
		got, err := ParseScope(s.Param())
		if err != nil || got.String() != s.String() {
			t.Errorf("ParseScope(%q) = %v, %v; want %v", s.Param(), got, err, s)
		}
	}
	for _, bad := range []string{"", "devices:d1", "device:", "device:a/b", "selector:", "selector:room", "Default"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) succeeded", bad)
		}
	}
}

// TestOwnedKind: a kind another part of the hub derives is written by its
// owner alone, at device scope.
func TestOwnedKind(t *testing.T) {
	e := newEnv(t)
	if err := e.s.RegisterOwned("schedule", []byte(`{"type":"object"}`), "scheduler"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []Write{
		{Kind: "schedule", Scope: Scope{Device: "d1"}, Author: "admin", Content: json.RawMessage(`{}`)},
		{Kind: "schedule", Author: "scheduler", Content: json.RawMessage(`{}`)},
	} {
		if _, err := e.s.Put(w); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "written by the scheduler alone") {
			t.Errorf("%s at %s by %s: %v, want ErrInvalid naming the owner", w.Kind, w.Scope, w.Author, err)
		}
	}
	if _, err := e.s.Put(Write{Kind: "schedule", Scope: Scope{Device: "d1"}, Author: "scheduler", Content: json.RawMessage(`{"jobs":[]}`)}); err != nil {
		t.Errorf("the owner's write: %v", err)
	}
}
