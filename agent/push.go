package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/alicia-home/alicia/agent/hardware"
	"github.com/alicia-home/alicia/agent/sample"
	"github.com/alicia-home/alicia/agent/textfile"
)

// pushCommand is the subcommand that writes a custom metric.
const pushCommand = "push"

// ownMetric reports the names the agent sends itself: custom metrics may
// not take them.
func ownMetric(name string) bool { return sample.IsHostMetric(name) || hardware.IsHardwareMetric(name) }

// push writes one custom metric to the drop directory: "alicia-agent push
// NAME=VALUE [flags]", flags before or after NAME=VALUE. The agent need not
// run; it sends the value at each collection from then on.
func push(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		m   textfile.Metric
		dir string
	)
	fs := flag.NewFlagSet("alicia-agent push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: alicia-agent push NAME=VALUE [flags]

Writes the custom metric NAME (Prometheus naming: [a-zA-Z_][a-zA-Z0-9_]*,
the unit as a suffix: _celsius, _bytes, _ratio, _seconds; _total for a
counter) with VALUE to the agent's textfile directory, replacing the
series' previous value. The agent sends it, through its outbox, at each
collection until the file is removed; it need not be running now.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&dir, "textfile-dir", "", "the agent's textfile `dir`ectory (default $ALICIA_TEXTFILE_DIR, else "+textfile.DefaultDir+")")
	fs.Func("label", "a label `name=value` of the series (repeatable)", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want name=value", v)
		}
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		if _, dup := m.Labels[k]; dup {
			return fmt.Errorf("label %s given twice", k)
		}
		m.Labels[k] = val
		return nil
	})
	fs.StringVar(&m.Type, "type", "", "`gauge` or counter (default: counter when NAME ends in _total, else gauge)")
	fs.StringVar(&m.Help, "help-text", "", "one line saying what the metric is (written in the file for a person reading it)")
	fs.BoolVar(&m.HASensor, "ha-sensor", false, "show the series in Home Assistant as a sensor of the device (the label ha=\"sensor\")")
	// NAME=VALUE may come before, between or after the flags.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return fmt.Errorf("push: want one NAME=VALUE, got %d arguments", len(positional))
	}
	name, value, ok := strings.Cut(positional[0], "=")
	if !ok {
		return fmt.Errorf("push: %q: want NAME=VALUE", positional[0])
	}
	v, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("push: %s: value %q: want a finite number", name, value)
	}
	m.Name, m.Value = name, v
	if dir == "" {
		dir = getenv("ALICIA_TEXTFILE_DIR")
	}
	if dir == "" {
		dir = textfile.DefaultDir
	}
	path, err := textfile.Write(dir, m, ownMetric)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	fmt.Fprintln(stdout, path)
	return nil
}
