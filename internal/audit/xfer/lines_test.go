package xfer

import (
	"reflect"
	"testing"
)

// Lines come out whole however the stream is cut, and a line past the
// limit is reported and dropped, never held.
func TestLineBuf(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		lines  []string
		overs  int
	}{
		{"one chunk", []string{"a\nbc\n"}, []string{"a", "bc"}, 0},
		{"cut mid-line", []string{"ab", "c\nd", "e\n"}, []string{"abc", "de"}, 0},
		{"empty lines", []string{"\n\n"}, []string{"", ""}, 0},
		{"no newline yet", []string{"abc"}, nil, 0},
		{"at the limit", []string{"abcd\n"}, []string{"abcd"}, 0},
		{"past the limit across chunks", []string{"abc", "de\nok\n"}, []string{"", "ok"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lineBuf{max: 4}
			var lines []string
			overs := 0
			for _, c := range tt.chunks {
				b := []byte(c)
				for len(b) > 0 {
					line, rest, ok, over := l.next(b)
					if over {
						overs++
					}
					if ok {
						lines = append(lines, line)
					}
					b = rest
				}
			}
			if !reflect.DeepEqual(lines, tt.lines) || overs != tt.overs {
				t.Errorf("lines %q overs %d, want %q %d", lines, overs, tt.lines, tt.overs)
			}
			if len(l.buf) > l.max {
				t.Errorf("holds %d bytes, max %d", len(l.buf), l.max)
			}
		})
	}
}
