package xfer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"sort"

	"github.com/sshgate/sshgate/internal/audit"
)

// SFTP packet types (draft-ietf-secsh-filexfer-02, version 3, as OpenSSH speaks it).
const (
	sftpInit     = 1
	sftpOpen     = 3
	sftpClose    = 4
	sftpRead     = 5
	sftpWrite    = 6
	sftpSetstat  = 9
	sftpFsetstat = 10
	sftpOpendir  = 11
	sftpRemove   = 13
	sftpMkdir    = 14
	sftpRmdir    = 15
	sftpRename   = 18
	sftpSymlink  = 20
	sftpStatus   = 101
	sftpHandle   = 102
	sftpData     = 103
	sftpExtended = 200

	pflagRead  = 0x01
	pflagWrite = 0x02
	pflagTrunc = 0x10
	pflagExcl  = 0x20

	statusOK  = 0
	statusEOF = 1
)

// Bounds on what one session may make the parser hold.
const (
	maxSFTPPacket  = 1 << 20 // OpenSSH's limit is 256 KiB
	maxPending     = 8192    // requests awaiting an answer
	maxHandles     = 1024    // open files
	maxHandleBytes = 256
)

// framer cuts a stream into SFTP packets (uint32 length, then that many
// bytes). A length of 0 or above maxSFTPPacket breaks it for good.
type framer struct {
	buf    []byte
	broken bool
}

func (f *framer) feed(p []byte, fn func(pkt []byte)) {
	if f.broken {
		return
	}
	if len(f.buf) > 0 {
		f.buf = append(f.buf, p...)
		p = f.buf
	}
	for len(p) >= 4 {
		n := binary.BigEndian.Uint32(p)
		if n == 0 || n > maxSFTPPacket {
			f.broken, f.buf = true, nil
			return
		}
		if uint32(len(p)-4) < n {
			break
		}
		fn(p[4 : 4+n])
		p = p[4+n:]
	}
	if len(p) == 0 && cap(f.buf) > 64<<10 {
		f.buf = nil // a bulk transfer is over: give the large buffer back
		return
	}
	f.buf = append(f.buf[:0], p...)
}

// reader decodes SFTP fields; any short read sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.u32()
	if r.bad || uint64(n) > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.bytes()) }

// sftpFile is an open file handle and what passed through it.
type sftpFile struct {
	path         string
	pflags       uint32
	wrote, read  int64
	wnext, rnext int64 // next offset for a sequential transfer from 0
	wseq, rseq   bool  // still sequential
	whash, rhash hash.Hash
	eofAt        int64            // smallest offset a read hit the end of file at; -1: none yet
	truncAt      int64            // size set by FSETSTAT (scp's SFTP mode truncates after writing in place); -1: none
	ahead        map[int64][]byte // reads answered out of order, waiting for the gap to fill
	aheadBytes   int
}

// maxAhead bounds the out-of-order read data held per file (clients such as
// pkg/sftp's read with many requests in flight, and servers may answer them
// out of order).
const maxAhead = 4 << 20

// readData hashes data read at off, in file order.
func (f *sftpFile) readData(off int64, data []byte) {
	f.read += int64(len(data))
	if !f.rseq {
		return
	}
	if off != f.rnext {
		if off < f.rnext || f.aheadBytes+len(data) > maxAhead || len(f.ahead) >= 1024 {
			f.rseq, f.ahead = false, nil
			return
		}
		if f.ahead == nil {
			f.ahead = map[int64][]byte{}
		}
		f.ahead[off] = append([]byte(nil), data...)
		f.aheadBytes += len(data)
		return
	}
	f.rhash.Write(data)
	f.rnext += int64(len(data))
	for {
		b, ok := f.ahead[f.rnext]
		if !ok {
			return
		}
		delete(f.ahead, f.rnext)
		f.aheadBytes -= len(b)
		f.rhash.Write(b)
		f.rnext += int64(len(b))
	}
}

