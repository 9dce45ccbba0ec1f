package schedule

import (
	"encoding/json"
	"testing"
	"time"
)

var fuzzZones = []string{"Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "America/New_York", "Pacific/Apia", "UTC"}

// FuzzParse: parsing, validating and computing never panic, and Next is
// strictly increasing and consistent (nothing fires between a time and its
// Next). The input is a cron expression, or a JSON trigger when it starts
// with "{".
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"30 2 * * *", "*/15 * * * *", "0 * * * *", "@daily", "@hourly", "0 9 29 2 *", "0 0 31 * *",
		"*/20 30 6 * * *", "0 0 13 * 5", "0 0 */2 * 1", "0 8 * jan-mar MON-FRI", "* * * * * *",
		"0 0 30 2 *", "61 * * * *", "TZ=UTC 0 0 * * *", "@every 5m", "1-2-3 * * * *", "*/0 * * * *",
		"?,5/7 1-23/22 L * *", "59 59 23 31 12 6",
		`{"every":"15m","anchor":"2026-01-01T00:00:00Z"}`,
		`{"at":"2026-12-24T18:00:00+01:00"}`,
		`{"sun":{"event":"sunset","offset":"-30m"},"zone":"Europe/Oslo"}`,
		`{"cron":"0 0 * * *","zone":"Pacific/Apia"}`,
	} {
		for i := range fuzzZones {
			f.Add(seed, uint8(i), int64(1774742400)) // 2026-03-29T00:00:00Z
		}
	}
	f.Add("* * * * * *", uint8(4), int64(1325239200)) // Apia skipped 2011-12-30
	f.Fuzz(func(t *testing.T, in string, zone uint8, after int64) {
		var trig Trigger
		if len(in) > 0 && in[0] == '{' {
			if err := json.Unmarshal([]byte(in), &trig); err != nil {
				return
			}
		} else {
			trig = Trigger{Cron: in, Zone: fuzzZones[int(zone)%len(fuzzZones)]}
		}
		if err := trig.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		s, err := Compile(trig, &Location{Latitude: 69.6492, Longitude: 18.9553})
		if err != nil {
			t.Fatalf("Validate passed but Compile: %v", err)
		}
		at := time.Unix(after%(400*365*86400), 0) // within ±400 years of 1970
		for range 4 {
			next, ok := s.Next(at)
			if !ok {
				break
			}
			if !next.After(at) {
				t.Fatalf("%q: Next(%s) = %s, not after it", in, at, next)
			}
			if next.Sub(at) > time.Second {
				// Consistency: asking from just before the fire finds it.
				if again, ok := s.Next(next.Add(-time.Second)); !ok || !again.Equal(next) {
					t.Fatalf("%q: Next(%s) = %s, but Next(%s) = %s", in, at, next, next.Add(-time.Second), again)
				}
			}
			at = next
		}
		_ = s.Preview(at, 3)
	})
}
