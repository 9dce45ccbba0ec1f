// Package cliconfig fills a flag.FlagSet from three sources, in order of
// precedence: command-line flags, ALICIA_* environment variables, and a
// YAML config file whose keys are the flag names. Every value goes through
// the flag's own parser, so the three sources accept exactly the same
// values. Both binaries' main packages import it.
package cliconfig

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// ConfigFlag is the name of the flag (and ALICIA_CONFIG the variable) that
// names the config file. Parse registers it.
const ConfigFlag = "config"

// EnvName returns the environment variable for a flag: "data-dir" → "ALICIA_DATA_DIR".
func EnvName(flagName string) string {
	return "ALICIA_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable (looked up with getenv) or, failing
// that, from the config file. Errors name the source and the key.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	cfgPath := fs.String(ConfigFlag, "", "YAML config `file` whose keys are these flag names (env "+EnvName(ConfigFlag)+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set[ConfigFlag] {
		if v := getenv(EnvName(ConfigFlag)); v != "" {
			*cfgPath = v
		}
	}
	file := map[string]fileValue{}
	if *cfgPath != "" {
		var err error
		if file, err = readFile(*cfgPath, fs); err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == ConfigFlag {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s=%q: %w", EnvName(f.Name), v, err))
			}
			return
		}
		if fv, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, fv.value); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: line %d: %s: %w", *cfgPath, fv.line, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

type fileValue struct {
	value string
	line  int
}

// readFile reads a flat YAML mapping of flag names to scalar values (a
// sequence is joined with commas) and refuses unknown keys.
func readFile(path string, fs *flag.FlagSet) (map[string]fileValue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := map[string]fileValue{}
	if len(doc.Content) == 0 {
		return out, nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: want a mapping of option names to values", path, m.Line)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if fs.Lookup(k.Value) == nil || k.Value == ConfigFlag {
			return nil, fmt.Errorf("config file %s: line %d: unknown option %q (known: %s)", path, k.Line, k.Value, known(fs))
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("config file %s: line %d: %q given twice", path, k.Line, k.Value)
		}
		switch v.Kind {
		case yaml.ScalarNode:
			out[k.Value] = fileValue{value: v.Value, line: v.Line}
		case yaml.SequenceNode:
			var parts []string
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config file %s: line %d: %s: want a list of plain values", path, e.Line, k.Value)
				}
				parts = append(parts, e.Value)
			}
			out[k.Value] = fileValue{value: strings.Join(parts, ","), line: v.Line}
		default:
			return nil, fmt.Errorf("config file %s: line %d: %s: want a plain value", path, v.Line, k.Value)
		}
	}
	return out, nil
}

func known(fs *flag.FlagSet) string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != ConfigFlag {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// RunFunc is a binary's testable entry point: it runs until ctx is done.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Main runs run with the process's arguments and environment and a context
// cancelled by SIGINT or SIGTERM, then exits: 0 on success or --help, 1
// with "name: error" on stderr otherwise (or the code WithExitCode gave
// the error).
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(ExitCode(err))
	}
	os.Exit(0)
}

// exitError is an error with the process exit code it calls for.
type exitError struct {
	error
	code int
}

func (e exitError) Unwrap() error { return e.error }

// WithExitCode makes Main exit with code when run returns err (a service
// manager can tell such an exit apart, e.g. not restart it).
func WithExitCode(err error, code int) error { return exitError{err, code} }

// ExitCode is the exit code Main uses for err: WithExitCode's, else 1.
func ExitCode(err error) int {
	var e exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}
