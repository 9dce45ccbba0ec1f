package sample

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/common"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Collector names, as Config.Enabled takes them and reports show them.
const (
	CPU        = "cpu"
	Memory     = "memory"
	Swap       = "swap"
	Filesystem = "filesystem"
	DiskIO     = "diskio"
	Network    = "network"
	Thermal    = "thermal"
	System     = "system"
	Self       = "self"
)

// Collectors returns the names of all collectors, in the order reports list
// them.
func Collectors() []string {
	return []string{CPU, Memory, Swap, Filesystem, DiskIO, Network, Thermal, System, Self}
}

// Defaults of Config.
const (
	DefaultProcRoot     = "/proc"
	DefaultSysRoot      = "/sys"
	DefaultEtcRoot      = "/etc"
	DefaultTimeout      = 3 * time.Second
	DefaultMountTimeout = 2 * time.Second
)

// Config configures a Sampler. The zero value collects everything from the
// running system.
type Config struct {
	// ProcRoot is where procfs is mounted; default "/proc". Point it at
	// the host's /proc (e.g. /host/proc) when the agent runs in a
	// container, or at a fixture tree in tests.
	ProcRoot string
	// SysRoot is where sysfs is mounted; default "/sys".
	SysRoot string
	// EtcRoot is the host's /etc; default "/etc". gopsutil reads
	// os-release under it when it probes for virtualization.
	EtcRoot string
	// Enabled names the collectors to run (see Collectors). Nil or empty
	// runs them all; an unknown name is an error.
	Enabled []string
	// Timeout bounds one collection; collectors that have not returned by
	// then are reported as failed. Keep it below the collection interval.
	// Default DefaultTimeout.
	Timeout time.Duration
	// MountTimeout bounds the statfs of one mount; default
	// DefaultMountTimeout.
	MountTimeout time.Duration
	// StatFS returns the usage of the filesystem mounted at path; default
	// statfs(2) through gopsutil. It must be safe for concurrent use.
	// statfs cannot be pointed at a fixture tree, so tests fake it. It is
	// called with the mount points as the mount table under ProcRoot names
	// them, resolved in the agent's own mount namespace (a containerized
	// agent that reads the host's /proc needs the host's root mounted at
	// the same paths, or a StatFS that prefixes them).
	StatFS func(path string) (FSStat, error)
	// Filters say which network interfaces and filesystems are left out;
	// the zero value leaves out what the package documentation lists.
	Filters Filters
	// Logger receives a record, with a "collector" attribute, each time a
	// collector's outcome changes (starts failing, recovers, is skipped).
	// The caller adds the component attribute. Default: discard.
	Logger *slog.Logger
}

// Filters say which network interfaces and filesystems the collectors
// leave out. The expressions are Go regular expressions, unanchored (write
// ^…$ to match whole names). The zero value applies the defaults.
type Filters struct {
	// NetExclude matches the names of network interfaces to leave out,
	// besides lo (always left out) and the virtual ones. Nil: none by name.
	NetExclude *regexp.Regexp
	// NetIncludeVirtual reports virtual interfaces too: those the kernel
	// lists under SysRoot/devices/virtual/net (bridges, veth, tun and tap,
	// WireGuard, VLANs, bonds, ifb, dummy), which a host running
	// containers or VMs has dozens of, and whose traffic the physical
	// interfaces also count.
	NetIncludeVirtual bool
	// FSExcludeTypes matches the filesystem types to leave out; nil:
	// DefaultFSExcludeTypes.
	FSExcludeTypes *regexp.Regexp
	// FSExcludeMounts matches the mount points to leave out; nil:
	// DefaultFSExcludeMounts.
	FSExcludeMounts *regexp.Regexp
}

// Default filters: node_exporter's defaults (its filesystem collector's
// fs-types-exclude and mount-points-exclude), with every mount below /run
// (per-user and runtime tmpfs; /run itself is kept), /snap and the volumes
// of Kubernetes pods added to the mount points.
const (
	DefaultFSExcludeTypes  = `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$`
	DefaultFSExcludeMounts = `^/(dev|proc|run/.+|snap|sys|var/lib/docker/.+|var/lib/containers/storage/.+|var/lib/kubelet/.+)($|/)`
)

