package textfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// DefaultDir is the drop directory of an installed agent (see the package
// documentation for why there).
const DefaultDir = "/var/lib/alicia-agent-textfile"

// Default limits of Config.
const (
	DefaultMaxFiles     = 64
	DefaultMaxFileBytes = 64 << 10
	DefaultMaxPoints    = 256
)

// logEvery is how often one problem (a file's line, a file, a name) is
// logged again while it persists.
const logEvery = 10 * time.Minute

// Suffix ends the names of the files the collector reads.
const Suffix = ".prom"

// Config configures a Collector. The zero value of each limit is its
// default.
type Config struct {
	// Dir is the drop directory. Required.
	Dir string
	// Reserved reports names the agent sends itself (its host and
	// hardware metrics) besides the prefixes every agent keeps (see
	// ReservedPrefixes); a sample of such a name is refused. Nil: only
	// the prefixes.
	Reserved func(name string) bool
	// MaxFiles bounds the files read per collection (the first in name
	// order); default DefaultMaxFiles.
	MaxFiles int
	// MaxFileBytes bounds a file's size; a larger file is refused whole.
	// Default DefaultMaxFileBytes.
	MaxFileBytes int
	// MaxPoints bounds the points of one collection (the first files'
	// first); default DefaultMaxPoints.
	MaxPoints int
	// Logger receives the problems, each at most once per 10 minutes
	// while it persists. Default: discard.
	Logger *slog.Logger
	// Now is the clock of the log throttle; default time.Now.
	Now func() time.Time
}

// ReservedPrefixes start the names that no custom metric may have: the
// agent's own (agent_), the hub's families in /metrics (alicia_, and those
// of the Go client: go_, process_, promhttp_).
var ReservedPrefixes = []string{"agent_", "alicia_", "go_", "process_", "promhttp_"}

// IsReserved reports whether name is kept from custom metrics: it has one
// of ReservedPrefixes, or reserved (if not nil) says so.
func IsReserved(name string, reserved func(string) bool) bool {
	for _, p := range ReservedPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return reserved != nil && reserved(name)
}

// Collector reads the drop directory at each collection.
// It is safe for concurrent use.
type Collector struct {
	cfg Config
	log *slog.Logger

	// mu guards the fields below.
	mu     sync.Mutex
	logged map[string]time.Time // problem → when last logged
}

// New returns a collector of cfg.Dir. It does no I/O: the directory may
// appear later.
func New(cfg Config) (*Collector, error) {
	if cfg.Dir == "" {
		return nil, errors.New("textfile: a directory is required")
	}
	if cfg.MaxFiles < 0 || cfg.MaxFileBytes < 0 || cfg.MaxPoints < 0 {
		return nil, errors.New("textfile: limits must not be negative")
	}
	cfg.MaxFiles = cmpOr(cfg.MaxFiles, DefaultMaxFiles)
	cfg.MaxFileBytes = cmpOr(cfg.MaxFileBytes, DefaultMaxFileBytes)
	cfg.MaxPoints = min(cmpOr(cfg.MaxPoints, DefaultMaxPoints), protocol.MaxPoints)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: cfg, log: log, logged: map[string]time.Time{}}, nil
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Collect reads the *.prom files of the directory (regular files only, in
// name order, hidden ones skipped) and returns the points of their valid
// lines, at most MaxPoints, with no reserved name and no series twice (the
// first file's is kept). A missing directory gives no points.
func (c *Collector) Collect() []protocol.Point {
	points, problems := c.collect()
	c.report(problems)
	return points
}

// problem is one thing to log: key identifies it for the throttle.
type problem struct {
	key string
	err error
}

func (c *Collector) collect() ([]protocol.Point, []problem) {
	var problems []problem
	note := func(key string, err error) { problems = append(problems, problem{key, err}) }
	entries, err := os.ReadDir(c.cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		note("dir", fmt.Errorf("textfile directory: %w", err))
		return nil, problems
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, Suffix) || strings.HasPrefix(n, ".") {
			continue
		}
		if !e.Type().IsRegular() {
			note("type "+n, &LineError{File: n, Err: fmt.Errorf("not a regular file (%s); left out", e.Type())})
			continue
		}
		names = append(names, n) // ReadDir sorts by name
	}
	if len(names) > c.cfg.MaxFiles {
		note("files", fmt.Errorf("%d %s files in %s, limit %d; read the first %d in name order", len(names), Suffix, c.cfg.Dir, c.cfg.MaxFiles, c.cfg.MaxFiles))
		names = names[:c.cfg.MaxFiles]
	}
	var points []protocol.Point
	seen := map[string]string{} // series key → file
	for _, n := range names {
		data, err := c.read(n)
		if err != nil {
			note("read "+n, &LineError{File: n, Err: err})
			continue
		}
		samples, errs := Parse(n, data)
		for _, e := range errs {
			note(e.Error(), e)
		}
		for _, s := range samples {
			if IsReserved(s.Name, c.cfg.Reserved) {
				note(fmt.Sprintf("reserved %s:%d", n, s.Line), &LineError{File: n, Line: s.Line, Err: fmt.Errorf("%s: the name is the agent's own (or the hub's); choose another", s.Name)})
				continue
			}
			key := seriesKey(s.Name, s.Labels)
			if other, dup := seen[key]; dup {
				note(fmt.Sprintf("dup %s:%d", n, s.Line), &LineError{File: n, Line: s.Line, Err: fmt.Errorf("%s: also in %s, whose sample is kept", key, other)})
				continue
			}
			if len(points) == c.cfg.MaxPoints {
				note("points", fmt.Errorf("more than %d custom points; %s:%d and what follows are left out", c.cfg.MaxPoints, n, s.Line))
				return points, problems
			}
			seen[key] = n
			points = append(points, s.Point)
		}
	}
	return points, problems
}

// read returns the contents of the file name of the directory, refusing
// what is not a regular file (opened without blocking, so a FIFO cannot
// stall the collection) or larger than MaxFileBytes.
func (c *Collector) read(name string) ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(c.cfg.Dir, name), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s); left out", fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(c.cfg.MaxFileBytes)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > c.cfg.MaxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes; left out", c.cfg.MaxFileBytes)
	}
	return data, nil
}

// report logs the problems not logged in the last logEvery, and forgets
// those older than that.
func (c *Collector) report(problems []problem) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, at := range c.logged {
		if now.Sub(at) >= logEvery {
			delete(c.logged, k)
		}
	}
	for _, p := range problems {
		if _, ok := c.logged[p.key]; ok {
			continue
		}
		// Bound the throttle's memory: a directory full of bad lines
		// is logged a page at a time.
		if len(c.logged) >= 4*DefaultMaxPoints {
			break
		}
		c.logged[p.key] = now
		c.log.Warn("custom metric refused", "dir", c.cfg.Dir, "err", p.err)
	}
}

// sortedKeys is used by tests and Write.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
