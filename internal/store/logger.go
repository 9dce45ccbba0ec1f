package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// levelBadgerDebug is the slog level of badger's debug lines (several per
// write): below slog.LevelDebug, so that a hub running at debug level shows
// badger's info lines (file replays, compactions) but not its per-write noise.
const levelBadgerDebug = slog.LevelDebug - 4

// Badger format strings whose error argument means a write reached neither
// the disk nor the caller reliably (badger v4.9.6, value.go and db.go). The
// value-log sync error is only logged by badger, never returned.
const (
	fmtVlogSyncFailed     = "Error while curlf sync: %v\n"
	fmtWriteRequestFailed = "writeRequests: %v"
)

// badgerLogger routes badger's logging into slog and reports write failures
// that badger only logs.
type badgerLogger struct {
	log *slog.Logger
	// writeFailed is called with the error of a failed value-log sync or
	// write batch. It must be safe for concurrent use.
	writeFailed func(error)
}

var _ badger.Logger = badgerLogger{}

// Errorf logs at slog.LevelError.
func (l badgerLogger) Errorf(format string, args ...any) {
	if format == fmtVlogSyncFailed || format == fmtWriteRequestFailed {
		if len(args) == 1 {
			if err, ok := args[0].(error); ok && l.writeFailed != nil {
				l.writeFailed(err)
			}
		}
	}
	l.logf(slog.LevelError, format, args...)
}

// Warningf logs at slog.LevelWarn.
func (l badgerLogger) Warningf(format string, args ...any) {
	l.logf(slog.LevelWarn, format, args...)
}

// Infof logs at slog.LevelDebug: badger's info lines are routine.
func (l badgerLogger) Infof(format string, args ...any) {
	l.logf(slog.LevelDebug, format, args...)
}

// Debugf logs at levelBadgerDebug.
func (l badgerLogger) Debugf(format string, args ...any) {
	l.logf(levelBadgerDebug, format, args...)
}

func (l badgerLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.LogAttrs(ctx, level, msg, slog.String("lib", "badger"))
}
