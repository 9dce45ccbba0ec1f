package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule is a validated Trigger, ready to compute fire times. It is
// immutable and safe for concurrent use.
type Schedule struct {
	trigger Trigger
	kind    string
	loc     *time.Location
	cron    *cronSpec // cron triggers
	where   Location  // sun triggers
}

// Compile validates t and returns its schedule. where is needed by sun
// triggers only (nil is fine for the others).
func Compile(t Trigger, where *Location) (*Schedule, error) {
	s, err := compile(t)
	if err != nil {
		return nil, err
	}
	if s.kind == KindSun {
		if where == nil {
			return nil, errors.New("sun trigger needs the location (latitude, longitude)")
		}
		if err := where.Validate(); err != nil {
			return nil, fmt.Errorf("location: %w", err)
		}
		s.where = *where
	}
	return s, nil
}

// Trigger returns the trigger s was compiled from.
func (s *Schedule) Trigger() Trigger { return s.trigger }

// Kind returns the kind of trigger (KindCron, KindInterval, KindOnce, KindSun).
func (s *Schedule) Kind() string { return s.kind }

// Zone returns the time zone of the trigger (UTC when an interval or a
// one-off names none).
func (s *Schedule) Zone() *time.Location { return s.loc }

// Next returns the first fire strictly after after, in the trigger's zone;
// false when there is none (a one-off already past, a sun event that does
// not happen within a year, or past the year 9999). Instants before 1970
// count as just before 1970.
func (s *Schedule) Next(after time.Time) (time.Time, bool) {
	h, ok := s.next(after)
	return h.at, ok
}

// hit is a fire with what Preview needs to explain it.
type hit struct {
	at   time.Time
	slot time.Time // cron: the first wall time (naive) that runs at at
	dark int       // sun: days just before without the event
}

func (s *Schedule) next(after time.Time) (hit, bool) {
	if after.After(maxTime) {
		return hit{}, false
	}
	if after.Before(minTime) {
		after = minTime.Add(-time.Nanosecond)
	}
	var h hit
	ok := false
	switch s.kind {
	case KindCron:
		h.at, h.slot, ok = s.cron.nextCron(s.loc, after)
	case KindInterval:
		h.at, ok = s.nextInterval(after), true
	case KindOnce:
		h.at, ok = s.trigger.At, s.trigger.At.After(after)
	case KindSun:
		h.at, h.dark, ok = s.nextSun(after)
	}
	if !ok || h.at.After(maxTime) {
		return hit{}, false
	}
	h.at = h.at.In(s.loc)
	return h, true
}

// nextInterval returns anchor + k·every for the least k ≥ 0 after after.
func (s *Schedule) nextInterval(after time.Time) time.Time {
	anchor := s.trigger.Anchor
	if anchor.IsZero() {
		anchor = minTime
	}
	if after.Before(anchor) {
		return anchor
	}
	every := int64(time.Duration(s.trigger.Every) / time.Second)
	// Whole seconds of after − anchor, rounded down (both are within
	// 1970–9999, so nothing overflows).
	ds := after.Unix() - anchor.Unix()
	if after.Nanosecond() < anchor.Nanosecond() {
		ds--
	}
	k := ds/every + 1
	return time.Unix(anchor.Unix()+k*every, int64(anchor.Nanosecond()))
}

// sunSearchDays bounds the search for the next sun event: a year and a
// margin. Polar night or day lasts at most half a year away from the poles.
const sunSearchDays = 400

// nextSun returns the first event plus offset after after, searching the
// calendar days of the zone.
func (s *Schedule) nextSun(after time.Time) (time.Time, int, bool) {
	off := time.Duration(s.trigger.Sun.Offset)
	rise := s.trigger.Sun.Event == Sunrise
	// Start a day early: the event of the day before after can still be
	// ahead once the offset is added.
	day := wallOf(after.Add(-off), s.loc)
	y, m, d := day.Date()
	dark := 0
	for i := range sunSearchDays {
		noon := resolve(s.loc, time.Date(y, m, d+i-1, 12, 0, 0, 0, time.UTC))
		ev, ok := sunEvent(noon, s.where.Latitude, s.where.Longitude, rise)
		if !ok {
			dark++
			continue
		}
		if f := ev.Add(off); f.After(after) {
			return f, dark, true
		}
		dark = 0
	}
	return time.Time{}, 0, false
}

// MaxPreview bounds the number of fires Preview returns.
const MaxPreview = 1000

// Fire is one fire time, as Preview shows it.
type Fire struct {
	// At is the instant, in UTC.
	At time.Time `json:"at"`
	// Wall is the same instant in the trigger's zone (its JSON carries the
	// zone's offset).
	Wall time.Time `json:"wall"`
	// Note explains a fire that the DST rule moved or kept single, or a
	// sun event after days without one; empty otherwise.
	Note string `json:"note,omitempty"`
}

