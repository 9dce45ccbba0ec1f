package spec

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/store"
)

// The export file's format: what ExportFile.Format and FormatVersion say.
const (
	ExportFormat        = "alicia-config-export"
	ExportFormatVersion = 1
)

// ErrImportConflict: the hub already has documents of a kind in the file
// that are not the file's (Import's Report says which).
var ErrImportConflict = errors.New("import conflict")

// ExportFile is what Export writes and Import reads: every document with
// every version, and this hub's kinds with their schemas for reference
// (Import checks documents against the importing hub's own schemas).
type ExportFile struct {
	Format        string           `json:"format"`
	FormatVersion int              `json:"format_version"`
	ExportedAt    time.Time        `json:"exported_at"`
	Kinds         []ExportKind     `json:"kinds"`
	Documents     []ExportDocument `json:"documents"`
}

// ExportKind is a kind registered in the exporting hub.
type ExportKind struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
}

// ExportDocument is one document: every version, oldest first, as stored.
type ExportDocument struct {
	Kind     string    `json:"kind"`
	Scope    Scope     `json:"scope"`
	Versions []Version `json:"versions"`
}

// Export writes every stored document with every version (a consistent
// snapshot: one read transaction) and the registered kinds as one JSON
// document (ExportFile). Documents of a kind not registered at this start
// are exported too. It writes nothing if reading fails; an error from w
// may leave a partial file.
func (s *Store) Export(w io.Writer) error {
	f := ExportFile{Format: ExportFormat, FormatVersion: ExportFormatVersion, ExportedAt: s.now().UTC(),
		Kinds: []ExportKind{}, Documents: []ExportDocument{}}
	for _, k := range s.Kinds() {
		sch, err := s.Schema(k)
		if err != nil {
			return err
		}
		f.Kinds = append(f.Kinds, ExportKind{Name: k, Schema: sch})
	}
	err := s.db.View(func(tx *store.Tx) error {
		var heads []string
		hs := map[string]head{}
		err := tx.ScanPrefix(s.heads, "", func(key string, b []byte) error {
			var h head
			if err := json.Unmarshal(b, &h); err != nil {
				return fmt.Errorf("head of %s: %w", key, err)
			}
			heads, hs[key] = append(heads, key), h
			return nil
		})
		if err != nil {
			return err
		}
		for _, key := range heads {
			d, err := s.exportDocument(tx, key, hs[key])
			if err != nil {
				return err
			}
			f.Documents = append(f.Documents, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spec: export: %w", err)
	}
	slices.SortStableFunc(f.Documents, func(a, b ExportDocument) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), compareLayers(a.Versions[len(a.Versions)-1], b.Versions[len(b.Versions)-1]))
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f)
}

// exportDocument reads the versions 1 to h.Number of the document key
// (<kind>/<scope>); one missing is damage, reported rather than exported.
func (s *Store) exportDocument(tx *store.Tx, key string, h head) (ExportDocument, error) {
	kind, sc, ok := strings.Cut(key, "/")
	if !ok {
		return ExportDocument{}, fmt.Errorf("document %s: no kind", key)
	}
	scope, err := parseScope(sc)
	if err != nil {
		return ExportDocument{}, fmt.Errorf("document %s: %w", key, err)
	}
	d := ExportDocument{Kind: kind, Scope: scope}
	err = tx.ScanPrefix(s.versions, key+"/", func(vk string, b []byte) error {
		var v Version
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("version %s: %w", vk, err)
		}
		if v.Number <= h.Number {
			d.Versions = append(d.Versions, v)
		}
		return nil
	})
	if err != nil {
		return ExportDocument{}, err
	}
	for i, v := range d.Versions {
		if v.Number != uint64(i+1) {
			return ExportDocument{}, fmt.Errorf("%s %s: version %d is missing from the store", kind, scope.Param(), i+1)
		}
	}
	if uint64(len(d.Versions)) != h.Number {
		return ExportDocument{}, fmt.Errorf("%s %s: its latest version %d is missing from the store", kind, scope.Param(), h.Number)
	}
	return d, nil
}

// Outcome is what an import does with a document.
type Outcome string

