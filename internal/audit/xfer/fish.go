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
// 1xx: go on, 5xx: failed). lftp runs it as exec "echo FISH:;/bin/sh",
// Midnight Commander as "echo FISH:; /bin/sh". The client's lines name the
// operation and the path; #STOR's file bytes follow its script on the
// client's stream, and #RETR's follow the server's "### 100" line, so both
// carry a sha256. A FISH session is a shell the user drives: the audit records
// what a FISH client says it does, and the exec line.
//
// lftp writes the paths into the command line. Midnight Commander writes
// variable references ("#STOR $FISH_FILESIZE $FISH_FILENAME") and sets the
// variables on the line before ("FISH_FILENAME=srv/a\ b FISH_FILESIZE=12;"),
// with names relative to / (its scripts say "/${FISH_FILENAME}"): the parser
// reads those assignments and expands the references. Its scripts also hold
// comment lines that start with "#" ("#FISH_HAVE_HEAD 1"): only the names of
// FISH commands start one.

const (
	maxFISHLine    = 64 << 10
	maxFISHPending = 64
	maxFISHVars    = 64
)

// fishCommands are the command names of the FISH protocol (its README, lftp
// and Midnight Commander). BYE gets no answer.
var fishCommands = map[string]bool{
	"FISH": true, "VER": true, "PWD": true, "LIST": true, "RETR": true, "STOR": true, "APPE": true,
	"CWD": true, "CHMOD": true, "CHOWN": true, "CHGRP": true, "DELE": true, "MKD": true, "RMD": true,
	"RENAME": true, "LINK": true, "SYMLINK": true, "ISEXISTS": true, "UTIME": true, "INFO": true,
	"EXEC": true, "READ": true, "WRITE": true, "HARDLINK": true, "BYE": true,
}

// fishAliases: Midnight Commander's scripts refer to a value under another
// name than the one it sets. Its ls script's line is "#LIST /${FISH_DIR}"
// and it lists "/${FISH_FILENAME}"; its built-in (not installed) store
// scripts say "#STOR $FILESIZE $FILENAME" and set both from FISH_FILESIZE
// and FISH_FILENAME after that line.
var fishAliases = map[string]string{"FISH_DIR": "FISH_FILENAME", "FILENAME": "FISH_FILENAME", "FILESIZE": "FISH_FILESIZE"}

// IsFISH recognises the exec command a FISH client starts its session with.
func IsFISH(command string) bool {
	return strings.Contains(command, "echo FISH:")
}

type fishCmd struct {
	name                   string // the FISH command
	op, path, newPath, dir string
	size                   int64 // #STOR: declared size; #RETR: from the server's listing
	sum                    string
	haveSize               bool
	partial                bool // #RETR from an offset, #APPE: not the whole file
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

	prev string            // the client's last line that started no command
	vars map[string]string // shell variables the client set, as Midnight Commander does
}

