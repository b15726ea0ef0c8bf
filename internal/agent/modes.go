package agent

import (
	"encoding/binary"
	"os"
	"syscall"
	"unsafe"
)

// Terminal modes from pty-req (RFC 4254 section 8), applied best-effort.

type modeFlag struct {
	field int // 0 iflag, 1 oflag, 2 cflag, 3 lflag
	bit   uint32
}

var modeChars = map[byte]int{
	1: syscall.VINTR, 2: syscall.VQUIT, 3: syscall.VERASE, 4: syscall.VKILL,
	5: syscall.VEOF, 6: syscall.VEOL, 7: syscall.VEOL2, 8: syscall.VSTART,
	9: syscall.VSTOP, 10: syscall.VSUSP, 12: syscall.VREPRINT,
	13: syscall.VWERASE, 14: syscall.VLNEXT, 18: syscall.VDISCARD,
}

var modeFlags = map[byte]modeFlag{
	30: {0, syscall.IGNPAR}, 31: {0, syscall.PARMRK}, 32: {0, syscall.INPCK},
	33: {0, syscall.ISTRIP}, 34: {0, syscall.INLCR}, 35: {0, syscall.IGNCR},
	36: {0, syscall.ICRNL}, 37: {0, syscall.IUCLC}, 38: {0, syscall.IXON},
	39: {0, syscall.IXANY}, 40: {0, syscall.IXOFF}, 41: {0, syscall.IMAXBEL},
	42: {0, syscall.IUTF8},
	50: {3, syscall.ISIG}, 51: {3, syscall.ICANON}, 52: {3, syscall.XCASE},
	53: {3, syscall.ECHO}, 54: {3, syscall.ECHOE}, 55: {3, syscall.ECHOK},
	56: {3, syscall.ECHONL}, 57: {3, syscall.NOFLSH}, 58: {3, syscall.TOSTOP},
	59: {3, syscall.IEXTEN}, 60: {3, syscall.ECHOCTL}, 61: {3, syscall.ECHOKE},
	62: {3, syscall.PENDIN},
	70: {1, syscall.OPOST}, 71: {1, syscall.OLCUC}, 72: {1, syscall.ONLCR},
	73: {1, syscall.OCRNL}, 74: {1, syscall.ONOCR}, 75: {1, syscall.ONLRET},
	90: {2, syscall.CS7}, 91: {2, syscall.CS8}, 92: {2, syscall.PARENB},
	93: {2, syscall.PARODD},
}

// terminalMode is one decoded opcode and argument.
type terminalMode struct {
	op  byte
	arg uint32
}

// parseModes decodes the encoded terminal modes. It stops at TTY_OP_END, at
// an opcode of 160 or more (whose argument format is undefined), or at a
// truncated entry.
func parseModes(b []byte) []terminalMode {
	var out []terminalMode
	for len(b) >= 5 {
		op := b[0]
		if op == 0 || op >= 160 {
			break
		}
		out = append(out, terminalMode{op, binary.BigEndian.Uint32(b[1:5])})
		b = b[5:]
	}
	return out
}

// applyModesTo changes t per the modes it knows.
func applyModesTo(t *syscall.Termios, modes []terminalMode) {
	for _, m := range modes {
		if i, ok := modeChars[m.op]; ok {
			if m.arg <= 0xff {
				t.Cc[i] = byte(m.arg)
			}
			continue
		}
		f, ok := modeFlags[m.op]
		if !ok {
			continue
		}
		p := [...]*uint32{&t.Iflag, &t.Oflag, &t.Cflag, &t.Lflag}[f.field]
		if m.op == 90 || m.op == 91 { // CS7, CS8 select a character size
			if m.arg != 0 {
				*p = *p&^syscall.CSIZE | f.bit
			}
			continue
		}
		if m.arg != 0 {
			*p |= f.bit
		} else {
			*p &^= f.bit
		}
	}
}

func applyModes(tty *os.File, encoded string) {
	modes := parseModes([]byte(encoded))
	if len(modes) == 0 {
		return
	}
	var t syscall.Termios
	fd := tty.Fd()
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
		return
	}
	applyModesTo(&t, modes)
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCSETS, uintptr(unsafe.Pointer(&t)))
}
