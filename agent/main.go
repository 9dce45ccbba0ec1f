// Command alicia-agent runs on every device of the home: it enrols with the
// hub once, then keeps the device registered and visible on the hub's MQTT
// bus (hardware facts, status with Last Will, heartbeats).
//
// "alicia-agent push NAME=VALUE" hands a custom metric of a script to the
// agent (see docs/metrics.md, "Custom metrics").
//
// Flags may also be given as ALICIA_* environment variables or as keys of a
// YAML file named by --config; see README.md.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/agent/board"
	"github.com/alicia-home/alicia/agent/hardware"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/agent/textfile"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/cliconfig"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/logging"
	"github.com/alicia-home/alicia/internal/sdnotify"
)

func main() {
	tuneGC(os.Getenv)
	cliconfig.Main("alicia-agent", run)
}

// gcPercent is the agent's GOGC unless the environment sets one. The
// agent's live heap is about 1 MiB and a collection allocates a few hundred
// KiB, so at Go's default of 100 the heap grows to the runtime's 4 MiB
// minimum goal and stays resident: a quarter of the RSS target. At 25 the
// goal is about 1.25 MiB, for about one more garbage collection (a
// millisecond or two of CPU) per sample interval.
const gcPercent = 25

// tuneGC sets the garbage collector's target to gcPercent, unless GOGC is
// set in the environment (the runtime has applied it).
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == pushCommand {
		return push(args[1:], getenv, stdout, stderr)
	}
	var (
		cfg       agentd.Config
		hal       string
		boardPath string
		logLevel  string
		version   bool
	)
	fs := flag.NewFlagSet("alicia-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/alicia-agent", "`dir`ectory for the identity key and credentials")
	fs.StringVar(&cfg.Hub, "hub", "", "the hub's API `address` HOST[:PORT] (default port 8470)")
	fs.StringVar(&cfg.JoinToken, "join-token", "", "join `token` for the first enrolment (from POST /api/v1/join-tokens)")
	fs.BoolVar(&cfg.Pair, "pair", false, "without a join token: pair with the hub found on the LAN (or --hub) and wait for an admin to approve the code it logs")
	fs.StringVar(&cfg.Name, "name", "", "device display `name` (default: the hostname)")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "do not look for the hub on the LAN with mDNS (needs --hub)")
	fs.StringVar(&hal, "hal", hardware.BackendAuto, "hardware `backend`: auto (periph when the board has GPIO, I2C, SPI or 1-wire, else none), periph, sim (a simulated board) or none")
	fs.StringVar(&boardPath, "board-file", "/etc/alicia/board.conf", "board `file` naming lines and sensors (optional; see docs/hardware.md)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", 10*time.Second, "heartbeat `interval`")
	fs.DurationVar(&cfg.SampleInterval, "sample-interval", 10*time.Second, "metrics collection `interval`")
	fs.Func("collectors", "comma-separated metric `collectors` to run (default all: "+strings.Join(sample.Collectors(), ",")+")", func(v string) error {
		cfg.Collectors = nil
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cfg.Collectors = append(cfg.Collectors, c)
			}
		}
		return nil
	})
	fs.Func("net-exclude", "network `interfaces` to leave out, a regular expression (e.g. ^wlan; lo is always left out)", regexpFlag(&cfg.SampleFilters.NetExclude))
	fs.BoolVar(&cfg.SampleFilters.NetIncludeVirtual, "net-include-virtual", false, "also report virtual network interfaces (bridges, veth, tun, WireGuard, VLANs: those under /sys/devices/virtual/net)")
	fs.Func("fs-exclude-types", "filesystem `types` to leave out, a regular expression (default "+sample.DefaultFSExcludeTypes+"; empty: none)", regexpFlag(&cfg.SampleFilters.FSExcludeTypes))
	fs.Func("fs-exclude-mounts", "mount `points` to leave out, a regular expression (default "+sample.DefaultFSExcludeMounts+"; empty: none)", regexpFlag(&cfg.SampleFilters.FSExcludeMounts))
	fs.StringVar(&cfg.TextfileDir, "textfile-dir", textfile.DefaultDir, "`dir`ectory of custom metrics in the Prometheus text format (*.prom, as alicia-agent push writes them), read at each collection; empty: none")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 30*time.Second, "MQTT keep-alive `interval`")
	fs.DurationVar(&cfg.ConfirmWindow, "config-confirm-window", agentd.DefaultConfirmWindow, "how long a configuration from the hub may stay unconfirmed (the hub not reached with it) before the agent goes back to its last good one")
	fs.Func("clock", "when the device's clock is trusted for calendar jobs it runs itself: kernel (once the kernel says it is NTP-synchronised) or trust (always: a device with a real-time clock); either way a clock that agrees with the hub's is trusted until the agent restarts", func(v string) error {
		p, err := clocksync.ParsePolicy(v)
		cfg.Clock = p
		return err
	})
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := cliconfig.Parse(fs, args, getenv); err != nil {
		return err
	}
	if version {
		fmt.Fprintln(stdout, "alicia-agent", buildinfo.String())
		return nil
	}
	log, level, err := logging.NewVar(stderr, logLevel)
	if err != nil {
		return err
	}
	cfg.Logger, cfg.LogLevel = log, level
	cfg.OwnMetric = ownMetric
	if p := agentd.BoardFile(cfg.StateDir); fileExists(p) {
		log.Info("using the board file from the hub's configuration", "path", p, "instead_of", boardPath)
		boardPath = p
	}
	rt, err := openHardware(hal, boardPath, log)
	if err != nil {
		return err
	}
	if rt != nil {
		defer rt.Close()
		cfg.Hardware = rt
	}
	a, err := agentd.New(cfg)
	if err != nil {
		return err
	}
	log.Info("starting alicia-agent", "version", buildinfo.Version, "commit", buildinfo.Commit)
	// Under systemd (Type=notify) the agent is ready once its configuration
	// and hardware are loaded: it may then wait for the hub (enrolment,
	// pairing) for as long as it takes, without a start timeout.
	sdnotify.Ready("running")
	notifyCtx, stopNotify := context.WithCancel(ctx)
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		sdnotify.Watchdog(notifyCtx, nil, log)
	}()
	err = a.Run(ctx)
	stopNotify()
	<-watchdog
	sdnotify.Stopping()
	if errors.Is(err, agentd.ErrNotEnrolled) {
		// The unit does not restart this exit (RestartPreventExitStatus).
		return cliconfig.WithExitCode(err, ExitNotEnrolled)
	}
	if err == nil {
		log.Info("alicia-agent stopped")
	}
	return err
}