// Preview returns the next n fires after after (at most MaxPreview), with
// notes on the ones DST moves.
func (s *Schedule) Preview(after time.Time, n int) []Fire {
	n = min(n, MaxPreview)
	var out []Fire
	for len(out) < n {
		h, ok := s.next(after)
		if !ok {
			break
		}
		out = append(out, Fire{At: h.at.UTC(), Wall: h.at, Note: s.note(h)})
		after = h.at
	}
	return out
}

// Missed returns the fires in (from, to], at most limit of them, and
// whether there are more: what a runner that was down from from to to
// missed (run_once takes the last or any; run_all takes them in order).
func (s *Schedule) Missed(from, to time.Time, limit int) (fires []time.Time, more bool) {
	for t := from; ; {
		n, ok := s.Next(t)
		if !ok || n.After(to) {
			return fires, false
		}
		if len(fires) >= limit {
			return fires, true
		}
		fires = append(fires, n)
		t = n
	}
}

// CheckFires returns an error when s never fires after now: a one-off in
// the past, or a sun event that does not happen within a year. The API
// uses it to refuse such a trigger when it is stored.
func (s *Schedule) CheckFires(now time.Time) error {
	if _, ok := s.Next(now); ok {
		return nil
	}
	switch s.kind {
	case KindOnce:
		return fmt.Errorf("never fires: at %s is in the past (now %s)",
			s.trigger.At.Format(time.RFC3339), now.Format(time.RFC3339))
	case KindSun:
		return fmt.Errorf("never fires: no %s within %d days after %s at latitude %v, longitude %v",
			s.trigger.Sun.Event, sunSearchDays, now.Format(time.RFC3339), s.where.Latitude, s.where.Longitude)
	}
	return fmt.Errorf("never fires after %s", now.Format(time.RFC3339))
}

// note explains h, or returns "".
func (s *Schedule) note(h hit) string {
	switch s.kind {
	case KindCron:
		return s.cronNote(h)
	case KindSun:
		if h.dark > 0 {
			return fmt.Sprintf("first %s after %d days without one", s.trigger.Sun.Event, h.dark)
		}
	}
	return ""
}

// maxListed bounds how many skipped wall times a note counts.
const maxListed = 10000

func (s *Schedule) cronNote(h hit) string {
	c, loc := s.cron, s.loc
	actual := wallOf(h.at, loc)
	if !h.slot.Equal(actual) {
		// The slot is in a gap: h.at is the end of the gap, and every
		// named wall time from the slot up to it runs here once.
		var skipped []time.Time
		own := false
		for w, ok := h.slot, true; ok && len(skipped) < maxListed; w, ok = c.nextWall(w.Add(time.Second), actual.Add(time.Second)) {
			if w.Equal(actual) {
				own = true
				break
			}
			skipped = append(skipped, w)
		}
		day := h.slot // the day the skipped times belong to
		gap := fmt.Sprintf("on %s (%s)", day.Format(time.DateOnly), shift(h.at, loc, c.seconds))
		list, verb := s.listClocks(skipped, day)
		if own {
			ownName, _ := s.listClocks([]time.Time{actual}, day)
			return fmt.Sprintf("runs once for %s and for %s, which %s not exist %s", ownName, list, verb, gap)
		}
		if len(skipped) == 1 {
			return fmt.Sprintf("moved from %s: it does not exist %s", list, gap)
		}
		return fmt.Sprintf("runs once for %s, which do not exist %s", list, gap)
	}
	if occ := occurrences(loc, actual); len(occ) > 1 && occ[0].Equal(h.at) {
		_, end := h.at.ZoneBounds()
		return fmt.Sprintf("first of two %ss on %s (%s): runs only at the first",
			clock(actual, c.seconds), actual.Format(time.DateOnly), shift(end, loc, c.seconds))
	}
	return ""
}

// listClocks lists wall times for a note, shortened when long, and the verb
// that agrees with it.
func (s *Schedule) listClocks(ws []time.Time, day time.Time) (string, string) {
	name := func(w time.Time) string {
		if w.YearDay() != day.YearDay() {
			return w.Format(time.DateOnly) + " " + clock(w, s.cron.seconds)
		}
		return clock(w, s.cron.seconds)
	}
	names := make([]string, 0, 4)
	for _, w := range ws {
		names = append(names, name(w))
		if len(names) == 4 {
			break
		}
	}
	switch {
	case len(ws) == 1:
		return names[0], "does"
	case len(ws) <= 4:
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1], "do"
	case len(ws) >= maxListed:
		return fmt.Sprintf("%s, %s … (%d or more times)", names[0], names[1], maxListed), "do"
	default:
		return fmt.Sprintf("%s, %s … %s (%d times)", names[0], names[1], name(ws[len(ws)-1]), len(ws)), "do"
	}
}