const (
	// OutcomeCreated: the document is new here; its versions are written.
	OutcomeCreated Outcome = "created"
	// OutcomeUnchanged: the hub has the document with the same versions.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeConflict: the hub has the document with other versions, or
	// has a document of a kind in the file that the file does not have.
	OutcomeConflict Outcome = "conflict"
)

// Report says what an import did, or (dry run, or a conflict) would do.
type Report struct {
	DryRun bool `json:"dry_run"`
	// Created, Unchanged and Conflicts count documents by outcome.
	Created   int `json:"created"`
	Unchanged int `json:"unchanged"`
	Conflicts int `json:"conflicts"`
	// VersionsWritten is how many versions were written (a dry run, or
	// an import refused for a conflict: would be).
	VersionsWritten int `json:"versions_written"`
	// Documents are the file's documents in its order, then the hub's
	// that conflict because the file does not have them.
	Documents []DocumentReport `json:"documents"`
}

// DocumentReport is one document's outcome.
type DocumentReport struct {
	Kind string `json:"kind"`
	// Scope is as in URLs: default, device:<id>, selector:<k=v,…>.
	Scope   string  `json:"scope"`
	Outcome Outcome `json:"outcome"`
	// FileVersions and HubVersions count the document's versions in the
	// file and in the hub before the import.
	FileVersions int `json:"file_versions"`
	HubVersions  int `json:"hub_versions"`
	// Detail says why a document conflicts, or that a created one
	// completes an interrupted import.
	Detail string `json:"detail,omitempty"`
}

// importDoc is a document of the file, checked.
type importDoc struct {
	kind     string
	scope    Scope
	versions []Version // numbered 1…n, content canonical, time UTC
	enc      [][]byte  // each version as stored
	have     int       // versions the hub has already (an interrupted import)
}

func (d *importDoc) key() string { return docKey(d.kind, d.scope) }

// maxImportContent bounds a version's content in an import: Put bounds
// the content as sent (MaxContent) and stores it canonical, where each of
// <, > and & (and a control character) takes six bytes.
const maxImportContent = 6 * MaxContent

// importBatch is the most bytes of versions written in one transaction;
// a transaction holds about 15 % of the store's memtable (600 KiB by
// default), and a batch still too big is halved.
const importBatch = 256 << 10

// Import reads an export file (ExportFile) and writes its documents with
// their versions as they are (numbers, hashes, authors, times, comments).
//
// The whole file is checked before anything is written: its format, and
// for every version its number (1, 2, … in order), that its hash is its
// content's, that its kind is registered here (an unknown kind is an
// error naming it) and that its content passes Put's checks (templates
// and the kind's schema). An invalid file fails with an error naming the
// document, the version and (for a schema error, a *SchemaError) the JSON
// Pointer, wrapping ErrInvalid or ErrSchema.
//
// Then each document is compared with the hub's: absent here, it is
// created; with the same versions, it is unchanged (so importing a file
// twice writes nothing the second time); otherwise, and for every
// document of a kind in the file that the file does not have, it
// conflicts. With any conflict nothing is written and the error wraps
// ErrImportConflict. A dry run stops before writing and reports what
// the import would do.
//
// Writes are synced. Each document's versions and its head (which makes
// it visible to Latest, Documents and Effective) are written in one
// transaction when they fit (about 600 KiB with the default store), else
// in several, the head with the last. A failure or crash part way leaves
// the documents before it whole, the one being written at most with some
// versions and no head (in its history, applied to no device, refused to
// Put with ErrConflict), and the rest absent; importing the same file
// again keeps what is there and finishes.
func (s *Store) Import(r io.Reader, dryRun bool) (Report, error) {
	rep := Report{DryRun: dryRun, Documents: []DocumentReport{}}
	data, err := io.ReadAll(r)
	if err != nil {
		return rep, fmt.Errorf("spec: import: read: %w", err)
	}
	docs, err := s.parseExport(data)
	if err != nil {
		return rep, err
	}
	if err := s.db.View(func(tx *store.Tx) error { return s.compare(tx, docs, &rep) }); err != nil {
		return rep, fmt.Errorf("spec: import: %w", err)
	}
	if rep.Conflicts > 0 {
		var first DocumentReport
		for _, d := range rep.Documents {
			if d.Outcome == OutcomeConflict {
				first = d
				break
			}
		}
		return rep, fmt.Errorf("spec: import: %d of the hub's documents are not the file's, nothing written (first: %s %s: %s): %w",
			rep.Conflicts, first.Kind, first.Scope, first.Detail, ErrImportConflict)
	}
	if dryRun {
		return rep, nil
	}
	for i := range docs {
		d := &docs[i]
		if rep.Documents[i].Outcome != OutcomeCreated {
			continue
		}
		if err := s.writeImported(d); err != nil {
			return rep, fmt.Errorf("spec: import: %s %s: %w (the documents before it are imported, it may be in part: import the same file again to finish)",
				d.kind, d.scope.Param(), err)
		}
	}
	return rep, nil
}

