package schedule

import (
	"testing"
	"time"
)

// TestSunKnownTimes compares with published sunrise and sunset times (to
// the minute, as almanacs print them; cross-checked with PyEphem, sun's
// centre 0.833° below the horizon): the computation must be within 2
// minutes.
func TestSunKnownTimes(t *testing.T) {
	sydney := &Location{Latitude: -33.8688, Longitude: 151.2093}
	tests := []struct {
		name   string
		where  *Location
		zone   string
		event  SunEvent
		offset time.Duration
		day    string // the local date, after whose 00:00 Next is asked
		want   string // local wall time, to the minute
	}{
		{"Berlin summer solstice sunrise", berlin, "Europe/Berlin", Sunrise, 0, "2024-06-21", "04:43"},
		{"Berlin summer solstice sunset", berlin, "Europe/Berlin", Sunset, 0, "2024-06-21", "21:33"},
		{"Berlin winter solstice sunrise", berlin, "Europe/Berlin", Sunrise, 0, "2024-12-21", "08:15"},
		{"Berlin winter solstice sunset", berlin, "Europe/Berlin", Sunset, 0, "2024-12-21", "15:54"},
		{"Berlin equinox sunrise", berlin, "Europe/Berlin", Sunrise, 0, "2024-03-20", "06:08"},
		{"Berlin equinox sunset", berlin, "Europe/Berlin", Sunset, 0, "2024-03-20", "18:20"},
		{"Berlin sunset minus 30 minutes", berlin, "Europe/Berlin", Sunset, -30 * time.Minute, "2024-12-21", "15:24"},
		{"Sydney winter sunrise", sydney, "Australia/Sydney", Sunrise, 0, "2026-06-21", "07:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(Trigger{Sun: &Sun{Event: tt.event, Offset: Duration(tt.offset)}, Zone: tt.zone}, tt.where)
			if err != nil {
				t.Fatal(err)
			}
			loc := s.Zone()
			midnight, err := time.ParseInLocation("2006-01-02", tt.day, loc)
			if err != nil {
				t.Fatal(err)
			}
			want, err := time.ParseInLocation("2006-01-02 15:04", tt.day+" "+tt.want, loc)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.Next(midnight)
			if !ok {
				t.Fatal("Next: never")
			}
			if d := got.Sub(want); d < -2*time.Minute || d > 2*time.Minute {
				t.Errorf("Next(%s) = %s, want %s ± 2 min", midnight, got, want)
			}
		})
	}
}

// TestSunPolar: at Tromsø the sun stays down from late November to mid
// January and up from late May to late July; those days have no sunrise
// (respectively no sunset), and the next event is after them.
func TestSunPolar(t *testing.T) {
	tromso := &Location{Latitude: 69.6492, Longitude: 18.9553}
	tests := []struct {
		name     string
		event    SunEvent
		after    string
		earliest string
		latest   string
	}{
		{"no sunrise in the polar night", Sunrise, "2026-12-10T12:00:00Z", "2027-01-14T00:00:00Z", "2027-01-17T00:00:00Z"},
		{"no sunset under the midnight sun", Sunset, "2026-06-10T12:00:00Z", "2026-07-24T00:00:00Z", "2026-07-28T00:00:00Z"},
		{"a normal day", Sunrise, "2026-03-01T00:00:00Z", "2026-03-01T05:00:00Z", "2026-03-01T07:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(Trigger{Sun: &Sun{Event: tt.event}, Zone: "Europe/Oslo"}, tromso)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.Next(mustTime(t, tt.after))
			if !ok {
				t.Fatal("Next: never")
			}
			if got.Before(mustTime(t, tt.earliest)) || got.After(mustTime(t, tt.latest)) {
				t.Errorf("Next(%s) = %s, want between %s and %s", tt.after, got.UTC(), tt.earliest, tt.latest)
			}
		})
	}
}

// TestSunSequence walks two years of events with offsets that push them
// into the neighbouring day: one fire per calendar day with an event,
// strictly increasing, none skipped.
func TestSunSequence(t *testing.T) {
	for _, tc := range []struct {
		zone   string
		where  *Location
		event  SunEvent
		offset time.Duration
	}{
		{"Europe/Berlin", berlin, Sunset, 12 * time.Hour},
		{"Europe/Berlin", berlin, Sunrise, -12 * time.Hour},
		{"Pacific/Kiritimati", &Location{Latitude: 1.87, Longitude: -157.4}, Sunrise, 0}, // UTC+14 far from its meridian
		{"Europe/Oslo", &Location{Latitude: 69.6492, Longitude: 18.9553}, Sunrise, time.Hour},
	} {
		t.Run(tc.zone+" "+string(tc.event)+" "+tc.offset.String(), func(t *testing.T) {
			s, err := Compile(Trigger{Sun: &Sun{Event: tc.event, Offset: Duration(tc.offset)}, Zone: tc.zone}, tc.where)
			if err != nil {
				t.Fatal(err)
			}
			from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var prev time.Time
			days := 0
			for at, ok := s.Next(from); ok && at.Before(from.AddDate(2, 0, 0)); at, ok = s.Next(at) {
				if !prev.IsZero() {
					gap := at.Sub(prev)
					if gap < 23*time.Hour && days > 0 {
						t.Fatalf("fires %s and %s are %s apart: two events on one day?", prev, at, gap)
					}
					// Consecutive days (away from polar gaps) are about 24h apart.
					if gap > 25*time.Hour && tc.zone != "Europe/Oslo" {
						t.Fatalf("fires %s and %s are %s apart: a day skipped", prev, at, gap)
					}
				}
				prev = at
				days++
			}
			if tc.zone != "Europe/Oslo" && (days < 729 || days > 731) {
				t.Errorf("%d fires in two years, want 730", days)
			}
		})
	}
}
