package spec

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Scope is where a document applies: every device (the default), the
// devices whose labels match a selector, or one device.
type Scope struct {
	// Device, if set, is the one device the document is for.
	Device string `json:"device,omitempty"`
	// Selector, if set, is the labels a device must all have, e.g.
	// {"room": "garage", "role": "sensor"}.
	Selector map[string]string `json:"selector,omitempty"`
}

// labelKey and maxLabelValue are the registry's label rules.
var labelKey = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

const maxLabelValue = 255

// ParseSelector reads "room=garage,role=sensor": one or more key=value
// pairs, each key once.
func ParseSelector(s string) (map[string]string, error) {
	sel := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("selector %q: %q: want key=value", s, part)
		}
		if _, dup := sel[k]; dup {
			return nil, fmt.Errorf("selector %q: key %q twice", s, k)
		}
		sel[k] = v
	}
	return sel, checkSelector(sel)
}

func checkSelector(sel map[string]string) error {
	if len(sel) == 0 {
		return fmt.Errorf("selector: empty; want key=value pairs such as room=garage")
	}
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		v := sel[k]
		if !labelKey.MatchString(k) {
			return fmt.Errorf("selector: label key %q: want 1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter", k)
		}
		if v == "" || len(v) > maxLabelValue || strings.ContainsAny(v, ",=/") {
			return fmt.Errorf("selector: label %s: value %q: want 1 to %d bytes without ',', '=' or '/'", k, v, maxLabelValue)
		}
		if err := protocol.CheckDisplayText(v); err != nil {
			return fmt.Errorf("selector: label %s: %w", k, err)
		}
	}
	return nil
}

// String renders the scope as its key part: "default", "device/<id>" or
// "selector/k=v,k2=v2" (keys sorted).
func (s Scope) String() string {
	switch {
	case s.Device != "":
		return "device/" + s.Device
	case len(s.Selector) > 0:
		return "selector/" + SelectorString(s.Selector)
	}
	return "default"
}

// SelectorString renders a selector canonically: k=v pairs by key.
func SelectorString(sel map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(sel)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(sel[k])
	}
	return b.String()
}

// Validate reports a scope that is neither the default, a valid selector
// nor a valid device ID (and not both).
func (s Scope) Validate() error {
	switch {
	case s.Device != "" && len(s.Selector) > 0:
		return fmt.Errorf("scope: a device or a selector, not both")
	case s.Device != "":
		if err := protocol.ValidateID(s.Device); err != nil {
			return fmt.Errorf("scope: device: %w", err)
		}
	case len(s.Selector) > 0:
		return checkSelector(s.Selector)
	}
	return nil
}

// Param renders the scope for a URL path segment: "default",
// "device:<id>" or "selector:k=v,k2=v2".
func (s Scope) Param() string {
	return strings.Replace(s.String(), "/", ":", 1)
}

// ParseScope reads Param's form: "default", "device:<id>" or
// "selector:room=garage,role=sensor".
func ParseScope(s string) (Scope, error) {
	switch {
	case s == "default":
		return Scope{}, nil
	case strings.HasPrefix(s, "device:"), strings.HasPrefix(s, "selector:"):
		return parseScope(strings.Replace(s, ":", "/", 1))
	}
	return Scope{}, fmt.Errorf("scope %q: want default, device:<id> or selector:<key=value,…>", s)
}

// parseScope reads Scope.String's form back.
func parseScope(s string) (Scope, error) {
	switch {
	case s == "default":
		return Scope{}, nil
	case strings.HasPrefix(s, "device/"):
		sc := Scope{Device: strings.TrimPrefix(s, "device/")}
		if sc.Device == "" {
			return Scope{}, fmt.Errorf("scope %q: no device ID", s)
		}
		return sc, sc.Validate()
	case strings.HasPrefix(s, "selector/"):
		sel, err := ParseSelector(strings.TrimPrefix(s, "selector/"))
		return Scope{Selector: sel}, err
	}
	return Scope{}, fmt.Errorf("scope %q: want default, device/<id> or selector/<k=v,…>", s)
}

// matches reports whether a device with these labels is in the scope.
func (s Scope) matches(device string, labels map[string]string) bool {
	switch {
	case s.Device != "":
		return s.Device == device
	case len(s.Selector) > 0:
		for k, v := range s.Selector {
			if labels[k] != v {
				return false
			}
		}
	}
	return true
}
