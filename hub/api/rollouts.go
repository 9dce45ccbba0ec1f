package api

import (
	"net/http"

	"github.com/alicia-home/alicia/hub/rollout"
	"github.com/alicia-home/alicia/hub/spec"
)

// Rollouts runs configuration rollouts (hub/rollout.Manager).
type Rollouts interface {
	// Start writes a new version and rolls it out by a strategy.
	Start(w spec.Write, st rollout.Strategy) (spec.Version, rollout.Rollout, error)
	// Guard runs a write of a kind unless a rollout of it is active.
	Guard(kind string, write func() error) error
	// GuardAll runs a write of any kinds unless any rollout is active.
	GuardAll(write func() error) error
	List() []rollout.Rollout
	Get(id string) (rollout.Rollout, error)
	Pause(id string) (rollout.Rollout, error)
	Resume(id string) (rollout.Rollout, error)
	Cancel(id string) (rollout.Rollout, error)
}

var _ Rollouts = (*rollout.Manager)(nil)

// guardConfigWrite runs a write of a document of kind, refused (409) while
// a rollout of the kind is running or paused.
func (s *server) guardConfigWrite(kind string, write func() error) error {
	if s.cfg.Rollouts == nil {
		return write()
	}
	return s.cfg.Rollouts.Guard(kind, write)
}

// guardImport runs an import, refused (409) while any rollout is running
// or paused: it may add documents of the kind being rolled out.
func (s *server) guardImport(write func() error) error {
	if s.cfg.Rollouts == nil {
		return write()
	}
	return s.cfg.Rollouts.GuardAll(write)
}

func (s *server) listRollouts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Rollouts.List())
}

func (s *server) getRollout(w http.ResponseWriter, r *http.Request) {
	ro, err := s.cfg.Rollouts.Get(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ro)
}

// rolloutAction answers POST /api/v1/rollouts/{id}/pause, resume or cancel.
func (s *server) rolloutAction(act func(string) (rollout.Rollout, error), what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ro, err := act(r.PathValue("id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("rollout "+what, "rollout", ro.ID, "state", ro.State)
		writeJSON(w, http.StatusOK, ro)
	}
}