// parseExport decodes and checks an export file.
func (s *Store) parseExport(data []byte) ([]importDoc, error) {
	var hdr struct {
		Format        string `json:"format"`
		FormatVersion int    `json:"format_version"`
	}
	if err := json.Unmarshal(data, &hdr); err != nil {
		return nil, fmt.Errorf("spec: %w: import: not a JSON export file: %w", ErrInvalid, err)
	}
	if hdr.Format != ExportFormat {
		return nil, fmt.Errorf("spec: %w: import: format %q: not a configuration export (want %q)", ErrInvalid, hdr.Format, ExportFormat)
	}
	if hdr.FormatVersion != ExportFormatVersion {
		return nil, fmt.Errorf("spec: %w: import: format_version %d: this hub reads version %d", ErrInvalid, hdr.FormatVersion, ExportFormatVersion)
	}
	var f ExportFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("spec: %w: import: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("spec: %w: import: data after the export's JSON document", ErrInvalid)
	}
	docs := make([]importDoc, 0, len(f.Documents))
	seen := map[string]int{}
	for i, fd := range f.Documents {
		d, err := s.checkDocument(fd)
		if err != nil {
			return nil, fmt.Errorf("spec: import: document %d: %w", i, err)
		}
		if j, dup := seen[d.key()]; dup {
			return nil, fmt.Errorf("spec: %w: import: document %d: %s %s is document %d too", ErrInvalid, i, d.kind, d.scope.Param(), j)
		}
		seen[d.key()] = i
		docs = append(docs, d)
	}
	return docs, nil
}

