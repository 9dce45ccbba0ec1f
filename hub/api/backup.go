package api

import (
	"fmt"
	"net/http"
	"time"
)

// backup streams a backup of the whole hub (GET /api/v1/backup). A
// failure before the first byte is a problem; one after it aborts the
// response, so that the client sees a broken transfer rather than a short
// file that looks whole (the format's end checksum catches that too).
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	bw := &backupWriter{w: w, name: fmt.Sprintf("alicia-hub-%s-%s.backup", s.cfg.HubID, s.cfg.Now().UTC().Format("20060102T150405Z"))}
	start := time.Now()
	n, err := s.cfg.Backup(bw)
	if err != nil {
		if !bw.started {
			s.writeError(w, r, err)
			return
		}
		s.log.Error("backup failed mid-stream", "err", err, "bytes", n)
		panic(http.ErrAbortHandler)
	}
	s.log.Info("served a backup", "bytes", n, "duration", time.Since(start), "remote", r.RemoteAddr)
}

// backupWriter sends the response header with the first byte.
type backupWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (bw *backupWriter) Write(p []byte) (int, error) {
	if !bw.started {
		bw.started = true
		h := bw.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", bw.name))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		bw.w.WriteHeader(http.StatusOK)
	}
	return bw.w.Write(p)
}
