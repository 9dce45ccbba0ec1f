package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alicia-home/alicia/internal/protocol"
)

// Rule kinds.
const (
	// KindThreshold compares the latest value of each matching series with
	// a constant.
	KindThreshold = "threshold"
	// KindAbsence fires when a device sent no sample (of one metric, or of
	// any) for a while: the deadman alert.
	KindAbsence = "absence"
	// KindTrend fits a line to each matching series over Window and fires
	// when the value is projected to cross Threshold within Horizon: "disk
	// / full in ~14 h".
	KindTrend = "trend"
	// KindRate compares the change of each matching series over Window
	// with a constant: "temperature rising more than 5 °C in 10 minutes".
	KindRate = "rate"
)

var kinds = []string{KindThreshold, KindAbsence, KindTrend, KindRate}

// Severities.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Limits on rules.
const (
	// MaxRules bounds the number of stored rules.
	MaxRules = 256
	// MaxFor is the longest For: the metrics store keeps raw samples for
	// seven days, so an absence of data longer than that cannot be told
	// apart from a device that never sent any.
	MaxFor = 7 * 24 * time.Hour
	// MaxNameLen bounds a rule's name.
	MaxNameLen = 128
	// MaxSuggestionLen bounds a rule's suggestion template.
	MaxSuggestionLen = 256
	// MaxSelectors bounds the entries of Match and of Devices.
	MaxSelectors = 16
	// MinWindow is the shortest Window of a trend or rate rule.
	MinWindow = time.Minute
	// MaxWindow is the longest Window: the raw samples' retention (see
	// MaxFor).
	MaxWindow = MaxFor
	// MaxHorizon is the longest Horizon of a trend rule: a line fitted
	// over at most a week says little about the month after.
	MaxHorizon = 30 * 24 * time.Hour
	// maxLabelValueLen matches the registry's and the protocol's limits.
	maxLabelValueLen = 255
)

// ErrInvalid is wrapped by every error of Validate and DecodeRule, and by
// PutRule's validation errors: the rule, not the hub, is wrong (an API
// answers 400).
var ErrInvalid = errors.New("invalid rule")

// ErrNotFound is returned for an unknown rule ID (an API answers 404).
var ErrNotFound = errors.New("rule not found")

