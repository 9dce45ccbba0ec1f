package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/store"
)

// MaxContent bounds a document's content, in bytes of JSON.
const MaxContent = 256 << 10

// Errors callers branch on.
var (
	// ErrNotFound: no such document or version.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write names a version that is not the document's
	// latest (another write came first).
	ErrConflict = errors.New("version conflict")
	// ErrInvalid: the write is malformed (scope, priority, content that is
	// not a JSON object…). Content that fails its schema is a *SchemaError.
	ErrInvalid = errors.New("invalid")
)

// Config configures a Store; its zero value works.
type Config struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Store keeps the documents and their versions. Create it with Open; its
// methods are safe for concurrent use.
type Store struct {
	db       *store.DB
	heads    store.Keyspace
	versions store.Keyspace
	now      func() time.Time
	kinds    kinds
}

// Open returns the Store kept in db, with the built-in kinds registered.
// It reads nothing until a method asks.
func Open(db *store.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, errors.New("spec: a store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{db: db, heads: db.Keyspace("spec_head"), versions: db.Keyspace("spec_version"), now: cfg.Now}
	if err := s.kinds.register(KindAgent, agentSchema, ""); err != nil {
		return nil, err // a bug in the embedded schema
	}
	return s, nil
}

// Version is one immutable version of a document.
type Version struct {
	Kind   string `json:"kind"`
	Scope  Scope  `json:"scope"`
	Number uint64 `json:"version"`
	// Hash is the SHA-256 of Content, in hex.
	Hash    string    `json:"hash"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
	// Priority orders selector documents (higher is applied later, so it
	// wins); 0 for the others.
	Priority int `json:"priority"`
	// RolledBackTo is the version whose content this one restored, if it
	// is a rollback.
	RolledBackTo uint64 `json:"rolled_back_to,omitempty"`
	// Content is the document, canonical JSON (keys sorted, no spaces).
	Content json.RawMessage `json:"content"`
}

// ETag is the version's entity tag for HTTP compare-and-set.
func (v Version) ETag() string { return fmt.Sprintf(`"%d"`, v.Number) }

// head is the latest version of a document, for listing and CAS.
type head struct {
	Number   uint64 `json:"version"`
	Hash     string `json:"hash"`
	Priority int    `json:"priority"`
}

// Write is a new version of a document.
type Write struct {
	Kind  string
	Scope Scope
	// Content is the document: a JSON object.
	Content json.RawMessage
	// Priority orders selector documents; must be 0 for the others.
	Priority int
	// IfVersion is the version this write replaces: the document's latest,
	// or 0 when it must not exist yet.
	IfVersion       uint64
	Author, Comment string
	rolledBackTo    uint64
}

// Put validates w and stores it as the document's next version, in one
// synced transaction with the document's head. It fails with ErrConflict
// if IfVersion is not the latest version, a *SchemaError if the content
// fails its kind's schema, and ErrInvalid (wrapped, saying what) for a
// malformed write.
func (s *Store) Put(w Write) (Version, error) {
	kd, err := s.kinds.get(w.Kind)
	if err != nil {
		return Version{}, err
	}
	if err := w.Scope.Validate(); err != nil {
		return Version{}, fmt.Errorf("spec: %w: %w", ErrInvalid, err)
	}
	if w.Priority != 0 && len(w.Scope.Selector) == 0 {
		return Version{}, fmt.Errorf("spec: %w: priority: only selector documents have one", ErrInvalid)
	}
	if strings.TrimSpace(w.Author) == "" {
		return Version{}, fmt.Errorf("spec: %w: author: required", ErrInvalid)
	}
	if kd.owner != "" && (w.Author != kd.owner || w.Scope.Device == "") {
		return Version{}, fmt.Errorf("spec: %w: kind %s is written by the %s alone, at device scope", ErrInvalid, w.Kind, kd.owner)
	}
	content, err := canonical(w.Content, MaxContent)
	if err != nil {
		return Version{}, fmt.Errorf("spec: %w: content: %w", ErrInvalid, err)
	}
	var decoded any
	if err := json.Unmarshal(content, &decoded); err != nil {
		return Version{}, fmt.Errorf("spec: %w: content: %w", ErrInvalid, err)
	}
	if err := checkTemplates(decoded, ""); err != nil {
		return Version{}, fmt.Errorf("spec: %w: %w", ErrInvalid, err)
	}
	if err := kd.validate(content); err != nil {
		return Version{}, err
	}
	sum := sha256.Sum256(content)
	v := Version{Kind: w.Kind, Scope: w.Scope, Hash: hex.EncodeToString(sum[:]), Author: w.Author, Time: s.now().UTC(),
		Comment: w.Comment, Priority: w.Priority, RolledBackTo: w.rolledBackTo, Content: content}
	doc := docKey(w.Kind, w.Scope)
	err = s.db.Update(func(tx *store.Tx) error {
		var h head
		switch b, err := tx.Get(s.heads, doc); {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(b, &h); err != nil {
				return fmt.Errorf("head of %s: %w", doc, err)
			}
		}
		if h.Number != w.IfVersion {
			return fmt.Errorf("spec: %s %s is at version %d, not %d: %w", w.Kind, w.Scope, h.Number, w.IfVersion, ErrConflict)
		}
		v.Number = h.Number + 1
		// An import writes a document's versions before its head when
		// they do not fit one transaction: never write over one.
		switch _, err := tx.Get(s.versions, versionKey(doc, v.Number)); {
		case err == nil:
			return fmt.Errorf("spec: %s %s has a version %d but no head: an import is writing it or was interrupted (import the same file again to finish): %w",
				w.Kind, w.Scope, v.Number, ErrConflict)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		hb, err := json.Marshal(head{Number: v.Number, Hash: v.Hash, Priority: v.Priority})
		if err != nil {
			return err
		}
		if err := tx.Put(s.versions, versionKey(doc, v.Number), vb); err != nil {
			return err
		}
		return tx.Put(s.heads, doc, hb)
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return Version{}, err
		}
		return Version{}, fmt.Errorf("spec: put %s %s: %w", w.Kind, w.Scope, err)
	}
	return v, nil
}

// Rollback stores, as the document's next version, the content and
// priority of its version to; ifVersion is as for Put.
func (s *Store) Rollback(kind string, scope Scope, to, ifVersion uint64, author, comment string) (Version, error) {
	old, err := s.Version(kind, scope, to)
	if err != nil {
		return Version{}, err
	}
	if comment == "" {
		comment = fmt.Sprintf("rollback to version %d", to)
	}
	return s.Put(Write{Kind: kind, Scope: scope, Content: old.Content, Priority: old.Priority, IfVersion: ifVersion,
		Author: author, Comment: comment, rolledBackTo: to})
}

// Latest returns the latest version of a document.
func (s *Store) Latest(kind string, scope Scope) (Version, error) {
	b, err := s.heads.Get(docKey(kind, scope))
	if errors.Is(err, store.ErrNotFound) {
		return Version{}, fmt.Errorf("spec: %s %s: %w", kind, scope, ErrNotFound)
	}
	if err != nil {
		return Version{}, fmt.Errorf("spec: %s %s: %w", kind, scope, err)
	}
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return Version{}, fmt.Errorf("spec: head of %s %s: %w", kind, scope, err)
	}
	return s.Version(kind, scope, h.Number)
}

// Version returns version n of a document.
func (s *Store) Version(kind string, scope Scope, n uint64) (Version, error) {
	b, err := s.versions.Get(versionKey(docKey(kind, scope), n))
	if errors.Is(err, store.ErrNotFound) {
		return Version{}, fmt.Errorf("spec: %s %s version %d: %w", kind, scope, n, ErrNotFound)
	}
	if err != nil {
		return Version{}, fmt.Errorf("spec: %s %s version %d: %w", kind, scope, n, err)
	}
	var v Version
	if err := json.Unmarshal(b, &v); err != nil {
		return Version{}, fmt.Errorf("spec: %s %s version %d: %w", kind, scope, n, err)
	}
	return v, nil
}

// History returns every version of a document, oldest first.
func (s *Store) History(kind string, scope Scope) ([]Version, error) {
	prefix := docKey(kind, scope) + "/"
	var out []Version
	err := s.versions.ScanPrefix(prefix, func(_ string, b []byte) error {
		var v Version
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spec: history of %s %s: %w", kind, scope, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("spec: %s %s: %w", kind, scope, ErrNotFound)
	}
	return out, nil
}

// Documents returns the latest version of every document of a kind, in
// layer order: the default, the selector documents by priority (then
// selector text), the devices' (by ID).
func (s *Store) Documents(kind string) ([]Version, error) {
	if _, err := s.kinds.get(kind); err != nil {
		return nil, err
	}
	var heads []struct {
		scope Scope
		h     head
	}
	err := s.heads.ScanPrefix(kind+"/", func(key string, b []byte) error {
		sc, err := parseScope(strings.TrimPrefix(key, kind+"/"))
		if err != nil {
			return fmt.Errorf("document %s: %w", key, err)
		}
		var h head
		if err := json.Unmarshal(b, &h); err != nil {
			return fmt.Errorf("head of %s: %w", key, err)
		}
		heads = append(heads, struct {
			scope Scope
			h     head
		}{sc, h})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spec: documents of %s: %w", kind, err)
	}
	out := make([]Version, 0, len(heads))
	for _, h := range heads {
		v, err := s.Version(kind, h.scope, h.h.Number)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sortLayers(out)
	return out, nil
}

// docKey is a document's key: <kind>/<scope>.
func docKey(kind string, scope Scope) string { return kind + "/" + scope.String() }

// versionKey is a version's key: <doc>/<16 hex digits>, so that byte
// order is version order.
func versionKey(doc string, n uint64) string { return fmt.Sprintf("%s/%016x", doc, n) }

// canonical checks that raw is one JSON object of at most limit bytes
// and returns it with keys sorted and no spaces (numbers kept as
// written).
func canonical(raw []byte, limit int) ([]byte, error) {
	if len(raw) > limit {
		return nil, fmt.Errorf("%d bytes, more than %d", len(raw), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errors.New("not a JSON object")
	}
	return json.Marshal(v)
}
