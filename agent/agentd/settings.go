package agentd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/alicia-home/alicia/agent/board"
	"github.com/alicia-home/alicia/agent/confapply"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/internal/atomicfile"
)

// agentKind is the hub's configuration kind of what an agent changes at
// run time (hub/spec's built-in "agent" schema). Every key is optional: a
// key not set keeps the agent's own flag.
type agentKind struct {
	SampleInterval string    `json:"sample_interval"`
	Heartbeat      string    `json:"heartbeat"`
	Collectors     *[]string `json:"collectors"`
	LogLevel       string    `json:"log_level"`
	Board          *string   `json:"board"`
	BrokerURL      string    `json:"broker_url"`
}

// settings are the agent's run-time settings in effect: its flags, with
// the hub's configuration over them.
type settings struct {
	sampleInterval time.Duration
	heartbeat      time.Duration
	collectors     []string // nil: all
	logLevel       slog.Level
	brokerURL      string // "": the URL the hub gave at enrolment
	board          *string
}

// BoardFile returns the board file the hub's configuration wrote in
// stateDir, if there is one: it replaces the --board-file.
func BoardFile(stateDir string) string { return filepath.Join(stateDir, "board.conf") }

// baseSettings are the agent's own settings, from its flags.
func (a *Agent) baseSettings() settings {
	s := settings{sampleInterval: a.cfg.SampleInterval, heartbeat: a.cfg.HeartbeatInterval, collectors: a.cfg.Collectors, brokerURL: a.cfg.BrokerURL}
	if a.cfg.LogLevel != nil {
		s.logLevel = a.baseLevel
	}
	return s
}

// parseAgentKind checks an agent configuration whole, as the agent
// understands it, and returns the settings it makes over the flags.
func (a *Agent) parseAgentKind(content []byte) (settings, error) {
	s := a.baseSettings()
	var k agentKind
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return s, fmt.Errorf("not an agent configuration this agent understands: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return s, errors.New("not an agent configuration: data after the object")
	}
	for _, d := range []struct {
		key string
		in  string
		out *time.Duration
	}{{"sample_interval", k.SampleInterval, &s.sampleInterval}, {"heartbeat", k.Heartbeat, &s.heartbeat}} {
		if d.in == "" {
			continue
		}
		v, err := time.ParseDuration(d.in)
		if err != nil || v < time.Second || v > time.Hour {
			return s, fmt.Errorf("%s %q: want a duration from 1s to 60m", d.key, d.in)
		}
		*d.out = v
	}
	if k.Collectors != nil {
		if len(*k.Collectors) == 0 {
			return s, errors.New("collectors: an empty list; leave the key out to run them all")
		}
		if err := (&sample.Config{Enabled: *k.Collectors}).Validate(); err != nil {
			return s, fmt.Errorf("collectors: %w", err)
		}
		s.collectors = slices.Clone(*k.Collectors)
	}
	if k.LogLevel != "" {
		if err := s.logLevel.UnmarshalText([]byte(k.LogLevel)); err != nil || strings.ToLower(k.LogLevel) != k.LogLevel {
			return s, fmt.Errorf("log_level %q: want debug, info, warn or error", k.LogLevel)
		}
	}
	if k.BrokerURL != "" {
		if err := checkBrokerURL(k.BrokerURL); err != nil {
			return s, fmt.Errorf("broker_url %q: %w", k.BrokerURL, err)
		}
		s.brokerURL = k.BrokerURL
	}
	if k.Board != nil {
		if _, err := board.Parse("the board configuration", strings.NewReader(*k.Board)); err != nil {
			return s, fmt.Errorf("board: %w", err)
		}
		s.board = k.Board
	}
	return s, nil
}

// checkBrokerURL accepts MQTT over TLS anywhere (the hub's CA is pinned)
// or plain MQTT on this machine: the device's password never crosses the
// network in clear.
func checkBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.User != nil {
		return errors.New("want mqtts://HOST:PORT")
	}
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		return nil
	case "mqtt", "tcp":
		if h := u.Hostname(); h == "127.0.0.1" || h == "::1" || h == "localhost" {
			return nil
		}
		return errors.New("plain MQTT only to this machine; use mqtts:// (the password must not cross the network in clear)")
	}
	return fmt.Errorf("scheme %q: want mqtts", u.Scheme)
}

// applyAgentKind is the confapply.Applier of the agent kind.
func (a *Agent) applyAgentKind(d *device) confapply.Applier {
	return func(content []byte) (confapply.Change, error) {
		s, err := a.parseAgentKind(content)
		if err != nil {
			return confapply.Change{}, err
		}
		old := d.current()
		var sampler *sample.Sampler
		if !slices.Equal(s.collectors, old.collectors) {
			if sampler, err = a.newSampler(s); err != nil {
				return confapply.Change{}, fmt.Errorf("collectors: %w", err)
			}
		}
		// The board file the hub's configuration wrote replaces the
		// --board-file; without a board key it goes.
		boardPath := BoardFile(a.cfg.StateDir)
		cur, rerr := os.ReadFile(boardPath)
		newBoard := s.board != nil && (rerr != nil || string(cur) != *s.board)
		dropBoard := s.board == nil && rerr == nil
		ch := confapply.Change{Reconnect: s.brokerURL != old.brokerURL}
		ch.Apply = func() {
			d.setSettings(s)
			if sampler != nil {
				d.tel.SetSampler(sampler)
			}
			d.tel.SetEvery(s.sampleInterval)
			if p := d.presence(); p != nil {
				p.SetHeartbeat(s.heartbeat)
			}
			if a.cfg.LogLevel != nil {
				a.cfg.LogLevel.Set(s.logLevel)
			}
			if newBoard || dropBoard {
				a.replaceBoard(d, boardPath, s.board)
			}
		}
		return ch, nil
	}
}

// replaceBoard writes (or, with content nil, removes) the board file from
// the hub's configuration. The HAL opens its lines at start, so a new
// board file takes a clean restart (the service manager starts the agent
// again), after which the agent's report confirms the configuration.
func (a *Agent) replaceBoard(d *device, path string, content *string) {
	var err error
	if content != nil {
		err = atomicfile.WriteFile(path, []byte(*content), 0o644)
	} else if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		a.log.Error("replace the board file from the hub's configuration", "path", path, "err", err)
		return
	}
	a.log.Info("the board file changed; restarting to open the new lines", "path", path)
	if d.restart != nil {
		d.restart()
	}
}
