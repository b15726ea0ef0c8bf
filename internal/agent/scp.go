package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The legacy scp protocol (what "scp -O" speaks), server side, so that an
// image needs no scp binary. The client runs "scp [-r] [-p] [-d] -t PATH"
// to upload (we are the sink) or "scp [-r] [-p] -f PATH..." to download (we
// are the source). Everything read from the client is untrusted: header
// lines are parsed strictly and names that could leave the target directory
// ("/" inside, "..", ".", empty) are refused, as OpenSSH does since
// CVE-2018-20685 / CVE-2019-6111.

// maxSCPLine bounds a protocol line (OpenSSH's buffer is 2048 bytes plus a
// file name).
const maxSCPLine = 8192

var errLineTooLong = errors.New("line too long")

// scpCommand is a parsed "scp ... -t|-f ..." exec line.
type scpCommand struct {
	sink      bool // -t; else -f
	recursive bool // -r
	preserve  bool // -p
	targetDir bool // -d: the target must be a directory
	paths     []shellWord
}

// parseSCPCommand recognises an scp server command. It reports false for
// anything else (including command lines with shell syntax beyond quoting,
// which then go to the shell as they would under sshd).
func parseSCPCommand(command string) (*scpCommand, bool) {
	words, ok := shellWords(command)
	if !ok || len(words) < 2 {
		return nil, false
	}
	if w := words[0]; w.glob || w.tilde || (w.s != "scp" && !strings.HasSuffix(w.s, "/scp")) {
		return nil, false
	}
	sc := &scpCommand{}
	var to, from bool
	i := 1
	for ; i < len(words); i++ {
		w := words[i].s
		if w == "--" {
			i++
			break
		}
		if len(w) < 2 || w[0] != '-' {
			break
		}
		for _, f := range w[1:] {
			switch f {
			case 't':
				to = true
			case 'f':
				from = true
			case 'r':
				sc.recursive = true
			case 'p':
				sc.preserve = true
			case 'd':
				sc.targetDir = true
			case 'v', 'q', 'T':
			default:
				return nil, false
			}
		}
	}
	sc.paths = words[i:]
	if to == from || len(sc.paths) == 0 {
		return nil, false
	}
	sc.sink = to
	return sc, true
}

// shellWord is one word of a command line after quote removal.
type shellWord struct {
	s       string // the literal word
	pattern string // s with quoted glob characters escaped, for filepath.Glob
	glob    bool   // an unquoted * ? or [ occurs
	tilde   bool   // an unquoted ~ starts the word (s excludes it)
}

// shellWords splits a command line as sh would for a simple command with
// quoting: '...', "...", backslash. It reports false for anything needing
// a real shell: $, `, ;, &, |, <, >, (, ), newline, a # starting a word,
// ~user.
func shellWords(line string) ([]shellWord, bool) {
	var out []shellWord
	var cur, pat strings.Builder
	in := false
	var w shellWord
	quoted := func(c byte) {
		cur.WriteByte(c)
		if strings.IndexByte(`*?[\`, c) >= 0 {
			pat.WriteByte('\\')
		}
		pat.WriteByte(c)
	}
	flush := func() {
		if in {
			w.s, w.pattern = cur.String(), pat.String()
			out = append(out, w)
		}
		cur.Reset()
		pat.Reset()
		w = shellWord{}
		in = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '\'':
			in = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			for k := i + 1; k < i+1+j; k++ {
				quoted(line[k])
			}
			i += j + 1
		case c == '"':
			in = true
			for i++; ; i++ {
				if i >= len(line) {
					return nil, false
				}
				d := line[i]
				if d == '"' {
					break
				}
				if d == '$' || d == '`' {
					return nil, false
				}
				if d == '\\' && i+1 < len(line) && strings.IndexByte("$`\"\\", line[i+1]) >= 0 {
					i++
					d = line[i]
				} else if d == '\\' && i+1 < len(line) && line[i+1] == '\n' {
					return nil, false
				}
				quoted(d)
			}
		case c == '\\':
			if i+1 >= len(line) || line[i+1] == '\n' {
				return nil, false
			}
			in = true
			i++
			quoted(line[i])
		case strings.IndexByte("$`;&|<>()\n\r", c) >= 0:
			return nil, false
		case c == '#' && !in: // a comment
			return nil, false
		case c == '~' && !in:
			in = true
			if i+1 < len(line) && line[i+1] != '/' && line[i+1] != ' ' && line[i+1] != '\t' {
				return nil, false // ~user
			}
			w.tilde = true
		case c == '*' || c == '?' || c == '[':
			in = true
			w.glob = true
			cur.WriteByte(c)
			pat.WriteByte(c)
		default:
			in = true
			cur.WriteByte(c)
			pat.WriteByte(c)
		}
	}
	flush()
	return out, true
}

