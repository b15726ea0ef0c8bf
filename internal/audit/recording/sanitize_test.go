package recording

import (
	"strings"
	"testing"
)

func sanitize(parts ...string) string {
	var b strings.Builder
	s := NewSanitizer(&b)
	for _, p := range parts {
		s.Write([]byte(p))
	}
	s.Flush()
	return b.String()
}

func TestSanitizer(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"text", []string{"hello, wörld\r\n\ttab"}, "hello, wörld\r\n\ttab"},
		{"colours pass", []string{"\x1b[1;31mred\x1b[0m"}, "\x1b[1;31mred\x1b[0m"},
		{"cursor and erase pass", []string{"\x1b[2J\x1b[H\x1b[10;5H\x1b[K\x1b[?25l\x1b[?1049h"}, "\x1b[2J\x1b[H\x1b[10;5H\x1b[K\x1b[?25l\x1b[?1049h"},
		{"split sequence", []string{"\x1b", "[3", "1m"}, "\x1b[31m"},
		{"osc 52 clipboard", []string{"\x1b]52;c;ZWNobyBwd25lZA==\x07after"}, "^[]52;c;ZWNobyBwd25lZA==^Gafter"},
		{"title with ST", []string{"\x1b]0;evil\x1b\\x"}, "^[]0;evil^[\\x"},
		{"dcs", []string{"\x1bP+q544e\x1b\\"}, "^[P+q544e^[\\"},
		{"apc", []string{"\x1b_Gf=100\x1b\\"}, "^[_Gf=100^[\\"},
		{"device status query", []string{"\x1b[6n"}, "^[[6n"},
		{"device attributes", []string{"\x1b[c\x1b[>c"}, "^[[c^[[>c"},
		{"window report", []string{"\x1b[21t"}, "^[[21t"},
		{"mouse reporting", []string{"\x1b[?1000h"}, "^[[?1000h"},
		{"bracketed paste", []string{"\x1b[?2004h"}, "^[[?2004h"},
		{"decid", []string{"\x1bZ"}, "^[Z"},
		{"huge repeat", []string{"a\x1b[99999999b"}, "a^[[99999999b"},
		{"c1 csi", []string{"\u009b6n"}, "<U+009B>6n"},
		{"c0 controls", []string{"a\x00b\x0ec\x7f"}, "a^@b^Nc^?"},
		{"unterminated osc", []string{"\x1b]2;title"}, "^[]2;title"},
		{"csi broken by newline", []string{"\x1b[3\nx"}, "^[[3\nx"},
		{"long csi", []string{"\x1b[" + strings.Repeat("1;", 200) + "m"}, ""},
		{"charset", []string{"\x1b(0q\x1b(B"}, "\x1b(0q\x1b(B"},
		{"cursor style", []string{"\x1b[2 q"}, "\x1b[2 q"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sanitize(tc.in...)
			if tc.want != "" && got != tc.want {
				t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			checkSafe(t, got)
		})
	}
}

// checkSafe fails if out holds a raw OSC, DCS, APC, PM, SOS, C1 control or
// a device status or attributes query.
func checkSafe(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1bZ", "\x1b[6n", "\x1b[5n", "\x1b[c", "\x1b[>", "\x1b[=", "\x1b[?1000h", "\u009b", "\u009d", "\u0090"} {
		if strings.Contains(out, bad) {
			t.Fatalf("sanitised output holds %q: %q", bad, out)
		}
	}
}

func FuzzSanitizer(f *testing.F) {
	f.Add("\x1b]52;c;AAAA\x07", 3)
	f.Add("\x1b[6n\x1b[?1049h\x1bP$q\x1b\\", 1)
	f.Fuzz(func(t *testing.T, in string, cut int) {
		// Split anywhere (on rune boundaries, as events are): same result.
		rs := []rune(in)
		if cut < 0 {
			cut = -cut
		}
		if len(rs) > 0 {
			cut %= len(rs) + 1
		} else {
			cut = 0
		}
		whole := sanitize(in)
		split := sanitize(string(rs[:cut]), string(rs[cut:]))
		if whole != split {
			t.Fatalf("split at %d changes the output: %q vs %q", cut, whole, split)
		}
		checkSafe(t, whole)
	})
}
