package hubd

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"regexp"
	"time"

	"github.com/alicia-home/alicia/hub/health"
	"github.com/alicia-home/alicia/hub/ingest"
	"github.com/alicia-home/alicia/hub/metrics"
	"github.com/alicia-home/alicia/internal/clocksync"
	"github.com/alicia-home/alicia/internal/schedule"
)

// haPrefix is a valid Home Assistant discovery prefix: one topic level.
var haPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Config configures a Hub. Zero values of optional fields take the
// documented defaults.
type Config struct {
	// DataDir holds the store, admin.token and everything else the hub
	// keeps. Required. Created with mode 0700 if missing.
	DataDir string
	// HTTPAddr is the REST API's listen address. Default ":8470".
	HTTPAddr string
	// MQTTAddr is the embedded broker's plain-MQTT listen address. Default
	// "127.0.0.1:1883": loopback only. "off" disables it (the hub then
	// talks to its broker over a private loopback listener).
	MQTTAddr string
	// MQTTSAddr is the embedded broker's MQTT-over-TLS listen address,
	// with the hub's own CA. Default ":8883"; "off" disables it.
	MQTTSAddr string
	// Broker, if set, is an external broker URL such as
	// mqtt://user:password@host:1883; the embedded broker is not started.
	Broker string
	// AdvertiseMQTT overrides the broker URLs given to agents. By default
	// agents get the embedded broker on the host they reached the API on,
	// or the external broker's URL without its credentials.
	AdvertiseMQTT []string
	// NoMDNS turns off mDNS: the hub's announcement and LAN discovery.
	NoMDNS bool
	// DiscoverTypes are the DNS-SD service types of household devices the
	// hub watches for (GET /api/v1/discovered); default household.DefaultTypes.
	DiscoverTypes []string
	// PprofAddr, if set, serves Go's runtime profiles (net/http/pprof) on
	// this address, which must be a loopback one: for profiling the hub
	// under load, never for the LAN.
	PprofAddr string
	// AlertWebhook, if set, is an http(s) URL that receives every alert
	// fired and resolved as a JSON POST (with retries).
	AlertWebhook string
	// HAPrefix is Home Assistant's MQTT discovery prefix. Default
	// "homeassistant".
	HAPrefix string
	// NoHomeAssistant turns off Home Assistant discovery.
	NoHomeAssistant bool
	// MaxSeriesPerDevice bounds the metric series the hub keeps per
	// device (see hub/metrics). Default metrics.DefaultMaxSeriesPerDevice.
	MaxSeriesPerDevice int
	// DeviceMsgRate is how many messages a second each device may send
	// (bursts of twice that); the rest are dropped and counted. Default
	// DefaultDeviceMsgRate.
	DeviceMsgRate float64
	// Clock says when calendar jobs may fire: clocksync.Kernel (the
	// default: once the kernel's clock is synchronised) or clocksync.Trust.
	Clock clocksync.Policy
	// Location is the hub's, for sunrise and sunset jobs; nil refuses
	// them.
	Location *schedule.Location
	// SchedulerWorkers bounds the job runs done at once. Default 4.
	SchedulerWorkers int
	// HeartbeatTimeoutCheck is how often the registry checks heartbeat
	// deadlines. Default 500ms.
	HeartbeatTimeoutCheck time.Duration
	// ShutdownTimeout bounds the graceful stop of the HTTP server. Default 5s.
	ShutdownTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Defaults of the per-device limits, for the hub's flags.
const (
	DefaultDeviceMsgRate      = ingest.DefaultRate
	DefaultMaxSeriesPerDevice = metrics.DefaultMaxSeriesPerDevice
)

const (
	defaultHTTPAddr  = ":8470"
	defaultMQTTAddr  = "127.0.0.1:1883"
	defaultMQTTSAddr = ":8883"
)

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = defaultHTTPAddr
	}
	if c.MQTTAddr == "" {
		c.MQTTAddr = defaultMQTTAddr
	}
	if c.MQTTSAddr == "" {
		c.MQTTSAddr = defaultMQTTSAddr
	}
	if c.HAPrefix == "" {
		c.HAPrefix = "homeassistant"
	}
	if c.Clock == "" {
		c.Clock = clocksync.Kernel
	}
	if c.MaxSeriesPerDevice == 0 {
		c.MaxSeriesPerDevice = metrics.DefaultMaxSeriesPerDevice
	}
	if c.DeviceMsgRate == 0 {
		c.DeviceMsgRate = DefaultDeviceMsgRate
	}
	if c.HeartbeatTimeoutCheck <= 0 {
		c.HeartbeatTimeoutCheck = 500 * time.Millisecond
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("data dir: required (--data-dir)")
	}
	if _, err := clocksync.ParsePolicy(string(c.Clock)); err != nil {
		return err
	}
	if c.Location != nil {
		if err := c.Location.Validate(); err != nil {
			return fmt.Errorf("location: %w", err)
		}
	}
	if c.SchedulerWorkers < 0 || c.SchedulerWorkers > 64 {
		return fmt.Errorf("scheduler workers %d: want 1 to 64", c.SchedulerWorkers)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("http addr %q: %w", c.HTTPAddr, err)
	}
	if c.MQTTAddr != "off" {
		if _, _, err := net.SplitHostPort(c.MQTTAddr); err != nil {
			return fmt.Errorf("mqtt addr %q: %w (or \"off\")", c.MQTTAddr, err)
		}
	}
	if c.MQTTSAddr != "off" {
		if _, _, err := net.SplitHostPort(c.MQTTSAddr); err != nil {
			return fmt.Errorf("mqtts addr %q: %w (or \"off\")", c.MQTTSAddr, err)
		}
	}
	if c.Broker != "" {
		if _, err := parseBrokerURL(c.Broker); err != nil {
			return err
		}
	}
	for _, t := range c.DiscoverTypes {
		if !serviceType.MatchString(t) {
			return fmt.Errorf("discover types: %q is not a DNS-SD service type such as _http._tcp", t)
		}
	}
	if c.PprofAddr != "" {
		host, _, err := net.SplitHostPort(c.PprofAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("pprof addr %q: want a loopback HOST:PORT such as 127.0.0.1:6060 (profiles are not for the LAN)", c.PprofAddr)
		}
	}
	if c.AlertWebhook != "" {
		if err := (&health.WebhookConfig{URL: c.AlertWebhook}).Validate(); err != nil {
			return fmt.Errorf("alert webhook: %w", err)
		}
	}
	if c.MaxSeriesPerDevice < 1 {
		return fmt.Errorf("max series per device %d: want at least 1", c.MaxSeriesPerDevice)
	}
	if c.DeviceMsgRate < 1 || math.IsInf(c.DeviceMsgRate, 0) || math.IsNaN(c.DeviceMsgRate) {
		return fmt.Errorf("device msg rate %v: want at least 1 message a second", c.DeviceMsgRate)
	}
	if c.HAPrefix != "" && !haPrefix.MatchString(c.HAPrefix) {
		return fmt.Errorf("ha prefix %q: want 1 to 64 of [A-Za-z0-9_-] (a topic level, no wildcards or '/')", c.HAPrefix)
	}
	for _, u := range c.AdvertiseMQTT {
		if _, err := parseBrokerURL(u); err != nil {
			return fmt.Errorf("advertise mqtt: %w", err)
		}
	}
	return nil
}

