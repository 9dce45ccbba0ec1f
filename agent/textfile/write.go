package textfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Metric is one series that Write puts in the drop directory.
type Metric struct {
	Name   string
	Labels map[string]string
	Value  float64
	// Type is TypeGauge, TypeCounter or "" (a counter when the name ends
	// in _total, else a gauge).
	Type string
	// Help, if set, is written as the file's # HELP line (for a person
	// reading the file; the hub does not carry it).
	Help string
	// HASensor marks the series for Home Assistant: the label ha="sensor".
	HASensor bool
}

// FileName returns the name of m's file in the drop directory:
// push-<name>.prom, or push-<name>-<hash>.prom when it has labels (the
// first 8 hex digits of SHA-256 over its labels), so that each series has
// its own file.
func FileName(m Metric) string {
	if len(m.Labels) == 0 {
		return "push-" + m.Name + Suffix
	}
	h := sha256.New()
	for _, k := range sortedKeys(m.Labels) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(m.Labels[k]))
		h.Write([]byte{0})
	}
	return "push-" + m.Name + "-" + hex.EncodeToString(h.Sum(nil)[:4]) + Suffix
}

// Render returns m in the exposition format, checked as the collector
// checks it (reserved as Config.Reserved).
func Render(m Metric, reserved func(string) bool) ([]byte, error) {
	if err := checkName(m.Name); err != nil {
		return nil, err
	}
	if IsReserved(m.Name, reserved) {
		return nil, fmt.Errorf("metric name %q: the agent's own (or the hub's); choose another", m.Name)
	}
	typ := m.Type
	if typ == "" {
		typ = TypeGauge
		if strings.HasSuffix(m.Name, "_total") {
			typ = TypeCounter
		}
	}
	if typ != TypeGauge && typ != TypeCounter {
		return nil, fmt.Errorf("type %q: want gauge or counter", typ)
	}
	if err := checkType(m.Name, typ); err != nil {
		return nil, fmt.Errorf("metric %s (%s): %w", m.Name, typ, err)
	}
	if strings.ContainsAny(m.Help, "\r\n") {
		return nil, errors.New("help text: one line, please")
	}
	labels := m.Labels
	if m.HASensor {
		if v, ok := labels[HALabel]; ok && v != HASensor {
			return nil, fmt.Errorf("label %s=%q: the %s label marks a Home Assistant sensor; its only value is %q", HALabel, v, HALabel, HASensor)
		}
		labels = make(map[string]string, len(m.Labels)+1)
		for k, v := range m.Labels {
			labels[k] = v
		}
		labels[HALabel] = HASensor
	}
	var b strings.Builder
	if m.Help != "" {
		fmt.Fprintf(&b, "# HELP %s %s\n", m.Name, strings.ReplaceAll(m.Help, `\`, `\\`))
	}
	fmt.Fprintf(&b, "# TYPE %s %s\n%s", m.Name, typ, m.Name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i, k := range sortedKeys(labels) {
			if i > 0 {
				b.WriteByte(',')
			}
			v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(labels[k])
			fmt.Fprintf(&b, "%s=\"%s\"", k, v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(m.Value, 'g', -1, 64))
	b.WriteByte('\n')
	data := []byte(b.String())
	// The collector's own parser is the judge: what Write accepts, the
	// agent reads.
	if _, errs := Parse("(rendered)", data); len(errs) > 0 {
		return nil, errors.Unwrap(errs[0])
	}
	return data, nil
}

// Write puts m in its own file (FileName) in dir, replacing the file
// atomically: it writes a temporary file in dir, syncs it, makes it
// readable by all (the agent runs as another user), renames it over the
// old one and syncs dir. The agent reads it at its next collection; it does
// not need to be running. Write creates dir (0755) if it is missing. It
// returns the file's path.
func Write(dir string, m Metric, reserved func(string) bool) (string, error) {
	data, err := Render(m, reserved)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("textfile directory: %w", err)
	}
	path := filepath.Join(dir, FileName(m))
	tmp, err := os.CreateTemp(dir, "."+FileName(m)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("textfile directory: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing to remove
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename survives a power cut; best effort
		d.Close()
	}
	return path, nil
}
