package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/alicia-home/alicia/hub/scheduler"
	"github.com/alicia-home/alicia/internal/schedule"
)

// Jobs is the scheduler (hub/scheduler.Scheduler).
type Jobs interface {
	Put(w scheduler.Write) (scheduler.Version, error)
	Delete(id string, ifVersion uint64, author string) error
	List() []scheduler.Status
	Get(id string) (scheduler.Status, error)
	Versions(id string) ([]scheduler.Version, error)
	Runs(id string, limit int) ([]scheduler.Run, error)
	Preview(id string, n int) ([]schedule.Fire, error)
	PreviewTrigger(t schedule.Trigger, n int) ([]schedule.Fire, error)
	Pause(id string) (scheduler.Status, error)
	Resume(id string) (scheduler.Status, error)
	RunNow(id string) (scheduler.Run, error)
}

var _ Jobs = (*scheduler.Scheduler)(nil)

// jobAuthor is who the admin token writes jobs as.
const jobAuthor = "admin"

// jobWrite is the body of POST /api/v1/jobs and PUT /api/v1/jobs/{id}: a
// job, and the comment of its version.
type jobWrite struct {
	scheduler.Job
	Comment string `json:"comment"`
}

func writeJob(w http.ResponseWriter, status int, v scheduler.Version) {
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, v.Number))
	writeJSON(w, status, v)
}

// createJob stores a new job (201, ETag "1"); 412 if its ID is taken.
func (s *server) createJob(w http.ResponseWriter, r *http.Request) {
	var body jobWrite
	if !decodeBody(w, r, &body) {
		return
	}
	v, err := s.cfg.Jobs.Put(scheduler.Write{Job: body.Job, Author: jobAuthor, Comment: body.Comment})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+v.Job.ID)
	writeJob(w, http.StatusCreated, v)
}

// putJob writes a new version of job {id} over the version If-Match
// names (or creates it with If-None-Match: *).
func (s *server) putJob(w http.ResponseWriter, r *http.Request) {
	ifv, ok := precondition(w, r)
	if !ok {
		return
	}
	var body jobWrite
	if !decodeBody(w, r, &body) {
		return
	}
	id := r.PathValue("id")
	if body.ID == "" {
		body.ID = id
	}
	if body.ID != id {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("id %q: the job at this URL is %q", body.ID, id))
		return
	}
	v, err := s.cfg.Jobs.Put(scheduler.Write{Job: body.Job, IfVersion: ifv, Author: jobAuthor, Comment: body.Comment})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if ifv == 0 {
		status = http.StatusCreated
	}
	writeJob(w, status, v)
}

func (s *server) deleteJob(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("If-Match") == "" {
		writeProblem(w, http.StatusPreconditionRequired, `say which version this deletes: If-Match with the job's ETag`)
		return
	}
	ifv, ok := precondition(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Jobs.Delete(r.PathValue("id"), ifv, jobAuthor); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) listJobs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Jobs.List())
}

func (s *server) getJob(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Jobs.Get(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, st.Number))
	writeJSON(w, http.StatusOK, st)
}

func (s *server) jobVersions(w http.ResponseWriter, r *http.Request) {
	vs, err := s.cfg.Jobs.Versions(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

// queryInt reads ?name=N in [1, max], default def.
func queryInt(w http.ResponseWriter, r *http.Request, name string, def, max int) (int, bool) {
	q := r.URL.Query().Get(name)
	if q == "" {
		return def, true
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > max {
		writeProblem(w, http.StatusBadRequest, fmt.Sprintf("%s %q: want 1 to %d", name, q, max))
		return 0, false
	}
	return n, true
}

func (s *server) jobRuns(w http.ResponseWriter, r *http.Request) {
	n, ok := queryInt(w, r, "limit", scheduler.MaxRuns, scheduler.MaxRuns)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := s.cfg.Jobs.Versions(id); err != nil {
		s.writeError(w, r, err)
		return
	}
	runs, err := s.cfg.Jobs.Runs(id, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, runs)
}

func (s *server) jobNext(w http.ResponseWriter, r *http.Request) {
	n, ok := queryInt(w, r, "n", 10, schedule.MaxPreview)
	if !ok {
		return
	}
	fires, err := s.cfg.Jobs.Preview(r.PathValue("id"), n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fires)
}

// previewTrigger answers the next fires of a trigger not stored (POST
// /api/v1/jobs/preview?n=10 with {"trigger": …}).
func (s *server) previewTrigger(w http.ResponseWriter, r *http.Request) {
	n, ok := queryInt(w, r, "n", 10, schedule.MaxPreview)
	if !ok {
		return
	}
	var body struct {
		Trigger *schedule.Trigger `json:"trigger"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Trigger == nil {
		writeProblem(w, http.StatusBadRequest, "trigger: required")
		return
	}
	fires, err := s.cfg.Jobs.PreviewTrigger(*body.Trigger, n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fires)
}

// jobAction answers POST /api/v1/jobs/{id}/pause|resume.
func (s *server) jobAction(do func(string) (scheduler.Status, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := do(r.PathValue("id"))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	}
}

func (s *server) runJob(w http.ResponseWriter, r *http.Request) {
	run, err := s.cfg.Jobs.RunNow(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, run)
}
