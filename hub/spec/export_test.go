package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

// kindLamp is a service's kind, registered by the tests of both hubs.
const kindLamp = "lamp"

var lampSchema = []byte(`{"type":"object","properties":{"level":{"type":"integer","maximum":100}}}`)

var (
	garage = Scope{Selector: map[string]string{"room": "garage"}}
	dev1   = Scope{Device: "d1"}
)

// seed writes a history with every kind of version: three scopes, a
// priority, comments, a rollback, a template, a second kind.
func (e *env) seed() {
	e.t.Helper()
	if err := e.s.Register(kindLamp, lampSchema); err != nil {
		e.t.Fatal(err)
	}
	e.put(Scope{}, 0, 0, `{"sample_interval":"10s"}`)
	e.clk.Advance(time.Minute)
	e.put(garage, 5, 0, `{"sample_interval":"30s"}`)
	e.clk.Advance(time.Minute)
	e.put(garage, 7, 1, `{"sample_interval":"60s","labels":{"room":"{{.Labels.room}}"}}`)
	e.clk.Advance(time.Minute)
	if _, err := e.s.Rollback(KindAgent, garage, 1, 2, "alice", ""); err != nil {
		e.t.Fatal(err)
	}
	e.clk.Advance(time.Second + 123*time.Nanosecond)
	if _, err := e.s.Put(Write{Kind: KindAgent, Scope: dev1, Content: json.RawMessage(`{"log_level":"debug","board":null}`),
		Author: "bob", Comment: "why <not> & more"}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.s.Put(Write{Kind: kindLamp, Content: json.RawMessage(`{"level":40}`), Author: "admin"}); err != nil {
		e.t.Fatal(err)
	}
}

// export returns the store's export file.
func (e *env) export() []byte {
	e.t.Helper()
	var b bytes.Buffer
	if err := e.s.Export(&b); err != nil {
		e.t.Fatal(err)
	}
	return b.Bytes()
}

// everything is every document's history, by kind and scope.
func (e *env) everything() map[string][]Version {
	e.t.Helper()
	out := map[string][]Version{}
	for _, k := range e.s.Kinds() {
		docs, err := e.s.Documents(k)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, d := range docs {
			h, err := e.s.History(k, d.Scope)
			if err != nil {
				e.t.Fatal(err)
			}
			out[k+" "+d.Scope.Param()] = h
		}
	}
	return out
}

// fresh is a second, empty hub that knows the lamp kind.
func fresh(t *testing.T) *env {
	e := newEnv(t)
	if err := e.s.Register(kindLamp, lampSchema); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExportImportRoundTrip(t *testing.T) {
	a := newEnv(t)
	a.seed()
	file := a.export()
	want := a.everything()
	if len(want) != 4 {
		t.Fatalf("seeded %d documents, want 4: %v", len(want), want)
	}

	b := fresh(t)
	b.clk.Set(t0.Add(24 * time.Hour))
	rep, err := b.s.Import(bytes.NewReader(file), true)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	wantRep := Report{DryRun: true, Created: 4, VersionsWritten: 6, Documents: []DocumentReport{
		{Kind: KindAgent, Scope: "default", Outcome: OutcomeCreated, FileVersions: 1},
		{Kind: KindAgent, Scope: "selector:room=garage", Outcome: OutcomeCreated, FileVersions: 3},
		{Kind: KindAgent, Scope: "device:d1", Outcome: OutcomeCreated, FileVersions: 1},
		{Kind: kindLamp, Scope: "default", Outcome: OutcomeCreated, FileVersions: 1},
	}}
	if diff := cmp.Diff(wantRep, rep); diff != "" {
		t.Errorf("dry run report (-want +got):\n%s", diff)
	}
	if got := b.everything(); len(got) != 0 {
		t.Fatalf("a dry run wrote %v", got)
	}
	if _, err := b.s.History(KindAgent, garage); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after a dry run: History = %v, want ErrNotFound", err)
	}

	rep, err = b.s.Import(bytes.NewReader(file), false)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	wantRep.DryRun = false
	if diff := cmp.Diff(wantRep, rep); diff != "" {
		t.Errorf("import report (-want +got):\n%s", diff)
	}
	b.reopen() // what was written is on disk, not just in memory
	if err := b.s.Register(kindLamp, lampSchema); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b.everything()); diff != "" {
		t.Errorf("history after the import (-exported +imported):\n%s", diff)
	}
	// Exported again, it is the same file (but for the time of export).
	var fa, fb ExportFile
	if err := json.Unmarshal(file, &fa); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.export(), &fb); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fa, fb, cmpopts.IgnoreFields(ExportFile{}, "ExportedAt")); diff != "" {
		t.Errorf("export of the imported hub (-first +second):\n%s", diff)
	}
	// The imported documents take writes as if written here.
	if v, err := b.s.Put(Write{Kind: KindAgent, Scope: garage, Priority: 5, IfVersion: 3, Content: json.RawMessage(`{}`), Author: "admin"}); err != nil || v.Number != 4 {
		t.Errorf("Put after the import = %+v, %v; want version 4", v, err)
	}

	// Imported again (into either hub), nothing changes.
	for name, e := range map[string]*env{"exporting hub": a, "imported hub": b} {
		before := e.everything()
		rep, err := e.s.Import(bytes.NewReader(file), false)
		if name == "imported hub" {
			// It took a write since: that document conflicts.
			if !errors.Is(err, ErrImportConflict) || rep.Conflicts != 1 || rep.Created != 0 {
				t.Errorf("%s: re-import after a write = %+v, %v; want one conflict", name, rep, err)
			}
		} else if err != nil || rep.Unchanged != 4 || rep.Created+rep.Conflicts+rep.VersionsWritten != 0 {
			t.Errorf("%s: re-import = %+v, %v; want 4 unchanged and nothing written", name, rep, err)
		}
		if diff := cmp.Diff(before, e.everything()); diff != "" {
			t.Errorf("%s: re-import changed the documents:\n%s", name, diff)
		}
	}
}

