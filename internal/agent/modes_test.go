package agent

import (
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// encodeModes is how x/crypto's client encodes pty-req modes.
func encodeModes(m ssh.TerminalModes) string {
	var b []byte
	for op, v := range m {
		b = append(b, op, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return string(append(b, 0))
}

func TestApplyModes(t *testing.T) {
	tio := syscall.Termios{Lflag: syscall.ECHO | syscall.ICANON, Iflag: syscall.ICRNL, Cflag: syscall.CS7}
	modes := parseModes([]byte(encodeModes(ssh.TerminalModes{
		ssh.ECHO: 0, ssh.ISIG: 1, ssh.IUTF8: 1, ssh.ICRNL: 0, ssh.VINTR: 3, ssh.CS8: 1, ssh.TTY_OP_ISPEED: 38400,
		ssh.VERASE: 0x1ff, // out of range for a control character: ignored
	})))
	applyModesTo(&tio, modes)
	if tio.Lflag&syscall.ECHO != 0 || tio.Lflag&syscall.ISIG == 0 || tio.Lflag&syscall.ICANON == 0 {
		t.Errorf("lflag %#x", tio.Lflag)
	}
	if tio.Iflag&syscall.ICRNL != 0 || tio.Iflag&syscall.IUTF8 == 0 {
		t.Errorf("iflag %#x", tio.Iflag)
	}
	if tio.Cflag&syscall.CSIZE != syscall.CS8 {
		t.Errorf("cflag %#x", tio.Cflag)
	}
	if tio.Cc[syscall.VINTR] != 3 || tio.Cc[syscall.VERASE] != 0 {
		t.Errorf("cc %v", tio.Cc)
	}
}

func TestParseModesStops(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"\x00", 0},
		{"\x35\x00\x00\x00\x01\x00\x35\x00\x00\x00\x00", 1}, // stops at TTY_OP_END
		{"\x35\x00\x00\x00\x01\xa0\x00\x00\x00\x00", 1},     // stops at opcode 160
		{"\x35\x00\x00\x00", 0},                             // truncated
	} {
		if got := len(parseModes([]byte(tt.in))); got != tt.want {
			t.Errorf("%q: %d modes, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzParseModes(f *testing.F) {
	f.Add([]byte(encodeModes(ssh.TerminalModes{ssh.ECHO: 1, ssh.VINTR: 3})))
	f.Fuzz(func(t *testing.T, b []byte) {
		modes := parseModes(b)
		if len(modes)*5 > len(b) {
			t.Fatalf("%d modes from %d bytes", len(modes), len(b))
		}
		var tio syscall.Termios
		applyModesTo(&tio, modes)
	})
}
