package spec

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// KindAgent is the built-in kind of what an agent changes at run time.
const KindAgent = "agent"

//go:embed agent.schema.json
var agentSchema []byte

// kindName is a valid kind name: what a topic level and a key may hold.
var kindName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// kinds are the registered kinds and their compiled schemas.
type kinds struct {
	// mu guards the field below.
	mu     sync.RWMutex
	byName map[string]*kind
}

type kind struct {
	name   string
	source []byte // the schema as registered
	schema *jsonschema.Schema
	// owner, if set, is the only author who may write documents of the
	// kind: a kind another part of the hub derives (the scheduler's
	// device schedules).
	owner string
}

// Register adds a kind with its JSON Schema (draft 2020-12 unless the
// schema says otherwise), or replaces its schema. Documents already
// stored are not checked again: a write of them is.
func (s *Store) Register(name string, schema []byte) error {
	return s.kinds.register(name, schema, "")
}

// RegisterOwned registers a kind whose documents only owner writes, at
// device scope: one the hub derives from something else (the scheduler's
// device schedules), delivered and confirmed like any configuration. A
// write by anyone else is refused (ErrInvalid) with a reason naming owner.
func (s *Store) RegisterOwned(name string, schema []byte, owner string) error {
	if owner == "" {
		return fmt.Errorf("spec: kind %s: an owner is required", name)
	}
	return s.kinds.register(name, schema, owner)
}

func (k *kinds) register(name string, schema []byte, owner string) error {
	if !kindName.MatchString(name) {
		return fmt.Errorf("spec: kind %q: want 1 to 63 of a-z, 0-9, '_', '-', starting with a letter", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return fmt.Errorf("spec: kind %s: schema is not JSON: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	url := "alicia:/kinds/" + name + ".json"
	if err := c.AddResource(url, doc); err != nil {
		return fmt.Errorf("spec: kind %s: %w", name, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return fmt.Errorf("spec: kind %s: schema: %w", name, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byName == nil {
		k.byName = map[string]*kind{}
	}
	k.byName[name] = &kind{name: name, source: bytes.Clone(schema), schema: sch, owner: owner}
	return nil
}

func (k *kinds) get(name string) (*kind, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if kd := k.byName[name]; kd != nil {
		return kd, nil
	}
	return nil, fmt.Errorf("spec: kind %q: %w", name, ErrUnknownKind)
}

// Kinds lists the registered kinds' names, sorted.
func (s *Store) Kinds() []string {
	s.kinds.mu.RLock()
	defer s.kinds.mu.RUnlock()
	names := make([]string, 0, len(s.kinds.byName))
	for n := range s.kinds.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Schema returns a kind's JSON Schema as registered.
func (s *Store) Schema(name string) ([]byte, error) {
	kd, err := s.kinds.get(name)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(kd.source), nil
}

// ErrUnknownKind is returned for a kind nobody registered.
var ErrUnknownKind = errors.New("unknown kind")

// ErrSchema matches every *SchemaError (errors.Is).
var ErrSchema = errors.New("schema")

// Problem is one reason content fails its kind's schema.
type Problem struct {
	// Pointer is the JSON Pointer (RFC 6901) of the failing value; "" is
	// the whole document.
	Pointer string `json:"pointer"`
	// Rule is the schema keyword that failed, e.g. "pattern" or
	// "additionalProperties".
	Rule string `json:"rule"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// SchemaError is content that fails its kind's schema.
type SchemaError struct {
	Kind     string
	Problems []Problem // at least one
}

// Is makes errors.Is(err, ErrSchema) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

func (e *SchemaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spec: %s config does not match its schema:", e.Kind)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString(";")
		}
		at := p.Pointer
		if at == "" {
			at = "/"
		}
		fmt.Fprintf(&b, " at %s, %s: %s", at, p.Rule, p.Message)
	}
	return b.String()
}

// validate checks a document (JSON) against the kind's schema. A
// document is a merge patch over the layers below it, where null removes
// a key, and its strings may be templates rendered per device: the values
// it sets are checked, its nulls and templated strings are not (Effective
// checks what they render to).
func (kd *kind) validate(content []byte) error {
	return kd.validateValue(content, true)
}

// validateValue checks content; patch says whether it is a document (see
// validate) or a rendered configuration, checked whole.
func (kd *kind) validateValue(content []byte, patch bool) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(content))
	if err != nil {
		return &SchemaError{Kind: kd.name, Problems: []Problem{{Rule: "json", Message: err.Error()}}}
	}
	if patch {
		v = checkable(v)
	}
	err = kd.schema.Validate(v)
	var ve *jsonschema.ValidationError
	if err == nil {
		return nil
	}
	if !errors.As(err, &ve) {
		return fmt.Errorf("spec: validate %s: %w", kd.name, err)
	}
	se := &SchemaError{Kind: kd.name}
	for _, u := range ve.BasicOutput().Errors {
		if u.Error == nil {
			continue
		}
		rule := u.KeywordLocation
		if i := strings.LastIndexByte(rule, '/'); i >= 0 {
			rule = rule[i+1:]
		}
		se.Problems = append(se.Problems, Problem{Pointer: u.InstanceLocation, Rule: rule, Message: u.Error.String()})
	}
	if len(se.Problems) == 0 {
		se.Problems = []Problem{{Rule: "schema", Message: ve.Error()}}
	}
	return se
}

// checkable returns v without the object members whose value is null or
// a templated string, at every depth.
func checkable(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if s, isStr := x.(string); x == nil || isStr && hasTemplate(s) {
			continue
		}
		out[k] = checkable(x)
	}
	return out
}