var (
	defaultFSExcludeTypes  = regexp.MustCompile(DefaultFSExcludeTypes)
	defaultFSExcludeMounts = regexp.MustCompile(DefaultFSExcludeMounts)
)

// FSStat is the usage of one filesystem as statfs(2) reports it.
type FSStat struct {
	Size  uint64 // bytes: blocks × block size
	Used  uint64 // bytes: (blocks − free blocks) × block size
	Avail uint64 // bytes available to unprivileged users
	// Inodes is the number of inodes, 0 when the filesystem does not
	// report them (vfat, btrfs); InodesFree the free ones.
	Inodes, InodesFree uint64
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	known := Collectors()
	for _, n := range c.Enabled {
		if !slices.Contains(known, n) {
			return fmt.Errorf("sample: unknown collector %q; known collectors: %s", n, strings.Join(known, ", "))
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("sample: timeout %v is negative", c.Timeout)
	}
	if c.MountTimeout < 0 {
		return fmt.Errorf("sample: mount timeout %v is negative", c.MountTimeout)
	}
	return nil
}

// Sampler runs the enabled collectors. Its methods are safe for concurrent
// use; concurrent calls of Collect run one after the other.
type Sampler struct {
	timeout time.Duration
	env     common.EnvMap
	log     *slog.Logger
	runners []*runner // enabled collectors, in Collectors order

	// collectMu serializes Collect and guards the fields below.
	collectMu sync.Mutex
	dropped   int // points dropped by the previous collection, to log changes only
}

// New validates cfg, fills in the defaults and returns a Sampler. It does
// no I/O.
func New(cfg Config) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ProcRoot = cmp.Or(cfg.ProcRoot, DefaultProcRoot)
	cfg.SysRoot = cmp.Or(cfg.SysRoot, DefaultSysRoot)
	cfg.EtcRoot = cmp.Or(cfg.EtcRoot, DefaultEtcRoot)
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MountTimeout == 0 {
		cfg.MountTimeout = DefaultMountTimeout
	}
	if cfg.StatFS == nil {
		cfg.StatFS = statFS
	}
	cfg.Filters.FSExcludeTypes = cmp.Or(cfg.Filters.FSExcludeTypes, defaultFSExcludeTypes)
	cfg.Filters.FSExcludeMounts = cmp.Or(cfg.Filters.FSExcludeMounts, defaultFSExcludeMounts)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{
		timeout: cfg.Timeout,
		// Every key is set, so gopsutil never falls back to the
		// process's HOST_PROC/HOST_SYS/HOST_ETC environment.
		env: common.EnvMap{
			common.HostProcEnvKey: cfg.ProcRoot,
			common.HostSysEnvKey:  cfg.SysRoot,
			common.HostEtcEnvKey:  cfg.EtcRoot,
		},
		log: logger,
	}
	for _, name := range Collectors() {
		if len(cfg.Enabled) > 0 && !slices.Contains(cfg.Enabled, name) {
			continue
		}
		s.runners = append(s.runners, newRunner(name, newCollector(name, &cfg)))
	}
	return s, nil
}

func newCollector(name string, cfg *Config) collector {
	switch name {
	case CPU:
		return &cpuCollector{proc: cfg.ProcRoot}
	case Memory:
		return memoryCollector{meminfo: filepath.Join(cfg.ProcRoot, "meminfo")}
	case Swap:
		return swapCollector{meminfo: filepath.Join(cfg.ProcRoot, "meminfo")}
	case Filesystem:
		return newFilesystemCollector(cfg.ProcRoot, cfg.StatFS, cfg.MountTimeout, cfg.Filters.FSExcludeTypes, cfg.Filters.FSExcludeMounts)
	case DiskIO:
		return diskIOCollector{diskstats: filepath.Join(cfg.ProcRoot, "diskstats")}
	case Network:
		return networkCollector{netdev: filepath.Join(cfg.ProcRoot, "net", "dev"), virtual: filepath.Join(cfg.SysRoot, "devices", "virtual", "net"),
			exclude: cfg.Filters.NetExclude, includeVirtual: cfg.Filters.NetIncludeVirtual}
	case Thermal:
		return thermalCollector{class: filepath.Join(cfg.SysRoot, "class")}
	case System:
		return systemCollector{proc: cfg.ProcRoot}
	case Self:
		return selfCollector{proc: cfg.ProcRoot}
	}
	panic("sample: no collector named " + name)
}

