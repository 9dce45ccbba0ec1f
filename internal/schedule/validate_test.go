package schedule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		trig Trigger
		want string // the whole error; "" = valid
	}{
		{"five fields", Trigger{Cron: "30 6 * * 1-5", Zone: "Europe/Berlin"}, ""},
		{"six fields", Trigger{Cron: "0 30 6 * * *", Zone: "UTC"}, ""},
		{"descriptor in capitals", Trigger{Cron: "@Daily", Zone: "UTC"}, ""},
		{"both day fields restricted never lacks a day", Trigger{Cron: "0 0 30 2 1", Zone: "UTC"}, ""},
		{"leap day", Trigger{Cron: "0 9 29 2 *", Zone: "UTC"}, ""},
		{"interval", Trigger{Every: Duration(15 * time.Minute)}, ""},
		{"interval bounds", Trigger{Every: Duration(MaxInterval)}, ""},
		{"once in the past is valid", Trigger{At: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
		{"sun", Trigger{Sun: &Sun{Event: Sunset, Offset: Duration(-12 * time.Hour)}, Zone: "Europe/Berlin"}, ""},

		{"no kind", Trigger{Zone: "UTC"}, `set exactly one of "cron", "every", "at" and "sun"`},
		{"two kinds", Trigger{Cron: "@daily", Every: Duration(time.Hour), Zone: "UTC"}, `set exactly one of "cron", "every", "at" and "sun"`},
		{"anchor without every", Trigger{Cron: "@daily", Zone: "UTC", Anchor: time.Now()}, `"anchor" goes only with "every"`},
		{"cron without zone", Trigger{Cron: "@daily"},
			`cron trigger needs a "zone" (an IANA time zone such as "Europe/Berlin" or "UTC")`},
		{"unknown zone", Trigger{Cron: "@daily", Zone: "Europe/Springfield"},
			`zone "Europe/Springfield": unknown time zone (want an IANA name such as "Europe/Berlin"): unknown time zone Europe/Springfield`},
		{"Local", Trigger{Cron: "@daily", Zone: "Local"},
			`zone "Local": name an IANA time zone such as "Europe/Berlin" or "UTC"`},
		{"minute out of range", Trigger{Cron: "61 * * * *", Zone: "UTC"},
			`cron "61 * * * *": minute field "61": end of range (61) above maximum (59): 61`},
		{"empty list item", Trigger{Cron: ", * * * * *", Zone: "UTC"},
			`cron ", * * * * *": second field ",": an empty item in a list`},
		{"trailing comma", Trigger{Cron: "5, * * * *", Zone: "UTC"},
			`cron "5, * * * *": minute field "5,": an empty item in a list`},
		{"hour not a number", Trigger{Cron: "0 x * * *", Zone: "UTC"},
			`cron "0 x * * *": hour field "x": failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax`},
		{"seconds field named", Trigger{Cron: "75 0 0 * * *", Zone: "UTC"},
			`cron "75 0 0 * * *": second field "75": end of range (75) above maximum (59): 75`},
		{"day-of-month zero", Trigger{Cron: "0 0 0 * *", Zone: "UTC"},
			`cron "0 0 0 * *": day-of-month field "0": beginning of range (0) below minimum (1): 0`},
		{"weekday 7", Trigger{Cron: "0 0 * * 7", Zone: "UTC"},
			`cron "0 0 * * 7": day-of-week field "7": end of range (7) above maximum (6): 7`},
		{"zero step", Trigger{Cron: "*/0 * * * *", Zone: "UTC"},
			`cron "*/0 * * * *": minute field "*/0": step of range should be a positive number: */0`},
		{"reversed range", Trigger{Cron: "0 5-3 * * *", Zone: "UTC"},
			`cron "0 5-3 * * *": hour field "5-3": beginning of range (5) beyond end of range (3): 5-3`},
		{"four fields", Trigger{Cron: "0 0 * *", Zone: "UTC"},
			`cron "0 0 * *": want 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got 4`},
		{"seven fields", Trigger{Cron: "0 0 0 * * * 2026", Zone: "UTC"},
			`cron "0 0 0 * * * 2026": want 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got 7`},
		{"empty after trimming", Trigger{Cron: "   ", Zone: "UTC"},
			`cron "   ": want 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got 0`},
		{"TZ prefix", Trigger{Cron: "TZ=Europe/Berlin 0 0 * * *", Zone: "UTC"},
			`cron "TZ=Europe/Berlin 0 0 * * *": second field "TZ=Europe/Berlin": unexpected character (set the time zone in "zone")`},
		{"@every", Trigger{Cron: "@every 5m", Zone: "UTC"},
			`cron "@every 5m": "@every 5m" is not supported here: use an interval trigger ("every")`},
		{"unknown descriptor", Trigger{Cron: "@fortnightly", Zone: "UTC"},
			`cron "@fortnightly": unknown descriptor "@fortnightly" (want @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)`},
		{"February 30th", Trigger{Cron: "0 0 30 2 *", Zone: "UTC"},
			`cron "0 0 30 2 *": never fires: February has no 30th`},
		{"31 April", Trigger{Cron: "0 0 31 4 *", Zone: "UTC"},
			`cron "0 0 31 4 *": never fires: April has no 31st`},
		{"31st in short months", Trigger{Cron: "0 0 31 4,6,9,11 *", Zone: "UTC"},
			`cron "0 0 31 4,6,9,11 *": never fires: none of April, June, September, November has a 31st`},
		{"30th or 31st of February", Trigger{Cron: "0 0 30,31 feb *", Zone: "UTC"},
			`cron "0 0 30,31 feb *": never fires: February has no day 30 or 31`},
		{"a day that never is, even on a restricted weekday", Trigger{Cron: "0 0 31 4 */2", Zone: "UTC"},
			`cron "0 0 31 4 */2": never fires: April has no 31st`},
		{"interval too short", Trigger{Every: Duration(500 * time.Millisecond)}, `every 500ms: want at least 1s`},
		{"interval negative", Trigger{Every: Duration(-time.Minute)}, `every -1m0s: want at least 1s`},
		{"interval too long", Trigger{Every: Duration(32 * 24 * time.Hour)}, `every 768h0m0s: want at most 744h0m0s (31 days)`},
		{"interval not whole seconds", Trigger{Every: Duration(1500 * time.Millisecond)}, `every 1.5s: want whole seconds`},
		{"interval bad zone", Trigger{Every: Duration(time.Minute), Zone: "Mars/Olympus"},
			`zone "Mars/Olympus": unknown time zone (want an IANA name such as "Europe/Berlin"): unknown time zone Mars/Olympus`},
		{"anchor before 1970", Trigger{Every: Duration(time.Minute), Anchor: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)},
			`anchor 1969-01-01T00:00:00Z: want an instant from 1970 through 9999`},
		{"once beyond 9999", Trigger{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
			`at 10000-01-01T00:00:00Z: want an instant from 1970 through 9999`},
		{"sun without zone", Trigger{Sun: &Sun{Event: Sunrise}},
			`sun trigger needs a "zone" (an IANA time zone such as "Europe/Berlin" or "UTC")`},
		{"sun event", Trigger{Sun: &Sun{Event: "noon"}, Zone: "UTC"}, `sun event "noon": want "sunrise" or "sunset"`},
		{"sun offset", Trigger{Sun: &Sun{Event: Sunrise, Offset: Duration(13 * time.Hour)}, Zone: "UTC"},
			`sun offset 13h0m0s: want at most 12h0m0s either way`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.trig.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q\nwant         %q", got, tt.want)
			}
			// Compile checks the same (sun triggers need a location too).
			_, err = Compile(tt.trig, &Location{Latitude: 52.52, Longitude: 13.405})
			if (err == nil) != (tt.want == "") {
				t.Errorf("Compile error = %v, Validate error = %q", err, tt.want)
			}
		})
	}
}

