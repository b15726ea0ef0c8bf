package sshd

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestPeekVersion(t *testing.T) {
	for _, tt := range []struct {
		name, send, want string
		close            bool
	}{
		{"line then kexinit", "SSH-2.0-OpenSSH_9.2p1\r\n\x00\x00\x01\x14kexinit...", "SSH-2.0-OpenSSH_9.2p1", false},
		{"bare LF", "SSH-2.0-dropbear\n", "SSH-2.0-dropbear", false},
		{"nothing in time", "", "", false},
		{"partial line, then EOF", "SSH-2.0-half", "", true},
		{"too long", string(make([]byte, 400)) + "\n", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() {
				_, _ = io.WriteString(b, tt.send)
				if tt.close {
					b.Close()
				}
			}()
			got, c := peekVersion(a, 100*time.Millisecond, time.Now().Add(5*time.Second))
			if got != tt.want {
				t.Fatalf("version %q, want %q", got, tt.want)
			}
			// Everything sent is still there for x/crypto, in order.
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, len(tt.send)+10)
			n := 0
			for n < len(tt.send) {
				m, err := c.Read(buf[n:])
				n += m
				if err != nil {
					break
				}
			}
			if string(buf[:n]) != tt.send {
				t.Fatalf("replayed %q, want %q", buf[:n], tt.send)
			}
			b.Close()
		})
	}
}
