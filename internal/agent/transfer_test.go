package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func writeRandom(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, n); err != nil {
		t.Fatal(err)
	}
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func (f *fixture) sftp(t *testing.T, batch string) result {
	t.Helper()
	args := append(f.opensshOpts(f.user.path), "-P", f.port, "-b", "-", "x@127.0.0.1")
	return run(t, strings.NewReader(batch), "sftp", args...)
}

func (f *fixture) scp(t *testing.T, args ...string) result {
	t.Helper()
	all := append(f.opensshOpts(f.user.path), "-O", "-P", f.port)
	return run(t, nil, "scp", append(all, args...)...)
}

// SFTP is served in-process, so it works even when the image has no shell.
func TestSFTP20MiB(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.Shell = "/nonexistent/sh" })
	src := filepath.Join(f.dir, "src.bin")
	writeRandom(t, src, 20<<20)
	remote := filepath.Join(f.dir, "remote.bin")
	back := filepath.Join(f.dir, "back.bin")
	r := f.sftp(t, "put "+src+" "+remote+"\nget "+remote+" "+back+"\n")
	if r.code != 0 {
		t.Fatalf("sftp: code %d stderr %q", r.code, r.stderr)
	}
	if sha(t, src) != sha(t, remote) || sha(t, src) != sha(t, back) {
		t.Fatal("sftp copies differ from the source")
	}
}

func TestSCPFile(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.Shell = "/nonexistent/sh" })
	src := filepath.Join(f.dir, "src.bin")
	writeRandom(t, src, 3<<20+17)
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(src, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	updir := filepath.Join(f.dir, "up")
	if err := os.Mkdir(updir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Into a directory (scp -t -- dir/), then to an explicit name.
	if r := f.scp(t, "-p", src, "x@127.0.0.1:"+updir+"/"); r.code != 0 {
		t.Fatalf("scp upload: code %d stderr %q", r.code, r.stderr)
	}
	up := filepath.Join(updir, "src.bin")
	if sha(t, up) != sha(t, src) {
		t.Fatal("uploaded file differs")
	}
	fi, err := os.Stat(up)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("uploaded with -p: mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	named := filepath.Join(f.dir, "named.bin")
	if r := f.scp(t, src, "x@127.0.0.1:"+named); r.code != 0 || sha(t, named) != sha(t, src) {
		t.Fatalf("scp to a name: code %d stderr %q", r.code, r.stderr)
	}
	// Relative to HOME, and back down.
	down := filepath.Join(f.dir, "down.bin")
	if r := f.scp(t, "-p", "x@127.0.0.1:"+up, down); r.code != 0 {
		t.Fatalf("scp download: code %d stderr %q", r.code, r.stderr)
	}
	if sha(t, down) != sha(t, src) {
		t.Fatal("downloaded file differs")
	}
	if fi, _ := os.Stat(down); fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("downloaded with -p: mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
	// A missing file: scp reports it and fails.
	r := f.scp(t, "x@127.0.0.1:"+filepath.Join(f.dir, "nope"), filepath.Join(f.dir, "x"))
	if r.code != 1 {
		t.Fatalf("missing file: code %d", r.code)
	}
	mustContain(t, r.stderr, "No such file or directory")
}

func TestSCPRecursive(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.Shell = "/nonexistent/sh" })
	tree := filepath.Join(f.dir, "tree")
	files := map[string]int64{"a.txt": 10, "sub/b.bin": 100 << 10, "sub/deeper/c": 0, "sub/deeper/d": 70000}
	for name, n := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeRandom(t, p, n)
	}
	if err := os.Mkdir(filepath.Join(tree, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(f.dir, "remote-tree") // does not exist: created as the copy
	if r := f.scp(t, "-r", "-p", tree, "x@127.0.0.1:"+remote); r.code != 0 {
		t.Fatalf("scp -r upload: code %d stderr %q", r.code, r.stderr)
	}
	back := filepath.Join(f.dir, "back")
	if err := os.Mkdir(back, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := f.scp(t, "-r", "-p", "x@127.0.0.1:"+remote, back); r.code != 0 {
		t.Fatalf("scp -r download: code %d stderr %q", r.code, r.stderr)
	}
	for _, root := range []string{remote, filepath.Join(back, "remote-tree")} {
		for name := range files {
			if sha(t, filepath.Join(root, name)) != sha(t, filepath.Join(tree, name)) {
				t.Errorf("%s/%s differs", root, name)
			}
		}
		fi, err := os.Stat(filepath.Join(root, "empty"))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s/empty: %v %v", root, fi, err)
		}
	}
	// Into an existing directory: the tree lands inside it.
	if r := f.scp(t, "-r", tree, "x@127.0.0.1:"+back); r.code != 0 {
		t.Fatalf("scp -r into dir: code %d stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(back, "tree", "sub", "deeper", "d")); err != nil {
		t.Fatal(err)
	}
	// A directory without -r is refused, the run fails.
	r := f.scp(t, "x@127.0.0.1:"+remote, filepath.Join(f.dir, "x"))
	if r.code != 1 {
		t.Fatalf("dir without -r: code %d", r.code)
	}
	mustContain(t, r.stderr, "not a regular file")
}

// scp without -O speaks SFTP; it fails unless the subsystem ends with an
// exit status (EOF, exit-status, close), which this checks too.
func TestSCPOverSFTP(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.Shell = "/nonexistent/sh" })
	src := filepath.Join(f.dir, "src.bin")
	writeRandom(t, src, 1<<20+5)
	up := filepath.Join(f.dir, "up.bin")
	down := filepath.Join(f.dir, "down.bin")
	args := append(f.opensshOpts(f.user.path), "-P", f.port)
	if r := run(t, nil, "scp", append(args, src, "x@127.0.0.1:"+up)...); r.code != 0 {
		t.Fatalf("upload: code %d stderr %q", r.code, r.stderr)
	}
	if r := run(t, nil, "scp", append(args, "x@127.0.0.1:"+up, down)...); r.code != 0 {
		t.Fatalf("download: code %d stderr %q", r.code, r.stderr)
	}
	if sha(t, down) != sha(t, src) {
		t.Fatal("copy differs")
	}
	c, err := f.client(t, "x", f.user.signer)
	if err != nil {
		t.Fatal(err)
	}
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(&struct{ Name string }{"sftp"}))
	if err != nil || !ok {
		t.Fatalf("subsystem sftp: %v %v", ok, err)
	}
	if err := ch.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	status := -1
	for req := range reqs {
		if req.Type == "exit-status" && len(req.Payload) == 4 {
			status = int(binary.BigEndian.Uint32(req.Payload))
		}
	}
	if status != 0 {
		t.Fatalf("sftp subsystem ended with exit status %d, want 0", status)
	}
}
