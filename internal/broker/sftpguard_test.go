package broker

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/gate"
)

// fakeChannel is the user's side of a channel: Read gives the client's
// bytes, Write collects what the user would receive.
type fakeChannel struct {
	ssh.Channel
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (f *fakeChannel) Read(p []byte) (int, error) { return f.in.Read(p) }
func (f *fakeChannel) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Write(p)
}
func (f *fakeChannel) Close() error { f.closed = true; return nil }

func sftpPacket(typ byte, id uint32, body ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{typ}, id)
	for _, x := range body {
		b = append(b, x...)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func sftpString(s string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
}

// The gate's reply to a refused request goes between whole packets of the
// target's stream, never inside one; allowed requests pass unchanged.
func TestGuardedChannelInterleaves(t *testing.T) {
	version := []byte{0, 0, 0, 5, 2, 0, 0, 0, 3}
	remove := sftpPacket(13, 9, sftpString("/f"))
	stat := sftpPacket(17, 10, sftpString("/f"))
	client := append(append([]byte(nil), remove...), stat...)
	fc := &fakeChannel{in: bytes.NewReader(client)}
	var events []audit.Event
	g := newGuardedChannel(fc, true, false, func(e audit.Event) { events = append(events, e) }, slog.New(slog.DiscardHandler))

	// The target's VERSION, then half of a DATA reply in flight.
	data := sftpPacket(103, 1, sftpString("0123456789"))
	if _, err := g.Write(version); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write(data[:7]); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(g)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stat) {
		t.Fatalf("forwarded %x, want only the stat %x", got, stat)
	}
	if len(events) != 1 || events[0].Op != "remove" || events[0].Path != "/f" || events[0].Reason != "download_only" || events[0].Result != "denied" {
		t.Fatalf("events %+v", events)
	}
	if _, err := g.Write(data[7:]); err != nil {
		t.Fatal(err)
	}
	reply := fc.out.Bytes()[len(version)+len(data):]
	want := version
	want = append(want, data...)
	if !bytes.Equal(fc.out.Bytes()[:len(want)], want) || len(reply) == 0 {
		t.Fatalf("user got %x", fc.out.Bytes())
	}
	if reply[4] != 101 || binary.BigEndian.Uint32(reply[5:]) != 9 || binary.BigEndian.Uint32(reply[9:]) != 3 {
		t.Fatalf("reply %x: want STATUS permission denied for id 9", reply)
	}

	// Between packets, the reply goes out at once.
	fc2 := &fakeChannel{in: bytes.NewReader(remove)}
	g2 := newGuardedChannel(fc2, true, false, func(audit.Event) {}, slog.New(slog.DiscardHandler))
	g2.Write(version)
	io.ReadAll(g2)
	if fc2.out.Len() != len(version)+len(reply) {
		t.Fatalf("reply not sent at a boundary: %x", fc2.out.Bytes())
	}
}

// A malformed request or reply closes the channel.
func TestGuardedChannelMalformed(t *testing.T) {
	fc := &fakeChannel{in: bytes.NewReader([]byte{0, 0, 0, 0, 1, 2, 3})}
	g := newGuardedChannel(fc, false, true, func(audit.Event) {}, slog.New(slog.DiscardHandler))
	if got, _ := io.ReadAll(g); len(got) != 0 || !fc.closed {
		t.Fatalf("forwarded %x, closed %v", got, fc.closed)
	}
	fc = &fakeChannel{in: bytes.NewReader(nil)}
	g = newGuardedChannel(fc, false, true, func(audit.Event) {}, slog.New(slog.DiscardHandler))
	if _, err := g.Write([]byte{0, 0, 0, 5, 2, 0, 0, 0, 6}); err == nil || !fc.closed {
		t.Fatalf("version 6 passed: %v, closed %v", err, fc.closed)
	}
}

func TestDirectionRefusal(t *testing.T) {
	up, down := gate.Controls{UploadOnly: true}, gate.Controls{DownloadOnly: true}
	for _, c := range []struct {
		ctl          gate.Controls
		cmd          string
		line, reason string
	}{
		{up, "scp -t /tmp/x", "", ""},
		{up, "scp -f /etc/hosts", "this grant allows only uploads to web-1", "upload_only"},
		{down, "scp -f /etc/hosts", "", ""},
		{down, "scp -t /tmp/x", "this grant allows only downloads from web-1", "download_only"},
		{up, "rsync --server -logDtpre.iLsfxCIvu . /tmp/", "", ""},
		{up, "rsync --server --sender -logDtpre.iLsfxCIvu . /tmp/", "this grant allows only uploads to web-1", "upload_only"},
		{down, "rsync --server --sender -logDtpre.iLsfxCIvu . /tmp/", "", ""},
		{down, "rsync --server -logDtpre.iLsfxCIvu . /tmp/", "this grant allows only downloads from web-1", "download_only"},
		{down, "rsync --server --log-format --sender . /tmp/", "this grant allows only downloads from web-1", "download_only"},
		{up, "echo FISH:;/bin/sh", "this grant allows only uploads to web-1, which a FISH session cannot be held to", "upload_only"},
		{down, "uname -a", "", ""},
		{gate.Controls{}, "scp -f /etc/hosts", "", ""},
	} {
		line, reason := directionRefusal(c.ctl, c.cmd, "web-1")
		if line != c.line || reason != c.reason {
			t.Errorf("%+v %q: %q %q, want %q %q", c.ctl, c.cmd, line, reason, c.line, c.reason)
		}
	}
}
