package health_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/alicia-home/alicia/hub/health"
)

// ruleFields are the JSON names of a rule's fields: what a
// ValidationError's Field may be, besides "" for the whole document and
// the name of an unknown field.
var ruleFields = []string{"", "id", "name", "kind", "metric", "match", "devices", "op", "threshold", "for",
	"resolve_margin", "severity", "suggestion", "enabled"}

// FuzzDecodeRule: DecodeRule and Validate never panic and refuse with a
// ValidationError naming a field of the rule (or the unknown field sent); a rule they accept reads the
// same, and is still valid, once written back as JSON.
func FuzzDecodeRule(f *testing.F) {
	for _, r := range health.DefaultRules() {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"id":"disk","name":"Disk","kind":"threshold","metric":"filesystem_used_ratio","match":{"mount":"/"},"devices":{"room":"garage"},"op":">","threshold":0.9,"for":"5m","resolve_margin":0.02,"severity":"warning","suggestion":"disk {label:mount} is {value_pct} full"}`,
		`{"id":"quiet","name":"Quiet","kind":"absence","for":"1h30m","severity":"critical","enabled":false}`,
		`{"id":"a","for":"2 minutes"}`, `{"id":"a"} {"id":"b"}`, ``, `[1]`, `{"threshold":1e999}`,
		`{"id":"x","name":"X","kind":"threshold","metric":"m","op":"<=","threshold":-0,"for":"1.5ns","severity":"warning","suggestion":"{label:}"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkErr := func(what string, err error) {
			t.Helper()
			var ve *health.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, health.ErrInvalid) {
				t.Fatalf("%s: %v (%T), want a *ValidationError wrapping ErrInvalid", what, err, err)
			}
			if !slices.Contains(ruleFields, ve.Field) && ve.Msg != "unknown field" {
				t.Fatalf("%s: %v names the field %q, which a rule does not have", what, err, ve.Field)
			}
		}
		r, err := health.DecodeRule(in)
		if err != nil {
			checkErr("DecodeRule", err)
			return
		}
		if err := r.Validate(); err != nil {
			checkErr("Validate", err)
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal of a valid rule: %v", err)
		}
		again, err := health.DecodeRule(b)
		if err != nil {
			t.Fatalf("DecodeRule(%s) of a valid rule written back: %v", b, err)
		}
		if d := cmp.Diff(r, again, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("written back as %s and read again (-first +again):\n%s", b, d)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("a valid rule written back as %s is invalid: %v", b, err)
		}
	})
}
