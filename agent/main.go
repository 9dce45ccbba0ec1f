// Command alicia-agent runs on every device of the home: it enrols with the
// hub once, then keeps the device registered and visible on the hub's MQTT
// bus (hardware facts, status with Last Will, heartbeats).
//
// Flags may also be given as ALICIA_* environment variables or as keys of a
// YAML file named by --config; see README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alicia-home/alicia/agent/agentd"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/cliconfig"
	"github.com/alicia-home/alicia/internal/logging"
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
	var (
		cfg      agentd.Config
		hal      string
		logLevel string
		version  bool
	)
	fs := flag.NewFlagSet("alicia-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/alicia-agent", "`dir`ectory for the identity key and credentials")
	fs.StringVar(&cfg.Hub, "hub", "", "the hub's API `address` HOST[:PORT] (default port 8470)")
	fs.StringVar(&cfg.JoinToken, "join-token", "", "join `token` for the first enrolment (from POST /api/v1/join-tokens)")
	fs.BoolVar(&cfg.Pair, "pair", false, "without a join token: pair with the hub found on the LAN (or --hub) and wait for an admin to approve the code it logs")
	fs.StringVar(&cfg.Name, "name", "", "device display `name` (default: the hostname)")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "do not look for the hub on the LAN with mDNS (needs --hub)")
	fs.StringVar(&hal, "hal", "none", "hardware `backend`: none (periph and sim arrive with hardware support)")
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
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 30*time.Second, "MQTT keep-alive `interval`")
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.BoolVar(&version, "version", false, "print the version and exit")
	if err := cliconfig.Parse(fs, args, getenv); err != nil {
		return err
	}
	if version {
		fmt.Fprintln(stdout, "alicia-agent", buildinfo.String())
		return nil
	}
	if hal != "none" {
		return fmt.Errorf("--hal %q: this build supports only \"none\" (hardware access is not built yet)", hal)
	}
	log, err := logging.New(stderr, logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	a, err := agentd.New(cfg)
	if err != nil {
		return err
	}
	log.Info("starting alicia-agent", "version", buildinfo.Version, "commit", buildinfo.Commit)
	return a.Run(ctx)
}