func TestCompileLocation(t *testing.T) {
	sun := Trigger{Sun: &Sun{Event: Sunrise}, Zone: "Europe/Berlin"}
	tests := []struct {
		name  string
		trig  Trigger
		where *Location
		want  string
	}{
		{"sun needs a location", sun, nil, "sun trigger needs the location (latitude, longitude)"},
		{"latitude", sun, &Location{Latitude: 91}, "location: latitude 91: want -90 to 90"},
		{"longitude", sun, &Location{Longitude: -181}, "location: longitude -181: want -180 to 180"},
		{"cron needs none", Trigger{Cron: "@daily", Zone: "UTC"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.trig, tt.where)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Compile() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckFires(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		trig  Trigger
		where *Location
		want  string
	}{
		{"once ahead", Trigger{At: now.Add(time.Hour)}, nil, ""},
		{"once past", Trigger{At: now.Add(-time.Hour)}, nil,
			"never fires: at 2026-05-01T11:00:00Z is in the past (now 2026-05-01T12:00:00Z)"},
		{"once now", Trigger{At: now}, nil,
			"never fires: at 2026-05-01T12:00:00Z is in the past (now 2026-05-01T12:00:00Z)"},
		{"sun at the pole", Trigger{Sun: &Sun{Event: Sunrise}, Zone: "UTC"}, &Location{Latitude: 90}, "never fires: no sunrise within 400 days after 2026-05-01T12:00:00Z at latitude 90, longitude 0"},
		{"cron", Trigger{Cron: "0 0 29 2 *", Zone: "UTC"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Compile(tt.trig, tt.where)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if err := s.CheckFires(now); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("CheckFires() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTriggerJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Trigger
		wantErr string
	}{
		{"cron", `{"cron":"30 6 * * *","zone":"Europe/Berlin"}`, Trigger{Cron: "30 6 * * *", Zone: "Europe/Berlin"}, ""},
		{"interval", `{"every":"15m","anchor":"2026-01-01T00:00:00Z"}`,
			Trigger{Every: Duration(15 * time.Minute), Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, ""},
		{"once", `{"at":"2026-12-24T18:00:00Z"}`, Trigger{At: time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC)}, ""},
		{"sun", `{"sun":{"event":"sunset","offset":"-30m"},"zone":"UTC"}`,
			Trigger{Sun: &Sun{Event: Sunset, Offset: Duration(-30 * time.Minute)}, Zone: "UTC"}, ""},
		{"unknown field", `{"cron":"@daily","zone":"UTC","jitter":"5m"}`, Trigger{}, `trigger: json: unknown field "jitter"`},
		{"unknown field in sun", `{"sun":{"event":"sunset","elevation":3},"zone":"UTC"}`, Trigger{}, `trigger: json: unknown field "elevation"`},
		{"duration as a number", `{"every":900}`, Trigger{}, `trigger: duration: want a string such as "15m", got 900`},
		{"bad duration", `{"every":"15 minutes"}`, Trigger{}, `trigger: duration "15 minutes": time: unknown unit " minutes" in duration "15 minutes"`},
		{"bad instant", `{"at":"tomorrow"}`, Trigger{}, `trigger: parsing time "tomorrow" as "2006-01-02T15:04:05Z07:00": cannot parse "tomorrow" as "2006"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Trigger
			err := json.Unmarshal([]byte(tt.in), &got)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tt.wantErr {
				t.Fatalf("Unmarshal error = %q, want %q", gotErr, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			// Round trip: what we write reads back the same.
			out, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var again Trigger
			if err := json.Unmarshal(out, &again); err != nil {
				t.Fatalf("re-decoding %s: %v", out, err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("round trip through %s (-first +second):\n%s", out, diff)
			}
			if strings.Contains(string(out), `"anchor":"0001`) || strings.Contains(string(out), `"at":"0001`) {
				t.Errorf("zero times written: %s", out)
			}
		})
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		trig Trigger
		want string
	}{
		{Trigger{Cron: "@daily"}, KindCron},
		{Trigger{Every: Duration(time.Minute)}, KindInterval},
		{Trigger{At: time.Unix(1, 0)}, KindOnce},
		{Trigger{Sun: &Sun{}}, KindSun},
		{Trigger{}, ""},
		{Trigger{Cron: "@daily", Sun: &Sun{}}, ""},
	}
	for _, tt := range tests {
		if got := tt.trig.Kind(); got != tt.want {
			t.Errorf("%+v.Kind() = %q, want %q", tt.trig, got, tt.want)
		}
	}
}