// scpHeader is one protocol line from the client.
type scpHeader struct {
	kind  byte // 'C' file, 'D' directory, 'E' end of directory, 'T' times
	mode  uint32
	size  int64
	name  string
	mtime time.Time
	atime time.Time
}

// parseSCPHeader parses one line (without its newline) that starts with C,
// D, E or T. It is strict: exactly four octal mode digits, decimal sizes
// and times, one space between fields, and a plain file name.
func parseSCPHeader(line string) (scpHeader, error) {
	if line == "" {
		return scpHeader{}, errors.New("empty line")
	}
	h := scpHeader{kind: line[0]}
	rest := line[1:]
	switch h.kind {
	case 'E':
		if rest != "" {
			return h, errors.New("junk after E")
		}
		return h, nil
	case 'T':
		f := strings.Split(rest, " ")
		if len(f) != 4 {
			return h, errors.New("bad times line")
		}
		var v [4]int64
		for i, s := range f {
			n, err := parseDecimal(s)
			if err != nil {
				return h, fmt.Errorf("bad time: %w", err)
			}
			v[i] = n
		}
		if v[1] > 999999 || v[3] > 999999 {
			return h, errors.New("bad time: microseconds out of range")
		}
		h.mtime = time.Unix(v[0], v[1]*1000)
		h.atime = time.Unix(v[2], v[3]*1000)
		return h, nil
	case 'C', 'D':
		if len(rest) < 5 || rest[4] != ' ' {
			return h, errors.New("bad mode")
		}
		for _, c := range rest[:4] {
			if c < '0' || c > '7' {
				return h, errors.New("bad mode")
			}
			h.mode = h.mode<<3 | uint32(c-'0')
		}
		rest = rest[5:]
		sizeStr, name, ok := strings.Cut(rest, " ")
		if !ok {
			return h, errors.New("size not delimited")
		}
		n, err := parseDecimal(sizeStr)
		if err != nil {
			return h, fmt.Errorf("bad size: %w", err)
		}
		h.size = n
		if err := checkSCPName(name); err != nil {
			return h, err
		}
		h.name = name
		return h, nil
	}
	return h, fmt.Errorf("unexpected line type %q", h.kind)
}

// checkSCPName refuses names that are not a single path element.
func checkSCPName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return fmt.Errorf("unexpected filename %q", name)
	}
	return nil
}

