package schedule

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mustTime parses an RFC 3339 instant.
func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fires returns the n successive fires after after, as RFC 3339 in UTC.
func fires(t *testing.T, s *Schedule, after time.Time, n int) []string {
	t.Helper()
	var out []string
	for range n {
		next, ok := s.Next(after)
		if !ok {
			out = append(out, "never")
			break
		}
		if !next.After(after) {
			t.Fatalf("Next(%s) = %s: not after it", after, next)
		}
		out = append(out, next.UTC().Format(time.RFC3339))
		after = next
	}
	return out
}

func TestNext(t *testing.T) {
	tests := []struct {
		name  string
		trig  Trigger
		after string
		want  []string
	}{
		// Europe/Berlin: 2026-03-29 02:00 CET → 03:00 CEST (01:00Z);
		// 2026-10-25 03:00 CEST → 02:00 CET (01:00Z).
		{"Berlin 02:30 in the gap runs at 03:00 CEST",
			Trigger{Cron: "30 2 * * *", Zone: "Europe/Berlin"}, "2026-03-27T12:00:00Z",
			[]string{"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
		{"Berlin 02:30 in the repeat runs at the first (CEST) only",
			Trigger{Cron: "30 2 * * *", Zone: "Europe/Berlin"}, "2026-10-23T12:00:00Z",
			[]string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"Berlin every 15 minutes: the gap's slots collapse into 03:00 CEST",
			Trigger{Cron: "*/15 * * * *", Zone: "Europe/Berlin"}, "2026-03-29T00:40:00Z",
			[]string{"2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"}},
		{"Berlin every 15 minutes: the repeat runs once, at the first pass",
			Trigger{Cron: "*/15 * * * *", Zone: "Europe/Berlin"}, "2026-10-24T23:40:00Z",
			[]string{"2026-10-24T23:45:00Z", "2026-10-25T00:00:00Z", "2026-10-25T00:15:00Z",
				"2026-10-25T00:30:00Z", "2026-10-25T00:45:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:15:00Z"}},
		{"Berlin hourly: 02:00 CEST runs, 02:00 CET does not",
			Trigger{Cron: "0 * * * *", Zone: "Europe/Berlin"}, "2026-10-24T22:30:00Z",
			[]string{"2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"}},
		{"Berlin hourly: 23 fires on the short day, 02:00 becomes 03:00",
			Trigger{Cron: "0 * * * *", Zone: "Europe/Berlin"}, "2026-03-28T23:30:00Z",
			[]string{"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"}},
		{"Berlin next from inside the repeat (second pass) skips to after it",
			Trigger{Cron: "*/15 * * * *", Zone: "Europe/Berlin"}, "2026-10-25T01:20:00Z",
			[]string{"2026-10-25T02:00:00Z", "2026-10-25T02:15:00Z"}},
		{"Berlin @daily across both changes",
			Trigger{Cron: "@daily", Zone: "Europe/Berlin"}, "2026-03-28T12:00:00Z",
			[]string{"2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"}},
		{"Berlin @daily in autumn",
			Trigger{Cron: "@daily", Zone: "Europe/Berlin"}, "2026-10-24T12:00:00Z",
			[]string{"2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"}},
		// America/New_York: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z);
		// 2026-11-01 02:00 EDT → 01:00 EST (06:00Z).
		{"New York 02:30 in the gap",
			Trigger{Cron: "30 2 * * *", Zone: "America/New_York"}, "2026-03-06T12:00:00Z",
			[]string{"2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"}},
		{"New York 01:30 in the repeat",
			Trigger{Cron: "30 1 * * *", Zone: "America/New_York"}, "2026-10-30T12:00:00Z",
			[]string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		// Australia/Lord_Howe shifts by 30 minutes: 2026-10-04 02:00 → 02:30
		// (+10:30 → +11); 2026-04-05 02:00 → 01:30.
		{"Lord Howe 02:15 in the half-hour gap runs at 02:30",
			Trigger{Cron: "15 2 * * *", Zone: "Australia/Lord_Howe"}, "2026-10-02T00:00:00Z",
			[]string{"2026-10-02T15:45:00Z", "2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"}},
		{"Lord Howe 01:45 in the half-hour repeat",
			Trigger{Cron: "45 1 * * *", Zone: "Australia/Lord_Howe"}, "2026-04-03T00:00:00Z",
			[]string{"2026-04-03T14:45:00Z", "2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"}},
		{"Lord Howe every 15 minutes through the repeat",
			Trigger{Cron: "*/15 * * * *", Zone: "Australia/Lord_Howe"}, "2026-04-04T14:40:00Z",
			// 01:45 runs at +11; the clock then reads 01:30 to 01:59 again
			// at +10:30 (15:00Z to 15:29Z) and nothing runs until 02:00.
			[]string{"2026-04-04T14:45:00Z", "2026-04-04T15:30:00Z", "2026-04-04T15:45:00Z"}},
		// Australia/Sydney (southern hemisphere): 2026-10-04 02:00 AEST →
		// 03:00 AEDT; 2026-04-05 03:00 AEDT → 02:00 AEST.
		{"Sydney 02:30 in the October gap",
			Trigger{Cron: "30 2 * * *", Zone: "Australia/Sydney"}, "2026-10-02T00:00:00Z",
			[]string{"2026-10-02T16:30:00Z", "2026-10-03T16:00:00Z", "2026-10-04T15:30:00Z"}},
		{"Sydney 02:30 in the April repeat",
			Trigger{Cron: "30 2 * * *", Zone: "Australia/Sydney"}, "2026-04-03T00:00:00Z",
			[]string{"2026-04-03T15:30:00Z", "2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"}},
		// America/Santiago changes at midnight: 2026-09-06 00:00 → 01:00.
		{"Santiago @daily: midnight does not exist, runs at 01:00",
			Trigger{Cron: "@daily", Zone: "America/Santiago"}, "2026-09-04T00:00:00Z",
			[]string{"2026-09-04T04:00:00Z", "2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"}},
		// Pacific/Apia skipped 2011-12-30 altogether (-10 → +14).
		{"Apia: a whole skipped day runs once, at the next midnight",
			Trigger{Cron: "@daily", Zone: "Pacific/Apia"}, "2011-12-28T12:00:00Z",
			[]string{"2011-12-29T10:00:00Z", "2011-12-30T10:00:00Z", "2011-12-31T10:00:00Z"}},
		{"Apia: noon of the skipped day runs at the jump",
			Trigger{Cron: "0 12 * * *", Zone: "Pacific/Apia"}, "2011-12-29T12:00:00Z",
			[]string{"2011-12-29T22:00:00Z", "2011-12-30T10:00:00Z", "2011-12-30T22:00:00Z"}},
		{"UTC has no transitions",
			Trigger{Cron: "30 2 * * *", Zone: "UTC"}, "2026-03-29T00:00:00Z",
			[]string{"2026-03-29T02:30:00Z", "2026-03-30T02:30:00Z"}},
		{"leap day fires only in leap years",
			Trigger{Cron: "0 9 29 2 *", Zone: "UTC"}, "2027-01-01T00:00:00Z",
			[]string{"2028-02-29T09:00:00Z", "2032-02-29T09:00:00Z"}},
		{"leap day across 2100, which is not a leap year",
			Trigger{Cron: "0 9 29 2 *", Zone: "UTC"}, "2096-03-01T00:00:00Z",
			[]string{"2104-02-29T09:00:00Z"}},
		{"the 31st skips 30-day months",
			Trigger{Cron: "0 0 31 * *", Zone: "UTC"}, "2026-01-01T00:00:00Z",
			[]string{"2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z",
				"2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z", "2026-12-31T00:00:00Z"}},
		{"seconds field",
			Trigger{Cron: "*/20 30 6 * * *", Zone: "UTC"}, "2026-05-01T00:00:00Z",
			[]string{"2026-05-01T06:30:00Z", "2026-05-01T06:30:20Z", "2026-05-01T06:30:40Z", "2026-05-02T06:30:00Z"}},
		{"strictly after: a fire time itself is not returned",
			Trigger{Cron: "30 6 * * *", Zone: "UTC"}, "2026-05-01T06:30:00Z",
			[]string{"2026-05-02T06:30:00Z"}},
		{"both day fields restricted: either matches (the 13th or a Friday)",
			Trigger{Cron: "0 0 13 * 5", Zone: "UTC"}, "2026-04-01T00:00:00Z",
			[]string{"2026-04-03T00:00:00Z", "2026-04-10T00:00:00Z", "2026-04-13T00:00:00Z", "2026-04-17T00:00:00Z"}},
		{"day-of-month starting with *: both must match (odd days that are Mondays)",
			Trigger{Cron: "0 0 */2 * 1", Zone: "UTC"}, "2026-04-01T00:00:00Z",
			[]string{"2026-04-13T00:00:00Z", "2026-04-27T00:00:00Z", "2026-05-11T00:00:00Z", "2026-05-25T00:00:00Z"}},
		{"names for months and weekdays",
			Trigger{Cron: "0 8 * jan-mar MON-FRI", Zone: "UTC"}, "2026-03-27T09:00:00Z",
			[]string{"2026-03-30T08:00:00Z", "2026-03-31T08:00:00Z", "2027-01-01T08:00:00Z"}},
		{"@weekly is Sunday midnight",
			Trigger{Cron: "@weekly", Zone: "UTC"}, "2026-05-01T00:00:00Z",
			[]string{"2026-05-03T00:00:00Z", "2026-05-10T00:00:00Z"}},
		{"@yearly",
			Trigger{Cron: "@annually", Zone: "Europe/Berlin"}, "2026-05-01T00:00:00Z",
			[]string{"2026-12-31T23:00:00Z", "2027-12-31T23:00:00Z"}},
		{"before 1970 counts as just before 1970",
			Trigger{Cron: "@yearly", Zone: "UTC"}, "1900-05-01T00:00:00Z",
			[]string{"1970-01-01T00:00:00Z", "1971-01-01T00:00:00Z"}},
		{"nothing after 9999",
			Trigger{Cron: "@yearly", Zone: "UTC"}, "9999-06-01T00:00:00Z",
			[]string{"never"}},
		{"interval without anchor is aligned to the epoch",
			Trigger{Every: Duration(15 * time.Minute)}, "2026-05-01T12:07:30Z",
			[]string{"2026-05-01T12:15:00Z", "2026-05-01T12:30:00Z"}},
		{"interval: absolute time through the Berlin gap",
			Trigger{Every: Duration(time.Hour), Anchor: time.Date(2026, 3, 28, 23, 10, 0, 0, time.UTC), Zone: "Europe/Berlin"},
			"2026-03-28T23:10:00Z",
			[]string{"2026-03-29T00:10:00Z", "2026-03-29T01:10:00Z", "2026-03-29T02:10:00Z"}},
		{"interval: before the anchor, the anchor is next",
			Trigger{Every: Duration(time.Hour), Anchor: time.Date(2026, 3, 28, 23, 10, 0, 500, time.UTC)},
			"2026-01-01T00:00:00Z",
			[]string{"2026-03-28T23:10:00Z", "2026-03-29T00:10:00Z"}},
		{"interval: 31 days",
			Trigger{Every: Duration(MaxInterval), Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			"2026-01-01T00:00:00Z",
			[]string{"2026-02-01T00:00:00Z", "2026-03-04T00:00:00Z"}},
		{"once: fires, then never",
			Trigger{At: time.Date(2026, 12, 24, 17, 0, 0, 0, time.UTC)}, "2026-12-01T00:00:00Z",
			[]string{"2026-12-24T17:00:00Z", "never"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(tt.trig, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := fires(t, s, mustTime(t, tt.after), len(tt.want))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fires (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNextAgainstOracle checks the cron computation against a brute-force
// reading of the rule, minute by minute: walking real time, a named wall
// time runs at the first minute at which the zone's clock has reached it
// (so a skipped time runs when the clock jumps past it, and a repeated time
// only on the first pass). It walks three days around each of the zone's
// transitions in 2026, and the first week of the year.
func TestNextAgainstOracle(t *testing.T) {
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Australia/Sydney", "America/Santiago", "UTC"}
	exprs := []string{"*/15 * * * *", "30 2 * * *", "0 * * * *", "@daily", "45 1 * * 0", "0,30 0-3 * * *", "59 23 * * *", "30 0 1 * *"}
	year := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		windows := [][2]time.Time{{year, year.AddDate(0, 0, 7)}}
		for at := year; ; {
			_, end := at.In(loc).ZoneBounds()
			if end.IsZero() || end.Year() > 2026 {
				break
			}
			windows = append(windows, [2]time.Time{end.Add(-36 * time.Hour).Truncate(time.Minute), end.Add(36 * time.Hour)})
			at = end
		}
		if zone != "UTC" && len(windows) != 3 {
			t.Fatalf("%s: want 2 transitions in 2026, got %d", zone, len(windows)-1)
		}
		for _, expr := range exprs {
			t.Run(zone+" "+expr, func(t *testing.T) {
				s, err := Compile(Trigger{Cron: expr, Zone: zone}, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, win := range windows {
					from, to := win[0], win[1]
					var want []string
					high := wallOf(from, loc) // the furthest the clock has been
					for at := from.Add(time.Minute); !at.After(to); at = at.Add(time.Minute) {
						w := wallOf(at, loc)
						fire := false
						for m := high.Add(time.Minute); !m.After(w); m = m.Add(time.Minute) {
							fire = fire || s.cron.matches(m)
						}
						if w.After(high) {
							high = w
						}
						if fire {
							want = append(want, at.UTC().Format(time.RFC3339))
						}
					}
					var got []string
					for at, ok := s.Next(from); ok && !at.After(to); at, ok = s.Next(at) {
						got = append(got, at.UTC().Format(time.RFC3339))
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("fires from %s to %s (-oracle +Next):\n%s", from, to, diff)
					}
				}
			})
		}
	}
}

func BenchmarkNext(b *testing.B) {
	for _, expr := range []string{"30 6 * * *", "*/15 * * * *", "0 9 29 2 *", "* * * * * *"} {
		s, err := Compile(Trigger{Cron: expr, Zone: "Europe/Berlin"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		// From inside the October repeat: the hardest case.
		after := time.Date(2026, 10, 25, 1, 20, 0, 0, time.UTC)
		b.Run(expr, func(b *testing.B) {
			for b.Loop() {
				if _, ok := s.Next(after); !ok {
					b.Fatal("never")
				}
			}
		})
	}
}
