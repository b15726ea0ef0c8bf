package xfer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/internal/audit"
)

// A .cap file in testdata/fish is a FISH session as its client drove it,
// recorded by an ssh stand-in between the client and /bin/sh: chunks in the
// order they passed, each "> N\n" (client to server) or "< N\n" (server to
// client), then N bytes and a newline.

type fishChunk struct {
	toTarget bool
	data     []byte
}

func readCap(t testing.TB, name string) []fishChunk {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fish", name))
	if err != nil {
		t.Fatal(err)
	}
	var out []fishChunk
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 3 || (b[0] != '>' && b[0] != '<') || b[1] != ' ' {
			t.Fatalf("%s: bad chunk header %q", name, b[:min(len(b), 20)])
		}
		n, err := strconv.Atoi(string(b[2:nl]))
		if err != nil || nl+1+n+1 > len(b) || b[nl+1+n] != '\n' {
			t.Fatalf("%s: bad chunk %q", name, b[:nl])
		}
		out = append(out, fishChunk{b[0] == '>', b[nl+1 : nl+1+n]})
		b = b[nl+1+n+1:]
	}
	return out
}

// replay feeds a recorded session to a FISH parser in pieces of at most
// piece bytes (0: whole chunks).
func replay(t *testing.T, name string, piece int) []string {
	t.Helper()
	c := &collect{}
	s := NewSession(NewFISH(c.emit))
	for _, ch := range readCap(t, name) {
		f := s.ToUser
		if ch.toTarget {
			f = s.ToTarget
		}
		for d := ch.data; len(d) > 0; {
			n := len(d)
			if piece > 0 {
				n = min(n, piece)
			}
			f(d[:n])
			d = d[n:]
		}
	}
	s.End(true)
	return c.lines()
}

// Midnight Commander 4.8.29 (Debian's mc, its installed scripts) over
// sh://: download, three uploads (one empty, one with a space, a quote and
// a $ in its name, each followed by mc's chown, chmod and utime), rename,
// mkdir, rmdir, delete, chmod; lftp 4.9.2 over fish://: put, get, ls, mkdir,
// mv, chmod, rm, rmdir, cd and a relative get. The sums were taken from the
// files themselves.
func TestFISHCaptured(t *testing.T) {
	list := func(dirs ...string) []string {
		var out []string
		for _, d := range dirs {
			out = append(out, "fish list "+d+" ok")
		}
		return out
	}
	var mc []string
	add := func(l ...string) { mc = append(mc, l...) }
	up := func(p, size, sha string) {
		add("fish write "+p+" upload size="+size+" sha="+sha+" ok", "fish chown "+p+" ok", "fish chmod "+p+" ok")
	}
	add(list("/fc/r", "/", "/fc")...)
	add("fish read /fc/r/a.txt download size=9 sha=eee21f2b ok")
	add(list("/fc/r", "/", "/fc")...)
	up("/fc/r/up.bin", "70000", "c7213165")
	add(list("/fc/r", "/", "/fc")...)
	up("/fc/r/empty", "0", "e3b0c442")
	add(list("/fc/r", "/", "/fc")...)
	up("/fc/r/sp ace'$x.bin", "5000", "33975642")
	add(list("/fc/r", "/", "/fc")...)
	add("fish rename /fc/r/gone.txt -> /fc/r/renamed.txt ok")
	add(list("/fc", "/fc/r", "/")...)
	add("fish mkdir /fc/r/newdir ok")
	add(list("/fc/r", "/", "/fc", "/fc/r/newdir")...)
	add("fish rmdir /fc/r/newdir ok")
	add(list("/fc/r", "/", "/fc")...)
	add("fish remove /fc/r/renamed.txt ok")
	add(list("/fc/r", "/")...)
	add("fish chmod /fc/r/a.txt ok")
	add(list("/fc/r", "/")...)

	lftp := []string{
		"fish write /fc/r/up.bin upload size=5000 sha=47bc4884 ok",
		"fish write /fc/r/s.txt upload size=11 sha=b35c765e ok",
		"fish read /fc/r/up.bin download size=5000 sha=47bc4884 ok",
		"fish list /fc/r ok",
		"fish mkdir /fc/r/d ok",
		"fish rename /fc/r/s.txt -> /fc/r/d/moved.txt ok",
		"fish chmod /fc/r/d/moved.txt ok",
		"fish remove /fc/r/d/moved.txt ok",
		"fish rmdir /fc/r/d ok",
		"fish read /fc/r/up.bin download size=5000 sha=47bc4884 ok",
	}
	for _, tc := range []struct {
		name string
		want []string
	}{{"mc-4.8.29.cap", mc}, {"lftp-4.9.2.cap", lftp}} {
		for _, piece := range []int{0, 7} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, piece), func(t *testing.T) {
				check(t, replay(t, tc.name, piece), tc.want...)
			})
		}
	}
}

