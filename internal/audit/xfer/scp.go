package xfer

import (
	"hash"
	"path"
	"strconv"
	"strings"

	"github.com/sshgate/sshgate/internal/audit"
)

// The legacy scp protocol (scp -O): the client runs "scp -t PATH" to upload
// (the target is the sink) or "scp -f PATH..." to download (the target is the
// source). The source sends header lines "Cmode size name", "Dmode 0 name",
// "E", "Tmtime 0 atime 0", each file's bytes after its C line, and a status
// byte after each file; errors are "\x01msg" or "\x02msg" lines.

const (
	maxSCPLine  = 8192
	maxSCPDepth = 256
)

// SCP follows the source's stream of an scp -O transfer. Every file's bytes
// pass through the gate, so each file event carries its sha256.
type SCP struct {
	emit      Emit
	upload    bool // -t: data flows user -> target
	targetDir bool // -d, or a path ending in "/": names join the path
	paths     []string
	top       int // top-level entries seen (downloads: index into paths)

	line   lineBuf
	inData bool
	dirs   []string // open D directories, as full paths
	name   string   // file in flight
	size   int64
	left   int64
	h      hash.Hash // nil without hashes
	noHash bool
	broken bool
}

// NewSCP recognises "scp [-r] [-p] [-d] [-v] [-q] [-T] -t|-f [--] PATH..." and
// returns nil for any other command.
func NewSCP(command string, emit Emit) *SCP {
	w, ok := shellWords(command)
	if !ok || len(w) < 3 || (w[0] != "scp" && !strings.HasSuffix(w[0], "/scp")) {
		return nil
	}
	p := &SCP{emit: emit, line: lineBuf{max: maxSCPLine}}
	to, from := false, false
	i := 1
	for ; i < len(w); i++ {
		a := w[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, f := range a[1:] {
			switch f {
			case 't':
				to = true
			case 'f':
				from = true
			case 'd':
				p.targetDir = true
			case 'r', 'p', 'v', 'q', 'T':
			default:
				return nil
			}
		}
	}
	if to == from || i >= len(w) {
		return nil
	}
	p.upload = to
	p.paths = w[i:]
	if to && strings.HasSuffix(p.paths[0], "/") {
		p.targetDir = true
	}
	return p
}

func (p *SCP) ToTarget(b []byte) {
	if p.upload {
		p.feed(b)
	}
}

func (p *SCP) ToUser(b []byte) {
	if !p.upload {
		p.feed(b)
	}
}

func (p *SCP) direction() (op, dir string) {
	if p.upload {
		return "write", "upload"
	}
	return "read", "download"
}

// entry is the full path of a top-level or nested entry called name.
func (p *SCP) entry(name string) string {
	if len(p.dirs) > 0 {
		return path.Join(p.dirs[len(p.dirs)-1], name)
	}
	p.top++
	if p.upload {
		if p.targetDir {
			return path.Join(p.paths[0], name)
		}
		return p.paths[0]
	}
	if p.top <= len(p.paths) {
		return p.paths[p.top-1]
	}
	return name
}

func (p *SCP) feed(b []byte) {
	for len(b) > 0 && !p.broken {
		if p.inData {
			n := int64(len(b))
			if n > p.left {
				n = p.left
			}
			if p.h != nil {
				p.h.Write(b[:n])
			}
			p.left -= n
			b = b[n:]
			if p.left == 0 {
				p.inData = false
				op, dir := p.direction()
				p.emit(audit.Event{Type: audit.TypeFile, Protocol: "scp", Op: op, Direction: dir, Path: p.name,
					Size: audit.Int64(p.size), SHA256: sum(p.h), Result: "ok"})
			}
			continue
		}
		if p.line.empty() && b[0] == 0 { // a status byte between entries
			b = b[1:]
			continue
		}
		line, rest, ok, over := p.line.next(b)
		if over {
			p.broken = true
			return
		}
		if b = rest; ok {
			p.header(line)
		}
	}
}

func (p *SCP) header(line string) {
	if line == "" {
		return
	}
	switch line[0] {
	case 'C', 'D':
		f := strings.SplitN(line[1:], " ", 3)
		if len(f) != 3 {
			p.broken = true
			return
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			p.broken = true
			return
		}
		full := p.entry(f[2])
		if line[0] == 'D' {
			if len(p.dirs) >= maxSCPDepth {
				p.broken = true
				return
			}
			p.dirs = append(p.dirs, full)
			if p.upload {
				p.emit(audit.Event{Type: audit.TypeFile, Protocol: "scp", Op: "mkdir", Direction: "upload", Path: full, Result: "ok"})
			}
			return
		}
		p.name, p.size, p.left, p.h = full, size, size, newHash(p.noHash)
		if size == 0 {
			op, dir := p.direction()
			p.emit(audit.Event{Type: audit.TypeFile, Protocol: "scp", Op: op, Direction: dir, Path: full,
				Size: audit.Int64(0), SHA256: sum(p.h), Result: "ok"})
			return
		}
		p.inData = true
	case 'E':
		if len(p.dirs) > 0 {
			p.dirs = p.dirs[:len(p.dirs)-1]
		}
	case 'T':
	case 1, 2: // an error from the source: the current top-level entry failed
		op, dir := p.direction()
		e := audit.Event{Type: audit.TypeFile, Protocol: "scp", Op: op, Direction: dir, Result: "failed", Message: line[1:]}
		if !p.upload && len(p.dirs) == 0 {
			p.top++
			if p.top <= len(p.paths) {
				e.Path = p.paths[p.top-1]
			}
		}
		p.emit(e)
	default:
		p.broken = true
	}
}

// End reports a file cut short.
func (p *SCP) End(bool) {
	if p.inData {
		p.inData = false
		op, dir := p.direction()
		p.emit(audit.Event{Type: audit.TypeFile, Protocol: "scp", Op: op, Direction: dir, Path: p.name,
			Size: audit.Int64(p.size - p.left), Result: "incomplete"})
	}
}