// serviceType matches a DNS-SD service type such as "_http._tcp".
var serviceType = regexp.MustCompile(`^_[A-Za-z0-9][A-Za-z0-9-]{0,14}\._(tcp|udp)$`)

// brokerURL is a parsed external broker URL.
type brokerURL struct {
	url      string // without credentials, scheme normalised for paho
	username string
	password string
}

// parseBrokerURL accepts mqtt://, tcp://, mqtts://, ssl:// and tls:// URLs
// with a host and port.
func parseBrokerURL(s string) (brokerURL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse errors quote the whole URL, password included: say
		// what is wrong without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return brokerURL{}, fmt.Errorf("broker url (credentials not shown): %w", err)
	}
	switch u.Scheme {
	case "mqtt", "tcp", "mqtts", "ssl", "tls":
	default:
		return brokerURL{}, fmt.Errorf("broker url %q: scheme %q, want mqtt, tcp, mqtts, ssl or tls", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return brokerURL{}, fmt.Errorf("broker url %q: want host:port", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" {
		return brokerURL{}, fmt.Errorf("broker url %q: unexpected path %q", u.Redacted(), u.Path)
	}
	b := brokerURL{username: u.User.Username()}
	b.password, _ = u.User.Password()
	u.User = nil
	u.Path = ""
	b.url = u.String()
	return b, nil
}
