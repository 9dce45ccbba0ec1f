package schedule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Trigger says when a job runs. Exactly one of Cron, Every, At and Sun is
// set. Its JSON form is the object of the same field names, for example
//
//	{"cron": "30 6 * * 1-5", "zone": "Europe/Berlin"}
//	{"every": "15m", "anchor": "2026-01-01T00:00:00Z"}
//	{"at": "2026-12-24T18:00:00+01:00"}
//	{"sun": {"event": "sunset", "offset": "-30m"}, "zone": "Europe/Berlin"}
//
// Decoding refuses unknown fields. A decoded Trigger is not checked until
// Validate or Compile.
type Trigger struct {
	// Cron is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), six with a leading seconds field, or one of
	// @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.
	// Read in Zone, which is required.
	Cron string `json:"cron,omitempty"`
	// Every is an interval, at least MinInterval and at most MaxInterval,
	// in whole seconds. It fires at Anchor + k·Every for k = 0, 1, 2, …:
	// absolute time, unaffected by DST.
	Every Duration `json:"every,omitzero"`
	// Anchor is the first fire of an interval (only with Every). Zero
	// means the Unix epoch, so "15m" fires at :00, :15, :30 and :45 UTC.
	Anchor time.Time `json:"anchor,omitzero"`
	// At fires once at this instant (RFC 3339 in JSON).
	At time.Time `json:"at,omitzero"`
	// Sun fires at sunrise or sunset, plus an offset, at the Location
	// given to Compile; the days are the calendar days of Zone, which is
	// required.
	Sun *Sun `json:"sun,omitempty"`
	// Zone is an IANA time zone name such as "Europe/Berlin" or "UTC".
	// Required for cron and sun; for an interval or a one-off it only sets
	// the zone in which Preview shows wall times (UTC if empty).
	Zone string `json:"zone,omitempty"`
}

// Sun is a sunrise or sunset trigger.
type Sun struct {
	Event SunEvent `json:"event"`
	// Offset moves the fire from the event: "-30m" is half an hour before
	// it. At most MaxSunOffset either way.
	Offset Duration `json:"offset,omitzero"`
}

// SunEvent is "sunrise" or "sunset".
type SunEvent string

// The sun events.
const (
	Sunrise SunEvent = "sunrise"
	Sunset  SunEvent = "sunset"
)

// Location is where sun triggers are computed: degrees, north and east
// positive. It is configuration (the household's place), passed to
// Compile.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// Validate checks the coordinates.
func (l Location) Validate() error {
	if math.IsNaN(l.Latitude) || l.Latitude < -90 || l.Latitude > 90 {
		return fmt.Errorf("latitude %v: want -90 to 90", l.Latitude)
	}
	if math.IsNaN(l.Longitude) || l.Longitude < -180 || l.Longitude > 180 {
		return fmt.Errorf("longitude %v: want -180 to 180", l.Longitude)
	}
	return nil
}

// Limits of the triggers.
const (
	MinInterval  = time.Second
	MaxInterval  = 31 * 24 * time.Hour
	MaxSunOffset = 12 * time.Hour
)

// Kinds of trigger, as Kind returns them.
const (
	KindCron     = "cron"
	KindInterval = "interval"
	KindOnce     = "once"
	KindSun      = "sun"
)

// Kind returns which kind of trigger t is, or "" if it sets no kind or
// more than one.
func (t Trigger) Kind() string {
	var kinds []string
	if t.Cron != "" {
		kinds = append(kinds, KindCron)
	}
	if t.Every != 0 {
		kinds = append(kinds, KindInterval)
	}
	if !t.At.IsZero() {
		kinds = append(kinds, KindOnce)
	}
	if t.Sun != nil {
		kinds = append(kinds, KindSun)
	}
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

// errKind is the error of a trigger that sets no kind or several.
var errKind = errors.New(`set exactly one of "cron", "every", "at" and "sun"`)

// Validate checks t without a location: the expression parses and fires at
// least once in the future of some date, the interval and offset are in
// range, the zone exists. A one-off in the past is valid (Next returns
// false for it); see Schedule.Never for the check against the present.
func (t Trigger) Validate() error {
	_, err := compile(t)
	return err
}

// compile validates t and builds the parts that need no location.
func compile(t Trigger) (*Schedule, error) {
	s := &Schedule{trigger: t, kind: t.Kind(), loc: time.UTC}
	if s.kind == "" {
		return nil, errKind
	}
	if !t.Anchor.IsZero() && s.kind != KindInterval {
		return nil, errors.New(`"anchor" goes only with "every"`)
	}
	calendar := s.kind == KindCron || s.kind == KindSun
	if t.Zone == "" && calendar {
		return nil, fmt.Errorf(`%s trigger needs a "zone" (an IANA time zone such as "Europe/Berlin" or "UTC")`, s.kind)
	}
	if t.Zone != "" {
		loc, err := loadZone(t.Zone)
		if err != nil {
			return nil, err
		}
		s.loc = loc
	}
	switch s.kind {
	case KindCron:
		spec, err := parseCron(t.Cron)
		if err != nil {
			return nil, fmt.Errorf("cron %q: %w", t.Cron, err)
		}
		s.cron = spec
	case KindInterval:
		d := time.Duration(t.Every)
		switch {
		case d < MinInterval:
			return nil, fmt.Errorf("every %s: want at least %s", d, MinInterval)
		case d > MaxInterval:
			return nil, fmt.Errorf("every %s: want at most %s (31 days)", d, MaxInterval)
		case d%time.Second != 0:
			return nil, fmt.Errorf("every %s: want whole seconds", d)
		}
		if !t.Anchor.IsZero() {
			if err := inRange("anchor", t.Anchor); err != nil {
				return nil, err
			}
		}
	case KindOnce:
		if err := inRange("at", t.At); err != nil {
			return nil, err
		}
	case KindSun:
		if t.Sun.Event != Sunrise && t.Sun.Event != Sunset {
			return nil, fmt.Errorf("sun event %q: want %q or %q", t.Sun.Event, Sunrise, Sunset)
		}
		if o := time.Duration(t.Sun.Offset); o < -MaxSunOffset || o > MaxSunOffset {
			return nil, fmt.Errorf("sun offset %s: want at most %s either way", o, MaxSunOffset)
		}
	}
	return s, nil
}

// The instants the package computes with: fires from 1970 through 9999.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

func inRange(what string, t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%s %s: want an instant from 1970 through 9999", what, t.Format(time.RFC3339))
	}
	return nil
}

// loadZone loads an IANA zone; "Local" is refused because it means a
// different zone on every machine.
func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errors.New(`zone "Local": name an IANA time zone such as "Europe/Berlin" or "UTC"`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("zone %q: unknown time zone (want an IANA name such as \"Europe/Berlin\"): %w", name, err)
	}
	return loc, nil
}

// UnmarshalJSON decodes a trigger, refusing unknown fields.
func (t *Trigger) UnmarshalJSON(b []byte) error {
	type plain Trigger // without the method
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	*t = Trigger(p)
	return nil
}

// Duration is a time.Duration written in JSON as a Go duration string such
// as "15m", "1h30m" or "-30m".
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"15m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// String returns the duration string.
func (d Duration) String() string { return time.Duration(d).String() }
