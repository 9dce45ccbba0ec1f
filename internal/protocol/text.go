package protocol

import (
	"fmt"
	"unicode/utf8"
)

// UnsafeTextRune reports whether r must not appear in text shown to a
// person as one line (a device's display name, a label value): a control
// character (C0, DEL, C1), a line or paragraph separator (U+2028, U+2029),
// or a bidirectional formatting character (U+061C, U+200E, U+200F,
// U+202A–U+202E, U+2066–U+2069), which can make a name read in another
// order than it is stored ("Trojan Source"). utf8.RuneError, which also
// stands for an invalid byte, is unsafe too.
func UnsafeTextRune(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028, r == 0x2029, r == utf8.RuneError:
		return true
	}
	return false
}

// CheckDisplayText reports why s cannot be shown as one line of text, or
// nil: it must be valid UTF-8 without a rune UnsafeTextRune refuses. The
// error names the first offending character and its byte offset. (A
// U+FFFD written as such is refused too: it is what an invalid byte
// becomes.)
func CheckDisplayText(s string) error {
	for i, r := range s {
		if !UnsafeTextRune(r) {
			continue
		}
		var what string
		switch {
		case r == utf8.RuneError:
			what = "not valid UTF-8 (or U+FFFD)"
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			what = fmt.Sprintf("%U, a control character", r)
		case r == 0x2028 || r == 0x2029:
			what = fmt.Sprintf("%U, a line or paragraph separator", r)
		default:
			what = fmt.Sprintf("%U, a bidirectional control (it can make text read in another order)", r)
		}
		return fmt.Errorf("byte %d is %s", i, what)
	}
	return nil
}

// SafeText returns s with every rune UnsafeTextRune refuses (and every
// invalid byte) replaced by U+FFFD, for showing text that was not checked
// on its way in.
func SafeText(s string) string {
	for _, r := range s {
		if UnsafeTextRune(r) {
			return sanitize(s)
		}
	}
	return s
}

func sanitize(s string) string {
	b := make([]byte, 0, len(s)+8)
	for _, r := range s {
		if UnsafeTextRune(r) {
			r = utf8.RuneError
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