// sftpReq is a request waiting for its answer.
type sftpReq struct {
	typ     byte
	op      string // the event op for path operations
	path    string
	newPath string
	pflags  uint32
	handle  string
	offset  int64
	length  uint32 // of a read
}

// SFTP follows an SFTP session: client requests on ToTarget, server answers
// on ToUser, paired by request id.
type SFTP struct {
	emit    Emit
	c, s    framer
	pending map[uint32]sftpReq
	handles map[string]*sftpFile
}

// NewSFTP returns a parser for an "sftp" subsystem channel.
func NewSFTP(emit Emit) *SFTP {
	return &SFTP{emit: emit, pending: map[uint32]sftpReq{}, handles: map[string]*sftpFile{}}
}

func (p *SFTP) ToTarget(b []byte) { p.c.feed(b, p.request) }
func (p *SFTP) ToUser(b []byte)   { p.s.feed(b, p.answer) }

func (p *SFTP) wait(id uint32, r sftpReq) {
	if len(p.pending) < maxPending {
		p.pending[id] = r
	}
}

func (p *SFTP) request(pkt []byte) {
	r := &reader{b: pkt}
	typ := r.u8()
	if typ == sftpInit {
		return
	}
	id := r.u32()
	switch typ {
	case sftpOpen:
		path := r.str()
		pflags := r.u32()
		if !r.bad {
			p.wait(id, sftpReq{typ: typ, path: path, pflags: pflags})
		}
	case sftpClose:
		h := r.str()
		if !r.bad {
			p.wait(id, sftpReq{typ: typ, handle: h})
		}
	case sftpRead:
		h := r.str()
		off := r.u64()
		n := r.u32()
		if !r.bad {
			p.wait(id, sftpReq{typ: typ, handle: h, offset: int64(off), length: n})
		}
	case sftpWrite:
		h := r.str()
		off := r.u64()
		data := r.bytes()
		if f := p.handles[h]; f != nil && !r.bad {
			f.wrote += int64(len(data))
			if f.wseq && int64(off) == f.wnext {
				f.whash.Write(data)
				f.wnext += int64(len(data))
			} else {
				f.wseq = false
			}
		}
	case sftpFsetstat:
		h := r.str()
		flags := r.u32()
		if f := p.handles[h]; f != nil && flags&0x1 != 0 { // SSH_FILEXFER_ATTR_SIZE
			if size := r.u64(); !r.bad {
				f.truncAt = int64(size)
			}
		}
	case sftpSetstat, sftpRemove, sftpMkdir, sftpRmdir, sftpOpendir:
		path := r.str()
		op := map[byte]string{sftpSetstat: "setstat", sftpRemove: "remove", sftpMkdir: "mkdir", sftpRmdir: "rmdir", sftpOpendir: "list"}[typ]
		if !r.bad {
			p.wait(id, sftpReq{typ: typ, op: op, path: path})
		}
	case sftpRename, sftpSymlink:
		a, b := r.str(), r.str()
		op := "rename"
		if typ == sftpSymlink {
			op = "symlink"
		}
		if !r.bad {
			p.wait(id, sftpReq{typ: typ, op: op, path: a, newPath: b})
		}
	case sftpExtended:
		name := r.str()
		switch name {
		case "posix-rename@openssh.com", "hardlink@openssh.com":
			a, b := r.str(), r.str()
			op := "rename"
			if name == "hardlink@openssh.com" {
				op = "link"
			}
			if !r.bad {
				p.wait(id, sftpReq{typ: typ, op: op, path: a, newPath: b})
			}
		case "lsetstat@openssh.com":
			path := r.str()
			if !r.bad {
				p.wait(id, sftpReq{typ: typ, op: "setstat", path: path})
			}
		}
	}
}

