package recording

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Sanitizer passes recorded output to the operator's terminal with the
// harmless part of the terminal language intact (text, colours, cursor
// movement, erasing, scroll regions, the alternate screen) and everything
// else shown escaped instead of executed: OSC (window titles, OSC 52
// clipboard writes, hyperlinks), DCS, APC, PM and SOS strings, queries
// whose answers the terminal would type into the operator's shell (device
// status, device attributes, window reports), mouse and focus reporting,
// C1 controls and stray C0 controls. An escaped sequence is printed with
// its control bytes in caret notation (ESC as ^[), so the operator sees
// that it was there.
//
// Sequences may span Write calls. Flush ends a pending one (escaped).
type Sanitizer struct {
	w     io.Writer
	state int
	seq   []byte
	out   []byte
}

const (
	stGround = iota
	stEsc    // after ESC
	stEscArg // after ESC and a byte that takes one more (charset, DEC line)
	stCSI    // in ESC [ ...
	stString // in OSC, DCS, APC, PM, SOS
	stStringEsc
)

const maxSeq = 256

var replacement = []byte(string(utf8.RuneError)) // a longer sequence is shown escaped

// NewSanitizer writes the sanitised stream to w.
func NewSanitizer(w io.Writer) *Sanitizer { return &Sanitizer{w: w} }

// Write sanitises p. p should be valid UTF-8 (asciicast data is).
func (s *Sanitizer) Write(p []byte) (int, error) {
	s.out = s.out[:0]
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		raw := p[i : i+size]
		if r == utf8.RuneError && size == 1 {
			raw = replacement // a stray byte: shown as U+FFFD
		}
		s.rune(r, raw)
		i += size
	}
	_, err := s.w.Write(s.out)
	return len(p), err
}

// Flush shows a pending unfinished sequence escaped.
func (s *Sanitizer) Flush() error {
	if s.state != stGround {
		s.out = s.out[:0]
		s.escapeSeq()
		_, err := s.w.Write(s.out)
		return err
	}
	return nil
}

func (s *Sanitizer) rune(r rune, raw []byte) {
	switch s.state {
	case stGround:
		s.ground(r, raw)
	case stEsc:
		s.seq = append(s.seq, raw...)
		switch {
		case r == '[':
			s.state = stCSI
		case r == ']' || r == 'P' || r == '_' || r == '^' || r == 'X':
			s.state = stString
		case r == '(' || r == ')' || r == '*' || r == '+' || r == '#' || r == '%':
			s.state = stEscArg
		case strings.ContainsRune("78MDEc=>", r):
			s.emitSeq() // save/restore cursor, index, reverse index, next line, reset, keypad modes
		default:
			s.escapeSeq() // DECID (ESC Z) answers; the rest is unknown
		}
	case stEscArg:
		s.seq = append(s.seq, raw...)
		if r >= 0x30 && r <= 0x7e && s.seq[1] != '%' {
			s.emitSeq()
		} else {
			s.escapeSeq()
		}
	case stCSI:
		if r < 0x20 || r > 0x7e {
			s.escapeSeq()
			s.ground(r, raw)
			return
		}
		s.seq = append(s.seq, byte(r))
		if r >= 0x40 { // final byte
			if csiSafe(s.seq[2:]) {
				s.emitSeq()
			} else {
				s.escapeSeq()
			}
			return
		}
		if len(s.seq) > maxSeq {
			s.escapeSeq()
		}
	case stString:
		s.seq = append(s.seq, raw...)
		switch {
		case r == 0x07: // BEL ends an OSC
			s.escapeSeq()
		case r == 0x1b:
			s.state = stStringEsc
		case len(s.seq) > maxSeq:
			s.escapeSeq()
		}
	case stStringEsc:
		s.seq = append(s.seq, raw...)
		if r == '\\' || len(s.seq) > maxSeq {
			s.escapeSeq()
		} else {
			s.state = stString
		}
	}
}

func (s *Sanitizer) ground(r rune, raw []byte) {
	switch {
	case r == 0x1b:
		s.seq = append(s.seq[:0], 0x1b)
		s.state = stEsc
	case r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == 0x07 || r == 0x0b || r == 0x0c:
		s.out = append(s.out, byte(r))
	case r < 0x20 || r == 0x7f:
		s.out = appendCaret(s.out, byte(r))
	case r >= 0x80 && r <= 0x9f: // C1 controls (8-bit CSI, OSC, DCS...)
		s.out = fmt.Appendf(s.out, "<U+%04X>", r)
	default:
		s.out = append(s.out, raw...)
	}
}

func (s *Sanitizer) emitSeq() {
	s.out = append(s.out, s.seq...)
	s.seq = s.seq[:0]
	s.state = stGround
}

func (s *Sanitizer) escapeSeq() {
	for _, b := range s.seq {
		if b < 0x20 || b == 0x7f {
			s.out = appendCaret(s.out, b)
		} else {
			s.out = append(s.out, b)
		}
	}
	s.seq = s.seq[:0]
	s.state = stGround
}

func appendCaret(out []byte, b byte) []byte {
	if b == 0x7f {
		return append(out, '^', '?')
	}
	return append(out, '^', b+0x40)
}

// safeModes are the DEC private modes (CSI ? N h/l) a replay may set:
// cursor keys, autowrap, cursor blink and visibility, the alternate screen.
var safeModes = map[int]bool{1: true, 7: true, 12: true, 25: true, 47: true, 1047: true, 1048: true, 1049: true}

// csiSafe decides a CSI sequence (without ESC [): params, intermediates, final.
func csiSafe(b []byte) bool {
	final := b[len(b)-1]
	body := b[:len(b)-1]
	var private byte
	if len(body) > 0 && body[0] >= 0x3c && body[0] <= 0x3f {
		private, body = body[0], body[1:]
	}
	params := body
	var inter []byte
	for i, c := range body {
		if c >= 0x20 && c <= 0x2f {
			params, inter = body[:i], body[i:]
			break
		}
	}
	for _, c := range inter {
		if c < 0x20 || c > 0x2f {
			return false
		}
	}
	var nums []int
	for _, f := range strings.FieldsFunc(string(params), func(r rune) bool { return r == ';' || r == ':' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n > 9999 { // huge counts (CSI 99999999 b) are a denial of service
			return false
		}
		nums = append(nums, n)
	}
	if len(inter) > 0 {
		// DECSCUSR (cursor style, CSI N SP q) and DECSTR (soft reset, CSI ! p).
		return private == 0 && (string(inter) == " " && final == 'q' || string(inter) == "!" && final == 'p')
	}
	switch private {
	case 0:
	case '?':
		switch final {
		case 'J', 'K':
			return true
		case 'h', 'l':
			for _, n := range nums {
				if !safeModes[n] {
					return false
				}
			}
			return len(nums) > 0
		}
		return false
	default:
		return false // CSI > c, CSI = c, CSI < u...: queries and keyboard protocols
	}
	switch final {
	case 'h', 'l': // ANSI modes: insert (4) and newline (20) only
		for _, n := range nums {
			if n != 4 && n != 20 {
				return false
			}
		}
		return len(nums) > 0
	case 'm', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'f', 'd', 'e', 'a', '`',
		'J', 'K', 'L', 'M', 'P', 'X', '@', 'S', 'T', 'I', 'Z', 'b', 'r', 's', 'u', 'g':
		return true
	}
	// n (device status), c (attributes), t (window ops and reports),
	// x (DECREQTPARM), i (media copy), q (LEDs), and anything unknown.
	return false
}