// Status is the outcome of one collector in one collection.
type Status string

// Statuses.
const (
	// StatusOK: the collector read what it reads. Some readings may still
	// have failed (CollectorReport.Err says which).
	StatusOK Status = "ok"
	// StatusSkipped: the collector does not apply here (no swap, no
	// thermal sensors, …). Not an error.
	StatusSkipped Status = "skipped"
	// StatusFailed: the collector could read nothing, or did not return in
	// time.
	StatusFailed Status = "failed"
)

// Report tells how one collection went.
type Report struct {
	// Collectors has one entry per enabled collector, in Collectors order.
	Collectors []CollectorReport
	// Dropped counts the points left out (the last ones in sort order)
	// because the collection exceeded protocol.MaxPoints.
	Dropped int
}

// CollectorReport is the outcome of one collector in one collection.
type CollectorReport struct {
	Name     string
	Status   Status
	Points   int           // points it contributed
	Duration time.Duration // how long it ran (until the deadline, if it did not return)
	// Err says why the collector failed. With StatusOK it lists the
	// readings that failed while the others were collected (one mount
	// whose statfs hung, one unreadable sensor); nil when none did.
	Err error
	// Reason says why the collector was skipped.
	Reason string
}

// CollectorStats are the cumulative counts of one collector.
type CollectorStats struct {
	Name     string
	Runs     uint64        // collections, whatever their outcome
	Failures uint64        // runs that failed
	Skips    uint64        // runs that were skipped
	Partial  uint64        // ok runs in which some readings failed
	Duration time.Duration // total time spent
}

// Stats returns the cumulative counts of the enabled collectors, in
// Collectors order.
func (s *Sampler) Stats() []CollectorStats {
	out := make([]CollectorStats, 0, len(s.runners))
	for _, r := range s.runners {
		r.mu.Lock()
		out = append(out, r.stats)
		r.mu.Unlock()
	}
	return out
}

// Collect runs the enabled collectors concurrently and returns their points,
// sorted by name and then labels, at most protocol.MaxPoints of them, each
// valid for the protocol. It returns when every collector has returned, or
// when ctx is done or the configured timeout has passed, whichever is first:
// collectors still running then are reported as failed, and are not started
// again until they return.
func (s *Sampler) Collect(ctx context.Context) ([]protocol.Point, Report) {
	s.collectMu.Lock()
	defer s.collectMu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithValue(ctx, common.EnvKey, s.env), s.timeout)
	defer cancel()
	start := time.Now()

	type finished struct {
		i   int
		out outcome
	}
	done := make(chan finished, len(s.runners)) // late runs never block on it
	outs := make([]outcome, len(s.runners))
	pending := make([]bool, len(s.runners))
	npending := 0
	for i, r := range s.runners {
		if err := ctx.Err(); err != nil { // do not start what would be abandoned at once
			outs[i] = outcome{status: StatusFailed, err: fmt.Errorf("not started: %w", err)}
			continue
		}
		if !r.busy.CompareAndSwap(false, true) {
			outs[i] = outcome{status: StatusFailed, err: errors.New("the previous run has not returned yet")}
			continue
		}
		pending[i] = true
		npending++
		go func() {
			out := r.run(ctx)
			r.busy.Store(false)
			done <- finished{i, out}
		}()
	}
	for npending > 0 {
		select {
		case f := <-done:
			outs[f.i] = f.out
			pending[f.i] = false
			npending--
		case <-ctx.Done():
			for i := range pending {
				if pending[i] {
					outs[i] = outcome{status: StatusFailed, dur: time.Since(start),
						err: fmt.Errorf("no answer after %v: %w", time.Since(start).Round(time.Millisecond), ctx.Err())}
				}
			}
			npending = 0
		}
	}

	rep := Report{Collectors: make([]CollectorReport, len(s.runners))}
	n := 0
	for i := range outs {
		n += len(outs[i].points)
	}
	all := make([]keyedPoint, 0, n)
	for i, r := range s.runners {
		o := &outs[i]
		rep.Collectors[i] = CollectorReport{Name: r.name, Status: o.status, Points: len(o.points), Duration: o.dur, Err: o.err, Reason: o.reason}
		all = append(all, o.points...)
		r.record(o, s.log)
	}
	sortPoints(all)
	if len(all) > protocol.MaxPoints {
		rep.Dropped = len(all) - protocol.MaxPoints
		all = all[:protocol.MaxPoints]
	}
	if rep.Dropped != s.dropped && rep.Dropped > 0 {
		s.log.Warn("too many points; dropped the last ones in name order", "dropped", rep.Dropped, "limit", protocol.MaxPoints)
	}
	s.dropped = rep.Dropped
	points := make([]protocol.Point, len(all))
	for i := range all {
		points[i] = all[i].Point
	}
	return points, rep
}

