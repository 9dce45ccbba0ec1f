package sample

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/alicia-home/alicia/internal/protocol"
)

// keyedPoint is a point with its sort key: the name, then the labels in
// label-name order (see seriesKey).
type keyedPoint struct {
	key string
	protocol.Point
}

// batch gathers the points of one collector run and the readings that
// failed while others succeeded.
type batch struct {
	points   []keyedPoint
	problems []error
}

// add appends a point. labels are name, value pairs; the values are made
// valid for the protocol (see labelValue). A value that is not finite is
// noted as a problem and left out.
func (b *batch) add(name string, v float64, labels ...string) {
	if len(labels)%2 != 0 {
		panic("sample: odd number of label arguments for " + name)
	}
	var m map[string]string
	if len(labels) > 0 {
		m = make(map[string]string, len(labels)/2)
		for i := 0; i < len(labels); i += 2 {
			m[labels[i]] = labelValue(labels[i+1])
		}
	}
	key := seriesKey(name, m)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		b.problem(fmt.Errorf("%s: value %v is not a finite number; left out", printableKey(key), v))
		return
	}
	b.points = append(b.points, keyedPoint{key: key, Point: protocol.Point{Name: name, Labels: m, Value: v}})
}

// problem notes a reading that failed while others succeeded.
func (b *batch) problem(err error) { b.problems = append(b.problems, err) }

// finish sorts the points and drops repeated series (two values made equal
// by labelValue's cut, say), noting each.
func (b *batch) finish() []keyedPoint {
	sortPoints(b.points)
	out := b.points[:0]
	for i, p := range b.points {
		if i > 0 && p.key == b.points[i-1].key {
			b.problem(fmt.Errorf("%s: repeated series; kept the first", printableKey(p.key)))
			continue
		}
		out = append(out, p)
	}
	return out
}

func sortPoints(ps []keyedPoint) {
	slices.SortFunc(ps, func(a, b keyedPoint) int { return strings.Compare(a.key, b.key) })
}

// seriesKey returns name, then each label as name \x01 value, in label-name
// order, each followed by \x00. Comparing keys compares names first (a
// shorter name before a longer one it prefixes, since \x00 sorts before
// any name byte), then labels; label values never contain control bytes.
func seriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name + "\x00"
	}
	var arr [protocol.MaxLabels]string
	names := arr[:0]
	n := len(name) + 1
	for k, v := range labels {
		names = append(names, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(names)
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(name)
	sb.WriteByte(0)
	for _, k := range names {
		sb.WriteString(k)
		sb.WriteByte(1)
		sb.WriteString(labels[k])
		sb.WriteByte(0)
	}
	return sb.String()
}

// printableKey renders a series key for messages: name{k="v",…}.
func printableKey(key string) string {
	parts := strings.Split(strings.TrimSuffix(key, "\x00"), "\x00")
	if len(parts) == 1 {
		return parts[0]
	}
	labels := make([]string, 0, len(parts)-1)
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "\x01")
		labels = append(labels, fmt.Sprintf("%s=%q", k, v))
	}
	return parts[0] + "{" + strings.Join(labels, ",") + "}"
}

// labelValue makes s valid as a protocol label value: invalid UTF-8 becomes
// "?", control characters become spaces, and it is cut to
// protocol.MaxLabelValueLen bytes at a character boundary. Mount points,
// device and sensor names come from the kernel and may hold anything.
func labelValue(s string) string {
	if len(s) <= protocol.MaxLabelValueLen && plainASCII(s) {
		return s
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= protocol.MaxLabelValueLen {
		return s
	}
	cut := protocol.MaxLabelValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}
