package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// echoServer reads each connection to EOF, then answers "echo:" + what it
// read and closes: it only answers if the half-close came through.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := io.ReadAll(c)
				if err != nil {
					return
				}
				_, _ = c.Write(append([]byte("echo:"), b...))
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends msg, half-closes, and reads the answer to EOF.
func roundTrip(c net.Conn, msg string) (string, error) {
	defer c.Close()
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return "", err
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

// startSSH runs a long-lived ssh (forwarding) and stops it at cleanup.
func startSSH(t *testing.T, args []string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ssh", args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	return stderr
}

func TestLocalForwardOpenSSH(t *testing.T) {
	f := newFixture(t, "", nil)
	echo := echoServer(t)
	port := freePort(t)
	args := append(f.opensshOpts(f.user.path), "-p", f.port, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", "127.0.0.1:"+port+":"+echo, "x@127.0.0.1")
	stderr := startSSH(t, args)
	var conn net.Conn
	eventually(t, 20*time.Second, "the -L port to accept", func() bool {
		var err error
		conn, err = net.Dial("tcp", "127.0.0.1:"+port)
		return err == nil
	})
	msg := strings.Repeat("forward me ", 100000)
	got, err := roundTrip(conn, msg)
	if err != nil || got != "echo:"+msg {
		t.Fatalf("round trip: %d bytes, %v; ssh stderr %q", len(got), err, stderr.String())
	}
}

func TestRemoteForwardOpenSSH(t *testing.T) {
	f := newFixture(t, "", nil)
	echo := echoServer(t)
	// LogLevel=INFO first: ssh keeps the first value, and prints the
	// allocated port at INFO.
	args := append([]string{"-o", "LogLevel=INFO"}, f.opensshOpts(f.user.path)...)
	args = append(args, "-p", f.port, "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:"+echo, "x@127.0.0.1")
	stderr := startSSH(t, args)
	re := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
	var port string
	eventually(t, 20*time.Second, "the allocated port", func() bool {
		m := re.FindStringSubmatch(stderr.String())
		if m != nil {
			port = m[1]
		}
		return m != nil
	})
	conn, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	got, err := roundTrip(conn, "remote hello")
	if err != nil || got != "echo:remote hello" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
}

func TestForwardXCrypto(t *testing.T) {
	f := newFixture(t, "", nil)
	echo := echoServer(t)
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := c.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(conn, "direct"); err != nil || got != "echo:direct" {
		t.Fatalf("direct-tcpip: %q %v", got, err)
	}
	// A closed port is refused with "connect failed".
	_, err = c.Dial("tcp", "127.0.0.1:"+freePort(t))
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed {
		t.Fatalf("dial to a closed port: %v", err)
	}
	// tcpip-forward on port 0, a connection through it, then cancel.
	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	go func() {
		for {
			rc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer rc.Close()
				b, _ := io.ReadAll(rc)
				_, _ = fmt.Fprintf(rc, "fwd:%s", b)
			}()
		}
	}()
	in, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(in, "x"); err != nil || got != "fwd:x" {
		t.Fatalf("forwarded-tcpip: %q %v", got, err)
	}
	if err := l.Close(); err != nil { // cancel-tcpip-forward
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the forward to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

func TestForwardedConnClosedWithConnection(t *testing.T) {
	f := newFixture(t, "", nil)
	// A destination that never answers nor closes.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dial("tcp", l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	var dst net.Conn
	select {
	case dst = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection at the destination")
	}
	defer dst.Close()
	c.Close()
	_ = dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(dst).ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("destination read: %v, want EOF once the SSH connection is gone", err)
	}
}
