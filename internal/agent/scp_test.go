package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSCPHeader(t *testing.T) {
	tests := []struct {
		line string
		want scpHeader
		err  string // substring; "" = must parse
	}{
		{line: "C0644 12 file.txt", want: scpHeader{kind: 'C', mode: 0o644, size: 12, name: "file.txt"}},
		{line: "C4755 0 with space name", want: scpHeader{kind: 'C', mode: 0o4755, size: 0, name: "with space name"}},
		{line: "D0755 0 dir", want: scpHeader{kind: 'D', mode: 0o755, name: "dir"}},
		{line: "C0644 9223372036854775807 big", want: scpHeader{kind: 'C', mode: 0o644, size: 1<<63 - 1, name: "big"}},
		{line: "E", want: scpHeader{kind: 'E'}},
		{line: "T981173106 0 981173107 999999", want: scpHeader{kind: 'T',
			mtime: time.Unix(981173106, 0), atime: time.Unix(981173107, 999999000)}},
		{line: "", err: "empty"},
		{line: "X0644 1 a", err: "unexpected line type"},
		{line: "E ", err: "junk"},
		{line: "C644 1 a", err: "bad mode"},
		{line: "C06444 1 a", err: "bad mode"},
		{line: "C0648 1 a", err: "bad mode"},
		{line: "C-644 1 a", err: "bad mode"},
		{line: "C0644 -1 a", err: "bad size"},
		{line: "C0644 +1 a", err: "bad size"},
		{line: "C0644  1 a", err: "bad size"},
		{line: "C0644 1a b", err: "bad size"},
		{line: "C0644 99999999999999999999 a", err: "bad size"},
		{line: "C0644 9223372036854775808 a", err: "bad size"},
		{line: "C0644 1", err: "size not delimited"},
		{line: "C0644 1 ", err: "unexpected filename"},
		{line: "C0644 1 ..", err: "unexpected filename"},
		{line: "C0644 1 .", err: "unexpected filename"},
		{line: "C0644 1 ../../etc/passwd", err: "unexpected filename"},
		{line: "C0644 1 /etc/passwd", err: "unexpected filename"},
		{line: "C0644 1 a/b", err: "unexpected filename"},
		{line: "C0644 1 a\x00b", err: "unexpected filename"},
		{line: "D0755 0 ..", err: "unexpected filename"},
		{line: "D0755 0 .", err: "unexpected filename"},
		{line: "D0755 0 sub/dir", err: "unexpected filename"},
		{line: "T1 0 2", err: "bad times"},
		{line: "T1 0 2 0 3", err: "bad times"},
		{line: "T1 1000000 2 0", err: "microseconds"},
		{line: "T-1 0 2 0", err: "bad time"},
		{line: "T1 0 2 x", err: "bad time"},
	}
	for _, tt := range tests {
		got, err := parseSCPHeader(tt.line)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		if got.kind != tt.want.kind || got.mode != tt.want.mode || got.size != tt.want.size ||
			got.name != tt.want.name || !got.mtime.Equal(tt.want.mtime) || !got.atime.Equal(tt.want.atime) {
			t.Errorf("%q: got %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

// FuzzParseSCPHeader: the parser never panics, never lets through a name
// that is not one plain path element, and what it accepts prints back to a
// line that parses the same (leading zeros in numbers are accepted, as
// OpenSSH's strtoull does).
func FuzzParseSCPHeader(f *testing.F) {
	for _, s := range []string{"C0644 12 file.txt", "D0755 0 dir", "E", "T1 0 2 0", "C0644 1 ..",
		"C0644 1 a/b", "C4777 18446744073709551615 x", "T9999999999999999999 0 0 0", "\x01scp: x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h, err := parseSCPHeader(line)
		if err != nil {
			return
		}
		switch h.kind {
		case 'C', 'D':
			if h.name == "" || h.name == "." || h.name == ".." || strings.ContainsAny(h.name, "/\x00\n") {
				t.Fatalf("accepted name %q", h.name)
			}
			if h.size < 0 || h.mode > 0o7777 {
				t.Fatalf("accepted size %d mode %o", h.size, h.mode)
			}
			back := fmt.Sprintf("%c%04o %d %s", h.kind, h.mode, h.size, h.name)
			if h2, err := parseSCPHeader(back); err != nil || h2 != h {
				t.Fatalf("%q parsed as %+v, prints back %q: %+v %v", line, h, back, h2, err)
			}
		case 'E':
			if line != "E" {
				t.Fatalf("accepted %q as E", line)
			}
		case 'T':
		default:
			t.Fatalf("accepted kind %q", h.kind)
		}
	})
}

func TestParseSCPCommand(t *testing.T) {
	tests := []struct {
		cmd   string
		ok    bool
		sink  bool
		rec   bool
		pres  bool
		dir   bool
		paths []string
	}{
		{cmd: "scp -t -- /srv/", ok: true, sink: true, paths: []string{"/srv/"}},
		{cmd: "scp -r -t /dir", ok: true, sink: true, rec: true, paths: []string{"/dir"}},
		{cmd: "scp -f file", ok: true, paths: []string{"file"}},
		{cmd: "scp -v -r -p -d -t -- /x", ok: true, sink: true, rec: true, pres: true, dir: true, paths: []string{"/x"}},
		{cmd: "scp -rpf a b", ok: true, rec: true, pres: true, paths: []string{"a", "b"}},
		{cmd: "scp -f -- -dash", ok: true, paths: []string{"-dash"}},
		{cmd: "scp -f 'a b' \"c d\" e\\ f", ok: true, paths: []string{"a b", "c d", "e f"}},
		{cmd: "/usr/bin/scp -t .", ok: true, sink: true, paths: []string{"."}},
		{cmd: "scp -t /x; rm -rf /", ok: false},
		{cmd: "scp -t /x && true", ok: false},
		{cmd: "scp -t $HOME", ok: false},
		{cmd: "scp -t \"$HOME\"", ok: false},
		{cmd: "scp -t `id`", ok: false},
		{cmd: "scp -t /x > /y", ok: false},
		{cmd: "scp -f ~root/x", ok: false},
		{cmd: "scp -z -t x", ok: false},
		{cmd: "scp -t", ok: false},
		{cmd: "scp -t -f x", ok: false},
		{cmd: "scp x", ok: false},
		{cmd: "scp -t 'unterminated", ok: false},
		{cmd: "rsync --server -t .", ok: false},
		{cmd: "notscp -t x", ok: false},
		{cmd: "'scp' -t x", ok: true, sink: true, paths: []string{"x"}},
		{cmd: "scp -t a#b", ok: true, sink: true, paths: []string{"a#b"}},
		{cmd: "scp -t x #comment", ok: false},
	}
	for _, tt := range tests {
		sc, ok := parseSCPCommand(tt.cmd)
		if ok != tt.ok {
			t.Errorf("%q: ok=%v, want %v", tt.cmd, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		var paths []string
		for _, w := range sc.paths {
			paths = append(paths, w.s)
		}
		if sc.sink != tt.sink || sc.recursive != tt.rec || sc.preserve != tt.pres || sc.targetDir != tt.dir ||
			strings.Join(paths, "|") != strings.Join(tt.paths, "|") {
			t.Errorf("%q: got %+v paths %q", tt.cmd, sc, paths)
		}
	}
}

func TestShellWordsGlobAndTilde(t *testing.T) {
	words, ok := shellWords(`scp -f ~/a*.txt '[x]*' "q?"z*`)
	if !ok || len(words) != 5 {
		t.Fatalf("got %+v %v", words, ok)
	}
	if w := words[2]; !w.tilde || !w.glob || w.s != "/a*.txt" {
		t.Errorf("~/a*.txt: %+v", w)
	}
	if w := words[3]; w.glob || w.pattern != `\[x]\*` {
		t.Errorf("quoted glob: %+v", w)
	}
	if w := words[4]; !w.glob || w.s != "q?z*" || w.pattern != `q\?z*` {
		t.Errorf("mixed: %+v", w)
	}
}

func FuzzParseSCPCommand(f *testing.F) {
	for _, s := range []string{"scp -t -- /srv/", "scp -rpf 'a b' c\\ d", "scp -f ~/x*", "scp -t \"a\\\"b\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		sc, ok := parseSCPCommand(cmd)
		if ok && len(sc.paths) == 0 {
			t.Fatalf("%q: no paths", cmd)
		}
		if ok && strings.ContainsAny(cmd, "$`;&|<>\n") && !strings.ContainsAny(cmd, `'"\`) {
			t.Fatalf("%q: unquoted shell syntax accepted", cmd)
		}
	})
}

// runSCP runs the scp server with the given protocol input.
func runSCP(t *testing.T, cmd, input, home string) (out string, code int) {
	t.Helper()
	sc, ok := parseSCPCommand(cmd)
	if !ok {
		t.Fatalf("not an scp command: %q", cmd)
	}
	var stdout, stderr bytes.Buffer
	code = sc.run(strings.NewReader(input), &stdout, &stderr, home)
	return stdout.String(), code
}

// The classic scp client-side-made-server-side traversal: a malicious
// client names "../x" or "a/b" in C or D lines to write outside the target.
func TestSCPSinkRejectsTraversal(t *testing.T) {
	for _, tt := range []struct{ name, cmd, input string }{
		{"dotdot file", "scp -t -- TARGET", "C0644 3 ../evil\nabc\x00"},
		{"slash file", "scp -t -- TARGET", "C0644 3 sub/evil\nabc\x00"},
		{"absolute file", "scp -t -- TARGET", "C0644 3 /tmp/evil\nabc\x00"},
		{"dotdot dir", "scp -r -t -- TARGET", "D0755 0 ..\nC0644 3 evil\nabc\x00E\n"},
		{"dot dir", "scp -r -t -- TARGET", "D0777 0 .\nE\n"},
		{"dir without -r", "scp -t -- TARGET", "D0755 0 d\nE\n"},
		{"E at top", "scp -t -- TARGET", "E\n"},
		{"long line", "scp -t -- TARGET", "C0644 1 " + strings.Repeat("a", 10000) + "\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			target := filepath.Join(root, "a", "target")
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(target, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(target)
			out, code := runSCP(t, strings.Replace(tt.cmd, "TARGET", target, 1), tt.input, root)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(out, "\x02scp: protocol error") {
				t.Errorf("output %q lacks a fatal protocol error", out)
			}
			for _, p := range []string{filepath.Join(root, "a", "evil"), filepath.Join(target, "sub", "evil"),
				filepath.Join(target, "evil"), filepath.Join(root, "a", "d")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s was written", p)
				}
			}
			if after, _ := os.Stat(target); after.Mode() != before.Mode() {
				t.Errorf("target mode changed to %v", after.Mode())
			}
		})
	}
}

func TestSCPSinkProtocol(t *testing.T) {
	root := t.TempDir()
	// T, C with -p, a nested D, a client warning (0x01) that does not stop
	// the run, then EOF.
	in := "T981173106 0 981173106 0\nC0600 5 f1\nhello\x00" +
		"D0750 0 d\nC0644 0 empty\n\x00E\n" +
		"\x01scp: client warning\n" +
		"C0644 2 f2\nhi\x00"
	out, code := runSCP(t, "scp -r -p -t -- .", in, root)
	if out != strings.Repeat("\x00", 10) { // start, T, C, data, D, C, data, E, C, data
		t.Errorf("acks %q", out)
	}
	if code != 1 { // the client's warning counts as an error, as in OpenSSH
		t.Errorf("exit %d", code)
	}
	for p, want := range map[string]string{"f1": "hello", "d/empty": "", "f2": "hi"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	fi, _ := os.Stat(filepath.Join(root, "f1"))
	if fi.Mode().Perm() != 0o600 || fi.ModTime().Unix() != 981173106 {
		t.Errorf("f1: %v %v", fi.Mode(), fi.ModTime())
	}
	if fi, _ := os.Stat(filepath.Join(root, "d")); fi.Mode().Perm() != 0o750 {
		t.Errorf("d: %v", fi.Mode())
	}
	// Short data is a fatal error, not a short file quietly accepted.
	if _, code := runSCP(t, "scp -t x", "C0644 10 x\nabc", root); code != 1 {
		t.Errorf("short data: exit %d", code)
	}
	// -d with a target that is not a directory.
	out, code = runSCP(t, "scp -d -t f1", "", root)
	if code != 1 || !strings.Contains(out, "Not a directory") {
		t.Errorf("-d: %q %d", out, code)
	}
	// A file the sink cannot create: a warning instead of the ack; the
	// client then skips the data and goes on.
	if err := os.Mkdir(filepath.Join(root, "ro"), 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		out, code = runSCP(t, "scp -t ro", "C0644 1 x\nC0644 1 y\n", root)
		if code != 1 || !strings.HasPrefix(out, "\x00\x01scp: ") {
			t.Errorf("unwritable: %q %d", out, code)
		}
	}
}

func TestSCPSourceProtocol(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{"a.txt": "AA", "b.txt": "B", "d/e/f": "FFF"} {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	acks := strings.Repeat("\x00", 32)
	// Tilde and glob, as the remote shell would expand them.
	out, code := runSCP(t, "scp -f ~/*.txt", acks, root)
	if code != 0 || out != "C0640 2 a.txt\nAA\x00C0640 1 b.txt\nB\x00" {
		t.Errorf("glob: %q %d", out, code)
	}
	out, code = runSCP(t, "scp -r -f d", acks, root)
	if code != 0 || out != "D0755 0 d\nD0755 0 e\nC0640 3 f\nFFF\x00E\nE\n" {
		t.Errorf("recursive: %q %d", out, code)
	}
	out, code = runSCP(t, "scp -f d missing a.txt", acks, root)
	want := "\x01scp: " + filepath.Join(root, "d") + ": not a regular file\n" +
		"\x01scp: " + filepath.Join(root, "missing") + ": No such file or directory\n" +
		"C0640 2 a.txt\nAA\x00"
	if code != 1 || out != want {
		t.Errorf("errors: %q %d", out, code)
	}
	// The client refusing a file (0x01) skips it; 0x02 ends the run.
	out, code = runSCP(t, "scp -f a.txt b.txt", "\x00\x01nope\n\x00\x00", root)
	if code != 1 || out != "C0640 2 a.txt\nC0640 1 b.txt\nB\x00" {
		t.Errorf("refused: %q %d", out, code)
	}
	if _, code = runSCP(t, "scp -f a.txt b.txt", "\x00\x02fatal\n", root); code != 1 {
		t.Errorf("fatal: %d", code)
	}
}

// A directory the sink cannot make is answered with an error; the client
// then skips its contents and goes on with the next entry.
func TestSCPSinkRefusedDirectory(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "d"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runSCP(t, "scp -r -t .", "D0755 0 d\nC0644 2 next\nok\x00", root)
	want := "\x00\x01scp: " + filepath.Join(root, "d") + ": Not a directory\n\x00\x00"
	if code != 1 || out != want {
		t.Fatalf("got %q %d, want %q", out, code, want)
	}
	if b, err := os.ReadFile(filepath.Join(root, "next")); err != nil || string(b) != "ok" {
		t.Fatalf("next: %q %v", b, err)
	}
}

// FuzzSCPSink feeds arbitrary protocol streams to the sink and checks that
// nothing is created outside the target directory.
func FuzzSCPSink(f *testing.F) {
	f.Add("D0755 0 d\nC0644 2 f\nhi\x00E\nC0600 1 g\nx\x00", true)
	f.Add("C0644 3 ../evil\nabc\x00", false)
	f.Add("T1 0 1 0\nD0700 0 a\nD0700 0 b\nE\nE\n", true)
	f.Fuzz(func(t *testing.T, input string, recursive bool) {
		root := t.TempDir()
		target := filepath.Join(root, "t")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := "scp -t -- " + target
		if recursive {
			cmd = "scp -r -t -- " + target
		}
		runSCP(t, cmd, input, root)
		ents, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != "t" || !ents[0].IsDir() {
			t.Fatalf("entries outside the target: %v", ents)
		}
	})
}