// collector is one group of readings. collect adds its points to b, and
// notes in b the readings that failed while others succeeded. It returns an
// error made by skipf when the readings do not apply here, and any other
// error when it could read nothing. ctx carries gopsutil's EnvMap.
type collector interface {
	collect(ctx context.Context, b *batch) error
}

// skipError says why a collector does not apply here.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

func skipf(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

// runner runs one collector and keeps its counts.
type runner struct {
	name string
	c    collector
	busy atomic.Bool // a run has not returned yet

	// mu guards the fields below.
	mu    sync.Mutex
	stats CollectorStats
	last  string // outcome of the previous run, to log changes only
}

// outcome is the result of one run.
type outcome struct {
	status Status
	points []keyedPoint
	dur    time.Duration
	err    error
	reason string
}

func newRunner(name string, c collector) *runner {
	return &runner{name: name, c: c, stats: CollectorStats{Name: name}}
}

func (r *runner) run(ctx context.Context) (out outcome) {
	start := time.Now()
	var b batch
	defer func() {
		if p := recover(); p != nil {
			out = outcome{status: StatusFailed, err: fmt.Errorf("panic: %v", p)}
		}
		out.dur = time.Since(start)
	}()
	err := r.c.collect(ctx, &b)
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		return outcome{status: StatusSkipped, reason: skip.reason}
	case err != nil:
		return outcome{status: StatusFailed, err: err}
	}
	points := b.finish() // may note repeated series
	return outcome{status: StatusOK, points: points, err: errors.Join(b.problems...)}
}

// record counts o and logs it when it differs from the previous outcome.
func (r *runner) record(o *outcome, log *slog.Logger) {
	summary := string(o.status)
	if o.err != nil {
		summary += ": " + o.err.Error()
	} else if o.reason != "" {
		summary += ": " + o.reason
	}
	r.mu.Lock()
	r.stats.Runs++
	r.stats.Duration += o.dur
	switch {
	case o.status == StatusFailed:
		r.stats.Failures++
	case o.status == StatusSkipped:
		r.stats.Skips++
	case o.err != nil:
		r.stats.Partial++
	}
	prev := r.last
	r.last = summary
	r.mu.Unlock()
	if summary == prev {
		return
	}
	log = log.With("collector", r.name)
	switch {
	case o.status == StatusFailed:
		log.Warn("collector failed", "err", o.err)
	case o.status == StatusSkipped:
		log.Info("collector skipped", "reason", o.reason)
	case o.err != nil:
		log.Warn("collector partly failed", "err", o.err)
	case prev != "":
		log.Info("collector recovered")
	}
}

// readError returns why the file at path cannot be read, or nil. gopsutil's
// line reader reports a file it cannot open but not one it cannot read (a
// read error just ends the lines, as end of file does), so collectors ask
// again when gopsutil found nothing.
func readError(path string) error {
	_, err := os.ReadFile(path)
	return err
}

// withPath makes sure err names path: gopsutil's open errors do, its parse
// errors do not.
func withPath(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
