package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The upstream sshd runs on this machine as root, so a path "on the target"
// is a path here: the tests check what arrived directly.

func TestSCP(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "scp")
	w := newWorld(t, worldOptions{})
	big, sum := bigFile(t)
	for _, mode := range []struct{ name, flag string }{{"sftp mode", ""}, {"legacy -O", "-O"}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			remote := t.TempDir()
			local := t.TempDir()
			args := func(a ...string) []string {
				if mode.flag != "" {
					return append([]string{mode.flag}, a...)
				}
				return a
			}
			up := filepath.Join(remote, "up.bin")
			harness.MustRun(t, w.alice.SCP(args(big, w.alice.Dest("web-1")+":"+up)...), nil, long)
			if got := sha256File(t, up); got != sum {
				t.Fatalf("upload: sha256 %s, want %s", got, sum)
			}
			down := filepath.Join(local, "down.bin")
			harness.MustRun(t, w.alice.SCP(args(w.alice.Dest("web-1")+":"+up, down)...), nil, long)
			if got := sha256File(t, down); got != sum {
				t.Fatalf("download: sha256 %s, want %s", got, sum)
			}
			// A directory, recursively.
			tree := makeTree(t, t.TempDir())
			dst := filepath.Join(remote, "tree")
			harness.MustRun(t, w.alice.SCP(args("-r", "-p", tree, w.alice.Dest("web-1")+":"+dst)...), nil, long)
			if a, b := fileDigest(t, tree), fileDigest(t, dst); a != b {
				t.Errorf("scp -r: trees differ:\n%s\n---\n%s", a, b)
			}
			// A missing file: scp fails, with a message, no hang.
			r := harness.Run(w.alice.SCP(args(w.alice.Dest("web-1")+":"+filepath.Join(remote, "nope"), filepath.Join(local, "x"))...), nil, short)
			if r.Code == 0 || r.Err != nil || !strings.Contains(r.Stderr, "nope") {
				t.Errorf("scp of a missing file: exit %d %v stderr %q", r.Code, r.Err, r.Stderr)
			}
		})
	}
}

func TestSFTP(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "sftp")
	w := newWorld(t, worldOptions{})
	big, sum := bigFile(t)
	remote, local := t.TempDir(), t.TempDir()
	batch := filepath.Join(local, "batch")
	up, down := filepath.Join(remote, "up.bin"), filepath.Join(local, "down.bin")
	script := fmt.Sprintf("put %s %s\nmkdir %s/d\nls -l %s\nrename %s %s/d/moved.bin\nget %s/d/moved.bin %s\n",
		big, up, remote, remote, up, remote, remote, down)
	os.WriteFile(batch, []byte(script), 0o600)
	r := harness.MustRun(t, w.alice.SFTP("-b", batch, w.alice.Dest("web-1")), nil, long)
	if !strings.Contains(r.Stdout, "up.bin") {
		t.Errorf("sftp ls -l did not list up.bin: %q", r.Stdout)
	}
	if got := sha256File(t, filepath.Join(remote, "d", "moved.bin")); got != sum {
		t.Errorf("put: sha256 %s, want %s", got, sum)
	}
	if got := sha256File(t, down); got != sum {
		t.Errorf("get: sha256 %s, want %s", got, sum)
	}
	// A failing batch command makes sftp exit non-zero.
	os.WriteFile(batch, []byte("get "+remote+"/missing "+local+"/m\n"), 0o600)
	if r := harness.Run(w.alice.SFTP("-b", batch, w.alice.Dest("web-1")), nil, short); r.Code == 0 || r.Err != nil {
		t.Errorf("sftp get of a missing file: exit %d %v", r.Code, r.Err)
	}
}

// makeTree writes a small tree: nested dirs, empty and 3 MiB files, odd
// names, modes and a symlink.
func makeTree(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "site")
	rng := rand.NewChaCha8([32]byte{9})
	files := map[string]int{
		"index.html": 1000, "empty": 0, "a/b/c/deep.txt": 5000, "a/big.bin": 3 << 20,
		"with space.txt": 10, "a/b/x.json": 300, "img/logo.png": 70000,
	}
	for name, size := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		data := make([]byte, size)
		rng.Read(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "a/b/x.json"), 0o600)
	os.Chmod(filepath.Join(root, "index.html"), 0o755)
	os.Symlink("index.html", filepath.Join(root, "link.html"))
	return root
}

