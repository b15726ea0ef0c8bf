package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	t.Setenv(Socket, "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("without %s: sent %v, %v", Socket, sent, err)
	}
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv(Socket, path)
	if sent, err := Notify(Ready + "\nSTATUS=up"); !sent || err != nil {
		t.Fatalf("Notify: %v %v", sent, err)
	}
	if got := read(t, c); got != "READY=1\nSTATUS=up" {
		t.Fatalf("got %q", got)
	}
	abs := listen(t, "\x00sshgate-sdnotify-test-"+filepath.Base(t.TempDir()))
	t.Setenv(Socket, "@"+abs.LocalAddr().String()[1:])
	if sent, err := Notify(Stopping); !sent || err != nil {
		t.Fatalf("abstract: %v %v", sent, err)
	}
	if got := read(t, abs); got != Stopping {
		t.Fatalf("abstract got %q", got)
	}
	t.Setenv(Socket, "relative/path")
	if _, err := Notify(Ready); err == nil {
		t.Fatal("a relative socket path was accepted")
	}
}
