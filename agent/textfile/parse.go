package textfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Metric types of the exposition format that the agent accepts.
const (
	TypeGauge   = "gauge"
	TypeCounter = "counter"
	TypeUntyped = "untyped"
)

// HALabel is the label that asks the hub to show a series in Home
// Assistant as a sensor; its only accepted value is HASensor.
const (
	HALabel  = "ha"
	HASensor = "sensor"
)

// Sample is one sample line of a file.
type Sample struct {
	protocol.Point
	// Type is the metric's TYPE, TypeUntyped when the file gives none.
	Type string
	// Line is the sample's line number in its file, from 1.
	Line int
}

// LineError is a line of a file that was refused.
type LineError struct {
	File string
	Line int // from 1; 0 for the whole file
	Err  error
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Parse reads one file in the Prometheus text exposition format (version
// 0.0.4): # HELP and # TYPE lines, other comments, and sample lines
// name{label="value",…} value. It returns the samples of the valid lines
// and an error, naming file and line, for each line it refuses; a refused
// line does not spoil the others. See the package documentation for what is
// refused. Parse does not know which names the agent reserves for itself
// (Collector and Write check those).
func Parse(file string, data []byte) ([]Sample, []error) {
	var (
		out     []Sample
		errs    []error
		types   = map[string]string{} // name → TYPE given
		sampled = map[string]bool{}   // names with a sample line already
		series  = map[string]int{}    // series key → line
	)
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &LineError{File: file, Line: line, Err: fmt.Errorf(format, args...)})
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" {
			continue
		}
		if !utf8.ValidString(line) {
			fail(n, "not valid UTF-8")
			continue
		}
		if trimmed[0] == '#' {
			fields := strings.Fields(trimmed[1:])
			if len(fields) < 2 || fields[0] != "TYPE" && fields[0] != "HELP" {
				continue // a comment
			}
			name := fields[1]
			if err := checkName(name); err != nil {
				fail(n, "%s: %v", fields[0], err)
				continue
			}
			if fields[0] == "HELP" {
				continue // the hub has its own HELP texts; this one is not carried
			}
			if len(fields) != 3 {
				fail(n, "TYPE %s: want one type (gauge, counter or untyped)", name)
				continue
			}
			typ := fields[2]
			switch {
			case typ != TypeGauge && typ != TypeCounter && typ != TypeUntyped:
				fail(n, "TYPE %s %s: only gauge, counter and untyped metrics are accepted", name, typ)
				continue
			case types[name] != "":
				fail(n, "TYPE %s: a second TYPE line for the name", name)
				continue
			case sampled[name]:
				fail(n, "TYPE %s: after samples of the name (it must come before them)", name)
				continue
			}
			if err := checkType(name, typ); err != nil {
				fail(n, "TYPE %s %s: %v", name, typ, err)
				continue
			}
			types[name] = typ
			continue
		}
		p, err := parseSample(trimmed)
		if err != nil {
			fail(n, "%v", err)
			continue
		}
		sampled[p.Name] = true
		key := seriesKey(p.Name, p.Labels)
		if first, ok := series[key]; ok {
			fail(n, "%s: the same series as line %d", key, first)
			continue
		}
		series[key] = n
		typ := types[p.Name]
		if typ == "" {
			typ = TypeUntyped
		}
		out = append(out, Sample{Point: p, Type: typ, Line: n})
	}
	if err := sc.Err(); err != nil {
		fail(0, "%v", err)
	}
	return out, errs
}

// checkName checks a metric name: Prometheus's [a-zA-Z_:][a-zA-Z0-9_:]*
// without the colon, which Prometheus keeps for recording rules and the
// agent's protocol does not carry.
func checkName(name string) error {
	if strings.Contains(name, ":") {
		return fmt.Errorf("metric name %q: ':' is kept for Prometheus recording rules; use [a-zA-Z_][a-zA-Z0-9_]*", name)
	}
	return protocol.ValidateMetricName(name)
}

