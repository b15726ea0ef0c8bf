package xfer

import (
	"hash"
	"path"
	"strconv"
	"strings"

	"github.com/sshgate/sshgate/internal/audit"
)

// FISH (files transferred over shell) is a shell session in which the client
// sends "#COMMAND args" lines, each followed by a shell script, and the server
// answers with output and "### NNN" status lines (000 or 2xx: done, 001 and
// 1xx: go on, 5xx: failed). lftp runs it as exec "echo FISH:;/bin/sh". The
// client's lines name the operation and the path; #STOR's file bytes follow
// its script on the client's stream, and #RETR's follow the server's "### 100"
// line, so both carry a sha256. A FISH session is a shell the user drives:
// the audit records what a FISH client says it does, and the exec line.

const (
	maxFISHLine    = 64 << 10
	maxFISHPending = 64
)

// IsFISH recognises the exec command a FISH client starts its session with.
func IsFISH(command string) bool {
	return strings.Contains(command, "echo FISH:")
}

type fishCmd struct {
	op, path, newPath, dir string
	size                   int64 // #STOR: declared size; #RETR: from the server's listing
	sum                    string
	haveSize               bool
}

// FISH follows a FISH session.
type FISH struct {
	emit Emit
	cwd  string

	// client stream
	cline    lineBuf
	skipping bool  // in #STOR's script, before its data
	cleft    int64 // #STOR bytes still to come
	ch       hash.Hash
	stor     *fishCmd

	// server stream
	sline    lineBuf
	sleft    int64 // #RETR bytes still to come
	sh       hash.Hash
	lastSize int64
	haveLast bool

	pending []*fishCmd // commands awaiting their final status, in order
	noHash  bool
	broken  bool
}

// NewFISH returns a FISH parser.
func NewFISH(emit Emit) *FISH {
	return &FISH{emit: emit, cline: lineBuf{max: maxFISHLine}, sline: lineBuf{max: maxFISHLine}}
}

func (p *FISH) abs(name string) string {
	if name == "" {
		return p.cwd
	}
	if strings.HasPrefix(name, "/") || p.cwd == "" {
		return name
	}
	return path.Join(p.cwd, name)
}

// fishWords splits a FISH command's arguments (shell-escaped by the client).
func fishWords(s string) []string {
	w, ok := shellWords(s)
	if !ok {
		return strings.Fields(s)
	}
	return w
}

func (p *FISH) ToTarget(b []byte) {
	for len(b) > 0 && !p.broken {
		if p.cleft > 0 {
			n := min(int64(len(b)), p.cleft)
			if p.ch != nil {
				p.ch.Write(b[:n])
			}
			p.cleft -= n
			b = b[n:]
			if p.cleft == 0 && p.stor != nil {
				p.stor.sum = sum(p.ch)
			}
			continue
		}
		line, rest, ok, over := p.cline.next(b)
		if over {
			p.broken = true
			return
		}
		if b = rest; ok {
			p.clientLine(line)
		}
	}
}

