package xfer

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// pkt builds an SFTP packet: length, type, then fields (uint32, uint64,
// string or []byte as an SFTP string).
func pkt(typ byte, fields ...any) []byte {
	b := []byte{typ}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, v)
		case int:
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		case []byte:
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func TestSFTPGuard(t *testing.T) {
	const (
		up   = 1 // allowed under --upload-only (NoDownload)
		down = 2 // allowed under --download-only (NoUpload)
		both = up | down
	)
	cases := []struct {
		name  string
		pkt   []byte
		allow int
		op    string
	}{
		{"init", pkt(sftpInit, 3), both, ""},
		{"open read", pkt(sftpOpen, 7, "/f", pflagRead, 0), down, "read"},
		{"open no flags (read-only in OpenSSH)", pkt(sftpOpen, 7, "/f", 0, 0), down, "read"},
		{"open write creat trunc", pkt(sftpOpen, 7, "/f", pflagWrite|0x08|pflagTrunc, 0), up, "write"},
		{"open append", pkt(sftpOpen, 7, "/f", pflagWrite|0x04, 0), up, "write"},
		{"open creat only", pkt(sftpOpen, 7, "/f", 0x08, 0), 0, ""},
		{"open read write", pkt(sftpOpen, 7, "/f", pflagRead|pflagWrite, 0), 0, ""},
		{"read", pkt(sftpRead, 7, "h", uint64(0), 100), down, "read"},
		{"write", pkt(sftpWrite, 7, "h", uint64(0), "data"), up, "write"},
		{"close", pkt(sftpClose, 7, "h"), both, ""},
		{"stat", pkt(sftpStat, 7, "/f"), both, ""},
		{"lstat", pkt(sftpLstat, 7, "/f"), both, ""},
		{"fstat", pkt(sftpFstat, 7, "h"), both, ""},
		{"opendir", pkt(sftpOpendir, 7, "/"), both, ""},
		{"readdir", pkt(sftpReaddir, 7, "h"), both, ""},
		{"realpath", pkt(sftpRealpath, 7, "."), both, ""},
		{"readlink", pkt(sftpReadlink, 7, "/l"), both, ""},
		{"setstat", pkt(sftpSetstat, 7, "/f", 0), up, "setstat"},
		{"fsetstat", pkt(sftpFsetstat, 7, "h", 0), up, "setstat"},
		{"remove", pkt(sftpRemove, 7, "/f"), up, "remove"},
		{"mkdir", pkt(sftpMkdir, 7, "/d", 0), up, "mkdir"},
		{"rmdir", pkt(sftpRmdir, 7, "/d"), up, "rmdir"},
		{"rename", pkt(sftpRename, 7, "/a", "/b"), up, "rename"},
		{"symlink", pkt(sftpSymlink, 7, "/a", "/b"), up, "symlink"},
		{"posix-rename", pkt(sftpExtended, 7, "posix-rename@openssh.com", "/a", "/b"), up, "rename"},
		{"hardlink", pkt(sftpExtended, 7, "hardlink@openssh.com", "/a", "/b"), up, "link"},
		{"lsetstat", pkt(sftpExtended, 7, "lsetstat@openssh.com", "/a", 0), up, "setstat"},
		{"copy-data", pkt(sftpExtended, 7, "copy-data", "h1", uint64(0), uint64(0), "h2", uint64(0)), up, "copy"},
		{"limits", pkt(sftpExtended, 7, "limits@openssh.com"), both, ""},
		{"statvfs", pkt(sftpExtended, 7, "statvfs@openssh.com", "/"), both, ""},
		{"expand-path", pkt(sftpExtended, 7, "expand-path@openssh.com", "~"), both, ""},
		{"unknown extension", pkt(sftpExtended, 7, "check-file", "/f"), 0, "extended"},
		{"unknown type", pkt(21, 7, "/a", "/b"), 0, "request"},
	}
	for _, c := range cases {
		for _, mode := range []struct {
			name  string
			g     SFTPGuard
			allow bool
		}{
			{"upload-only", SFTPGuard{NoDownload: true}, c.allow&up != 0},
			{"download-only", SFTPGuard{NoUpload: true}, c.allow&down != 0},
			{"neither way", SFTPGuard{NoUpload: true, NoDownload: true}, c.allow == both},
		} {
			fwd, denied, err := mode.g.Client(c.pkt, nil)
			if err != nil {
				t.Errorf("%s, %s: %v", c.name, mode.name, err)
				continue
			}
			if mode.allow {
				if !bytes.Equal(fwd, c.pkt) || len(denied) != 0 {
					t.Errorf("%s, %s: refused, want it forwarded", c.name, mode.name)
				}
				continue
			}
			if len(fwd) != 0 || len(denied) != 1 {
				t.Errorf("%s, %s: forwarded %d bytes, %d refusals; want one refusal", c.name, mode.name, len(fwd), len(denied))
				continue
			}
			d := denied[0]
			if want := statusReply(7); !bytes.Equal(d.Reply, want) {
				t.Errorf("%s, %s: reply %x, want %x", c.name, mode.name, d.Reply, want)
			}
			e := d.Event
			if e.Type != "file" || e.Protocol != "sftp" || e.Result != "denied" || e.Reason == "" {
				t.Errorf("%s, %s: event %+v", c.name, mode.name, e)
			}
			if c.op != "" && mode.name != "neither way" && e.Op != c.op {
				t.Errorf("%s, %s: op %q, want %q", c.name, mode.name, e.Op, c.op)
			}
		}
	}
}