// fileDigest is treeDigest without symlinks (scp follows them).
func fileDigest(t *testing.T, root string) string {
	var keep []string
	for _, l := range strings.Split(treeDigest(t, root), "\n") {
		if !strings.Contains(l, " link ") && !strings.HasPrefix(l, "link.html") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestRsync(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "rsync")
	w := newWorld(t, worldOptions{})
	src := makeTree(t, t.TempDir())
	remote := filepath.Join(t.TempDir(), "srv", "site")
	os.MkdirAll(filepath.Dir(remote), 0o755)

	harness.MustRun(t, w.alice.Rsync("-a", "--checksum", src+"/", w.alice.Dest("web-1")+":"+remote+"/"), nil, long)
	if a, b := treeDigest(t, src), treeDigest(t, remote); a != b {
		t.Fatalf("rsync up: trees differ:\n%s\n---\n%s", a, b)
	}

	// Change the remote copy, then pull it back over a stale local copy.
	os.WriteFile(filepath.Join(remote, "index.html"), []byte("changed"), 0o755)
	os.Remove(filepath.Join(remote, "empty"))
	os.WriteFile(filepath.Join(remote, "a", "new.txt"), []byte("new"), 0o644)
	back := filepath.Join(t.TempDir(), "back")
	harness.MustRun(t, w.alice.Rsync("-a", src+"/", back+"/"), nil, short) // stale local copy
	harness.MustRun(t, w.alice.Rsync("-a", "--delete", "--checksum", w.alice.Dest("web-1")+":"+remote+"/", back+"/"), nil, long)
	if a, b := treeDigest(t, remote), treeDigest(t, back); a != b {
		t.Fatalf("rsync down: trees differ:\n%s\n---\n%s", a, b)
	}
	// Nothing left to send: a dry run itemizes nothing.
	r := harness.MustRun(t, w.alice.Rsync("-a", "--checksum", "-n", "-i", back+"/", w.alice.Dest("web-1")+":"+remote+"/"), nil, short)
	if strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("rsync after sync still itemizes changes: %q", r.Stdout)
	}
}

func TestGit(t *testing.T) {
	t.Parallel()
	harness.RequireTools(t, "git")
	w := newWorld(t, worldOptions{})
	remote := filepath.Join(t.TempDir(), "repo.git")
	harness.MustRun(t, w.alice.Git("init", "-q", "--bare", "-b", "main", remote), nil, short)

	work := filepath.Join(t.TempDir(), "work")
	git := func(dir string, args ...string) harness.Result {
		return harness.MustRun(t, w.alice.Git(append([]string{"-C", dir}, args...)...), nil, short)
	}
	harness.MustRun(t, w.alice.Git("init", "-q", "-b", "main", work), nil, short)
	os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644)
	git(work, "add", "README")
	git(work, "commit", "-q", "-m", "first")
	url := w.alice.GitURL("web-1", remote)
	git(work, "push", "-q", url, "main")

	clone := filepath.Join(t.TempDir(), "clone")
	harness.MustRun(t, w.alice.Git("clone", "-q", url, clone), nil, short)
	if b, err := os.ReadFile(filepath.Join(clone, "README")); err != nil || string(b) != "hello\n" {
		t.Fatalf("clone: README %q %v", b, err)
	}
	os.WriteFile(filepath.Join(clone, "second"), []byte("2\n"), 0o644)
	git(clone, "add", "second")
	git(clone, "commit", "-q", "-m", "second")
	git(clone, "push", "-q", "origin", "main")
	r := harness.MustRun(t, w.alice.Git("--git-dir", remote, "log", "--format=%s", "main"), nil, short)
	if strings.TrimSpace(r.Stdout) != "second\nfirst" {
		t.Errorf("bare repo log after push: %q", r.Stdout)
	}
	git(work, "pull", "-q", url, "main")
	if _, err := os.Stat(filepath.Join(work, "second")); err != nil {
		t.Errorf("pull: %v", err)
	}
}