func parseDecimal(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, errors.New("not a number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errors.New("not a number")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// scpConn is one scp run: the protocol streams and the error count.
type scpConn struct {
	cmd  *scpCommand
	in   *bufio.Reader
	out  *bufio.Writer
	home string
	cwd  string
	errs int
}

// errFatal ends the run: the peer sent a fatal error, the stream broke, or
// the protocol was violated (already reported to the peer).
type errFatal struct{ error }

func (sc *scpCommand) run(stdin io.Reader, stdout, stderr io.Writer, home string) int {
	c := &scpConn{
		cmd:  sc,
		in:   bufio.NewReaderSize(stdin, 64*1024),
		out:  bufio.NewWriterSize(stdout, 64*1024),
		home: home,
		cwd:  home,
	}
	var err error
	if sc.sink {
		err = c.runSink()
	} else {
		err = c.runSource()
	}
	_ = c.out.Flush()
	if err != nil || c.errs > 0 {
		return 1
	}
	return 0
}

// resolve turns a command-line path into a file path: ~ is the home
// directory, relative paths are relative to it.
func (c *scpConn) resolve(w shellWord) string {
	p := w.s
	if w.tilde {
		p = c.home + p
	}
	if p == "" {
		p = "."
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.cwd, p)
	}
	return p
}

// warn reports a per-file error (0x01) and goes on.
func (c *scpConn) warn(format string, args ...any) {
	c.errs++
	c.sendErr(1, fmt.Sprintf(format, args...))
}

// fatal reports an error that ends the run (0x02).
func (c *scpConn) fatal(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	c.sendErr(2, msg)
	return errFatal{errors.New(msg)}
}

func (c *scpConn) sendErr(code byte, msg string) {
	msg = strings.ReplaceAll(msg, "\n", " ")
	_ = c.out.WriteByte(code)
	_, _ = c.out.WriteString("scp: " + msg + "\n")
	_ = c.out.Flush()
}

func (c *scpConn) ack() error {
	if err := c.out.WriteByte(0); err != nil {
		return errFatal{err}
	}
	if err := c.out.Flush(); err != nil {
		return errFatal{err}
	}
	return nil
}

// readLine reads up to '\n'. io.EOF means a clean end before any byte.
func (c *scpConn) readLine() (string, error) {
	var b []byte
	for {
		chunk, err := c.in.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxSCPLine {
			return "", errLineTooLong
		}
		if err == nil {
			return string(b[:len(b)-1]), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(b) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
}

// response reads the peer's answer: 0 is fine, 1 a warning (the returned
// error is not fatal), 2 or anything else fatal.
func (c *scpConn) response() error {
	if err := c.out.Flush(); err != nil {
		return errFatal{err}
	}
	b, err := c.in.ReadByte()
	if err != nil {
		return errFatal{err}
	}
	if b == 0 {
		return nil
	}
	msg, err := c.readLine()
	if err != nil {
		return errFatal{err}
	}
	if b == 1 {
		c.errs++
		return errors.New(msg)
	}
	return errFatal{errors.New(msg)}
}

func isFatal(err error) bool {
	var f errFatal
	return errors.As(err, &f)
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	if errno, ok := err.(syscall.Errno); ok {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// ---- sink (scp -t) ----

func (c *scpConn) runSink() error {
	if len(c.cmd.paths) != 1 {
		return c.fatal("ambiguous target")
	}
	target := c.resolve(c.cmd.paths[0])
	if c.cmd.targetDir {
		fi, err := os.Stat(target)
		if err != nil {
			return c.fatal("%s: %s", target, errText(err))
		}
		if !fi.IsDir() {
			return c.fatal("%s: %s", target, errText(syscall.ENOTDIR))
		}
	}
	return c.sink(target, 0)
}

// sink receives into target (a directory to put things in, or the name of
// the single file or directory to create). depth counts D levels.
func (c *scpConn) sink(target string, depth int) error {
	if err := c.ack(); err != nil {
		return err
	}
	fi, err := os.Stat(target)
	targIsDir := err == nil && fi.IsDir()
	var times *scpHeader
	for {
		first, err := c.in.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && depth == 0 {
				return nil
			}
			return errFatal{err}
		}
		if first == 1 || first == 2 {
			if _, err := c.readLine(); err != nil {
				return errFatal{err}
			}
			if first == 2 {
				return errFatal{errors.New("peer reported a fatal error")}
			}
			c.errs++
			continue
		}
		if err := c.in.UnreadByte(); err != nil {
			return errFatal{err}
		}
		line, err := c.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				return c.fatal("protocol error: %v", err)
			}
			return errFatal{err}
		}
		h, err := parseSCPHeader(line)
		if err != nil {
			return c.fatal("protocol error: %v", err)
		}
		switch h.kind {
		case 'E':
			if depth == 0 {
				return c.fatal("protocol error: unexpected end of directory")
			}
			return c.ack()
		case 'T':
			times = &h
			if err := c.ack(); err != nil {
				return err
			}
			continue
		}
		np := target
		if targIsDir {
			np = filepath.Join(target, h.name)
		}
		if h.kind == 'D' {
			if !c.cmd.recursive {
				return c.fatal("protocol error: received directory without -r")
			}
			if err := c.sinkDir(np, h, times, depth); err != nil {
				return err
			}
		} else if err := c.sinkFile(np, h, times); err != nil {
			return err
		}
		times = nil
	}
}

func (c *scpConn) sinkDir(np string, h scpHeader, times *scpHeader, depth int) error {
	if depth >= 256 {
		return c.fatal("protocol error: directories nested too deep")
	}
	fi, err := os.Stat(np)
	switch {
	case err == nil && !fi.IsDir():
		// The error answers the D line; the client then skips the
		// directory's contents (OpenSSH rsource), so nothing to drain.
		c.warn("%s: %s", np, errText(syscall.ENOTDIR))
		return nil
	case err == nil:
		if c.cmd.preserve {
			_ = os.Chmod(np, fs.FileMode(h.mode&0o777)|specialBits(h.mode))
		}
	default:
		if err := os.Mkdir(np, fs.FileMode(h.mode&0o777|0o700)); err != nil {
			c.warn("%s: %s", np, errText(err))
			return nil
		}
	}
	if err := c.sink(np, depth+1); err != nil {
		return err
	}
	if c.cmd.preserve {
		_ = os.Chmod(np, fs.FileMode(h.mode&0o777)|specialBits(h.mode))
	}
	if times != nil {
		if err := os.Chtimes(np, times.atime, times.mtime); err != nil {
			c.warn("%s: set times: %s", np, errText(err))
		}
	}
	return nil
}

func specialBits(mode uint32) fs.FileMode {
	var m fs.FileMode
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func (c *scpConn) sinkFile(np string, h scpHeader, times *scpHeader) error {
	f, err := os.OpenFile(np, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fs.FileMode(h.mode&0o777))
	if err != nil {
		// The client skips the file's data when it gets an error here.
		c.warn("%s: %s", np, errText(err))
		return nil
	}
	if err := c.ack(); err != nil {
		f.Close()
		return err
	}
	// Read all of the data even when writing fails, to stay in step.
	var wrErr error
	w := io.Writer(f)
	n, err := io.CopyN(writerFunc(func(p []byte) (int, error) {
		if wrErr == nil {
			if _, err := w.Write(p); err != nil {
				wrErr = err
			}
		}
		return len(p), nil
	}), c.in, h.size)
	if err != nil || n != h.size {
		f.Close()
		return errFatal{fmt.Errorf("read file data: %w", err)}
	}
	if c.cmd.preserve && wrErr == nil {
		if err := f.Chmod(fs.FileMode(h.mode&0o777) | specialBits(h.mode)); err != nil {
			wrErr = err
		}
	}
	if err := f.Close(); err != nil && wrErr == nil {
		wrErr = err
	}
	if err := c.response(); isFatal(err) {
		return err
	}
	if times != nil && wrErr == nil {
		if err := os.Chtimes(np, times.atime, times.mtime); err != nil {
			c.warn("%s: set times: %s", np, errText(err))
			return nil
		}
	}
	if wrErr != nil {
		c.warn("%s: %s", np, errText(wrErr))
		return nil
	}
	return c.ack()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// ---- source (scp -f) ----

func (c *scpConn) runSource() error {
	if err := c.response(); err != nil {
		return err
	}
	for _, w := range c.cmd.paths {
		paths := []string{c.resolve(w)}
		if w.glob {
			pat := w.pattern
			if w.tilde {
				pat = c.home + pat
			}
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(c.cwd, pat)
			}
			if m, err := filepath.Glob(pat); err == nil && len(m) > 0 {
				paths = m
			}
		}
		for _, p := range paths {
			if err := c.sourcePath(p, 0); isFatal(err) {
				return err
			}
		}
	}
	return nil
}

func (c *scpConn) sourcePath(p string, depth int) error {
	fi, err := os.Stat(p)
	if err != nil {
		c.warn("%s: %s", p, errText(err))
		return nil
	}
	switch {
	case fi.IsDir() && c.cmd.recursive:
		return c.sourceDir(p, fi, depth)
	case fi.Mode().IsRegular():
		return c.sourceFile(p)
	default:
		c.warn("%s: not a regular file", p)
		return nil
	}
}

func (c *scpConn) sendTimes(fi fs.FileInfo) error {
	mtime := fi.ModTime().Unix()
	atime := mtime
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		atime = st.Atim.Sec
	}
	if mtime < 0 {
		mtime = 0
	}
	if atime < 0 {
		atime = 0
	}
	fmt.Fprintf(c.out, "T%d 0 %d 0\n", mtime, atime)
	return c.response()
}

func modeBits(fi fs.FileInfo) uint32 {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

func (c *scpConn) sourceFile(p string) error {
	name := filepath.Base(p)
	if strings.ContainsAny(name, "\n") {
		c.warn("%s: skipping, filename contains a newline", p)
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		c.warn("%s: %s", p, errText(err))
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		c.warn("%s: %s", p, errText(err))
		return nil
	}
	if !fi.Mode().IsRegular() {
		c.warn("%s: not a regular file", p)
		return nil
	}
	if c.cmd.preserve {
		if err := c.sendTimes(fi); err != nil {
			return err
		}
	}
	size := fi.Size()
	fmt.Fprintf(c.out, "C%04o %d %s\n", modeBits(fi), size, name)
	if err := c.response(); err != nil {
		return err // a warning: the peer refused this file
	}
	n, rerr := io.CopyN(c.out, f, size)
	if rerr != nil && n < size {
		// The file shrank or could not be read: pad to the announced size
		// and report the error instead of the trailing zero byte.
		if _, err := io.CopyN(c.out, zeroReader{}, size-n); err != nil {
			return errFatal{err}
		}
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) || n < size {
		if rerr == nil || errors.Is(rerr, io.EOF) {
			rerr = errors.New("file changed size while reading")
		}
		c.warn("%s: %s", p, errText(rerr))
	} else if err := c.out.WriteByte(0); err != nil {
		return errFatal{err}
	}
	return c.response()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func (c *scpConn) sourceDir(p string, fi fs.FileInfo, depth int) error {
	if depth >= 256 {
		c.warn("%s: directories nested too deep", p)
		return nil
	}
	name := filepath.Base(p)
	if strings.ContainsAny(name, "\n") {
		c.warn("%s: skipping, filename contains a newline", p)
		return nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		c.warn("%s: %s", p, errText(err))
		return nil
	}
	if c.cmd.preserve {
		if err := c.sendTimes(fi); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.out, "D%04o 0 %s\n", modeBits(fi), name)
	if err := c.response(); err != nil {
		return err
	}
	for _, e := range entries {
		child := filepath.Join(p, e.Name())
		var err error
		if e.IsDir() {
			cfi, serr := os.Lstat(child)
			if serr != nil {
				c.warn("%s: %s", child, errText(serr))
				continue
			}
			err = c.sourceDir(child, cfi, depth+1)
		} else {
			err = c.sourcePath(child, depth+1)
		}
		if isFatal(err) {
			return err
		}
	}
	fmt.Fprintf(c.out, "E\n")
	return c.response()
}
