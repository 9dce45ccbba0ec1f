package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/alicia-home/alicia/hub/spec"
)

// maxImportBody is the largest configuration export POST
// /api/v1/config-import reads: a few hundred documents with long
// histories, and well within a small hub's memory.
const maxImportBody = 32 << 20

// exportConfig answers every configuration document with every version
// as one JSON file (GET /api/v1/config-export), read whole before the
// first byte so that a failure is a problem, not a short file.
func (s *server) exportConfig(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	if err := s.cfg.Configs.Export(&b); err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q",
		fmt.Sprintf("alicia-config-%s-%s.json", s.cfg.HubID, s.cfg.Now().UTC().Format("20060102T150405Z"))))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
	s.log.Info("served a configuration export", "bytes", b.Len(), "remote", r.RemoteAddr)
}

// importConflict is the 409 of an import: the problem and the report
// saying which documents conflict.
type importConflict struct {
	problem
	Report spec.Report `json:"report"`
}

// importConfig reads an export file into this hub (POST
// /api/v1/config-import?dry_run=true|false): 200 with the report (a dry
// run writes nothing), 400 naming what is invalid, 409 with the report if
// the hub has other documents of the file's kinds.
func (s *server) importConfig(w http.ResponseWriter, r *http.Request) {
	var dry bool
	switch q := r.URL.Query().Get("dry_run"); q {
	case "", "false":
	case "true":
		dry = true
	default:
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("dry_run %q: want true or false", q))
		return
	}
	body, ok := readBody(w, r, maxImportBody, false)
	if !ok {
		return
	}
	var rep spec.Report
	importDocs := func() (err error) {
		rep, err = s.cfg.Configs.Import(bytes.NewReader(body), dry)
		return err
	}
	var err error
	if dry {
		err = importDocs()
	} else {
		err = s.guardImport(importDocs)
	}
	if errors.Is(err, spec.ErrImportConflict) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(importConflict{
			problem: problem{Type: "about:blank", Title: http.StatusText(http.StatusConflict), Status: http.StatusConflict, Detail: err.Error()},
			Report:  rep})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !dry && rep.Created > 0 {
		s.log.Info("configuration imported", "created", rep.Created, "unchanged", rep.Unchanged, "versions", rep.VersionsWritten)
		s.configChanged()
	}
	writeJSON(w, http.StatusOK, rep)
}
