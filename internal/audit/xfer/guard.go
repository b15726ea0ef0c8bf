package xfer

import (
	"encoding/binary"
	"errors"

	"github.com/sshgate/sshgate/internal/audit"
)

// A grant's --upload-only and --download-only, enforced on the file
// protocols the gate can follow: SFTP per request (SFTPGuard), legacy scp
// and rsync per session from their server command line (Direction).

// Direction names the way file data moves in a legacy scp (scp -O) or rsync
// server command that Transfer calls "scp" or "rsync": "upload" (user to
// target), "download" (target to user), or "" when it cannot be told for
// sure (the caller refuses such a command under either restriction).
//
// scp: the command line holds only the no-argument flags NewSCP knows, so
// -t (sink: an upload) or -f (source: a download) is certain. rsync: the
// client sends "rsync --server --sender ..." for a download; an rsync server
// becomes the sender only with --sender, so a command without that word is
// an upload. A --sender elsewhere (which an option taking an argument may
// swallow) is neither.
func Direction(command string) string {
	if !plainCommand(command) {
		return ""
	}
	if p := NewSCP(command, nil); p != nil {
		if p.upload {
			return "upload"
		}
		return "download"
	}
	if NewRsync(command, nil) == nil {
		return ""
	}
	w, _ := shellWords(command)
	if len(w) >= 3 && w[1] == "--server" && w[2] == "--sender" {
		return "download"
	}
	for _, a := range w[1:] {
		if a == "--sender" {
			return ""
		}
	}
	return "upload"
}

// SFTP request types the guard knows beyond the audit's, and status codes.
const (
	sftpVersion  = 2
	sftpLstat    = 7
	sftpFstat    = 8
	sftpReaddir  = 12
	sftpRealpath = 16
	sftpStat     = 17
	sftpReadlink = 19

	statusPermissionDenied = 3
)

// maxGuardPacket bounds one SFTP packet through the guard in either
// direction (OpenSSH's sftp-server and client use at most 256 KiB).
const maxGuardPacket = 1 << 20

// ErrSFTPMalformed: a packet the guard cannot read (a length of 0 or over
// the limit, a request too short for its type, a protocol version other than
// 3). The caller closes the channel.
var ErrSFTPMalformed = errors.New("malformed sftp packet")

// Denied is a request the guard refused: the status reply the client gets
// (a whole packet, length included) and the file event to audit.
type Denied struct {
	Reply []byte
	Event audit.Event
}

// SFTPGuard filters the client's side of an SFTP session (version 3, as
// OpenSSH speaks it) for a grant that forbids uploads (NoUpload: the grant
// is --download-only) or downloads (NoDownload: --upload-only), or both.
//
// Forbidding uploads refuses OPEN with any flag but READ, WRITE, SETSTAT,
// FSETSTAT, REMOVE, MKDIR, RMDIR, RENAME, SYMLINK and the extended requests
// that change files. Forbidding downloads refuses OPEN unless it asks for
// WRITE and not READ (OpenSSH opens a file read-only when no flag is set)
// and READ; listing and stat stay allowed. Unknown packet types and extended
// requests are refused under either restriction. A refused request is
// answered SSH_FX_PERMISSION_DENIED with its id and not forwarded.
type SFTPGuard struct {
	NoUpload, NoDownload bool
	buf                  []byte
	broken               bool
}

// Client takes bytes from the client and appends to fwd the whole packets
// that may reach the target; each refused one is in denied. A partial
// packet waits for more bytes. After an error the guard forwards nothing.
func (g *SFTPGuard) Client(b []byte, fwd []byte) (out []byte, denied []Denied, err error) {
	if g.broken {
		return fwd, nil, ErrSFTPMalformed
	}
	g.buf = append(g.buf, b...)
	p := g.buf
	for len(p) >= 4 {
		n := binary.BigEndian.Uint32(p)
		if n < 5 || n > maxGuardPacket {
			g.broken, g.buf = true, nil
			return fwd, denied, ErrSFTPMalformed
		}
		if uint32(len(p)-4) < n {
			break
		}
		pkt := p[4 : 4+n]
		d, ok := g.check(pkt)
		switch {
		case !ok:
			g.broken, g.buf = true, nil
			return fwd, denied, ErrSFTPMalformed
		case d != nil:
			denied = append(denied, *d)
		default:
			fwd = append(fwd, p[:4+n]...)
		}
		p = p[4+n:]
	}
	if len(p) == len(g.buf) {
		return fwd, denied, nil // a packet in progress: nothing to move
	}
	rest := copy(g.buf, p)
	g.buf = g.buf[:rest]
	if rest == 0 && cap(g.buf) > 64<<10 {
		g.buf = nil // a large packet has passed: give its buffer back
	}
	return fwd, denied, nil
}