// The reply is a well-formed SSH_FXP_STATUS the audit's own parser reads.
func TestSFTPStatusReply(t *testing.T) {
	r := &reader{b: statusReply(0xdeadbeef)}
	n := r.u32()
	if int(n) != len(r.b) {
		t.Fatalf("length %d, body %d", n, len(r.b))
	}
	if typ, id, code, msg, lang := r.u8(), r.u32(), r.u32(), r.str(), r.str(); r.bad || typ != sftpStatus || id != 0xdeadbeef ||
		code != statusPermissionDenied || msg == "" || lang != "" || len(r.b) != 0 {
		t.Fatalf("reply: %d %x %d %q %q bad=%v rest=%d", typ, id, code, msg, lang, r.bad, len(r.b))
	}
}

// A stream cut anywhere is framed the same; malformed packets break the
// guard for good.
func TestSFTPGuardStream(t *testing.T) {
	var stream []byte
	for _, p := range [][]byte{pkt(sftpInit, 3), pkt(sftpOpen, 1, "/f", pflagRead, 0), pkt(sftpWrite, 2, "h", uint64(0), bytes.Repeat([]byte("x"), 70000)),
		pkt(sftpStat, 3, "/f"), pkt(sftpRemove, 4, "/f")} {
		stream = append(stream, p...)
	}
	want := append(append(pkt(sftpInit, 3), pkt(sftpWrite, 2, "h", uint64(0), bytes.Repeat([]byte("x"), 70000))...), pkt(sftpStat, 3, "/f")...)
	want = append(want, pkt(sftpRemove, 4, "/f")...)
	for _, step := range []int{1, 3, 7, 4096, len(stream)} {
		g := SFTPGuard{NoDownload: true}
		var fwd []byte
		var ids []uint32
		for i := 0; i < len(stream); i += step {
			var d []Denied
			var err error
			fwd, d, err = g.Client(stream[i:min(i+step, len(stream))], fwd)
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			for _, x := range d {
				ids = append(ids, binary.BigEndian.Uint32(x.Reply[5:]))
			}
		}
		if !bytes.Equal(fwd, want) || len(ids) != 1 || ids[0] != 1 {
			t.Fatalf("step %d: forwarded %d bytes (want %d), refused %v", step, len(fwd), len(want), ids)
		}
	}

	for name, bad := range map[string][]byte{
		"zero length":  {0, 0, 0, 0},
		"too long":     {0, 0x20, 0, 0},
		"short":        {0, 0, 0, 2, sftpStat, 0},
		"open cut":     pkt(sftpOpen, 1, "/f"),
		"bad string":   {0, 0, 0, 9, sftpRemove, 0, 0, 0, 1, 0, 0, 0, 9},
		"extended cut": pkt(sftpExtended, 1),
	} {
		g := SFTPGuard{NoUpload: true}
		if _, _, err := g.Client(bad, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
		if fwd, _, err := g.Client(pkt(sftpStat, 3, "/f"), nil); err == nil || len(fwd) != 0 {
			t.Errorf("%s: the guard goes on after a malformed packet", name)
		}
	}
}

func TestSFTPBounds(t *testing.T) {
	stream := append(append(pkt(sftpVersion, 3), pkt(sftpHandle, 1, "h")...), pkt(sftpData, 2, bytes.Repeat([]byte("d"), 5000))...)
	ends := []int{len(pkt(sftpVersion, 3)), len(pkt(sftpVersion, 3)) + len(pkt(sftpHandle, 1, "h")), len(stream)}
	for _, step := range []int{1, 2, 5, 100, len(stream)} {
		var s SFTPBounds
		var got []int
		pos := 0
		for i := 0; i < len(stream); i += step {
			b := stream[i:min(i+step, len(stream))]
			for len(b) > 0 {
				n, end, err := s.Next(b)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				pos += n
				b = b[n:]
				if end {
					got = append(got, pos)
					if !s.AtBoundary() {
						t.Fatalf("step %d: end but not at a boundary", step)
					}
				}
			}
		}
		if len(got) != len(ends) || got[0] != ends[0] || got[1] != ends[1] || got[2] != ends[2] {
			t.Fatalf("step %d: ends %v, want %v", step, got, ends)
		}
	}
	for name, bad := range map[string][]byte{
		"version 6":    pkt(sftpVersion, 6),
		"not version":  pkt(sftpHandle, 1, "h"),
		"zero length":  {0, 0, 0, 0},
		"huge":         {0xff, 0, 0, 0},
		"short first":  {0, 0, 0, 2, 2, 0},
		"zero later":   append(pkt(sftpVersion, 3), 0, 0, 0, 0),
		"too long ext": append(pkt(sftpVersion, 3), 0, 0x20, 0, 1),
	} {
		var s SFTPBounds
		var err error
		for b := bad; len(b) > 0 && err == nil; {
			var n int
			n, _, err = s.Next(b)
			b = b[n:]
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDirection(t *testing.T) {
	for cmd, want := range map[string]string{
		"scp -t /tmp/x":                                  "upload",
		"scp -r -p -t -- /tmp/x":                         "upload",
		"scp -f /etc/hosts":                              "download",
		"scp -v -d -t /tmp/":                             "upload",
		"/usr/bin/scp -pf a b":                           "download",
		"rsync --server -logDtpre.iLsfxCIvu . /tmp/x/":   "upload",
		"rsync --server --sender -logDtpre.iLsf . /tmp/": "download",
		"rsync --server --log-format --sender . /tmp/":   "",
		"rsync --server . -- --sender":                   "",
		"rsync --server -e.x --sender . /tmp/":           "",
		"scp -t /tmp/x; echo hi":                         "",
		"echo FISH:;/bin/sh":                             "",
		"cat /etc/passwd":                                "",
	} {
		if got := Direction(cmd); got != want {
			t.Errorf("Direction(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// FuzzSFTPGuard: any bytes, cut anywhere: no panic, only whole packets are
// forwarded, each refusal has a reply, and nothing goes on after an error.
func FuzzSFTPGuard(f *testing.F) {
	f.Add(append(pkt(sftpInit, 3), pkt(sftpOpen, 1, "/f", pflagRead, 0)...), uint8(3), uint8(1))
	f.Add(pkt(sftpWrite, 2, "h", uint64(0), "data"), uint8(1), uint8(2))
	f.Add(pkt(sftpExtended, 2, "posix-rename@openssh.com", "/a", "/b"), uint8(2), uint8(3))
	f.Add(append(pkt(sftpVersion, 3), pkt(sftpStatus, 1, 0, "", "")...), uint8(5), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, cut, mode uint8) {
		g := SFTPGuard{NoUpload: mode&1 != 0, NoDownload: mode&2 != 0}
		step := int(cut) + 1
		failed := false
		for i := 0; i < len(data); i += step {
			fwd, denied, err := g.Client(data[i:min(i+step, len(data))], nil)
			if failed && (err == nil || len(fwd) != 0) {
				t.Fatal("the guard went on after an error")
			}
			failed = failed || err != nil
			for len(fwd) > 0 {
				if len(fwd) < 4 {
					t.Fatal("a partial packet forwarded")
				}
				n := int(binary.BigEndian.Uint32(fwd))
				if n < 5 || n > maxGuardPacket || len(fwd) < 4+n {
					t.Fatal("a bad packet forwarded")
				}
				fwd = fwd[4+n:]
			}
			for _, d := range denied {
				if len(d.Reply) < 9 || d.Reply[4] != sftpStatus || d.Event.Result != "denied" {
					t.Fatalf("bad refusal %+v", d)
				}
			}
			if len(g.buf) > maxGuardPacket+4 {
				t.Fatalf("buffer grew to %d", len(g.buf))
			}
		}
		// The same bytes as a target's stream: boundaries or an error.
		var s SFTPBounds
		for b := data; len(b) > 0; {
			n, _, err := s.Next(b)
			if err != nil {
				break
			}
			if n == 0 {
				t.Fatal("no progress")
			}
			b = b[n:]
		}
	})
}

// BenchmarkSFTPGuard: an upload's 32 KiB WRITE packets through the guard,
// read 64 KiB at a time as the relay does.
func BenchmarkSFTPGuard(b *testing.B) {
	one := pkt(sftpWrite, 2, "handle", uint64(0), bytes.Repeat([]byte("x"), 32<<10))
	stream := bytes.Repeat(one, 64)
	g := SFTPGuard{NoDownload: true}
	var fwd []byte
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		for i := 0; i < len(stream); i += 64 << 10 {
			fwd, _, _ = g.Client(stream[i:min(i+64<<10, len(stream))], fwd[:0])
		}
	}
}
