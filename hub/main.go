// Command alicia-hub is the Alicia hub: the MQTT bus (embedded broker, or an
// external one with --broker), the device registry and the REST API for
// household automation, in one binary.
//
// Flags may also be given as ALICIA_* environment variables or as keys of a
// YAML file named by --config; see README.md.
//
// "alicia-hub admin-token rotate" (with the hub stopped) replaces the admin
// token: a new admin.token and its hash in the store.
//
// "alicia-hub backup" (with the hub running) writes a backup of the whole
// hub, fetched from its API; "alicia-hub restore" makes an empty data
// directory the hub a backup holds.
//
// "alicia-hub config export" and "alicia-hub config import" (with the hub
// running) move its configuration documents, with their history, to a
// file and from one into another hub.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/alicia-home/alicia/hub/hubd"
	"github.com/alicia-home/alicia/internal/buildinfo"
	"github.com/alicia-home/alicia/internal/cliconfig"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/logging"
	"github.com/alicia-home/alicia/internal/schedule"
	"github.com/alicia-home/alicia/internal/sdnotify"
)

func main() { cliconfig.Main("alicia-hub", run) }

// options are the hub's flags. Its subcommands register them too, so that
// they read the hub's config file and environment as the hub does.
type options struct {
	cfg           hubd.Config
	advertise     string
	discoverTypes string
	logLevel      string
	version       bool
}

func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *options) {
	var o options
	cfg := &o.cfg
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/alicia-hub", "`dir`ectory for the store and admin.token")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", ":8470", "REST API listen `address`")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", "127.0.0.1:1883", "embedded broker's plain MQTT listen `address` (loopback only by default; \"off\" to disable)")
	fs.StringVar(&cfg.MQTTSAddr, "mqtts-addr", ":8883", "embedded broker's MQTT-over-TLS listen `address` (hub CA; \"off\" to disable)")
	fs.StringVar(&cfg.Broker, "broker", "", "external broker `url` (mqtt://user:pass@host:port) instead of the embedded broker")
	fs.StringVar(&o.advertise, "advertise-mqtt", "", "comma-separated broker `urls` given to agents (default: derived)")
	fs.StringVar(&o.discoverTypes, "discover-types", "", "comma-separated DNS-SD `types` of household services to watch for (default: a list of common ones)")
	fs.StringVar(&cfg.PprofAddr, "pprof-addr", "", "serve Go runtime profiles on this loopback `address` (e.g. 127.0.0.1:6060; off by default)")
	fs.StringVar(&cfg.AlertWebhook, "alert-webhook", "", "http(s) `url` that receives alerts fired and resolved as JSON POSTs")
	fs.StringVar(&cfg.HAPrefix, "ha-prefix", "homeassistant", "Home Assistant's MQTT discovery `prefix`")
	fs.BoolVar(&cfg.NoHomeAssistant, "no-homeassistant", false, "do not announce devices to Home Assistant (MQTT discovery)")
	fs.BoolVar(&cfg.NoMDNS, "no-mdns", false, "no mDNS: do not announce the hub (agents then need --hub) nor watch the LAN for household services")
	fs.IntVar(&cfg.MaxSeriesPerDevice, "max-series-per-device", hubd.DefaultMaxSeriesPerDevice, "most metric series the hub keeps per device; new ones past it are refused and alerted on")
	fs.Float64Var(&cfg.DeviceMsgRate, "device-msg-rate", hubd.DefaultDeviceMsgRate, "most messages a `second` each device may send (bursts of twice that); the rest are dropped and counted")
	fs.Func("clock", "when calendar jobs may fire: `kernel` (once the kernel's clock is synchronised by NTP) or trust (a clock kept otherwise, such as a real-time clock)", func(v string) error {
		p, err := clocksync.ParsePolicy(v)
		cfg.Clock = p
		return err
	})
	fs.Func("location", "the home's `lat,lon` in degrees (e.g. 52.52,13.40), for sunrise and sunset jobs", func(v string) error {
		loc, err := parseLocation(v)
		cfg.Location = loc
		return err
	})
	fs.IntVar(&cfg.SchedulerWorkers, "scheduler-workers", 4, "most job runs done at once")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	return fs, &o
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case adminTokenCommand:
			return adminToken(args[1:], getenv, stdout, stderr)
		case backupCommand:
			return backupHub(ctx, args[1:], getenv, stdout, stderr)
		case restoreCommand:
			return restoreHub(args[1:], getenv, stdout, stderr)
		case configCommand:
			return configIO(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	fs, o := newFlagSet("alicia-hub", stderr)
	if err := cliconfig.Parse(fs, args, getenv); err != nil {
		return err
	}
	cfg := o.cfg
	if o.version {
		fmt.Fprintln(stdout, "alicia-hub", buildinfo.String())
		return nil
	}
	if o.discoverTypes != "" {
		cfg.DiscoverTypes = strings.Split(o.discoverTypes, ",")
	}
	if o.advertise != "" {
		cfg.AdvertiseMQTT = strings.Split(o.advertise, ",")
	}
	log, err := logging.New(stderr, o.logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	h, err := hubd.New(cfg)
	if err != nil {
		return err
	}
	log.Info("starting alicia-hub", "version", buildinfo.Version, "commit", buildinfo.Commit)
	// Under systemd (Type=notify): ready once the hub serves, watchdog
	// pings while it runs, "stopping" when it shuts down.
	notifyCtx, stopNotify := context.WithCancel(ctx)
	notified := make(chan struct{})
	go func() {
		defer close(notified)
		select {
		case <-h.Ready():
			sdnotify.Ready("serving the API on " + cfg.HTTPAddr)
			sdnotify.Watchdog(notifyCtx, nil, log)
		case <-notifyCtx.Done():
		}
	}()
	err = h.Run(ctx)
	stopNotify()
	<-notified
	sdnotify.Stopping()
	if err == nil {
		log.Info("alicia-hub stopped")
	}
	return err
}

// parseLocation reads "lat,lon" in degrees.
func parseLocation(v string) (*schedule.Location, error) {
	lat, lon, ok := strings.Cut(v, ",")
	if !ok {
		return nil, fmt.Errorf("want lat,lon in degrees, such as 52.52,13.40")
	}
	var loc schedule.Location
	var err error
	if loc.Latitude, err = strconv.ParseFloat(strings.TrimSpace(lat), 64); err != nil {
		return nil, fmt.Errorf("latitude %q: %w", lat, err)
	}
	if loc.Longitude, err = strconv.ParseFloat(strings.TrimSpace(lon), 64); err != nil {
		return nil, fmt.Errorf("longitude %q: %w", lon, err)
	}
	return &loc, loc.Validate()
}
