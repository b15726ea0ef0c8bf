package relay

import "testing"

type recTap struct{ got []string }

func (r *recTap) Data(s Stream, p []byte) { r.got = append(r.got, string(rune('0'+s))+string(p)) }

func TestTaps(t *testing.T) {
	a, b := &recTap{}, &recTap{}
	taps := Taps{a, nil, b}
	taps.Data(ToUser, []byte("x"))
	taps.Data(ToTarget, []byte("y"))
	for _, r := range []*recTap{a, b} {
		if len(r.got) != 2 || r.got[0] != "1x" || r.got[1] != "0y" {
			t.Errorf("tap saw %q", r.got)
		}
	}
}
