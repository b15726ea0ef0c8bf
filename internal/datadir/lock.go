package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ServeLock is the file in the data directory that a running `sshgate serve`
// holds an exclusive flock on; it holds that process's pid. The kernel drops
// the lock when the process ends, however it ends.
const ServeLock = "serve.pid"

// InUseError says another process holds the data directory's serve lock.
type InUseError struct {
	Dir string
	PID int // 0 when the holder has not written its pid yet
}

func (e *InUseError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("data directory %s is in use by another sshgate serve (pid %d)", e.Dir, e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by another sshgate serve (see %s)", e.Dir, filepath.Join(e.Dir, ServeLock))
}

// OpenForServe opens the directory as Create does (serve may create it) and
// takes its serve lock, so that one gate at a time owns it; Close releases
// the lock. A directory in use gives an *InUseError and is left as it was.
func OpenForServe(path string) (*Dir, error) {
	d, _, err := Create(path)
	if err != nil {
		return nil, err
	}
	if err := d.lockServe(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Dir) lockServe() error {
	p := filepath.Join(d.Path, ServeLock)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return &InUseError{Dir: d.Path, PID: readPID(p)}
		}
		return fmt.Errorf("lock data directory %s: %w", d.Path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	d.lock = f
	return nil
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// Close releases the serve lock taken by OpenForServe (it empties the pid
// file first); for a directory opened with Open it does nothing.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	f := d.lock
	d.lock = nil
	f.Truncate(0)
	return f.Close()
}