func TestImportConflicts(t *testing.T) {
	a := newEnv(t)
	a.seed()
	file := a.export()

	for _, tt := range []struct {
		name   string
		before func(e *env)
		scope  string // the conflicting document
		detail string
	}{
		{"a later version here", func(e *env) {
			e.put(garage, 5, 0, `{"sample_interval":"45s"}`)
		}, "selector:room=garage", "version 1 differs: hash"},
		{"same content, another author", func(e *env) {
			if _, err := e.s.Put(Write{Kind: KindAgent, Content: json.RawMessage(`{"sample_interval":"10s"}`), Author: "eve"}); err != nil {
				t.Fatal(err)
			}
		}, "default", "version 1 differs: author"},
		{"more versions here", func(e *env) {
			if _, err := e.s.Import(bytes.NewReader(file), false); err != nil {
				t.Fatal(err)
			}
			e.put(dev1, 0, 1, `{}`)
		}, "device:d1", "the hub has versions 1 to 2, the file 1 to 1"},
		{"a document the file lacks", func(e *env) {
			e.put(Scope{Device: "d9"}, 0, 0, `{}`)
		}, "device:d9", "the hub has this document and the file does not"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := fresh(t)
			tt.before(e)
			before := e.everything()
			for _, dry := range []bool{true, false} {
				rep, err := e.s.Import(bytes.NewReader(file), dry)
				if !errors.Is(err, ErrImportConflict) {
					t.Fatalf("dry run %v: %v, want ErrImportConflict", dry, err)
				}
				if !strings.Contains(err.Error(), tt.scope) {
					t.Errorf("error %q does not name %s", err, tt.scope)
				}
				var found bool
				for _, d := range rep.Documents {
					if d.Outcome == OutcomeConflict {
						found = d.Scope == tt.scope && strings.Contains(d.Detail, tt.detail)
					}
				}
				if rep.Conflicts != 1 || !found {
					t.Errorf("report %+v: want one conflict, %s, %q", rep, tt.scope, tt.detail)
				}
			}
			if diff := cmp.Diff(before, e.everything()); diff != "" {
				t.Errorf("a refused import wrote:\n%s", diff)
			}
		})
	}
}