// regexpFlag sets *re from a flag's value, a regular expression; an empty
// value matches only the empty name, that is leaves nothing out.
func regexpFlag(re **regexp.Regexp) func(string) error {
	return func(v string) error {
		r, err := regexp.Compile(cmp.Or(v, "^$"))
		if err != nil {
			return err
		}
		*re = r
		return nil
	}
}

// fileExists reports whether path names a regular file.
func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// ExitNotEnrolled is the agent's exit code when it is not enrolled and has
// no join token: EX_CONFIG of sysexits.h. The systemd unit does not
// restart it; add the token and start the service again.
const ExitNotEnrolled = 78

// openHardware opens the HAL backend and the board file; nil when the
// device runs without a HAL. With the simulated board and no board file,
// the sim's own declarations are used.
func openHardware(backend, boardPath string, log *slog.Logger) (*hardware.Runtime, error) {
	b, err := hardware.OpenBoard(backend)
	if err != nil || b == nil {
		return nil, err
	}
	f, err := board.Load(boardPath)
	if err == nil && backend == hardware.BackendSim && len(f.Lines)+len(f.Sensors) == 0 {
		f, err = board.Parse("(the simulated board's own)", strings.NewReader(hardware.SimBoardFile()))
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	rt, err := hardware.New(b, f, log.With("component", "hardware"))
	if err != nil {
		b.Close()
		return nil, err
	}
	hw := rt.Hardware()
	log.Info("hardware", "backend", hw.Backend, "model", hw.Model, "lines", len(hw.Lines), "i2c", hw.I2C, "onewire", hw.OneWire, "sensors", len(hw.Sensors))
	return rt, nil
}