func (p *SFTP) answer(pkt []byte) {
	r := &reader{b: pkt}
	typ := r.u8()
	id := r.u32()
	if r.bad {
		return
	}
	req, ok := p.pending[id]
	if !ok {
		return
	}
	delete(p.pending, id)
	switch typ {
	case sftpHandle:
		h := r.str()
		if r.bad || len(h) > maxHandleBytes {
			return
		}
		switch req.typ {
		case sftpOpen:
			if len(p.handles) >= maxHandles {
				return
			}
			p.handles[h] = &sftpFile{path: req.path, pflags: req.pflags, wseq: true, rseq: true,
				whash: sha256.New(), rhash: sha256.New(), eofAt: -1, truncAt: -1}
		case sftpOpendir:
			p.emit(audit.Event{Type: audit.TypeFile, Protocol: "sftp", Op: "list", Path: req.path, Result: "ok"})
		}
	case sftpData:
		data := r.bytes()
		f := p.handles[req.handle]
		if req.typ != sftpRead || f == nil || r.bad {
			return
		}
		f.readData(req.offset, data)
		// A short read is how servers answer a read across the end of a
		// regular file: the file ends there.
		if end := req.offset + int64(len(data)); uint32(len(data)) < req.length && (f.eofAt < 0 || end < f.eofAt) {
			f.eofAt = end
		}
	case sftpStatus:
		code := r.u32()
		msg := r.str()
		p.status(req, code, msg)
	}
}

func (p *SFTP) status(req sftpReq, code uint32, msg string) {
	ok := code == statusOK
	switch req.typ {
	case sftpOpen: // the open failed
		op, dir := fileOp(req.pflags)
		p.emit(audit.Event{Type: audit.TypeFile, Protocol: "sftp", Op: op, Direction: dir, Path: req.path, Result: "failed", Message: msg})
	case sftpRead:
		if f := p.handles[req.handle]; f != nil && code == statusEOF && (f.eofAt < 0 || req.offset < f.eofAt) {
			f.eofAt = req.offset
		}
	case sftpClose:
		f := p.handles[req.handle]
		if f == nil {
			return
		}
		delete(p.handles, req.handle)
		p.emitFile(f, result(ok), msg)
	default:
		if req.op == "" {
			return
		}
		e := audit.Event{Type: audit.TypeFile, Protocol: "sftp", Op: req.op, Path: req.path, NewPath: req.newPath, Result: result(ok)}
		if !ok {
			e.Message = msg
		}
		p.emit(e)
	}
}

// fileOp names what an open with pflags does.
func fileOp(pflags uint32) (op, direction string) {
	if pflags&pflagWrite != 0 {
		return "write", "upload"
	}
	return "read", "download"
}

func (p *SFTP) emitFile(f *sftpFile, res, msg string) {
	op, dir := fileOp(f.pflags)
	e := audit.Event{Type: audit.TypeFile, Protocol: "sftp", Op: op, Direction: dir, Path: f.path, Result: res}
	if res != "ok" {
		e.Message = msg
	}
	whole := res == "ok"
	if op == "write" {
		e.Size = audit.Int64(f.wrote)
		// The whole file: written from 0 to the end, into a file that was
		// truncated or created, or cut to that length afterwards.
		if whole && f.wseq && f.wnext == f.wrote && (f.pflags&(pflagTrunc|pflagExcl) != 0 || f.truncAt == f.wnext) {
			e.SHA256 = hex.EncodeToString(f.whash.Sum(nil))
		}
	} else {
		e.Size = audit.Int64(f.read)
		// The whole file: read from 0 to where a read hit the end.
		if whole && f.rseq && f.eofAt == f.rnext && f.rnext == f.read && len(f.ahead) == 0 {
			e.SHA256 = hex.EncodeToString(f.rhash.Sum(nil))
		}
	}
	p.emit(e)
}

// End reports the files still open as incomplete.
func (p *SFTP) End(bool) {
	files := make([]*sftpFile, 0, len(p.handles))
	for h, f := range p.handles {
		delete(p.handles, h)
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		p.emitFile(f, "incomplete", "")
	}
}