// checkType checks that a name fits its type: the hub exposes every name
// ending in _total as a counter, and only those, so a counter's name ends
// in _total and a gauge's does not.
func checkType(name, typ string) error {
	total := strings.HasSuffix(name, "_total")
	switch {
	case typ == TypeCounter && !total:
		return errors.New("a counter's name ends in _total (the hub exposes _total names as counters)")
	case typ == TypeGauge && total:
		return errors.New("a gauge's name does not end in _total (the hub exposes _total names as counters)")
	}
	return nil
}

// parseSample parses name{labels} value [timestamp].
func parseSample(s string) (protocol.Point, error) {
	var p protocol.Point
	i := 0
	for i < len(s) && s[i] != '{' && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	p.Name = s[:i]
	if err := checkName(p.Name); err != nil {
		return p, err
	}
	rest := strings.TrimLeft(s[i:], " \t")
	if strings.HasPrefix(rest, "{") {
		labels, after, err := parseLabels(rest[1:])
		if err != nil {
			return p, fmt.Errorf("%s: %w", p.Name, err)
		}
		if len(labels) > 0 {
			p.Labels = labels
		}
		rest = after
	}
	fields := strings.Fields(rest)
	switch len(fields) {
	case 0:
		return p, fmt.Errorf("%s: no value", p.Name)
	case 1:
	case 2:
		return p, fmt.Errorf("%s: a timestamp is not accepted (the agent times the sample when it collects it)", p.Name)
	default:
		return p, fmt.Errorf("%s: %q after the value", p.Name, strings.Join(fields[1:], " "))
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return p, fmt.Errorf("%s: value %q is not a number", p.Name, fields[0])
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return p, fmt.Errorf("%s: value %s: want a finite number", p.Name, fields[0])
	}
	p.Value = v
	return p, nil
}

// parseLabels parses label="value",…} (the opening brace already read) and
// returns the labels and what follows the closing brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], nil
		}
		i := strings.IndexByte(s, '=')
		if i < 0 {
			return nil, "", errors.New("labels: want name=\"value\"")
		}
		name := strings.TrimRight(s[:i], " \t")
		if err := protocol.ValidateLabelName(name); err != nil {
			return nil, "", err
		}
		s = strings.TrimLeft(s[i+1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return nil, "", fmt.Errorf("label %s: the value must be in double quotes", name)
		}
		value, after, err := unquote(s[1:])
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", name, err)
		}
		if err := checkLabel(name, value); err != nil {
			return nil, "", err
		}
		if _, dup := labels[name]; dup {
			return nil, "", fmt.Errorf("label %s given twice", name)
		}
		labels[name] = value
		if len(labels) > protocol.MaxLabels {
			return nil, "", fmt.Errorf("more than %d labels", protocol.MaxLabels)
		}
		s = strings.TrimLeft(after, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return nil, "", fmt.Errorf("label %s: want ',' or '}' after the value", name)
		}
	}
}

// unquote reads a label value up to its closing quote, undoing the
// format's escapes (\\, \" and \n).
func unquote(s string) (string, string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 == len(s) {
				return "", "", errors.New("unterminated value")
			}
			i++
			switch s[i] {
			case '\\', '"':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			default:
				return "", "", fmt.Errorf("unknown escape \\%c (want \\\\, \\\" or \\n)", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated value")
}

// checkLabel checks a label's value, and the ha label's.
func checkLabel(name, value string) error {
	if len(value) > protocol.MaxLabelValueLen {
		return fmt.Errorf("label %s: value longer than %d bytes", name, protocol.MaxLabelValueLen)
	}
	if i := strings.IndexFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("label %s: control character at byte %d of the value", name, i)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("label %s: value not valid UTF-8", name)
	}
	if name == HALabel && value != HASensor {
		return fmt.Errorf("label %s=%q: the %s label marks a Home Assistant sensor; its only value is %q", name, value, HALabel, HASensor)
	}
	return nil
}

// seriesKey renders name{k="v",…} with the labels in name order.
func seriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}
