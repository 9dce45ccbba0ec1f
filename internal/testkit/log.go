package testkit

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// LogBuffer collects log output written from several goroutines; it is an
// io.Writer for a logger, for a command's Stdout and Stderr, or both.
type LogBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

// Logger returns a logger that writes text records at every level (debug
// included) into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// NewLogger returns a debug-level text logger and the buffer it writes to.
func NewLogger() (*slog.Logger, *LogBuffer) {
	l := &LogBuffer{}
	return l.Logger(), l
}

// Write appends p to the buffer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Take returns what was written since the last Take (or since the start)
// and empties the buffer.
func (l *LogBuffer) Take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// Lines returns everything written so far as lines, without the final
// newline; nil when nothing was written.
func (l *LogBuffer) Lines() []string {
	s := strings.TrimSuffix(l.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
