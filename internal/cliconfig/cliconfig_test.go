package cliconfig

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type opts struct {
	dir   string
	addr  string
	every time.Duration
	quiet bool
}

func newFS() (*flag.FlagSet, *opts) {
	o := &opts{}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.dir, "data-dir", "/default", "")
	fs.StringVar(&o.addr, "http-addr", ":8470", "")
	fs.DurationVar(&o.every, "interval", time.Second, "")
	fs.BoolVar(&o.quiet, "no-mdns", false, "")
	return fs, o
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "data-dir: /from-file\nhttp-addr: ':1'\ninterval: 5s\nno-mdns: true\n")
	fs, o := newFS()
	err := Parse(fs, []string{"--config", file, "--data-dir", "/from-flag"}, env(map[string]string{"ALICIA_HTTP_ADDR": ":2"}))
	if err != nil {
		t.Fatal(err)
	}
	want := opts{dir: "/from-flag", addr: ":2", every: 5 * time.Second, quiet: true}
	if *o != want {
		t.Errorf("got %+v, want %+v", *o, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	file := writeFile(t, "data-dir: /x\n")
	fs, o := newFS()
	if err := Parse(fs, nil, env(map[string]string{"ALICIA_CONFIG": file})); err != nil {
		t.Fatal(err)
	}
	if o.dir != "/x" {
		t.Errorf("data-dir = %q, want /x", o.dir)
	}
}

func TestDefaultsKept(t *testing.T) {
	fs, o := newFS()
	if err := Parse(fs, nil, env(nil)); err != nil {
		t.Fatal(err)
	}
	if o.dir != "/default" || o.addr != ":8470" {
		t.Errorf("defaults changed: %+v", *o)
	}
}

func TestErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		env  map[string]string
		args []string
		want string
	}{
		"unknown key":     {file: "data-dir: /x\nbogus: 1\n", want: `line 2: unknown option "bogus"`},
		"bad value":       {file: "interval: soon\n", want: "line 1: interval: "},
		"not a mapping":   {file: "- a\n- b\n", want: "want a mapping"},
		"nested value":    {file: "data-dir: {a: b}\n", want: "want a plain value"},
		"duplicate":       {file: "data-dir: /a\ndata-dir: /b\n", want: "given twice"},
		"invalid yaml":    {file: "data-dir: [\n", want: "config file"},
		"bad env":         {env: map[string]string{"ALICIA_INTERVAL": "x"}, want: "environment ALICIA_INTERVAL"},
		"stray argument":  {args: []string{"extra"}, want: `unexpected argument "extra"`},
		"missing file":    {args: []string{"--config", "/nonexistent/c.yaml"}, want: "no such file"},
		"flag parse fail": {args: []string{"--interval", "x"}, want: "invalid value"},
	} {
		t.Run(name, func(t *testing.T) {
			fs, _ := newFS()
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			err := Parse(fs, args, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("data-dir"); got != "ALICIA_DATA_DIR" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestExitCode(t *testing.T) {
	base := errors.New("not enrolled")
	err := fmt.Errorf("run: %w", WithExitCode(base, 78))
	if got := ExitCode(err); got != 78 {
		t.Errorf("ExitCode(wrapped WithExitCode 78) = %d", got)
	}
	if !errors.Is(err, base) {
		t.Error("WithExitCode hides the error it wraps")
	}
	if got := ExitCode(errors.New("plain")); got != 1 {
		t.Errorf("ExitCode(plain) = %d, want 1", got)
	}
}