// ValidationError says which field of a rule is wrong and why. Its text
// is "field: what is wrong", e.g. `for: "-1m" must be positive`. It
// matches ErrInvalid with errors.Is.
type ValidationError struct {
	// Field is the JSON name of the field ("for", "op", "match", …), or
	// empty for an error about the whole document.
	Field string
	// Msg says what is wrong with it.
	Msg string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Rule is an alert rule. Its JSON form is the one the REST API reads and
// writes; durations are Go duration strings ("2m", "90s").
type Rule struct {
	// ID identifies the rule: 1 to 63 bytes of [a-z0-9_-], starting with a
	// letter or digit. JSON "id".
	ID string
	// Name is a short human title ("CPU temperature"). Required; one line
	// of at most MaxNameLen bytes. JSON "name".
	Name string
	// Kind is KindThreshold, KindAbsence, KindTrend or KindRate. JSON
	// "kind".
	Kind string
	// Metric is the metric name the rule watches (see agent/sample for the
	// names agents send). Required for threshold, trend and rate rules;
	// for an absence rule, empty means "no sample of any metric". JSON
	// "metric".
	Metric string
	// Match selects series by label equality: every entry must equal the
	// series' label (e.g. {"cpu": "total"}); a series may have more labels.
	// Empty matches every series of Metric. An absence rule may use it only
	// with a Metric. JSON "match".
	Match map[string]string
	// Devices selects devices by registry labels: every entry must equal
	// the device's label (e.g. {"room": "garage"}). Empty selects every
	// accepted device. JSON "devices".
	Devices map[string]string
	// Op compares the value with Threshold: ">", "<", ">=" or "<=". For a
	// rate rule the value is the change over Window (">" with 5: rising by
	// more than 5; "<" with -5: falling by more than 5). For a trend rule,
	// ">" or "<" only: the direction in which the series must cross
	// Threshold. Empty for an absence rule. JSON "op".
	Op string
	// Threshold is the constant the value is compared with. Ratios are in
	// [0, 1] (0.9 is 90 %). For a trend rule, the level whose crossing is
	// projected; for a rate rule, the change over Window. 0 for an absence
	// rule. JSON "threshold".
	Threshold float64
	// For is how long the condition must hold before the alert fires:
	// for a threshold rule, every evaluation from the first breaching
	// sample to one For later must see a breaching sample; for an absence
	// rule, how long a device may stay silent. Positive, at most MaxFor.
	// JSON "for", a Go duration string.
	For time.Duration
	// ResolveMargin is the hysteresis of a threshold rule: a firing ">" or
	// ">=" alert resolves only once the value is below Threshold −
	// ResolveMargin, a "<" or "<=" alert only once it is above Threshold +
	// ResolveMargin, so a value hovering around the threshold does not
	// flap. The same holds for the change of a rate rule. For a trend
	// rule it is a fraction of Horizon: a firing alert resolves once the
	// projected crossing is more than Horizon × (1 + ResolveMargin) away
	// (or the series turned away from Threshold). Not negative; 0 for an
	// absence rule. JSON "resolve_margin".
	ResolveMargin float64
	// Window is the stretch of recent samples a trend rule fits its line
	// to, or over which a rate rule measures the change. Between MinWindow
	// and MaxWindow; trend and rate rules only (0 otherwise). JSON
	// "window", a Go duration string.
	Window time.Duration
	// Horizon is how far ahead a trend rule looks: it fires when the
	// projected crossing of Threshold is at most Horizon away. Positive,
	// at most MaxHorizon; trend rules only (0 otherwise). JSON "horizon",
	// a Go duration string.
	Horizon time.Duration
	// Severity is SeverityWarning or SeverityCritical. JSON "severity".
	Severity string
	// Suggestion is the one-line summary of an alert, at most
	// MaxSuggestionLen bytes, with placeholders filled in when it fires,
	// e.g. "disk {label:mount} on {device_name} is {value_pct} full: clear
	// logs or enlarge the card". Placeholders are plain text
	// substitutions (nothing is evaluated, and substituted text is not
	// read again); any other "{…}" is refused:
	//
	//	{device}         the device ID
	//	{device_name}    the device's name (its ID if it has none)
	//	{rule}           the rule's name
	//	{metric}         the rule's metric
	//	{value}          the value that fired, e.g. 81.5 (two decimals at
	//	                 most); for an absence rule, how long the device
	//	                 was silent, e.g. "7 minutes"; for a rate rule,
	//	                 the change over the window, e.g. 6.2 or -5.5;
	//	                 for a trend rule, the series' current level on
	//	                 the fitted line
	//	{value_pct}      the value as a percentage of 1, e.g. "95 %"
	//	{threshold}      the rule's threshold, e.g. 80
	//	{threshold_pct}  the threshold as a percentage, e.g. "90 %"
	//	{for}            the rule's For, e.g. "5 minutes"
	//	{severity}       warning or critical
	//	{window}         the rule's Window, e.g. "6 hours" (trend, rate)
	//	{horizon}        the rule's Horizon, e.g. "72 hours" (trend)
	//	{eta}            how long until the projected crossing, e.g.
	//	                 "~40 min", "~14 h", "~3 d" (trend)
	//	{projected_at}   when, e.g. "2026-03-02 02:00 UTC" (trend)
	//	{label:NAME}     the series' label NAME, e.g. {label:mount} → "/";
	//	                 "?" if the series has no such label
	//
	// Empty gives a generic summary. JSON "suggestion".
	Suggestion string
	// Enabled rules are evaluated; a disabled rule keeps no alerts.
	// JSON "enabled"; DecodeRule takes a missing "enabled" as true.
	Enabled bool
}

// ruleJSON is the wire form of a Rule.
type ruleJSON struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Metric        string            `json:"metric,omitempty"`
	Match         map[string]string `json:"match,omitempty"`
	Devices       map[string]string `json:"devices,omitempty"`
	Op            string            `json:"op,omitempty"`
	Threshold     float64           `json:"threshold"`
	For           string            `json:"for"`
	ResolveMargin float64           `json:"resolve_margin"`
	Severity      string            `json:"severity"`
	Window        string            `json:"window,omitempty"`
	Horizon       string            `json:"horizon,omitempty"`
	Suggestion    string            `json:"suggestion,omitempty"`
	Enabled       *bool             `json:"enabled,omitempty"`
}

