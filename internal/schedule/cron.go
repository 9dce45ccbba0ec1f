package schedule

import (
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// descriptors are the @ shorthands, as five-field expressions.
var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// fieldNames name the six fields, seconds first.
var fieldNames = [6]string{"second", "minute", "hour", "day-of-month", "month", "day-of-week"}

// neutral holds, per field, a value that parses in every field's place, so
// that one field can be parsed on its own.
var neutral = [6]string{"0", "0", "0", "*", "*", "*"}

// fieldParser parses six-field expressions; it is used one field at a time.
var fieldParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// starBit is the bit robfig/cron sets in a field written as * or ?.
const starBit = 1 << 63

// cronSpec is a parsed cron expression: one bit set per allowed value.
type cronSpec struct {
	sec, min, hour, dom, month, dow uint64
	// domStar and dowStar: the field starts with * or ? (Vixie cron's rule:
	// such a field does not restrict the day, see dayMatches).
	domStar, dowStar bool
	// seconds: the expression has a seconds field (used for display).
	seconds bool
}

// parseCron parses a five- or six-field expression or an @ descriptor. The
// error names the field and its value.
func parseCron(expr string) (*cronSpec, error) {
	src := strings.TrimSpace(expr)
	if strings.HasPrefix(src, "@") {
		d, ok := descriptors[strings.ToLower(src)]
		if !ok {
			if strings.HasPrefix(strings.ToLower(src), "@every") {
				return nil, fmt.Errorf("%q is not supported here: use an interval trigger (\"every\")", src)
			}
			return nil, fmt.Errorf("unknown descriptor %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)", src)
		}
		src = d
	}
	fields := strings.Fields(src)
	spec := &cronSpec{}
	switch len(fields) {
	case 5:
		fields = append([]string{"0"}, fields...)
	case 6:
		spec.seconds = true
	default:
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got %d", len(fields))
	}
	var set [6]uint64
	for i, f := range fields {
		if strings.ContainsAny(f, "=@") {
			return nil, fmt.Errorf("%s field %q: unexpected character (set the time zone in \"zone\")", fieldNames[i], f)
		}
		probe := neutral
		probe[i] = f
		s, err := fieldParser.Parse(strings.Join(probe[:], " "))
		if err != nil {
			return nil, fmt.Errorf("%s field %q: %w", fieldNames[i], f, err)
		}
		ss, ok := s.(*cron.SpecSchedule)
		if !ok {
			return nil, fmt.Errorf("%s field %q: not a field", fieldNames[i], f)
		}
		set[i] = [6]uint64{ss.Second, ss.Minute, ss.Hour, ss.Dom, ss.Month, ss.Dow}[i] &^ starBit
		if set[i] == 0 || strings.Contains(","+f+",", ",,") {
			// robfig/cron reads an empty list item ("," or "5,") as no
			// value: such a field selects nothing, or not what it says.
			return nil, fmt.Errorf("%s field %q: an empty item in a list", fieldNames[i], f)
		}
	}
	spec.sec, spec.min, spec.hour, spec.dom, spec.month, spec.dow = set[0], set[1], set[2], set[3], set[4], set[5]
	spec.domStar = strings.HasPrefix(fields[3], "*") || strings.HasPrefix(fields[3], "?")
	spec.dowStar = strings.HasPrefix(fields[5], "*") || strings.HasPrefix(fields[5], "?")
	if err := spec.reachable(); err != nil {
		return nil, err
	}
	return spec, nil
}

// dayMatches applies Vixie cron's rule: when day-of-month or day-of-week
// starts with * (or ?), a day must match both; when both are restricted, a
// day matching either runs.
func (c *cronSpec) dayMatches(w time.Time) bool {
	domOK := c.dom&(1<<uint(w.Day())) != 0
	dowOK := c.dow&(1<<uint(w.Weekday())) != 0
	if c.domStar || c.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

var monthDays = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// reachable reports expressions that can never fire. Only the days can be
// impossible: with both day fields restricted every month has a matching
// weekday; otherwise some chosen month must have some chosen day (a given
// date falls on every weekday within 40 years, February 29 included).
func (c *cronSpec) reachable() error {
	if c.dow == 0 || c.dom == 0 || c.month == 0 {
		return fmt.Errorf("never fires: a field allows no value")
	}
	if !c.domStar && !c.dowStar {
		return nil
	}
	var months []string
	var days []int
	for m := 1; m <= 12; m++ {
		if c.month&(1<<uint(m)) == 0 {
			continue
		}
		months = append(months, time.Month(m).String())
		for d := 1; d <= monthDays[m]; d++ {
			if c.dom&(1<<uint(d)) != 0 {
				return nil
			}
		}
	}
	for d := 1; d <= 31; d++ {
		if c.dom&(1<<uint(d)) != 0 {
			days = append(days, d)
		}
	}
	ds := make([]string, len(days))
	for i, d := range days {
		ds[i] = fmt.Sprint(d)
	}
	what := "day " + strings.Join(ds, " or ")
	if len(days) == 1 {
		what = "a " + ordinal(days[0])
	}
	if len(months) == 1 {
		return fmt.Errorf("never fires: %s has no %s", months[0], strings.TrimPrefix(what, "a "))
	}
	return fmt.Errorf("never fires: none of %s has %s", strings.Join(months, ", "), what)
}

func ordinal(d int) string {
	suffix := "th"
	switch {
	case d%100 >= 11 && d%100 <= 13:
	case d%10 == 1:
		suffix = "st"
	case d%10 == 2:
		suffix = "nd"
	case d%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", d, suffix)
}

// matches reports whether the wall time w (naive) is named by c.
func (c *cronSpec) matches(w time.Time) bool {
	return c.month&(1<<uint(w.Month())) != 0 && c.dayMatches(w) && c.hour&(1<<uint(w.Hour())) != 0 &&
		c.min&(1<<uint(w.Minute())) != 0 && c.sec&(1<<uint(w.Second())) != 0
}

// nextBit returns the lowest set bit of set at or above from, or -1.
func nextBit(set uint64, from int) int {
	if from > 63 {
		return -1
	}
	rest := set >> uint(from) << uint(from)
	if rest == 0 {
		return -1
	}
	return bits.TrailingZeros64(rest)
}

// nextWall returns the first wall time at or after w (naive, truncated to
// the second) that the expression names, or false if there is none before
// limit.
func (c *cronSpec) nextWall(w, limit time.Time) (time.Time, bool) {
	w = w.Truncate(time.Second)
	for w.Before(limit) {
		y, mo, d := w.Date()
		h, mi, s := w.Clock()
		if c.month&(1<<uint(mo)) == 0 {
			if m := nextBit(c.month, int(mo)+1); m > 0 {
				w = time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
			} else {
				w = time.Date(y+1, time.Month(nextBit(c.month, 1)), 1, 0, 0, 0, 0, time.UTC)
			}
			continue
		}
		if !c.dayMatches(w) {
			w = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if c.hour&(1<<uint(h)) == 0 {
			if n := nextBit(c.hour, h+1); n >= 0 {
				w = time.Date(y, mo, d, n, 0, 0, 0, time.UTC)
			} else {
				w = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			}
			continue
		}
		if c.min&(1<<uint(mi)) == 0 {
			if n := nextBit(c.min, mi+1); n >= 0 {
				w = time.Date(y, mo, d, h, n, 0, 0, time.UTC)
			} else {
				w = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			}
			continue
		}
		if c.sec&(1<<uint(s)) == 0 {
			if n := nextBit(c.sec, s+1); n >= 0 {
				w = time.Date(y, mo, d, h, mi, n, 0, time.UTC)
			} else {
				w = time.Date(y, mo, d, h, mi+1, 0, 0, time.UTC)
			}
			continue
		}
		return w, true
	}
	return time.Time{}, false
}

// horizon bounds the search for the next fire of a cron expression that
// passed reachable: 40 years is the longest gap (February 29 on a given
// weekday across 2100); 100 leaves room.
const horizon = 100

// nextCron returns the first fire strictly after after and the first wall
// time (naive) that maps to it.
func (c *cronSpec) nextCron(loc *time.Location, after time.Time) (time.Time, time.Time, bool) {
	start := wallOf(after, loc).Truncate(time.Second)
	// In the repeat after clocks went back, the wall times between now and
	// the end of the repeat already ran at their first occurrence: start
	// the scan where the clock stood before it went back.
	if s, _ := after.In(loc).ZoneBounds(); !s.IsZero() {
		if before := wallOf(s.Add(-time.Second), loc); before.After(start) {
			start = before
		}
	}
	limit := start.AddDate(horizon, 0, 0)
	w := start
	for {
		var ok bool
		if w, ok = c.nextWall(w, limit); !ok {
			return time.Time{}, time.Time{}, false
		}
		if t := resolve(loc, w); t.After(after) {
			return t, w, true
		}
		w = w.Add(time.Second)
	}
}