// check decides one request (without its length); ok is false for a
// request too short for its type.
func (g *SFTPGuard) check(pkt []byte) (d *Denied, ok bool) {
	r := &reader{b: pkt}
	typ := r.u8()
	if typ == sftpInit {
		r.u32()
		return nil, !r.bad
	}
	id := r.u32()
	if r.bad {
		return nil, false
	}
	deny := func(e audit.Event) (*Denied, bool) {
		e.Type, e.Protocol, e.Result = audit.TypeFile, "sftp", "denied"
		if e.Op == "" {
			e.Op = "request"
		}
		if g.NoUpload {
			e.Reason = "download_only"
		} else {
			e.Reason = "upload_only"
		}
		if g.NoUpload && g.NoDownload {
			e.Reason = "no_transfer"
		}
		return &Denied{Reply: statusReply(id), Event: e}, true
	}
	switch typ {
	case sftpOpen:
		path := r.str()
		pflags := r.u32()
		if r.bad {
			return nil, false
		}
		// OpenSSH's sftp-server opens a file read-only when neither READ
		// nor WRITE is set.
		writes := pflags&^pflagRead != 0
		reads := pflags&pflagRead != 0 || pflags&pflagWrite == 0
		if writes && g.NoUpload {
			return deny(audit.Event{Op: "write", Direction: "upload", Path: path})
		}
		if reads && g.NoDownload {
			return deny(audit.Event{Op: "read", Direction: "download", Path: path})
		}
	case sftpRead:
		if g.NoDownload {
			return deny(audit.Event{Op: "read", Direction: "download"})
		}
	case sftpWrite:
		if g.NoUpload {
			return deny(audit.Event{Op: "write", Direction: "upload"})
		}
	case sftpSetstat, sftpRemove, sftpMkdir, sftpRmdir:
		path := r.str()
		if r.bad {
			return nil, false
		}
		if g.NoUpload {
			op := map[byte]string{sftpSetstat: "setstat", sftpRemove: "remove", sftpMkdir: "mkdir", sftpRmdir: "rmdir"}[typ]
			return deny(audit.Event{Op: op, Path: path})
		}
	case sftpFsetstat:
		if g.NoUpload {
			return deny(audit.Event{Op: "setstat"})
		}
	case sftpRename, sftpSymlink:
		a, b := r.str(), r.str()
		if r.bad {
			return nil, false
		}
		if g.NoUpload {
			op := "rename"
			if typ == sftpSymlink {
				op = "symlink"
			}
			return deny(audit.Event{Op: op, Path: a, NewPath: b})
		}
	case sftpClose, sftpLstat, sftpFstat, sftpOpendir, sftpReaddir, sftpRealpath, sftpStat, sftpReadlink:
	case sftpExtended:
		name := r.str()
		if r.bad {
			return nil, false
		}
		switch name {
		case "statvfs@openssh.com", "fstatvfs@openssh.com", "limits@openssh.com", "expand-path@openssh.com",
			"home-directory", "users-groups-by-id@openssh.com", "fsync@openssh.com":
		case "posix-rename@openssh.com", "hardlink@openssh.com", "lsetstat@openssh.com", "copy-data":
			if g.NoUpload {
				op := map[string]string{"posix-rename@openssh.com": "rename", "hardlink@openssh.com": "link",
					"lsetstat@openssh.com": "setstat", "copy-data": "copy"}[name]
				e := audit.Event{Op: op}
				if name != "copy-data" {
					e.Path = r.str()
					if name != "lsetstat@openssh.com" {
						e.NewPath = r.str()
					}
				}
				return deny(e)
			}
		default:
			return deny(audit.Event{Op: "extended", Message: safeName(name)})
		}
	default:
		return deny(audit.Event{})
	}
	return nil, true
}

// safeName bounds an extension name for the audit record.
func safeName(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

// statusReply is SSH_FXP_STATUS SSH_FX_PERMISSION_DENIED for request id.
func statusReply(id uint32) []byte {
	const msg = "permission denied by the gate"
	b := make([]byte, 0, 4+1+4+4+4+len(msg)+4)
	b = binary.BigEndian.AppendUint32(b, uint32(1+4+4+4+len(msg)+4))
	b = append(b, sftpStatus)
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, statusPermissionDenied)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = binary.BigEndian.AppendUint32(b, 0) // language tag ""
	return b
}

// SFTPBounds follows the packet boundaries of the target's side of an SFTP
// session, so the gate's own replies go in between whole packets. The first
// packet must be the target's VERSION 3.
type SFTPBounds struct {
	hdr    [4]byte
	nh     int    // header bytes seen of the packet in progress
	left   uint32 // body bytes still to come
	body   []byte // the first packet's first bytes (type and version)
	first  bool   // the first packet has been checked
	broken bool
}

// AtBoundary reports whether the bytes seen so far end a packet.
func (s *SFTPBounds) AtBoundary() bool { return s.nh == 0 && s.left == 0 }

// Next consumes the bytes of b up to and including the next packet end: n
// bytes, and whether they end a packet. An error means the stream cannot be
// followed (the caller closes the channel).
func (s *SFTPBounds) Next(b []byte) (n int, end bool, err error) {
	if s.broken {
		return 0, false, ErrSFTPMalformed
	}
	for n < len(b) {
		if s.left == 0 {
			s.hdr[s.nh] = b[n]
			s.nh++
			n++
			if s.nh < 4 {
				continue
			}
			s.nh = 0
			s.left = binary.BigEndian.Uint32(s.hdr[:])
			if s.left < 1 || s.left > maxGuardPacket || (!s.first && s.left < 5) {
				s.broken = true
				return n, false, ErrSFTPMalformed
			}
			continue
		}
		k := min(uint32(len(b)-n), s.left)
		if !s.first {
			need := 5 - len(s.body)
			s.body = append(s.body, b[n:n+min(int(k), need)]...)
			if len(s.body) == 5 {
				if s.body[0] != sftpVersion || binary.BigEndian.Uint32(s.body[1:]) != 3 {
					s.broken = true
					return n, false, ErrSFTPMalformed
				}
				s.first, s.body = true, nil
			}
		}
		n += int(k)
		s.left -= k
		if s.left == 0 {
			return n, true, nil
		}
	}
	return n, false, nil
}