// MarshalJSON encodes the rule in its wire form.
func (r Rule) MarshalJSON() ([]byte, error) {
	en := r.Enabled
	return json.Marshal(ruleJSON{ID: r.ID, Name: r.Name, Kind: r.Kind, Metric: r.Metric, Match: r.Match, Devices: r.Devices,
		Op: r.Op, Threshold: r.Threshold, For: formatDuration(r.For), ResolveMargin: r.ResolveMargin, Severity: r.Severity,
		Window: optDuration(r.Window), Horizon: optDuration(r.Horizon), Suggestion: r.Suggestion, Enabled: &en})
}

// optDuration is formatDuration, or "" for 0 (a field the rule's kind does
// not have).
func optDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return formatDuration(d)
}

// UnmarshalJSON decodes the wire form leniently (unknown fields are
// ignored, so that a rule stored by a newer hub still loads). Use
// DecodeRule for input from users.
func (r *Rule) UnmarshalJSON(b []byte) error {
	var w ruleJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	rule, err := w.rule()
	if err != nil {
		return err
	}
	*r = rule
	return nil
}

func (w *ruleJSON) rule() (Rule, error) {
	r := Rule{ID: w.ID, Name: w.Name, Kind: w.Kind, Metric: w.Metric, Match: w.Match, Devices: w.Devices, Op: w.Op,
		Threshold: w.Threshold, ResolveMargin: w.ResolveMargin, Severity: w.Severity, Suggestion: w.Suggestion, Enabled: true}
	if w.Enabled != nil {
		r.Enabled = *w.Enabled
	}
	for _, f := range []struct {
		field, s string
		d        *time.Duration
	}{{"for", w.For, &r.For}, {"window", w.Window, &r.Window}, {"horizon", w.Horizon, &r.Horizon}} {
		if f.s == "" {
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil {
			return Rule{}, invalid(f.field, "%q is not a duration (e.g. \"2m\", \"90s\", \"6h\")", f.s)
		}
		*f.d = d
	}
	return r, nil
}

// DecodeRule decodes one rule from JSON strictly: unknown fields, a
// second value and trailing data are refused, and a missing "enabled" is
// taken as true. It does not validate the rule (PutRule does; call
// Validate to check it sooner). Errors wrap ErrInvalid.
func DecodeRule(b []byte) (Rule, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w ruleJSON
	if err := dec.Decode(&w); err != nil {
		return Rule{}, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Rule{}, invalid("", "invalid JSON: data after the rule object")
	}
	return w.rule()
}

// decodeError turns an encoding/json error into a ValidationError.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return invalid(typeErr.Field, "%s is not a JSON %s", typeErr.Value, typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	case errors.Is(err, io.EOF):
		return invalid("", "invalid JSON: empty body (want a rule object)")
	}
	return invalid("", "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// clone returns a deep copy.
func (r Rule) clone() Rule {
	r.Match = maps.Clone(r.Match)
	r.Devices = maps.Clone(r.Devices)
	return r
}

// sameCondition reports whether r and o select and test the same data in
// the same way: when it changes, a rule's alerts are resolved and its
// pending conditions forgotten.
func (r Rule) sameCondition(o Rule) bool {
	return r.Kind == o.Kind && r.Metric == o.Metric && maps.Equal(r.Match, o.Match) && maps.Equal(r.Devices, o.Devices) &&
		r.Op == o.Op && r.Threshold == o.Threshold && r.For == o.For && r.ResolveMargin == o.ResolveMargin &&
		r.Window == o.Window && r.Horizon == o.Horizon
}

var (
	ops      = []string{">", "<", ">=", "<="}
	trendOps = []string{">", "<"}
)

// Validate checks every field and returns the first problem as a
// *ValidationError (which wraps ErrInvalid).
func (r Rule) Validate() error {
	if !validRuleID(r.ID) {
		return invalid("id", "%q is not a rule ID: use 1 to 63 bytes of a-z, 0-9, '_', '-', starting with a letter or digit", r.ID)
	}
	switch {
	case strings.TrimSpace(r.Name) == "":
		return invalid("name", "must not be blank")
	case len(r.Name) > MaxNameLen:
		return invalid("name", "longer than %d bytes", MaxNameLen)
	case strings.ContainsFunc(r.Name, isControl):
		return invalid("name", "contains a control character (it must be one line)")
	}
	if !slices.Contains(kinds, r.Kind) {
		return invalid("kind", "%q is not one of %s", r.Kind, strings.Join(kinds, ", "))
	}
	if r.Metric == "" && r.Kind != KindAbsence {
		return invalid("metric", "required for a %s rule (e.g. \"temperature_celsius\")", r.Kind)
	}
	if r.Metric != "" && protocol.ValidateMetricName(r.Metric) != nil {
		return invalid("metric", "%q is not a metric name: use [a-zA-Z_][a-zA-Z0-9_]*, e.g. \"cpu_usage_ratio\"", r.Metric)
	}
	if len(r.Match) > 0 && r.Metric == "" {
		return invalid("match", "needs a metric (an absence rule without one watches every metric)")
	}
	if err := validateSelector("match", r.Match, protocol.ValidateLabelName); err != nil {
		return err
	}
	if err := validateSelector("devices", r.Devices, validateDeviceLabelKey); err != nil {
		return err
	}
	switch r.Kind {
	case KindThreshold, KindTrend, KindRate:
		if r.Kind == KindTrend && !slices.Contains(trendOps, r.Op) {
			return invalid("op", "%q is not one of %s (the direction of the crossing)", r.Op, strings.Join(trendOps, ", "))
		}
		if !slices.Contains(ops, r.Op) {
			return invalid("op", "%q is not one of %s", r.Op, strings.Join(ops, ", "))
		}
		if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
			return invalid("threshold", "%v is not a finite number", r.Threshold)
		}
		if math.IsNaN(r.ResolveMargin) || math.IsInf(r.ResolveMargin, 0) || r.ResolveMargin < 0 {
			return invalid("resolve_margin", "%v must be a finite number, 0 or more", r.ResolveMargin)
		}
	case KindAbsence:
		if r.Op != "" {
			return invalid("op", "must be empty for an absence rule")
		}
		if r.Threshold != 0 {
			return invalid("threshold", "must be 0 for an absence rule (For says how long a device may stay silent)")
		}
		if r.ResolveMargin != 0 {
			return invalid("resolve_margin", "must be 0 for an absence rule")
		}
	}
	switch {
	case r.Kind != KindTrend && r.Kind != KindRate && r.Window != 0:
		return invalid("window", "only for trend and rate rules")
	case r.Kind != KindTrend && r.Kind != KindRate:
	case r.Window < MinWindow || r.Window > MaxWindow:
		return invalid("window", "%q must be between %s and %s", formatDuration(r.Window), formatDuration(MinWindow), formatDuration(MaxWindow))
	}
	switch {
	case r.Kind != KindTrend && r.Horizon != 0:
		return invalid("horizon", "only for trend rules")
	case r.Kind != KindTrend:
	case r.Horizon <= 0:
		return invalid("horizon", "%q must be positive (how far ahead to look, e.g. \"72h\")", formatDuration(r.Horizon))
	case r.Horizon > MaxHorizon:
		return invalid("horizon", "%q is longer than %s", formatDuration(r.Horizon), formatDuration(MaxHorizon))
	}
	switch {
	case r.For <= 0:
		return invalid("for", "%q must be positive", formatDuration(r.For))
	case r.For > MaxFor:
		return invalid("for", "%q is longer than %s", formatDuration(r.For), formatDuration(MaxFor))
	}
	if r.Severity != SeverityWarning && r.Severity != SeverityCritical {
		return invalid("severity", "%q is not one of %s, %s", r.Severity, SeverityWarning, SeverityCritical)
	}
	return validateSuggestion(r.Suggestion, r.Kind)
}