// edit decodes an export file, changes it and encodes it again.
func edit(t *testing.T, file []byte, fn func(f *ExportFile)) []byte {
	t.Helper()
	var f ExportFile
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

// document returns the document of f at scope (agent kind).
func document(f *ExportFile, scope Scope) *ExportDocument {
	for i, d := range f.Documents {
		if d.Kind == KindAgent && d.Scope.String() == scope.String() {
			return &f.Documents[i]
		}
	}
	panic("no document " + scope.String())
}

// setContent replaces a version's content and its hash to match.
func setContent(v *Version, content string) {
	v.Content = json.RawMessage(content)
	sum := sha256.Sum256([]byte(content))
	v.Hash = hex.EncodeToString(sum[:])
}

func TestImportRefusesInvalidFiles(t *testing.T) {
	a := newEnv(t)
	a.seed()
	file := a.export()
	for _, tt := range []struct {
		name   string
		file   []byte
		target error
		want   []string // in the error
	}{
		{"not JSON", []byte("PK\x03\x04"), ErrInvalid, []string{"not a JSON export file"}},
		{"another format", []byte(`{"format":"alicia-hub-backup","format_version":1}`), ErrInvalid, []string{`format "alicia-hub-backup"`}},
		{"a later format version", edit(t, file, func(f *ExportFile) { f.FormatVersion = 2 }), ErrInvalid, []string{"format_version 2"}},
		{"unknown field", bytes.Replace(file, []byte(`"kinds"`), []byte(`"extra":1,"kinds"`), 1), ErrInvalid, []string{"extra"}},
		{"tampered hash", edit(t, file, func(f *ExportFile) {
			document(f, garage).Versions[1].Hash = strings.Repeat("0", 64)
		}), ErrInvalid, []string{"agent selector:room=garage version 2", "hash", "changed or damaged"}},
		{"tampered content", edit(t, file, func(f *ExportFile) {
			document(f, garage).Versions[0].Content = json.RawMessage(`{"sample_interval":"31s"}`)
		}), ErrInvalid, []string{"agent selector:room=garage version 1", "hash"}},
		{"a gap in the versions", edit(t, file, func(f *ExportFile) {
			d := document(f, garage)
			d.Versions = append(d.Versions[:1], d.Versions[2:]...)
		}), ErrInvalid, []string{"agent selector:room=garage", "entry 1 of versions is version 3, want 2"}},
		{"versions out of order", edit(t, file, func(f *ExportFile) {
			d := document(f, garage)
			d.Versions[0], d.Versions[1] = d.Versions[1], d.Versions[0]
		}), ErrInvalid, []string{"entry 0 of versions is version 2, want 1"}},
		{"no versions", edit(t, file, func(f *ExportFile) { document(f, dev1).Versions = nil }), ErrInvalid, []string{"agent device:d1: invalid: no versions"}},
		{"unknown kind", edit(t, file, func(f *ExportFile) {
			f.Documents[0].Kind = "heater"
			for i := range f.Documents[0].Versions {
				f.Documents[0].Versions[i].Kind = "heater"
			}
		}), ErrInvalid, []string{`kind "heater" is not known to this hub`}},
		{"content against the schema", edit(t, file, func(f *ExportFile) {
			setContent(&document(f, garage).Versions[2], `{"sample_interval":"often"}`)
		}), ErrSchema, []string{"agent selector:room=garage version 3", "at /sample_interval, pattern"}},
		{"a bad template", edit(t, file, func(f *ExportFile) {
			setContent(&document(f, dev1).Versions[0], `{"log_level":"{{.Secret}}"}`)
		}), ErrInvalid, []string{"agent device:d1 version 1", "template at /log_level"}},
		{"a version of another scope", edit(t, file, func(f *ExportFile) {
			document(f, garage).Versions[1].Scope = dev1
		}), ErrInvalid, []string{"agent selector:room=garage version 2", "scope device:d1"}},
		{"a priority outside a selector", edit(t, file, func(f *ExportFile) { document(f, dev1).Versions[0].Priority = 3 }),
			ErrInvalid, []string{"agent device:d1 version 1", "priority"}},
		{"no author", edit(t, file, func(f *ExportFile) { document(f, dev1).Versions[0].Author = " " }),
			ErrInvalid, []string{"agent device:d1 version 1", "author"}},
		{"a bad scope", edit(t, file, func(f *ExportFile) { document(f, dev1).Scope = Scope{Device: "d/1"} }),
			ErrInvalid, []string{"document 2", "scope: device"}},
		{"a document twice", edit(t, file, func(f *ExportFile) { f.Documents = append(f.Documents, f.Documents[0]) }),
			ErrInvalid, []string{"document 4: agent default is document 0 too"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := fresh(t)
			for _, dry := range []bool{true, false} {
				_, err := e.s.Import(bytes.NewReader(tt.file), dry)
				if !errors.Is(err, tt.target) {
					t.Fatalf("Import = %v, want %v", err, tt.target)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
			}
			if got := e.everything(); len(got) != 0 {
				t.Errorf("an invalid file wrote %v", got)
			}
		})
	}
}

// TestImportInterrupted: a document whose versions were written without
// its head (an import that failed part way) refuses Puts, and importing
// the same file again finishes it.
func TestImportInterrupted(t *testing.T) {
	a := newEnv(t)
	a.seed()
	file := a.export()
	e := fresh(t)
	docs, err := e.s.parseExport(file)
	if err != nil {
		t.Fatal(err)
	}
	// The garage document (3 versions): version 1 written, then the
	// import stopped.
	if n, err := e.s.writeBatch(&docs[1], 0, 1); err != nil || n != 1 {
		t.Fatalf("writeBatch = %d, %v", n, err)
	}
	if _, err := e.s.Latest(KindAgent, garage); !errors.Is(err, ErrNotFound) {
		t.Errorf("a document without its head: Latest = %v, want ErrNotFound", err)
	}
	if _, err := e.s.Put(Write{Kind: KindAgent, Scope: garage, Content: json.RawMessage(`{}`), Author: "admin"}); !errors.Is(err, ErrConflict) ||
		!strings.Contains(err.Error(), "import") {
		t.Errorf("Put over a half-imported document = %v, want ErrConflict naming the import", err)
	}
	rep, err := e.s.Import(bytes.NewReader(file), false)
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Documents[1]; d.Outcome != OutcomeCreated || d.HubVersions != 1 || !strings.Contains(d.Detail, "interrupted import") || rep.VersionsWritten != 5 {
		t.Errorf("report %+v, want the garage document created from version 2 on, 5 versions written", rep)
	}
	if diff := cmp.Diff(a.everything(), e.everything()); diff != "" {
		t.Errorf("history after the finished import (-exported +imported):\n%s", diff)
	}
}

// TestImportLargeDocument: a history larger than one transaction is
// written in batches (halved when the store's transactions are smaller
// still), and comes back whole.
func TestImportLargeDocument(t *testing.T) {
	a := newEnv(t)
	if err := a.s.Register(kindLamp, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		content := fmt.Sprintf(`{"note":%q}`, strings.Repeat(string(rune('a'+i%26)), 12<<10))
		if _, err := a.s.Put(Write{Kind: kindLamp, Content: json.RawMessage(content), IfVersion: uint64(i), Author: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	file := a.export()
	// A store whose transactions hold about 150 KiB, less than importBatch.
	db, err := store.Open(store.Options{Dir: t.TempDir(), MinFreeBytes: -1, MemTableSize: 1 << 20, ValueThreshold: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := Open(db, Config{Now: testkit.NewClock(t0).Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(kindLamp, []byte(`{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Import(bytes.NewReader(file), false)
	if err != nil || rep.VersionsWritten != n {
		t.Fatalf("Import = %+v, %v; want %d versions written", rep, err, n)
	}
	want, err := a.s.History(kindLamp, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.History(kindLamp, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-exported +imported):\n%s", diff)
	}
	if v, err := s.Latest(kindLamp, Scope{}); err != nil || v.Number != n {
		t.Errorf("Latest = %d, %v; want %d", v.Number, err, n)
	}
}
