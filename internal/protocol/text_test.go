package protocol

import (
	"strings"
	"testing"
)

func TestCheckDisplayText(t *testing.T) {
	for _, ok := range []string{"", "kitchen-pi", "Küche Pi", "客厅", "مطبخ", "👨\u200d👩\u200d👧 room", "<b>&amp;</b>", `"quoted" \ back`, "tab-free"} {
		if err := CheckDisplayText(ok); err != nil {
			t.Errorf("CheckDisplayText(%q) = %v, want nil", ok, err)
		}
		if got := SafeText(ok); got != ok {
			t.Errorf("SafeText(%q) = %q, want it unchanged", ok, got)
		}
	}
	for _, tc := range []struct{ in, want, safe string }{
		{"evil\u202Etxt.exe", "byte 4 is U+202E, a bidirectional control", "evil\uFFFDtxt.exe"},
		{"a\u202Ab", "U+202A, a bidirectional", "a\uFFFDb"},
		{"a\u2066b\u2069", "U+2066, a bidirectional", "a\uFFFDb\uFFFD"},
		{"\u200Fx", "byte 0 is U+200F", "\uFFFDx"},
		{"\u200Ex", "U+200E", "\uFFFDx"},
		{"x\u061C", "byte 1 is U+061C", "x\uFFFD"},
		{"a\nb", "byte 1 is U+000A, a control character", "a\uFFFDb"},
		{"a\x00", "U+0000, a control", "a\uFFFD"},
		{"a\x7f", "U+007F, a control", "a\uFFFD"},
		{"a\u0085", "U+0085, a control", "a\uFFFD"},
		{"a\u2028b", "U+2028, a line or paragraph separator", "a\uFFFDb"},
		{"a\xffb", "byte 1 is not valid UTF-8", "a\uFFFDb"},
		{"a\uFFFD", "byte 1 is not valid UTF-8 (or U+FFFD)", "a\uFFFD"},
	} {
		err := CheckDisplayText(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckDisplayText(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
		if got := SafeText(tc.in); got != tc.safe {
			t.Errorf("SafeText(%q) = %q, want %q", tc.in, got, tc.safe)
		}
	}
}