func (p *FISH) clientLine(line string) {
	if p.skipping {
		// #STOR's script ends with the line that echoes its final status;
		// the file's bytes follow.
		if strings.Contains(line, "### 200") {
			p.skipping = false
			if p.stor != nil && p.stor.size > 0 {
				p.cleft, p.ch = p.stor.size, newHash(p.noHash)
			}
		}
		return
	}
	if !strings.HasPrefix(line, "#") {
		return
	}
	name, args, _ := strings.Cut(line[1:], " ")
	a := fishWords(args)
	arg := func(i int) string {
		if i >= 0 && i < len(a) {
			return a[i]
		}
		return ""
	}
	var c *fishCmd
	switch name {
	case "STOR":
		size, err := strconv.ParseInt(arg(0), 10, 64)
		c = &fishCmd{op: "write", dir: "upload", path: p.abs(arg(1))}
		if err == nil && size >= 0 {
			c.size, c.haveSize = size, true
			if size == 0 {
				c.sum = emptySum(p.noHash)
			}
		}
		p.stor, p.skipping = c, true
	case "RETR":
		c = &fishCmd{op: "read", dir: "download", path: p.abs(arg(0))}
	case "DELE":
		c = &fishCmd{op: "remove", path: p.abs(arg(0))}
	case "RMD":
		c = &fishCmd{op: "rmdir", path: p.abs(arg(0))}
	case "MKD":
		c = &fishCmd{op: "mkdir", path: p.abs(arg(0))}
	case "RENAME":
		c = &fishCmd{op: "rename", path: p.abs(arg(0)), newPath: p.abs(arg(1))}
	case "LINK", "SYMLINK":
		c = &fishCmd{op: strings.ToLower(name), path: p.abs(arg(0)), newPath: p.abs(arg(1))}
	case "CHMOD", "CHOWN":
		c = &fishCmd{op: strings.ToLower(name), path: p.abs(arg(len(a) - 1))}
	case "LIST":
		c = &fishCmd{op: "list", path: p.abs(arg(0))}
	case "CWD":
		p.cwd = p.abs(arg(0))
		c = &fishCmd{}
	default: // #FISH, #VER, #PWD, ... : answered, not audited
		c = &fishCmd{}
	}
	if len(p.pending) >= maxFISHPending {
		p.broken = true
		return
	}
	p.pending = append(p.pending, c)
}

func (p *FISH) ToUser(b []byte) {
	for len(b) > 0 && !p.broken {
		if p.sleft > 0 {
			n := min(int64(len(b)), p.sleft)
			if p.sh != nil {
				p.sh.Write(b[:n])
			}
			p.sleft -= n
			b = b[n:]
			if p.sleft == 0 && len(p.pending) > 0 {
				p.pending[0].sum = sum(p.sh)
			}
			continue
		}
		// A line over the limit is a long listing line, not a status:
		// dropped.
		line, rest, ok, _ := p.sline.next(b)
		if b = rest; ok {
			p.serverLine(line)
		}
	}
}

func (p *FISH) serverLine(line string) {
	code, ok := strings.CutPrefix(line, "### ")
	if !ok {
		// Remember a size: a bare number (Midnight Commander) or the fifth
		// field of "ls -l" (lftp), for a #RETR about to start.
		f := strings.Fields(line)
		p.haveLast = false
		if len(f) == 1 {
			p.lastSize, p.haveLast = parseSize(f[0])
		} else if len(f) >= 5 {
			p.lastSize, p.haveLast = parseSize(f[4])
		}
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(code))
	if err != nil || len(p.pending) == 0 {
		return
	}
	c := p.pending[0]
	if n > 0 && n < 200 { // preliminary
		if c.op == "read" && n == 100 && p.haveLast {
			c.size, c.haveSize = p.lastSize, true
			if c.size > 0 {
				p.sleft, p.sh = c.size, newHash(p.noHash)
			} else {
				c.sum = emptySum(p.noHash)
			}
		}
		return
	}
	p.pending = p.pending[1:]
	p.done(c, n < 300, "")
}

func parseSize(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v >= 0
}

func (p *FISH) done(c *fishCmd, ok bool, res string) {
	if c.op == "" {
		return
	}
	if res == "" {
		res = result(ok)
	}
	e := audit.Event{Type: audit.TypeFile, Protocol: "fish", Op: c.op, Direction: c.dir, Path: c.path, NewPath: c.newPath, Result: res}
	if c.haveSize {
		e.Size = audit.Int64(c.size)
	}
	if ok {
		e.SHA256 = c.sum
	}
	if c == p.stor {
		p.stor = nil
	}
	p.emit(e)
}

// End reports commands that never got their answer.
func (p *FISH) End(bool) {
	for _, c := range p.pending {
		p.done(c, false, "incomplete")
	}
	p.pending = nil
}
