package schedule

import (
	"fmt"
	"math"
	"time"
)

// Wall clock times are handled as "naive" time.Time values in UTC: the
// fields (year … second) are the reading of the clock in the trigger's zone
// and the offset is meaningless. Calendar arithmetic on them (AddDate, Date
// normalisation) never meets a DST transition, which is the point.

// window bounds the search for the instants that show a wall time: every
// UTC offset in the time zone database since 1970 lies within ±15 hours,
// so an instant whose wall clock reads w lies within this distance of w
// read as UTC.
const window = 26 * 3600

// wallOf returns the wall clock reading of t in loc, as a naive time.
func wallOf(t time.Time, loc *time.Location) time.Time {
	_, off := t.In(loc).Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// period is a stretch of time with one UTC offset: [start, end) in Unix
// seconds; hasStart/hasEnd false means unbounded on that side.
type period struct {
	start, end       int64
	hasStart, hasEnd bool
	offset           int64
}

// periodsAround lists, in order, the zone periods of loc that overlap the
// Unix seconds [from, to].
func periodsAround(loc *time.Location, from, to int64) []period {
	t := time.Unix(from, 0).In(loc)
	var ps []period
	// A zone changes offset at most a few times in two days; the bound
	// only guards against a pathological zone.
	for range 16 {
		_, off := t.Zone()
		s, e := t.ZoneBounds()
		p := period{offset: int64(off)}
		if !s.IsZero() {
			p.start, p.hasStart = s.Unix(), true
		}
		if !e.IsZero() {
			p.end, p.hasEnd = e.Unix(), true
		}
		ps = append(ps, p)
		if !p.hasEnd || p.end > to || !e.After(t) {
			break
		}
		t = e
	}
	return ps
}

// resolve maps a wall time w (whole seconds) to the instant at which it
// runs: the first instant whose wall clock in loc reads w or later.
//
//   - A wall time that exists once maps to that instant.
//   - A wall time shown twice (the repeated hour when clocks go back) maps to
//     its first occurrence.
//   - A wall time that does not exist (the gap when clocks go forward) maps
//     to the first instant after the gap: the transition itself.
//
// resolve is monotone: a later wall time never maps to an earlier instant.
func resolve(loc *time.Location, w time.Time) time.Time {
	n := w.Unix()
	best := int64(math.MaxInt64)
	for _, p := range periodsAround(loc, n-window, n+window) {
		t := n - p.offset // the instant showing w if p is in effect then
		if p.hasStart && t < p.start {
			t = p.start // w is behind this period: its start is the first instant past w
		}
		if p.hasEnd && t >= p.end {
			continue // w is not reached during this period
		}
		best = min(best, t)
	}
	return time.Unix(best, 0).In(loc)
}

// occurrences returns the instants whose wall clock in loc reads w: none
// (in a gap), one, or two (in a repeated hour), earliest first.
func occurrences(loc *time.Location, w time.Time) []time.Time {
	n := w.Unix()
	var out []time.Time
	for _, p := range periodsAround(loc, n-window, n+window) {
		t := n - p.offset
		if (p.hasStart && t < p.start) || (p.hasEnd && t >= p.end) {
			continue
		}
		out = append(out, time.Unix(t, 0).In(loc))
	}
	return out
}

// transition describes the offset change at instant at (the start of a zone
// period) as the clock readings just before and at it.
func transition(at time.Time, loc *time.Location) (from, to time.Time) {
	return wallOf(at.Add(-time.Second), loc).Add(time.Second), wallOf(at, loc)
}

// clock formats a naive wall time as 15:04, or 15:04:05 when seconds matter.
func clock(w time.Time, seconds bool) string {
	if seconds || w.Second() != 0 {
		return w.Format("15:04:05")
	}
	return w.Format("15:04")
}

// shift says how the clocks move at a transition, e.g. "clocks go forward
// from 02:00 to 03:00".
func shift(at time.Time, loc *time.Location, seconds bool) string {
	from, to := transition(at, loc)
	dir := "forward"
	if to.Before(from) {
		dir = "back"
	}
	f, t := clock(from, seconds), clock(to, seconds)
	if from.YearDay() != to.YearDay() {
		// A jump across midnight (Pacific/Apia skipped a whole day).
		f, t = from.Format(time.DateOnly)+" "+f, to.Format(time.DateOnly)+" "+t
	}
	return fmt.Sprintf("clocks go %s from %s to %s", dir, f, t)
}
