// Package throttle bounds repeated log lines: a Log lets Burst lines per
// key through per interval and counts the ones it held back, which the
// next line that passes reports. A device that sends 50,000 bad messages then
// costs a few lines, not megabytes of an SD card. Any package may import
// it; it imports only the standard library.
package throttle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKeys bounds the keys a Log remembers; past it, it forgets them all
// (at worst one extra line per key).
const maxKeys = 4096

// Log writes at most Burst lines per key and Every through Logger. Its
// zero value is not usable: set Logger and Every. It is safe for
// concurrent use.
type Log struct {
	Logger *slog.Logger
	Every  time.Duration
	// Burst is how many lines of one key may pass per Every; 0 means 1.
	Burst int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// mu guards the field below.
	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	start  time.Time // of the current interval
	passed int       // lines passed in it
	held   uint64    // lines held back since the last that passed
}

// Warn logs msg with args at warn level unless Burst lines of key were
// logged in the current interval (Every long, from the first of them);
// then it only counts it. A line that passes after
// some were held back carries "suppressed" with their count.
func (l *Log) Warn(key, msg string, args ...any) { l.log(slog.LevelWarn, key, msg, args) }

// Error is Warn at error level.
func (l *Log) Error(key, msg string, args ...any) { l.log(slog.LevelError, key, msg, args) }

func (l *Log) log(level slog.Level, key, msg string, args []any) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now()
	l.mu.Lock()
	if l.keys == nil || len(l.keys) >= maxKeys {
		l.keys = map[string]*state{}
	}
	s := l.keys[key]
	if s == nil || t.Sub(s.start) >= l.Every {
		if s == nil {
			s = &state{}
			l.keys[key] = s
		}
		s.start, s.passed = t, 0
	}
	if s.passed >= max(l.Burst, 1) {
		s.held++
		l.mu.Unlock()
		return
	}
	s.passed++
	held := s.held
	s.held = 0
	l.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	l.Logger.Log(context.Background(), level, msg, args...)
}
