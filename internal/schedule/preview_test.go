package schedule

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var berlin = &Location{Latitude: 52.52, Longitude: 13.405}

func TestPreview(t *testing.T) {
	tests := []struct {
		name  string
		trig  Trigger
		after string
		n     int
		want  []string // wall time in the zone, then the note if any
	}{
		{"gap: moved", Trigger{Cron: "30 2 * * *", Zone: "Europe/Berlin"}, "2026-03-28T00:00:00Z", 3, []string{
			"2026-03-28 02:30:00 CET",
			"2026-03-29 03:00:00 CEST moved from 02:30: it does not exist on 2026-03-29 (clocks go forward from 02:00 to 03:00)",
			"2026-03-30 02:30:00 CEST",
		}},
		{"gap: collapsed", Trigger{Cron: "*/15 * * * *", Zone: "Europe/Berlin"}, "2026-03-29T00:40:00Z", 3, []string{
			"2026-03-29 01:45:00 CET",
			"2026-03-29 03:00:00 CEST runs once for 03:00 and for 02:00, 02:15, 02:30 and 02:45, which do not exist on 2026-03-29 (clocks go forward from 02:00 to 03:00)",
			"2026-03-29 03:15:00 CEST",
		}},
		{"gap: collapsed without the jump's own time", Trigger{Cron: "10,20 2 * * *", Zone: "Europe/Berlin"}, "2026-03-28T12:00:00Z", 2, []string{
			"2026-03-29 03:00:00 CEST runs once for 02:10 and 02:20, which do not exist on 2026-03-29 (clocks go forward from 02:00 to 03:00)",
			"2026-03-30 02:10:00 CEST",
		}},
		{"gap: every second", Trigger{Cron: "* * * * * *", Zone: "Europe/Berlin"}, "2026-03-29T00:59:58Z", 2, []string{
			"2026-03-29 01:59:59 CET",
			"2026-03-29 03:00:00 CEST runs once for 03:00:00 and for 02:00:00, 02:00:01 … 02:59:59 (3600 times), which do not exist on 2026-03-29 (clocks go forward from 02:00:00 to 03:00:00)",
		}},
		{"repeat: hourly", Trigger{Cron: "0 * * * *", Zone: "Europe/Berlin"}, "2026-10-24T23:30:00Z", 2, []string{
			"2026-10-25 02:00:00 CEST first of two 02:00s on 2026-10-25 (clocks go back from 03:00 to 02:00): runs only at the first",
			"2026-10-25 03:00:00 CET",
		}},
		{"Lord Howe: half-hour gap", Trigger{Cron: "15 2 * * *", Zone: "Australia/Lord_Howe"}, "2026-10-03T00:00:00Z", 1, []string{
			"2026-10-04 02:30:00 +11 moved from 02:15: it does not exist on 2026-10-04 (clocks go forward from 02:00 to 02:30)",
		}},
		{"Lord Howe: half-hour repeat", Trigger{Cron: "45 1 * * *", Zone: "Australia/Lord_Howe"}, "2026-04-04T00:00:00Z", 1, []string{
			"2026-04-05 01:45:00 +11 first of two 01:45s on 2026-04-05 (clocks go back from 02:00 to 01:30): runs only at the first",
		}},
		{"Santiago: midnight", Trigger{Cron: "@daily", Zone: "America/Santiago"}, "2026-09-05T12:00:00Z", 1, []string{
			"2026-09-06 01:00:00 -03 moved from 00:00: it does not exist on 2026-09-06 (clocks go forward from 00:00 to 01:00)",
		}},
		{"Apia: a skipped day", Trigger{Cron: "0 0,12 * * *", Zone: "Pacific/Apia"}, "2011-12-29T12:00:00Z", 2, []string{
			"2011-12-29 12:00:00 -10",
			"2011-12-31 00:00:00 +14 runs once for 2011-12-31 00:00 and for 00:00 and 12:00, which do not exist on 2011-12-30 (clocks go forward from 2011-12-30 00:00 to 2011-12-31 00:00)",
		}},
		{"interval shown in its zone", Trigger{Every: Duration(time.Hour), Zone: "Europe/Berlin"}, "2026-03-29T00:30:00Z", 2, []string{
			"2026-03-29 03:00:00 CEST",
			"2026-03-29 04:00:00 CEST",
		}},
		{"once", Trigger{At: time.Date(2026, 12, 24, 17, 0, 0, 0, time.UTC)}, "2026-01-01T00:00:00Z", 3, []string{
			"2026-12-24 17:00:00 UTC",
		}},
		{"polar night", Trigger{Sun: &Sun{Event: Sunrise}, Zone: "Europe/Oslo"}, "2026-11-27T00:00:00Z", 2, []string{
			"2026-11-27 11:20:48 CET",
			"2027-01-15 11:34:54 CET first sunrise after 48 days without one",
		}},
	}
	tromso := &Location{Latitude: 69.6492, Longitude: 18.9553}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			where := berlin
			if tt.trig.Zone == "Europe/Oslo" {
				where = tromso
			}
			s, err := Compile(tt.trig, where)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range s.Preview(mustTime(t, tt.after), tt.n) {
				if !f.At.Equal(f.Wall) || f.At.Location() != time.UTC {
					t.Errorf("At %v and Wall %v: want the same instant, At in UTC", f.At, f.Wall)
				}
				line := f.Wall.Format("2006-01-02 15:04:05 MST")
				if f.Note != "" {
					line += " " + f.Note
				}
				got = append(got, line)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Preview (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPreviewBounded(t *testing.T) {
	s, err := Compile(Trigger{Cron: "* * * * * *", Zone: "UTC"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := len(s.Preview(after, MaxPreview+5)); got != MaxPreview {
		t.Errorf("Preview(%d) returned %d fires, want %d", MaxPreview+5, got, MaxPreview)
	}
	if got := s.Preview(after, -1); len(got) != 0 {
		t.Errorf("Preview(-1) = %v, want none", got)
	}
}

func TestMissed(t *testing.T) {
	hourly, err := Compile(Trigger{Cron: "0 * * * *", Zone: "UTC"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	once, err := Compile(Trigger{At: time.Date(2026, 5, 1, 3, 0, 0, 0, time.UTC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		s        *Schedule
		from, to string
		limit    int
		want     []string
		more     bool
	}{
		{"(from, to]: from excluded, to included", hourly, "2026-05-01T01:00:00Z", "2026-05-01T04:00:00Z", 10,
			[]string{"02:00", "03:00", "04:00"}, false},
		{"limit reached with more left", hourly, "2026-05-01T00:30:00Z", "2026-05-01T06:00:00Z", 2,
			[]string{"01:00", "02:00"}, true},
		{"limit exactly reached", hourly, "2026-05-01T00:30:00Z", "2026-05-01T02:00:00Z", 2,
			[]string{"01:00", "02:00"}, false},
		{"limit 0 only says whether any", hourly, "2026-05-01T00:30:00Z", "2026-05-01T02:00:00Z", 0,
			nil, true},
		{"nothing in the window", hourly, "2026-05-01T00:30:00Z", "2026-05-01T00:59:59Z", 5, nil, false},
		{"to before from", hourly, "2026-05-01T05:00:00Z", "2026-05-01T01:00:00Z", 5, nil, false},
		{"a one-off in the window", once, "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z", 5, []string{"03:00"}, false},
		{"a one-off before the window", once, "2026-05-01T03:00:00Z", "2026-05-02T00:00:00Z", 5, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fires, more := tt.s.Missed(mustTime(t, tt.from), mustTime(t, tt.to), tt.limit)
			var got []string
			for _, f := range fires {
				got = append(got, f.UTC().Format("15:04"))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" || more != tt.more {
				t.Errorf("Missed = %v, more %v; want %v, more %v", got, more, tt.want, tt.more)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	const max = 10 * time.Minute
	// Pinned values, computed independently (FNV-1a 64 by hand): the
	// formula is part of the contract, jobs keep their delay across versions.
	for id, want := range map[string]time.Duration{
		"":               time.Duration(uint64(0xcbf29ce484222325) % uint64(max)), // the offset basis
		"job-1":          539651343606,
		"kitchen-lights": 103308321147,
	} {
		if got := Jitter(id, max); got != want {
			t.Errorf("Jitter(%q) = %d, want %d", id, got, want)
		}
	}
	seen := map[time.Duration]bool{}
	for i := range 1000 {
		d := Jitter(fmt.Sprintf("job-%d", i), max)
		if d < 0 || d >= max {
			t.Fatalf("Jitter = %v, want in [0, %v)", d, max)
		}
		seen[d/time.Minute] = true
	}
	if len(seen) != 10 {
		t.Errorf("1000 jobs fall in %d of the 10 minutes, want all", len(seen))
	}
	for _, m := range []time.Duration{0, -time.Second} {
		if got := Jitter("job-1", m); got != 0 {
			t.Errorf("Jitter(max %v) = %v, want 0", m, got)
		}
	}
}
