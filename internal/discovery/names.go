package discovery

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits from RFC 6763 (DNS-SD) and RFC 1035.
const (
	maxInstance  = 63   // an instance name is one DNS label
	maxTXTString = 255  // one TXT string, "key=value", in bytes
	maxTXTTotal  = 1300 // all TXT strings with their length bytes: fits one Ethernet frame (RFC 6763 6.2)
	maxHostLabel = 63
	defaultHost  = "alicia-hub"
)

var (
	serviceRE   = regexp.MustCompile(`^_[A-Za-z0-9]([A-Za-z0-9-]{0,13}[A-Za-z0-9])?\._(tcp|udp)$`)
	hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// validateService checks a service type such as "_alicia-hub._tcp"
// (RFC 6763 7, RFC 6335 5.1).
func validateService(s string) error {
	if !serviceRE.MatchString(s) {
		return fmt.Errorf("discovery: service type %q: want _name._tcp or _name._udp, name 1-15 letters, digits or '-'", s)
	}
	return nil
}

// validateInstance checks an instance name: one DNS label of UTF-8 text
// without control characters (RFC 6763 4.1.1). Leading and trailing spaces
// and dots are refused too: zeroconf trims dots from names, and spaces there
// are invisible in every user interface.
func validateInstance(s string) error {
	switch {
	case s == "":
		return errors.New("instance name is empty")
	case len(s) > maxInstance:
		return fmt.Errorf("instance name %q is %d bytes, longer than %d", s, len(s), maxInstance)
	case !utf8.ValidString(s):
		return fmt.Errorf("instance name %q is not UTF-8", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("instance name %q contains a control character", s)
	case strings.TrimFunc(s, func(r rune) bool { return r == ' ' || r == '.' }) != s:
		return fmt.Errorf("instance name %q begins or ends with a space or dot", s)
	}
	return nil
}

// escapeLabel writes a DNS label in the presentation form of
// github.com/miekg/dns: special characters with a backslash, bytes outside
// printable ASCII as \DDD. Names given to zeroconf must be in this form, and
// the names it reports are: for the same label both are the same string, which
// zeroconf's responder needs to match incoming questions to its instance.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.IndexByte(`. '@;()"\`, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescape reverses escapeLabel and miekg/dns's escaping of TXT strings:
// \DDD is the byte DDD, \X is X.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b = append(b, s[i])
			continue
		}
		if i+3 < len(s) && isDigits(s[i+1:i+4]) {
			if n, err := strconv.Atoi(s[i+1 : i+4]); err == nil && n <= 255 {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validateTXT checks TXT keys and values (RFC 6763 6.3-6.5): a key is 1 or
// more printable ASCII characters other than '=', keys are unique ignoring
// case, each "key=value" is at most 255 bytes and all of them together at
// most 1300.
func validateTXT(m map[string]string) error {
	total := 0
	seen := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if k == "" {
			return errors.New("TXT key is empty")
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e || k[i] == '=' {
				return fmt.Errorf("TXT key %q: want printable ASCII without '='", k)
			}
		}
		if other, dup := seen[strings.ToLower(k)]; dup {
			return fmt.Errorf("TXT keys %q and %q differ only in case", other, k)
		}
		seen[strings.ToLower(k)] = k
		n := len(k) + 1 + len(v)
		if n > maxTXTString {
			return fmt.Errorf("TXT entry %q is %d bytes as key=value, longer than %d", k, n, maxTXTString)
		}
		total += 1 + n
	}
	if total > maxTXTTotal {
		return fmt.Errorf("TXT record is %d bytes, longer than %d", total, maxTXTTotal)
	}
	return nil
}

// encodeTXT turns a validated map into TXT strings "key=value" sorted by
// key, escaped for github.com/miekg/dns (which reads a backslash in a TXT
// string as an escape). An empty map becomes one empty string, the smallest
// valid TXT record (RFC 6763 6.1).
func encodeTXT(m map[string]string) []string {
	if len(m) == 0 {
		return []string{""}
	}
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, strings.ReplaceAll(k+"="+m[k], `\`, `\\`))
	}
	return out
}

// parseTXT turns TXT strings as zeroconf reports them (miekg/dns presentation
// form) into a map. Keys are lower-cased (they are case-insensitive); a string
// without '=' is a key with an empty value; empty strings are skipped; of
// repeated keys the first wins (RFC 6763 6.4).
func parseTXT(txt []string) map[string]string {
	m := make(map[string]string, len(txt))
	for _, s := range txt {
		s = unescape(s)
		k, v, _ := strings.Cut(s, "=")
		if k == "" {
			continue
		}
		k = strings.ToLower(k)
		if _, dup := m[k]; !dup {
			m[k] = v
		}
	}
	return m
}

// hostFromInstance derives a host name label from an instance name: lower
// case letters and digits, other runs of characters become one '-'.
func hostFromInstance(instance string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(instance) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := b.String()
	if len(s) > maxHostLabel {
		s = s[:maxHostLabel]
	}
	s = strings.TrimRight(s, "-")
	if s == "" {
		return defaultHost
	}
	return s
}

// hostFQDN checks a host name ("kitchen-hub", "kitchen-hub.local" or with a
// final dot) and returns it as a fully qualified name in .local.
func hostFQDN(h string) (string, error) {
	name := strings.TrimSuffix(h, ".")
	if len(name) > 6 && strings.EqualFold(name[len(name)-6:], ".local") {
		name = name[:len(name)-6]
	}
	if name == "" || len(name) > 240 {
		return "", fmt.Errorf("host name %q: want 1-240 characters before .local", h)
	}
	for _, l := range strings.Split(name, ".") {
		if !hostLabelRE.MatchString(l) {
			return "", fmt.Errorf("host name %q: label %q: want letters, digits and inner '-', at most %d", h, l, maxHostLabel)
		}
	}
	return name + ".local.", nil
}