// NewFISH returns a FISH parser.
func NewFISH(emit Emit) *FISH {
	return &FISH{emit: emit, cline: lineBuf{max: maxFISHLine}, sline: lineBuf{max: maxFISHLine}, vars: map[string]string{}}
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

// fishPath is the path a command's word names: a word made from one of
// Midnight Commander's variables is relative to /.
func (p *FISH) fishPath(w shWord) string {
	if w.fromVar {
		return path.Clean("/" + w.text)
	}
	return p.abs(w.text)
}

// words splits a FISH command's arguments (shell-escaped by the client),
// with the client's variables expanded.
func (p *FISH) words(s string) []shWord {
	cmds, ok := shScan(s, p.lookup)
	if !ok {
		var out []shWord
		for _, f := range strings.Fields(s) {
			out = append(out, shWord{text: f, eq: -1})
		}
		return out
	}
	var out []shWord
	for _, c := range cmds {
		out = append(out, c...)
	}
	return out
}

func (p *FISH) lookup(name string) (string, bool) {
	if v, ok := p.vars[name]; ok {
		return v, true
	}
	if a, ok := fishAliases[name]; ok {
		v, ok := p.vars[a]
		return v, ok
	}
	return "", false
}

// assign takes the variable assignments of a shell line: the words
// NAME=VALUE that begin each simple command. A value the shell would
// compute (a $ or ` outside single quotes) is not known: the variable is
// forgotten.
func (p *FISH) assign(line string) {
	if !strings.Contains(line, "=") {
		return
	}
	cmds, ok := shScan(line, nil)
	if !ok {
		return
	}
	for _, c := range cmds {
		for _, w := range c {
			if w.eq <= 0 || !isShellName(w.text[:w.eq]) {
				break
			}
			name := w.text[:w.eq]
			if w.dollar {
				delete(p.vars, name)
				continue
			}
			if _, ok := p.vars[name]; ok || len(p.vars) < maxFISHVars {
				p.vars[name] = w.text[w.eq+1:]
			}
		}
	}
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
				p.cleft, p.ch = p.stor.size, newHash(p.noHash || p.stor.partial)
			}
		}
		return
	}
	name, args, _ := strings.Cut(strings.TrimPrefix(line, "#"), " ")
	if !strings.HasPrefix(line, "#") || !fishCommands[name] {
		p.prev = line
		return
	}
	p.assign(p.prev)
	p.prev = ""
	a := p.words(args)
	arg := func(i int) shWord {
		if i >= 0 && i < len(a) {
			return a[i]
		}
		return shWord{eq: -1}
	}
	c := &fishCmd{name: name}
	switch name {
	case "STOR", "APPE":
		size, err := strconv.ParseInt(arg(0).text, 10, 64)
		c.op, c.dir, c.path = "write", "upload", p.fishPath(arg(1))
		c.partial = name == "APPE"
		if err == nil && size >= 0 {
			c.size, c.haveSize = size, true
			if size == 0 && !c.partial {
				c.sum = emptySum(p.noHash)
			}
		}
		p.stor, p.skipping = c, true
	case "RETR":
		c.op, c.dir, c.path = "read", "download", p.fishPath(arg(0))
		// Midnight Commander resumes from an offset: not the whole file.
		off, err := strconv.ParseInt(arg(1).text, 10, 64)
		c.partial = err == nil && off > 0
	case "DELE":
		c.op, c.path = "remove", p.fishPath(arg(0))
	case "RMD":
		c.op, c.path = "rmdir", p.fishPath(arg(0))
	case "MKD":
		c.op, c.path = "mkdir", p.fishPath(arg(0))
	case "RENAME":
		c.op, c.path, c.newPath = "rename", p.fishPath(arg(0)), p.fishPath(arg(1))
	case "LINK", "SYMLINK":
		c.op, c.path, c.newPath = strings.ToLower(name), p.fishPath(arg(0)), p.fishPath(arg(1))
	case "CHMOD", "CHOWN":
		c.op, c.path = strings.ToLower(name), p.fishPath(arg(len(a)-1))
	case "LIST":
		c.op, c.path = "list", p.fishPath(arg(0))
	case "CWD":
		p.cwd = p.fishPath(arg(0))
	case "BYE": // no answer
		return
	default: // #FISH, #VER, #PWD, #ISEXISTS, #UTIME, ... : answered, not audited
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
	// Midnight Commander's #ISEXISTS answers with the exit status of ls
	// ("### 0", "### 1"): any status ends it.
	if n > 0 && n < 200 && c.name != "ISEXISTS" { // preliminary
		if c.op == "read" && n == 100 && p.haveLast {
			c.size, c.haveSize = p.lastSize, true
			if c.size > 0 {
				p.sleft, p.sh = c.size, newHash(p.noHash || c.partial)
			} else if !c.partial {
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
	if ok && !c.partial {
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

// shWord is one word of a shell line.
type shWord struct {
	text    string
	eq      int  // index in text of the first unquoted '=', or -1
	dollar  bool // held an expansion ($ or `) outside single quotes
	fromVar bool // a variable's value went into text
}

// shScan splits a shell line into simple commands (at unquoted ';', '&',
// '|' and newlines) of words, removing quotes and backslashes. With lookup,
// $NAME and ${NAME} outside single quotes take the value lookup knows; a
// name it does not know, a command substitution and anything else stay as
// written. ok is false for an unterminated quote.
func shScan(s string, lookup func(string) (string, bool)) (cmds [][]shWord, ok bool) {
	var (
		cur strings.Builder
		w   = shWord{eq: -1}
		in  bool
		cmd []shWord
	)
	endWord := func() {
		if in {
			w.text = cur.String()
			cmd = append(cmd, w)
		}
		cur.Reset()
		w, in = shWord{eq: -1}, false
	}
	endCmd := func() {
		endWord()
		if len(cmd) > 0 {
			cmds = append(cmds, cmd)
		}
		cmd = nil
	}
	// expand handles the '$' at s[i] and returns the index of the last byte
	// it consumed.
	expand := func(i int) int {
		w.dollar, in = true, true
		var name string
		end := i
		switch {
		case i+1 < len(s) && s[i+1] == '{':
			j := strings.IndexByte(s[i+2:], '}')
			if j < 0 {
				cur.WriteByte('$')
				return i
			}
			name, end = s[i+2:i+2+j], i+2+j
		default:
			j := i + 1
			for j < len(s) && (s[j] == '_' || 'a' <= s[j]|0x20 && s[j]|0x20 <= 'z' || j > i+1 && '0' <= s[j] && s[j] <= '9') {
				j++
			}
			if j == i+1 {
				cur.WriteByte('$')
				return i
			}
			name, end = s[i+1:j], j-1
		}
		if lookup != nil {
			if v, ok := lookup(name); ok {
				cur.WriteString(v)
				w.fromVar = true
				return end
			}
		}
		cur.WriteString(s[i : end+1])
		return end
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\r':
			endWord()
		case ';', '&', '|', '\n':
			endCmd()
		case '\\':
			if i+1 >= len(s) {
				return nil, false
			}
			i++
			cur.WriteByte(s[i])
			in = true
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case '"':
			in = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0:
					i++
					cur.WriteByte(s[i])
				case s[i] == '$':
					i = expand(i)
				case s[i] == '`':
					w.dollar = true
					cur.WriteByte('`')
				default:
					cur.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, false
			}
		case '$':
			i = expand(i)
		case '`':
			w.dollar, in = true, true
			cur.WriteByte(c)
		case '=':
			if w.eq < 0 {
				w.eq = cur.Len()
			}
			cur.WriteByte(c)
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	endCmd()
	return cmds, true
}

// isShellName reports whether s is a shell variable name.
func isShellName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && !('a' <= c|0x20 && c|0x20 <= 'z') && !(i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}
