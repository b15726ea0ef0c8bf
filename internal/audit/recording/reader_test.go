package recording

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderErrors(t *testing.T) {
	const hdr = `{"version": 2, "width": 80, "height": 24}` + "\n"
	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"empty", "", 1},
		{"not json", "hello\n", 1},
		{"version 1", `{"version": 1, "width": 80, "height": 24}` + "\n", 1},
		{"no size", `{"version": 2}` + "\n", 1},
		{"two objects", `{"version": 2, "width": 1, "height": 1} {}` + "\n", 1},
		{"event not array", hdr + `{"a":1}` + "\n", 2},
		{"event short", hdr + `[1, "o"]` + "\n", 2},
		{"bad time", hdr + `["x", "o", "a"]` + "\n", 2},
		{"negative time", hdr + `[-1, "o", "a"]` + "\n", 2},
		{"backwards", hdr + `[2, "o", "a"]` + "\n" + `[1, "o", "b"]` + "\n", 3},
		{"bad data", hdr + `[1, "o", 5]` + "\n", 2},
		{"bad resize", hdr + "\n" + `[1, "r", "80-24"]` + "\n", 3},
		{"too long", hdr + `[1, "o", "` + strings.Repeat("a", MaxLine) + `"]` + "\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadAll(strings.NewReader(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %v, want a ParseError", err)
			}
			if pe.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", pe.Line, tc.line, err)
			}
		})
	}
}

func TestReaderAccepts(t *testing.T) {
	in := `{"version": 2, "width": 80, "height": 24, "timestamp": 1, "env": {"TERM": "xterm"}, "title": "x"}` + "\r\n" +
		"\n" + `[0.5, "o", "a\u00e9"]` + "\n" + `[0.5, "m", ""]` + "\n" + `[1, "r", "90x30"]`
	h, evs, err := ReadAll(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if h.Width != 80 || len(evs) != 3 || evs[0].Data != "aé" || evs[2].Data != "90x30" {
		t.Errorf("%+v %+v", h, evs)
	}
}

func FuzzReader(f *testing.F) {
	f.Add(`{"version": 2, "width": 80, "height": 24}` + "\n" + `[0.1, "o", "hi\u001b[1m"]` + "\n" + `[0.2, "r", "10x10"]` + "\n")
	f.Add(`{"version": 2, "width": 1, "height": 1}` + "\n" + `[1e308, "i", ""]`)
	f.Add("[1,2,3]\n")
	f.Fuzz(func(t *testing.T, in string) {
		rd, err := NewReader(strings.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("header error %v is not a ParseError with a line", err)
			}
			return
		}
		last := 0.0
		for {
			e, err := rd.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Line < 2 {
					t.Fatalf("event error %v is not a ParseError with a line", err)
				}
				return
			}
			if e.Time < last {
				t.Fatalf("time went backwards")
			}
			last = e.Time
			// Whatever the file holds, the sanitised output has no raw
			// dangerous sequence.
			var out strings.Builder
			s := NewSanitizer(&out)
			s.Write([]byte(e.Data))
			s.Flush()
			checkSafe(t, out.String())
		}
	})
}
