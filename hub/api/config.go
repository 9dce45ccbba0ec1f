package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/alicia-home/alicia/hub/confsync"
	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/spec"
)

// Configs is the configuration manager the configuration endpoints use
// (hub/spec.Store).
type Configs interface {
	Kinds() []string
	Schema(kind string) ([]byte, error)
	Documents(kind string) ([]spec.Version, error)
	Latest(kind string, scope spec.Scope) (spec.Version, error)
	Version(kind string, scope spec.Scope, n uint64) (spec.Version, error)
	History(kind string, scope spec.Scope) ([]spec.Version, error)
	Put(w spec.Write) (spec.Version, error)
	Rollback(kind string, scope spec.Scope, to, ifVersion uint64, author, comment string) (spec.Version, error)
	Effective(kind string, d spec.Device) (spec.Effective, error)
	Export(w io.Writer) error
	Import(r io.Reader, dryRun bool) (spec.Report, error)
}

var _ Configs = (*spec.Store)(nil)

// ConfigSync is the sender of the devices' configs (hub/confsync.Sync).
type ConfigSync interface {
	// Changed says the documents changed.
	Changed()
	// State is a device's desired against applied config, by kind.
	State(device string) map[string]confsync.KindState
}

var _ ConfigSync = (*confsync.Sync)(nil)

// configChanged tells the sender, if any, that the documents changed.
func (s *server) configChanged() {
	if s.cfg.ConfigSync != nil {
		s.cfg.ConfigSync.Changed()
	}
}

// configAuthor is who the admin token writes as.
const configAuthor = "admin"

// kindInfo is a kind in GET /api/v1/config.
type kindInfo struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
}

