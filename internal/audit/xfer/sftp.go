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
// bytes) without copying file data: a packet whose header says it carries
// data (a WRITE request, a DATA answer) is handed over as its header, then
// its data in the pieces the relay passed, in place. Every other packet (small:
// names, handles, attributes) is handed over whole, assembled when it spans
// pieces, as is a header. A length of 0 or above maxSFTPPacket breaks it for
// good.
type framer struct {
	h      framing
	n      uint32 // length of the current packet; 0: reading a length
	k      int    // header length of the current packet; 0: undecided; n: whole
	left   uint32 // streamed bytes of the current packet still to come
	buf    []byte // the length, header or packet assembled so far
	broken bool
}

// framing is what a framer asks of its parser.
type framing interface {
	// headLen says, from the first bytes of a packet (at least one, at
	// most the packet), how it is cut: 0: handed over whole; k > 0: a
	// header of k bytes and the rest streamed (if k is less than the
	// packet); -m: undecided until m bytes are there.
	headLen(prefix []byte) int
	whole(pkt []byte)
	head(hdr []byte, rest uint32) // then body with rest bytes, then end
	body(p []byte)
	end()
}

func (f *framer) feed(p []byte) {
	for len(p) > 0 && !f.broken {
		switch {
		case f.n == 0: // the length
			var lb []byte
			if len(f.buf) == 0 && len(p) >= 4 {
				lb, p = p[:4], p[4:]
			} else {
				m := min(4-len(f.buf), len(p))
				f.buf = append(f.buf, p[:m]...)
				if p = p[m:]; len(f.buf) < 4 {
					return
				}
				lb = f.buf
			}
			n := binary.BigEndian.Uint32(lb)
			f.buf = f.buf[:0]
			if n == 0 || n > maxSFTPPacket {
				f.broken, f.buf = true, nil
				return
			}
			f.n, f.k = n, 0
		case f.k == 0: // undecided: how is it cut?
			view := p[:min(uint32(len(p)), f.n)]
			if len(f.buf) > 0 {
				view = f.buf
			}
			k := f.h.headLen(view)
			switch {
			case k == 0 || k >= int(f.n) || -k > int(f.n):
				f.k = int(f.n)
			case k > 0:
				f.k = k
			default: // need -k bytes: they are part of the header
				m := min(-k-len(f.buf), len(p))
				f.buf = append(f.buf, p[:m]...)
				p = p[m:]
			}
		case f.left == 0: // the header (or whole packet) of f.k bytes
			var hdr []byte
			if len(f.buf) == 0 && len(p) >= f.k {
				hdr, p = p[:f.k], p[f.k:]
			} else {
				m := min(f.k-len(f.buf), len(p))
				f.buf = append(f.buf, p[:m]...)
				if p = p[m:]; len(f.buf) < f.k {
					return
				}
				hdr = f.buf
			}
			if f.k == int(f.n) {
				f.h.whole(hdr)
				f.n = 0
			} else {
				f.left = f.n - uint32(f.k)
				f.h.head(hdr, f.left)
			}
			if cap(f.buf) > 64<<10 {
				f.buf = nil // a large packet is over: give its buffer back
			}
			f.buf = f.buf[:0]
		default: // streamed bytes
			m := min(f.left, uint32(len(p)))
			f.h.body(p[:m])
			p = p[m:]
			if f.left -= m; f.left == 0 {
				f.h.end()
				f.n = 0
			}
		}
	}
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

// readStart begins the data of a read answered at off, n bytes long: hashed
// in place when it comes in file order, held when it comes ahead of a gap.
func (f *sftpFile) readStart(off int64, n uint32) readSink {
	if !f.rseq || f.rhash == nil {
		return readSink{f: f}
	}
	if off != f.rnext {
		if off < f.rnext || f.aheadBytes+int(n) > maxAhead || len(f.ahead) >= 1024 {
			f.rseq, f.ahead = false, nil
			return readSink{f: f}
		}
		return readSink{f: f, ahead: true, off: off, held: make([]byte, 0, n)}
	}
	return readSink{f: f, inOrder: true}
}

// readSink takes one read answer's data.
type readSink struct {
	f       *sftpFile
	inOrder bool   // hash it as it comes
	ahead   bool   // hold it until the gap before off fills
	off     int64  // where held data starts
	held    []byte // out-of-order data (copied: the relay's buffer is not ours)
}

func (s *readSink) data(p []byte) {
	s.f.read += int64(len(p))
	switch {
	case s.inOrder && s.f.rseq:
		s.f.rhash.Write(p)
		s.f.rnext += int64(len(p))
	case s.ahead:
		s.held = append(s.held, p...)
	}
}

func (s *readSink) done() {
	f := s.f
	if s.ahead && f.rseq {
		if f.ahead == nil {
			f.ahead = map[int64][]byte{}
		}
		f.ahead[s.off] = s.held
		f.aheadBytes += len(s.held)
		return
	}
	if !s.inOrder || !f.rseq {
		return
	}
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
// on ToUser, paired by request id. File data is counted and hashed where it
// lies, never copied (but for reads answered out of order).
type SFTP struct {
	emit    Emit
	noHash  bool
	c, s    framer
	pending map[uint32]sftpReq
	handles map[string]*sftpFile

	// the WRITE request being streamed
	wf       *sftpFile // nil: not followed
	wleft    uint32    // its data bytes still to come
	whashing bool
	// the DATA answer being streamed
	rs    *readSink // nil: not followed
	rleft uint32
}

// NewSFTP returns a parser for an "sftp" subsystem channel.
func NewSFTP(emit Emit) *SFTP {
	p := &SFTP{emit: emit, pending: map[uint32]sftpReq{}, handles: map[string]*sftpFile{}}
	p.c.h, p.s.h = requests{p}, answers{p}
	return p
}

func (p *SFTP) ToTarget(b []byte) { p.c.feed(b) }
func (p *SFTP) ToUser(b []byte)   { p.s.feed(b) }

// writeHeadLen is the header length of a WRITE request: type, id, handle,
// offset, data length (-9 until the handle's length is known; 0 for a
// handle longer than any the parser follows).
func writeHeadLen(prefix []byte) int {
	if len(prefix) < 9 {
		return -9
	}
	h := binary.BigEndian.Uint32(prefix[5:9])
	if h > maxHandleBytes {
		return 0
	}
	return 9 + int(h) + 12
}

// requests cuts the client's stream: WRITE data is streamed.
type requests struct{ p *SFTP }

func (r requests) headLen(prefix []byte) int {
	if prefix[0] != sftpWrite {
		return 0
	}
	return writeHeadLen(prefix)
}
func (r requests) whole(pkt []byte)             { r.p.request(pkt) }
func (r requests) head(hdr []byte, rest uint32) { r.p.writeHead(hdr, rest) }
func (r requests) body(b []byte)                { r.p.writeBody(b) }
func (r requests) end()                         { r.p.wf = nil }

// answers cuts the server's stream: DATA is streamed.
type answers struct{ p *SFTP }

func (a answers) headLen(prefix []byte) int {
	if prefix[0] != sftpData {
		return 0
	}
	return 9 // type, id, data length
}
func (a answers) whole(pkt []byte)             { a.p.answer(pkt) }
func (a answers) head(hdr []byte, rest uint32) { a.p.dataHead(hdr, rest) }
func (a answers) body(b []byte)                { a.p.dataBody(b) }
func (a answers) end()                         { a.p.dataEnd() }

// writeHead starts a WRITE request whose data (rest bytes of the packet
// after hdr) follows in writeBody.
func (p *SFTP) writeHead(hdr []byte, rest uint32) {
	p.wf = nil
	r := &reader{b: hdr[5:]} // after type and id
	h := r.str()
	off := r.u64()
	n := r.u32()
	f := p.handles[h]
	if f == nil || r.bad || n > rest {
		return
	}
	p.wf, p.wleft = f, n
	p.whashing = f.wseq && int64(off) == f.wnext
	if !p.whashing {
		f.wseq = false
	}
}

func (p *SFTP) writeBody(b []byte) {
	f := p.wf
	if f == nil {
		return
	}
	b = b[:min(uint32(len(b)), p.wleft)]
	p.wleft -= uint32(len(b))
	f.wrote += int64(len(b))
	if p.whashing {
		if f.whash != nil {
			f.whash.Write(b)
		}
		f.wnext += int64(len(b))
	}
}

// dataHead starts a DATA answer whose data follows in dataBody.
func (p *SFTP) dataHead(hdr []byte, rest uint32) {
	p.rs = nil
	r := &reader{b: hdr[1:]}
	id := r.u32()
	n := r.u32()
	req, ok := p.pending[id]
	if !ok {
		return
	}
	delete(p.pending, id)
	f := p.handles[req.handle]
	if req.typ != sftpRead || f == nil || r.bad || n > rest {
		return
	}
	// A short read is how servers answer a read across the end of a
	// regular file: the file ends there.
	if end := req.offset + int64(n); n < req.length && (f.eofAt < 0 || end < f.eofAt) {
		f.eofAt = end
	}
	s := f.readStart(req.offset, n)
	p.rs, p.rleft = &s, n
}

func (p *SFTP) dataBody(b []byte) {
	if p.rs == nil {
		return
	}
	b = b[:min(uint32(len(b)), p.rleft)]
	p.rleft -= uint32(len(b))
	p.rs.data(b)
}

func (p *SFTP) dataEnd() {
	if p.rs != nil {
		p.rs.done()
		p.rs = nil
	}
}

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
	case sftpWrite: // a small one, whole
		if k := writeHeadLen(pkt); k > 0 && k <= len(pkt) {
			p.writeHead(pkt[:k], uint32(len(pkt)-k))
			p.writeBody(pkt[k:])
			p.wf = nil
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
			f := &sftpFile{path: req.path, pflags: req.pflags, wseq: true, rseq: true, eofAt: -1, truncAt: -1}
			if !p.noHash {
				if f.pflags&pflagWrite != 0 {
					f.whash = sha256.New()
				} else {
					f.rhash = sha256.New()
				}
			}
			p.handles[h] = f
		case sftpOpendir:
			p.emit(audit.Event{Type: audit.TypeFile, Protocol: "sftp", Op: "list", Path: req.path, Result: "ok"})
		}
	case sftpData: // a small one, whole
		p.pending[id] = req // dataHead pairs it again
		if len(pkt) >= 9 {
			p.dataHead(pkt[:9], uint32(len(pkt)-9))
			p.dataBody(pkt[9:])
			p.dataEnd()
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
		if whole && f.whash != nil && f.wseq && f.wnext == f.wrote && (f.pflags&(pflagTrunc|pflagExcl) != 0 || f.truncAt == f.wnext) {
			e.SHA256 = hex.EncodeToString(f.whash.Sum(nil))
		}
	} else {
		e.Size = audit.Int64(f.read)
		// The whole file: read from 0 to where a read hit the end.
		if whole && f.rhash != nil && f.readWhole() {
			e.SHA256 = hex.EncodeToString(f.rhash.Sum(nil))
		}
	}
	p.emit(e)
}

// readWhole: f was read from 0, in order, to where a read hit the end of
// the file, and nothing read ahead is still held.
func (f *sftpFile) readWhole() bool {
	return f.rseq && f.eofAt >= 0 && f.eofAt == f.rnext && f.rnext == f.read && len(f.ahead) == 0
}

// End reports the files still open: a download the client read in order
// to the end of the file is whole (some clients, lftp among them, close a
// read handle only at their next command, so a get as the last command
// leaves it open), anything else is incomplete.
func (p *SFTP) End(bool) {
	files := make([]*sftpFile, 0, len(p.handles))
	for h, f := range p.handles {
		delete(p.handles, h)
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		res := "incomplete"
		if f.pflags&pflagWrite == 0 && f.readWhole() {
			res = "ok"
		}
		p.emitFile(f, res, "")
	}
}