// validRuleID reports whether id matches [a-z0-9][a-z0-9_-]{0,62}.
func validRuleID(id string) bool {
	if id == "" || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '_' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

func validateSelector(field string, sel map[string]string, validKey func(string) error) error {
	if len(sel) > MaxSelectors {
		return invalid(field, "more than %d entries", MaxSelectors)
	}
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		if err := validKey(k); err != nil {
			return invalid(field, "%v", err)
		}
		if v := sel[k]; len(v) > maxLabelValueLen || strings.ContainsFunc(v, isControl) {
			return invalid(field, "value of %q: must be at most %d bytes without control characters", k, maxLabelValueLen)
		}
	}
	return nil
}

// validateDeviceLabelKey checks a registry label key as the registry does:
// lowercase letters, digits, '.', '_', '-', starting with a letter.
func validateDeviceLabelKey(k string) error {
	if k == "" || len(k) > 63 || k[0] < 'a' || k[0] > 'z' ||
		strings.ContainsFunc(k, func(r rune) bool {
			return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-')
		}) {
		return fmt.Errorf("label key %q: use 1 to 63 bytes of a-z, 0-9, '.', '_', '-', starting with a letter", k)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// placeholders are the placeholders a suggestion may use besides
// {label:NAME}; see Rule.Suggestion.
var placeholders = []string{"{device}", "{device_name}", "{rule}", "{metric}", "{value}", "{value_pct}",
	"{threshold}", "{threshold_pct}", "{for}", "{severity}", "{window}", "{horizon}", "{eta}", "{projected_at}"}

// kindPlaceholders are the placeholders only some kinds of rule fill in.
var kindPlaceholders = map[string][]string{
	"{window}":       {KindTrend, KindRate},
	"{horizon}":      {KindTrend},
	"{eta}":          {KindTrend},
	"{projected_at}": {KindTrend},
}

// validateSuggestion checks a suggestion template: one line, at most
// MaxSuggestionLen bytes, every "{" closed and naming a known placeholder
// that rules of kind fill in.
func validateSuggestion(s, kind string) error {
	switch {
	case len(s) > MaxSuggestionLen:
		return invalid("suggestion", "longer than %d bytes", MaxSuggestionLen)
	case strings.ContainsFunc(s, isControl):
		return invalid("suggestion", "must be one line without control characters")
	}
	rest := s
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return invalid("suggestion", "\"}\" without \"{\"")
			}
			return nil
		}
		if strings.IndexByte(rest[:i], '}') >= 0 {
			return invalid("suggestion", "\"}\" without \"{\"")
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return invalid("suggestion", "%q is not closed with \"}\"", rest[i:])
		}
		ph := rest[i : i+j+1]
		if name, ok := strings.CutPrefix(ph, "{label:"); ok {
			if err := protocol.ValidateLabelName(strings.TrimSuffix(name, "}")); err != nil {
				return invalid("suggestion", "placeholder %s: %v", ph, err)
			}
		} else if !slices.Contains(placeholders, ph) {
			return invalid("suggestion", "unknown placeholder %s; use %s or {label:NAME}", ph, strings.Join(placeholders, ", "))
		} else if only, ok := kindPlaceholders[ph]; ok && !slices.Contains(only, kind) {
			return invalid("suggestion", "placeholder %s is only for %s rules", ph, strings.Join(only, " and "))
		}
		rest = rest[i+j+1:]
	}
}

