package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestServeLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	first, err := OpenForServe(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(first.Path, ServeLock))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, %v; want our pid", b, err)
	}
	before := listing(t, first.Path)

	// flock locks belong to the open file, so a second open in this
	// process conflicts as another process's would.
	_, err = OpenForServe(path)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second OpenForServe: %v, want in use by pid %d", err, os.Getpid())
	}
	if msg := err.Error(); !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) || strings.Contains(msg, "\n") {
		t.Fatalf("message %q: want one line naming the pid", msg)
	}
	if after := listing(t, first.Path); after != before {
		t.Fatalf("refused open changed the directory:\n%s\nthen\n%s", before, after)
	}
	// Open (the admin commands) takes no lock.
	if _, err := Open(path); err != nil {
		t.Fatalf("Open while served: %v", err)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := OpenForServe(path)
	if err != nil {
		t.Fatalf("OpenForServe after Close: %v", err)
	}
	defer second.Close()
}

// A holder that has not written its pid yet is still reported.
func TestInUseWithoutPID(t *testing.T) {
	e := &InUseError{Dir: "/d"}
	if got := e.Error(); !strings.Contains(got, "/d/serve.pid") {
		t.Fatalf("%q", got)
	}
}

func listing(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sb.WriteString(p + " " + fi.Mode().String() + " " + strconv.FormatInt(fi.Size(), 10) + " " + fi.ModTime().String() + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}