func (s *server) listKinds(w http.ResponseWriter, r *http.Request) {
	out := []kindInfo{}
	for _, k := range s.cfg.Configs.Kinds() {
		sch, err := s.cfg.Configs.Schema(k)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out = append(out, kindInfo{Name: k, Schema: sch})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) listConfigs(w http.ResponseWriter, r *http.Request) {
	docs, err := s.cfg.Configs.Documents(r.PathValue("kind"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if docs == nil {
		docs = []spec.Version{}
	}
	writeJSON(w, http.StatusOK, docs)
}

// configScope reads the {scope} path value; on failure it has answered.
func configScope(w http.ResponseWriter, r *http.Request) (spec.Scope, bool) {
	sc, err := spec.ParseScope(r.PathValue("scope"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, err.Error())
		return spec.Scope{}, false
	}
	return sc, true
}

// writeVersion answers a version with its ETag.
func writeVersion(w http.ResponseWriter, status int, v spec.Version) {
	w.Header().Set("ETag", v.ETag())
	writeJSON(w, status, v)
}

func (s *server) getConfig(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	v, err := s.cfg.Configs.Latest(r.PathValue("kind"), sc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeVersion(w, http.StatusOK, v)
}

// configWrite is the body of PUT /api/v1/config/{kind}/{scope}.
type configWrite struct {
	Content  json.RawMessage `json:"content"`
	Priority int             `json:"priority"`
	Comment  string          `json:"comment"`
	// Rollout, if set, releases the change in batches (hub/rollout).
	Rollout json.RawMessage `json:"rollout"`
}

// precondition reads the version a write replaces: If-Match "<n>" (the
// ETag of the latest version), or If-None-Match * for a document that
// must not exist yet. Without either it answers 428: a write must say
// what it replaces, so that of two racing writers one is told.
func precondition(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	if r.Header.Get("If-None-Match") == "*" && r.Header.Get("If-Match") == "" {
		return 0, true
	}
	m := r.Header.Get("If-Match")
	if m == "" {
		writeProblem(w, http.StatusPreconditionRequired,
			`say which version this replaces: If-Match with the ETag of the latest version (GET it first), or If-None-Match: * to create the document`)
		return 0, false
	}
	n, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
	if err != nil || n == 0 {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf(`If-Match %q: want the ETag of a version, such as "3"`, m))
		return 0, false
	}
	return n, true
}

func (s *server) putConfig(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	ifv, ok := precondition(w, r)
	if !ok {
		return
	}
	var body configWrite
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Content == nil {
		writeProblem(w, http.StatusBadRequest, "content: required (a JSON object)")
		return
	}
	kind := r.PathValue("kind")
	write := spec.Write{Kind: kind, Scope: sc, Content: body.Content, Priority: body.Priority, IfVersion: ifv, Author: configAuthor, Comment: body.Comment}
	if body.Rollout != nil {
		s.startRollout(w, r, write, body.Rollout)
		return
	}
	var v spec.Version
	err := s.guardConfigWrite(kind, func() (err error) {
		v, err = s.cfg.Configs.Put(write)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("config saved", "kind", kind, "scope", sc.String(), "version", v.Number, "hash", v.Hash)
	s.configChanged()
	status := http.StatusOK
	if v.Number == 1 {
		status = http.StatusCreated
	}
	writeVersion(w, status, v)
}

// startRollout writes a version with a rollout: 202 with the rollout, the
// new version's ETag, and the rollout's URL in Location.
func (s *server) startRollout(w http.ResponseWriter, r *http.Request, write spec.Write, raw json.RawMessage) {
	if s.cfg.Rollouts == nil {
		writeProblem(w, http.StatusBadRequest, "rollout: this hub does not run rollouts; write without one")
		return
	}
	st, err := rollout.DecodeStrategy(raw)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, ro, err := s.cfg.Rollouts.Start(write, st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("config saved with a rollout", "kind", v.Kind, "scope", v.Scope.String(), "version", v.Number, "rollout", ro.ID, "devices", len(ro.Devices))
	s.configChanged()
	w.Header().Set("ETag", v.ETag())
	w.Header().Set("Location", "/api/v1/rollouts/"+ro.ID)
	writeJSON(w, http.StatusAccepted, ro)
}

func (s *server) configHistory(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	h, err := s.cfg.Configs.History(r.PathValue("kind"), sc)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// versionNumber reads a version number; on failure it has answered.
func versionNumber(w http.ResponseWriter, what, s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want a version number (1, 2, …)", what, s))
		return 0, false
	}
	return n, true
}

func (s *server) configVersion(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	n, ok := versionNumber(w, "version", r.PathValue("n"))
	if !ok {
		return
	}
	v, err := s.cfg.Configs.Version(r.PathValue("kind"), sc, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeVersion(w, http.StatusOK, v)
}

// configDiff answers GET …/diff?from=N&to=M: what changed from version N
// to version M (to defaults to the latest).
func (s *server) configDiff(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	kind, q := r.PathValue("kind"), r.URL.Query()
	from, ok := versionNumber(w, "from", q.Get("from"))
	if !ok {
		return
	}
	a, err := s.cfg.Configs.Version(kind, sc, from)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var b spec.Version
	if q.Get("to") == "" {
		b, err = s.cfg.Configs.Latest(kind, sc)
	} else {
		to, ok := versionNumber(w, "to", q.Get("to"))
		if !ok {
			return
		}
		b, err = s.cfg.Configs.Version(kind, sc, to)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	changes, err := spec.Diff(a.Content, b.Content)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if changes == nil {
		changes = []spec.Change{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": a.Number, "to": b.Number, "changes": changes})
}

func (s *server) rollbackConfig(w http.ResponseWriter, r *http.Request) {
	sc, ok := configScope(w, r)
	if !ok {
		return
	}
	ifv, ok := precondition(w, r)
	if !ok {
		return
	}
	var body struct {
		Version uint64 `json:"version"`
		Comment string `json:"comment"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Version == 0 {
		writeProblem(w, http.StatusBadRequest, "version: required, the version whose content to restore")
		return
	}
	kind := r.PathValue("kind")
	var v spec.Version
	err := s.guardConfigWrite(kind, func() (err error) {
		v, err = s.cfg.Configs.Rollback(kind, sc, body.Version, ifv, configAuthor, body.Comment)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("config rolled back", "kind", kind, "scope", sc.String(), "to", body.Version, "version", v.Number)
	s.configChanged()
	writeVersion(w, http.StatusOK, v)
}

// effectiveConfig answers a device's effective configuration of a kind,
// with the layers it merged and which one set each value, its templates
// rendered for the device (a value that renders invalid: 400 naming it).
func (s *server) effectiveConfig(w http.ResponseWriter, r *http.Request) {
	d, err := s.devices.Get(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dev := spec.Device{ID: d.ID, Name: d.Name, Labels: d.Labels}
	if d.Facts != nil {
		dev.Arch, dev.Hostname = d.Facts.Arch, d.Facts.Hostname
	}
	eff, err := s.cfg.Configs.Effective(r.PathValue("kind"), dev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, eff)
}
