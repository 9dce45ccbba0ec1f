// Package facts gathers a device's hardware and operating-system facts
// (hostname, OS, distribution, kernel, architecture, CPU model and cores,
// memory, boot time) for the agent's registration message. Parsing is split
// from I/O so each parser is tested on strings, and the /proc and /etc roots
// are configurable so tests read fixture trees. Only the agent imports it.
package facts

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Source reads facts from a filesystem tree.
type Source struct {
	ProcRoot string // default "/proc"
	EtcRoot  string // default "/etc"
	// Hostname returns the host name; default os.Hostname.
	Hostname func() (string, error)
}

// Gather reads every fact it can. A fact that cannot be read is left empty
// (or zero) and reported in the joined error, so one unreadable file never
// prevents registration.
func (s Source) Gather() (protocol.Facts, error) {
	proc, etc := s.ProcRoot, s.EtcRoot
	if proc == "" {
		proc = "/proc"
	}
	if etc == "" {
		etc = "/etc"
	}
	hostname := s.Hostname
	if hostname == nil {
		hostname = os.Hostname
	}
	f := protocol.Facts{OS: runtime.GOOS, Arch: Arch(), CPUCores: runtime.NumCPU()}
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	var err error
	f.Hostname, err = hostname()
	note("hostname", err)
	if b, err := os.ReadFile(filepath.Join(proc, "sys/kernel/osrelease")); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	} else {
		note("kernel", err)
	}
	if b, err := os.ReadFile(filepath.Join(etc, "os-release")); err == nil {
		f.Platform = ParseOSRelease(string(b))
	} else {
		note("platform", err)
	}
	if b, err := os.ReadFile(filepath.Join(proc, "cpuinfo")); err == nil {
		f.CPUModel = ParseCPUModel(string(b))
	} else {
		note("cpu model", err)
	}
	if b, err := os.ReadFile(filepath.Join(proc, "meminfo")); err == nil {
		f.MemoryBytes, err = ParseMemTotal(string(b))
		note("memory", err)
	} else {
		note("memory", err)
	}
	if b, err := os.ReadFile(filepath.Join(proc, "stat")); err == nil {
		f.BootTime, err = ParseBootTime(string(b))
		note("boot time", err)
	} else {
		note("boot time", err)
	}
	if f.Hostname == "" {
		f.Hostname = "unknown"
	}
	sanitize(&f)
	return f, errors.Join(errs...)
}

// Limits of protocol.Facts text fields, in bytes (see Register.Validate).
const (
	maxHostname = 255
	maxShort    = 32
	maxText     = 128
)

// sanitize makes facts read from files always valid on the wire: control
// characters become spaces and over-long values are cut at a character
// boundary, so one odd /proc or /etc file never stops registration.
func sanitize(f *protocol.Facts) {
	f.Hostname = clean(f.Hostname, maxHostname)
	f.OS = clean(f.OS, maxShort)
	f.Arch = clean(f.Arch, maxShort)
	f.Platform = clean(f.Platform, maxText)
	f.Kernel = clean(f.Kernel, maxText)
	f.CPUModel = clean(f.CPUModel, maxText)
}

func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Arch returns GOARCH with the ARM variant the binary was built for, e.g.
// "arm64", "arm/v6", "arm/v7", "amd64".
func Arch() string {
	if runtime.GOARCH != "arm" {
		return runtime.GOARCH
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && s.Value != "" {
				return "arm/v" + strings.SplitN(s.Value, ",", 2)[0]
			}
		}
	}
	return "arm"
}

// ParseOSRelease returns PRETTY_NAME from an os-release file, else
// "ID VERSION_ID", else "".
func ParseOSRelease(s string) string {
	kv := map[string]string{}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		kv[k] = strings.Trim(v, `"'`)
	}
	if p := kv["PRETTY_NAME"]; p != "" {
		return p
	}
	return strings.TrimSpace(kv["ID"] + " " + kv["VERSION_ID"])
}

// ParseCPUModel returns the CPU model from /proc/cpuinfo: "model name" on
// x86, "Model" (the board) or "Hardware" on ARM, "uarch" or "isa" on RISC-V.
func ParseCPUModel(s string) string {
	fields := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, seen := fields[k]; !seen {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"model name", "Model", "Hardware", "uarch", "isa", "cpu model"} {
		if v := fields[k]; v != "" {
			return v
		}
	}
	return ""
}

// ParseMemTotal returns MemTotal from /proc/meminfo in bytes.
func ParseMemTotal(s string) (uint64, error) {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: unexpected MemTotal line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: MemTotal: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

// ParseBootTime returns the boot time from the btime line of /proc/stat.
func ParseBootTime(s string) (time.Time, error) {
	for line := range strings.Lines(s) {
		rest, ok := strings.CutPrefix(line, "btime ")
		if !ok {
			continue
		}
		sec, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("stat: btime: %w", err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Time{}, errors.New("stat: no btime line")
}