// facts are what a summary's placeholders are filled with.
type facts struct {
	device, deviceName string
	labels             map[string]string
	value              float64
	// projected is a trend's projected crossing, and now the time of the
	// evaluation that found it.
	projected, now time.Time
}

// render fills the placeholders of the rule's suggestion (or of a generic
// summary when it has none). Substituted text is plain: it is never
// parsed again, and control characters in it become spaces.
func (r Rule) render(f facts) string {
	tmpl := r.Suggestion
	if tmpl == "" {
		switch r.Kind {
		case KindAbsence:
			tmpl = "{rule}: no data from {device_name} for {value}"
		case KindTrend:
			tmpl = "{rule}: {metric} on {device_name} reaches {threshold} in {eta} (at {projected_at}), at its rate of the last {window}"
		case KindRate:
			tmpl = "{rule}: {metric} on {device_name} changed by {value} in {window} (" + r.Op + " {threshold})"
		default:
			tmpl = "{rule}: {metric} on {device_name} is {value} (" + r.Op + " {threshold} for {for})"
		}
	}
	name := f.deviceName
	if name == "" {
		name = f.device
	}
	value := formatNumber(f.value)
	if r.Kind == KindAbsence {
		silence := time.Duration(f.value * float64(time.Second)).Round(time.Second)
		if silence >= 2*time.Minute {
			silence = silence.Round(time.Minute)
		}
		value = humanDuration(silence)
	}
	var b strings.Builder
	rest := tmpl
	for {
		i := strings.IndexByte(rest, '{')
		j := strings.IndexByte(rest[max(i, 0):], '}')
		if i < 0 || j < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		ph := rest[i : i+j+1]
		rest = rest[i+j+1:]
		var sub string
		switch ph {
		case "{device}":
			sub = f.device
		case "{device_name}":
			sub = name
		case "{rule}":
			sub = r.Name
		case "{metric}":
			sub = r.Metric
		case "{value}":
			sub = value
		case "{value_pct}":
			sub = formatPercent(f.value)
		case "{threshold}":
			sub = formatNumber(r.Threshold)
		case "{threshold_pct}":
			sub = formatPercent(r.Threshold)
		case "{for}":
			sub = humanDuration(r.For)
		case "{severity}":
			sub = r.Severity
		case "{window}":
			sub = humanDuration(r.Window)
		case "{horizon}":
			sub = humanDuration(r.Horizon)
		case "{eta}":
			sub = formatETA(f.projected.Sub(f.now))
		case "{projected_at}":
			sub = f.projected.UTC().Format("2006-01-02 15:04 UTC")
		default:
			if label, ok := strings.CutPrefix(ph, "{label:"); ok {
				var found bool
				if sub, found = f.labels[strings.TrimSuffix(label, "}")]; !found {
					sub = "?"
				}
			} else {
				sub = ph // not validated; leave it as written
			}
		}
		b.WriteString(strings.Map(func(r rune) rune {
			if isControl(r) {
				return ' '
			}
			return r
		}, sub))
	}
	return b.String()
}

// formatNumber renders v with at most two decimals: 81.25, 0.9, 1200.
func formatNumber(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// formatETA renders how long until a projected crossing, rounded as a
// person would say it: "under a minute", "~40 min", "~14 h", "~3 d".
func formatETA(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < 2*time.Hour:
		return fmt.Sprintf("~%d min", int64(d.Round(time.Minute)/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("~%d h", int64(d.Round(time.Hour)/time.Hour))
	}
	return fmt.Sprintf("~%d d", int64((d+12*time.Hour)/(24*time.Hour)))
}

// formatPercent renders a ratio as a whole percentage: 0.953 → "95 %".
func formatPercent(v float64) string {
	return strconv.FormatFloat(math.Round(v*100), 'f', -1, 64) + " %"
}

// formatDuration renders d as a Go duration without zero units: "2m",
// "1h30m", "-1m", "90ms".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// humanDuration renders d for people: "5 minutes", "2 hours", "90
// seconds", falling back to formatDuration for mixed units ("1h30m").
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d <= 0:
		return formatDuration(d)
	case d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d%time.Second == 0 && d < 10*time.Minute:
		return unit(int64(d/time.Second), "second")
	}
	return formatDuration(d)
}