// mc's commands, cut down from the captured scripts, each with its answer:
// the variables on the line before, comment lines in a script, #ISEXISTS's
// "### 1", a resumed #RETR and an #APPE (neither is the whole file: no
// sha256), values the shell computes, an echo that assigns nothing, and
// quoted names.
var mcSteps = []struct{ c, s string }{
	{"#FISH\necho; start_fish_server 2>&1; echo '### 200'\n", "FISH:\n\n### 200\n"},
	{"#VER 0.0.3\necho '### 000'\n", "### 000\n"},
	{"LC_TIME=C\nexport LC_TIME\n#FISH_HAVE_HEAD         1\n#FISH_HAVE_SED          2\nres=0\necho $res\necho \"### 200\"\n", "127\n### 200\n"},
	{"FISH_HAVE_HEAD=1 export FISH_HAVE_HEAD; FISH_FILENAME=srv/a\\ b\\;c FISH_FILESIZE=5;\n#STOR $FISH_FILESIZE $FISH_FILENAME\n" +
		"FILENAME=\"/${FISH_FILENAME}\"\necho \"### 001\"\n{\n    > \"${FILENAME}\"\n}; echo \"### 200\"\n", "### 001\n"},
	{"hello", "### 200\n"},
	{"FISH_FILENAME=srv/nope;\n#ISEXISTS $FISH_FILENAME\nls -l \"/${FISH_FILENAME}\" >/dev/null 2>/dev/null\necho '### '$?\n", "### 1\n"},
	{"FISH_FILENAME=srv/a\\ b\\;c FISH_START_OFFSET=2;\n#RETR $FISH_FILENAME $FISH_START_OFFSET\nperl -e ''\n", "3\n### 100\nllo### 200\n"},
	{"FISH_FILENAME=srv/log FISH_FILESIZE=3;\n#APPE $FISH_FILESIZE $FISH_FILENAME\necho \"### 001\"\n}; echo \"### 200\"\n", "### 001\n"},
	{"abc", "### 200\n"},
	{"FISH_FILENAME=`pwd`; echo FISH_DIR=/etc/shadow\n#LIST /${FISH_DIR}\necho '### 200'\n", "### 200\n"},
	{"FISH_FILEFROM=srv/x FISH_FILETO=\"srv/y z\";\n#RENAME $FISH_FILEFROM $FISH_FILETO\necho '### 000'\n", "### 000\n"},
	{"FISH_FILENAME=\"$HOME/d\" FISH_FILEMODE=0755;\n#CHMOD $FISH_FILEMODE $FISH_FILENAME\necho '### 500'\n", "### 500\n"},
	{"FISH_FILENAME=srv/d;\n#MKD $FISH_FILENAME\necho '### 000'\n", "### 000\n"},
	{"#BYE\nexit\n", ""},
}

func mcStreams() (c, s string) {
	var cb, sb strings.Builder
	for _, st := range mcSteps {
		cb.WriteString(st.c)
		sb.WriteString(st.s)
	}
	return cb.String(), sb.String()
}

func TestFISHVariables(t *testing.T) {
	if !IsFISH("echo FISH:; /bin/sh") || !IsFISH("echo FISH:;/bin/sh") {
		t.Fatal("IsFISH: Midnight Commander's or lftp's command")
	}
	for _, piece := range []int{1, 5, 1 << 20} {
		c := &collect{}
		s := NewSession(NewFISH(c.emit))
		feed := func(f func([]byte), d string) {
			for len(d) > 0 {
				n := min(piece, len(d))
				f([]byte(d[:n]))
				d = d[n:]
			}
		}
		// The client waits for each answer.
		for _, st := range mcSteps {
			feed(s.ToTarget, st.c)
			feed(s.ToUser, st.s)
		}
		s.End(true)
		check(t, c.lines(),
			"fish write /srv/a b;c upload size=5 sha="+sum8([]byte("hello"))+" ok",
			"fish read /srv/a b;c download size=3 ok",
			"fish write /srv/log upload size=3 ok",
			"fish list /${FISH_DIR} ok", // FISH_DIR and FISH_FILENAME are not known
			"fish rename /srv/x -> /srv/y z ok",
			"fish chmod $FISH_FILENAME failed", // a value from $HOME is not known
			"fish mkdir /srv/d ok",
		)
	}
}

func FuzzShScan(f *testing.F) {
	f.Add(`FISH_FILENAME=srv/a\ b\;c FISH_FILESIZE=5;`)
	f.Add(`#UTIME "$FISH_TOUCHATIME_W_NSEC" "${FISH_FILENAME}" ${X`)
	f.Fuzz(func(t *testing.T, s string) {
		p := NewFISH(func(audit.Event) {})
		p.vars["FISH_FILENAME"] = "v"
		p.assign(s)
		if len(p.vars) > maxFISHVars {
			t.Fatal("unbounded")
		}
		cmds, ok := shScan(s, p.lookup)
		for _, c := range cmds {
			for _, w := range c {
				if w.eq > len(w.text) {
					t.Fatalf("eq %d past %q", w.eq, w.text)
				}
			}
		}
		if !ok && cmds != nil {
			t.Fatal("words of a line that did not scan")
		}
	})
}