// checkDocument checks one document of the file as Put would check each
// of its versions, and that the versions are whole and in order.
func (s *Store) checkDocument(fd ExportDocument) (importDoc, error) {
	d := importDoc{kind: fd.Kind, scope: fd.Scope}
	if err := fd.Scope.Validate(); err != nil {
		return d, fmt.Errorf("%s: %w: %w", fd.Kind, ErrInvalid, err)
	}
	at := fd.Kind + " " + fd.Scope.Param()
	kd, err := s.kinds.get(fd.Kind)
	if err != nil {
		return d, fmt.Errorf("%s: %w: kind %q is not known to this hub (a service registers it when it starts: start it, then import again)", at, ErrInvalid, fd.Kind)
	}
	if len(fd.Versions) == 0 {
		return d, fmt.Errorf("%s: %w: no versions", at, ErrInvalid)
	}
	for i, v := range fd.Versions {
		if v.Number != uint64(i+1) {
			return d, fmt.Errorf("%s: %w: entry %d of versions is version %d, want %d (versions are numbered 1, 2, … in order, without gaps)",
				at, ErrInvalid, i, v.Number, i+1)
		}
		v, err := checkImportedVersion(kd, fd, v)
		if err != nil {
			return d, fmt.Errorf("%s version %d: %w", at, i+1, err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return d, fmt.Errorf("%s version %d: %w", at, i+1, err)
		}
		d.versions, d.enc = append(d.versions, v), append(d.enc, b)
	}
	return d, nil
}

// checkImportedVersion checks a version of fd and returns it as it is
// stored: content canonical, time in UTC.
func checkImportedVersion(kd *kind, fd ExportDocument, v Version) (Version, error) {
	switch {
	case v.Kind != fd.Kind:
		return v, fmt.Errorf("%w: kind %q, but the document's is %q", ErrInvalid, v.Kind, fd.Kind)
	case v.Scope.String() != fd.Scope.String():
		return v, fmt.Errorf("%w: scope %s, but the document's is %s", ErrInvalid, v.Scope.Param(), fd.Scope.Param())
	case v.Priority != 0 && len(v.Scope.Selector) == 0:
		return v, fmt.Errorf("%w: priority: only selector documents have one", ErrInvalid)
	case strings.TrimSpace(v.Author) == "":
		return v, fmt.Errorf("%w: author: required", ErrInvalid)
	case v.Time.IsZero():
		return v, fmt.Errorf("%w: time: required", ErrInvalid)
	case v.RolledBackTo >= v.Number:
		return v, fmt.Errorf("%w: rolled_back_to %d: not an earlier version", ErrInvalid, v.RolledBackTo)
	case v.Content == nil:
		return v, fmt.Errorf("%w: content: required", ErrInvalid)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, v.Content); err != nil {
		return v, fmt.Errorf("%w: content: %w", ErrInvalid, err)
	}
	if compact.Len() > maxImportContent {
		return v, fmt.Errorf("%w: content: %d bytes, more than %d", ErrInvalid, compact.Len(), maxImportContent)
	}
	content, err := canonical(compact.Bytes(), maxImportContent)
	if err != nil {
		return v, fmt.Errorf("%w: content: %w", ErrInvalid, err)
	}
	sum := sha256.Sum256(content)
	if h := hex.EncodeToString(sum[:]); v.Hash != h {
		return v, fmt.Errorf("%w: hash %q is not its content's (%s): the file was changed or damaged", ErrInvalid, v.Hash, h)
	}
	var decoded any
	if err := json.Unmarshal(content, &decoded); err != nil {
		return v, fmt.Errorf("%w: content: %w", ErrInvalid, err)
	}
	if err := checkTemplates(decoded, ""); err != nil {
		return v, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := kd.validate(content); err != nil {
		return v, err
	}
	v.Content, v.Time = content, v.Time.UTC()
	return v, nil
}

// compare sets each document's outcome in rep, and d.have for a created
// one that an interrupted import began.
func (s *Store) compare(tx *store.Tx, docs []importDoc, rep *Report) error {
	inFile := map[string]bool{}
	var kinds []string
	for _, d := range docs {
		inFile[d.key()] = true
		if !slices.Contains(kinds, d.kind) {
			kinds = append(kinds, d.kind)
		}
	}
	for i := range docs {
		d := &docs[i]
		hub, err := s.storedVersions(tx, d.key())
		if err != nil {
			return err
		}
		_, err = tx.Get(s.heads, d.key())
		hasHead := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		dr := DocumentReport{Kind: d.kind, Scope: d.scope.Param(), FileVersions: len(d.versions), HubVersions: len(hub)}
		dr.Outcome, dr.Detail = judge(hub, d.versions, hasHead)
		switch dr.Outcome {
		case OutcomeCreated:
			rep.Created++
			d.have = len(hub)
			rep.VersionsWritten += len(d.versions) - d.have
		case OutcomeUnchanged:
			rep.Unchanged++
		case OutcomeConflict:
			rep.Conflicts++
		}
		rep.Documents = append(rep.Documents, dr)
	}
	// The hub's documents of the file's kinds that the file lacks.
	for _, k := range kinds {
		err := tx.ScanPrefix(s.heads, k+"/", func(key string, b []byte) error {
			if inFile[key] {
				return nil
			}
			sc, err := parseScope(strings.TrimPrefix(key, k+"/"))
			if err != nil {
				return fmt.Errorf("document %s: %w", key, err)
			}
			var h head
			if err := json.Unmarshal(b, &h); err != nil {
				return fmt.Errorf("head of %s: %w", key, err)
			}
			rep.Conflicts++
			rep.Documents = append(rep.Documents, DocumentReport{Kind: k, Scope: sc.Param(), Outcome: OutcomeConflict, HubVersions: int(h.Number),
				Detail: "the hub has this document and the file does not"})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// judge compares the hub's versions of a document (hasHead: it has a
// latest one) with the file's.
func judge(hub, file []Version, hasHead bool) (Outcome, string) {
	for i, h := range hub {
		if i >= len(file) {
			return OutcomeConflict, fmt.Sprintf("the hub has versions 1 to %d, the file 1 to %d", len(hub), len(file))
		}
		if diff := versionDiff(h, file[i]); diff != "" {
			return OutcomeConflict, fmt.Sprintf("version %d differs: %s", i+1, diff)
		}
	}
	switch {
	case len(hub) == 0:
		return OutcomeCreated, ""
	case !hasHead:
		return OutcomeCreated, fmt.Sprintf("completes an interrupted import: versions 1 to %d are here already", len(hub))
	case len(hub) < len(file):
		return OutcomeConflict, fmt.Sprintf("the hub has versions 1 to %d, the file 1 to %d", len(hub), len(file))
	}
	return OutcomeUnchanged, ""
}

// versionDiff names the fields in which two versions of a document
// differ; "" if none.
func versionDiff(a, b Version) string {
	var d []string
	if a.Hash != b.Hash || !bytes.Equal(a.Content, b.Content) {
		d = append(d, fmt.Sprintf("hash %.12s… here, %.12s… in the file", a.Hash, b.Hash))
	}
	if a.Author != b.Author {
		d = append(d, "author")
	}
	if !a.Time.Equal(b.Time) {
		d = append(d, "time")
	}
	if a.Comment != b.Comment {
		d = append(d, "comment")
	}
	if a.Priority != b.Priority {
		d = append(d, "priority")
	}
	if a.RolledBackTo != b.RolledBackTo {
		d = append(d, "rolled_back_to")
	}
	return strings.Join(d, ", ")
}

// storedVersions reads every stored version of the document key, oldest
// first.
func (s *Store) storedVersions(tx *store.Tx, key string) ([]Version, error) {
	var out []Version
	err := tx.ScanPrefix(s.versions, key+"/", func(vk string, b []byte) error {
		var v Version
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("version %s: %w", vk, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// writeImported writes d's versions from d.have on, in batches of at
// most importBatch bytes, the head with the last. Each batch checks again
// that the document has no head and that what it writes is not there
// already with other content (a Put or another import since compare).
func (s *Store) writeImported(d *importDoc) error {
	for start := d.have; ; {
		end, size := start, 0
		for end < len(d.versions) && (end == start || size+len(d.enc[end]) <= importBatch) {
			size += len(d.enc[end])
			end++
		}
		n, err := s.writeBatch(d, start, end)
		if err != nil {
			return err
		}
		if start += n; start == len(d.versions) && end == start {
			return nil // the batch with the head
		}
	}
}

// writeBatch writes versions [start, end) of d in one transaction, with
// the head if end is the last; if that is too big for a transaction it
// writes the first half instead. It returns how many versions it wrote.
func (s *Store) writeBatch(d *importDoc, start, end int) (int, error) {
	key := d.key()
	err := s.db.Update(func(tx *store.Tx) error {
		switch _, err := tx.Get(s.heads, key); {
		case err == nil:
			return fmt.Errorf("written meanwhile by another writer: %w", ErrImportConflict)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		for i := start; i < end; i++ {
			vk := versionKey(key, uint64(i+1))
			switch b, err := tx.Get(s.versions, vk); {
			case err == nil:
				var v Version
				if err := json.Unmarshal(b, &v); err != nil {
					return fmt.Errorf("version %d: %w", i+1, err)
				}
				if diff := versionDiff(v, d.versions[i]); diff != "" {
					return fmt.Errorf("version %d written meanwhile by another writer (%s): %w", i+1, diff, ErrImportConflict)
				}
				continue
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			if err := tx.Put(s.versions, vk, d.enc[i]); err != nil {
				return err
			}
		}
		if end < len(d.versions) {
			return nil
		}
		last := d.versions[end-1]
		hb, err := json.Marshal(head{Number: last.Number, Hash: last.Hash, Priority: last.Priority})
		if err != nil {
			return err
		}
		return tx.Put(s.heads, key, hb)
	})
	if errors.Is(err, store.ErrTxnTooBig) && end-start > 1 {
		return s.writeBatch(d, start, start+(end-start)/2)
	}
	if err != nil {
		return 0, err
	}
	return end - start, nil
}
