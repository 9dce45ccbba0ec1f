// Package logging builds the slog.Logger both binaries use: text lines on
// stderr (journald adds its own timestamps) at a level chosen by
// --log-level. Only main packages import it.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w at the named level (debug, info, warn, error).
func New(w io.Writer, level string) (*slog.Logger, error) {
	log, _, err := NewVar(w, level)
	return log, err
}

// NewVar is New with the level in a LevelVar, which may change at run time.
func NewVar(w io.Writer, level string) (*slog.Logger, *slog.LevelVar, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	v := new(slog.LevelVar)
	v.Set(l)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: v})), v, nil
}
