package textfile

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/alicia-home/alicia/internal/protocol"
)

func TestParseValid(t *testing.T) {
	in := `# HELP boiler_temperature_celsius Water at the boiler's outlet \\ degrees.
# TYPE boiler_temperature_celsius gauge
boiler_temperature_celsius{circuit="heating",ha="sensor"} 61.5
boiler_temperature_celsius{circuit="hot water"} -3e1

# a comment
# TYPE boiler_starts_total counter
boiler_starts_total 1234
	cellar_humidity_ratio { room = "cellar" , note="a \"quoted\" \\ back" , } 0.61  
untyped_value 16
`
	got, errs := Parse("boiler.prom", []byte(in))
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	want := []Sample{
		{Point: protocol.Point{Name: "boiler_temperature_celsius", Labels: map[string]string{"circuit": "heating", "ha": "sensor"}, Value: 61.5}, Type: TypeGauge, Line: 3},
		{Point: protocol.Point{Name: "boiler_temperature_celsius", Labels: map[string]string{"circuit": "hot water"}, Value: -30}, Type: TypeGauge, Line: 4},
		{Point: protocol.Point{Name: "boiler_starts_total", Value: 1234}, Type: TypeCounter, Line: 8},
		{Point: protocol.Point{Name: "cellar_humidity_ratio", Labels: map[string]string{"room": "cellar", "note": `a "quoted" \ back`}, Value: 0.61}, Type: TypeUntyped, Line: 9},
		{Point: protocol.Point{Name: "untyped_value", Value: 16}, Type: TypeUntyped, Line: 10},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string // the error, with file:line
	}{
		{"colon", "job:rate 1", `f.prom:1: metric name "job:rate": ':' is kept`},
		{"digit first", "1abc 1", `f.prom:1: metric name "1abc"`},
		{"long name", strings.Repeat("a", 129) + " 1", "f.prom:1: metric name"},
		{"no value", "foo", "f.prom:1: foo: no value"},
		{"not a number", "foo one", `f.prom:1: foo: value "one" is not a number`},
		{"NaN", "foo NaN", "f.prom:1: foo: value NaN: want a finite number"},
		{"Inf", "foo +Inf", "f.prom:1: foo: value +Inf: want a finite number"},
		{"timestamp", "foo 1 1700000000000", "f.prom:1: foo: a timestamp is not accepted"},
		{"trailing", "foo 1 2 3", `f.prom:1: foo: "2 3" after the value`},
		{"unquoted label", "foo{a=b} 1", "f.prom:1: foo: label a: the value must be in double quotes"},
		{"unterminated", `foo{a="b} 1`, "f.prom:1: foo: label a: unterminated value"},
		{"bad escape", `foo{a="\t"} 1`, `f.prom:1: foo: label a: unknown escape \t`},
		{"reserved label", `foo{__name__="x"} 1`, `f.prom:1: foo: label name "__name__": the "__" prefix is reserved`},
		{"bad label name", `foo{a-b="x"} 1`, `f.prom:1: foo: label name "a-b"`},
		{"newline in value", `foo{a="x\ny"} 1`, "f.prom:1: foo: label a: control character at byte 1"},
		{"long label value", `foo{a="` + strings.Repeat("x", 257) + `"} 1`, "f.prom:1: foo: label a: value longer than 256 bytes"},
		{"label twice", `foo{a="1",a="2"} 1`, "f.prom:1: foo: label a given twice"},
		{"too many labels", "foo{" + manyLabels(17) + "} 1", "f.prom:1: foo: more than 16 labels"},
		{"no comma", `foo{a="1" b="2"} 1`, "f.prom:1: foo: label a: want ',' or '}' after the value"},
		{"ha other", `foo{ha="switch"} 1`, `f.prom:1: foo: label ha="switch": the ha label marks a Home Assistant sensor`},
		{"summary", "# TYPE foo summary\n", "f.prom:1: TYPE foo summary: only gauge, counter and untyped"},
		{"counter without _total", "# TYPE foo counter\n", "f.prom:1: TYPE foo counter: a counter's name ends in _total"},
		{"gauge with _total", "# TYPE foo_total gauge\n", "f.prom:1: TYPE foo_total gauge: a gauge's name does not end in _total"},
		{"type twice", "# TYPE foo gauge\n# TYPE foo gauge\n", "f.prom:2: TYPE foo: a second TYPE line"},
		{"type late", "foo 1\n# TYPE foo gauge\n", "f.prom:2: TYPE foo: after samples of the name"},
		{"type bad name", "# TYPE foo:bar gauge\n", `f.prom:1: TYPE: metric name "foo:bar"`},
		{"same series", "foo{a=\"1\"} 1\nfoo{a=\"1\"} 2\n", `f.prom:2: foo{a="1"}: the same series as line 1`},
		{"not utf-8", "foo{a=\"\xff\"} 1", "f.prom:1: not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good line after the bad one is still read.
			got, errs := Parse("f.prom", []byte(tc.in+"\ngood_one 1\n"))
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			if !strings.HasPrefix(errs[0].Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", errs[0], tc.want)
			}
			if len(got) == 0 || got[len(got)-1].Name != "good_one" {
				t.Errorf("samples %v: the good line was not kept", got)
			}
		})
	}
}

func manyLabels(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, "l"+strings.Repeat("x", i)+`="v"`)
	}
	return strings.Join(parts, ",")
}

// FuzzParse: whatever a file holds, Parse returns, and every sample it
// returns is valid for the protocol.
func FuzzParse(f *testing.F) {
	f.Add([]byte("# TYPE a gauge\na{b=\"c\"} 1\n"))
	f.Add([]byte("a{b=\"\\\"\\\\\\n\",} 1e3\n"))
	f.Add([]byte("a 1 2\n# HELP a x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		samples, _ := Parse("fuzz.prom", data)
		for _, s := range samples {
			m := protocol.Metrics{Epoch: "e", Seq: 1, Time: time.Unix(1700000000, 0), Points: []protocol.Point{s.Point}}
			if err := m.Validate(); err != nil {
				t.Fatalf("Parse returned %+v, which the protocol refuses: %v", s, err)
			}
		}
	})
}
