package agent

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"runtime/debug"
	"syscall"
	"testing"
)

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uintptr
	var errno syscall.Errno
	_ = rc.Control(func(fd uintptr) {
		n, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETPIPE_SZ, 0)
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// chunks reads data out in pieces of at most n bytes, as x/crypto's
// channel hands out what one or more packets carried.
type chunks struct {
	r io.Reader
	n int
}

func (c *chunks) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// TestCopyToPipe: bulk input (reads that fill the small buffer) arrives
// whole and in order and grows the pipe to pipeBulk; typed input leaves
// the pipe at its default size.
func TestCopyToPipe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
		grown bool
	}{
		{"bulk", 3<<20 + 123, 1 << 20, true},
		{"typed", 100, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			rand.Read(data)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			before := pipeSize(t, w)
			got := make(chan []byte)
			go func() { b, _ := io.ReadAll(r); got <- b }()
			copyToPipe(w, &chunks{bytes.NewReader(data), tc.chunk})
			after := pipeSize(t, w)
			w.Close()
			if b := <-got; !bytes.Equal(b, data) {
				t.Fatalf("%d bytes out of %d in, or not the same", len(b), len(data))
			}
			if tc.grown && after < pipeBulk {
				t.Errorf("pipe %d bytes after bulk input, want %d", after, pipeBulk)
			}
			if !tc.grown && after != before {
				t.Errorf("pipe grew from %d to %d bytes on typed input", before, after)
			}
		})
	}
}

// TestTuneGC: GOGC and GOMEMLIMIT from the environment win; otherwise
// gcPercent and memoryLimit.
func TestTuneGC(t *testing.T) {
	pct, lim := debug.SetGCPercent(100), debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(pct); debug.SetMemoryLimit(lim) }()

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOGC")
	os.Unsetenv("GOMEMLIMIT")
	TuneGC()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != memoryLimit {
		t.Errorf("memory limit %d, want %d", got, memoryLimit)
	}

	debug.SetMemoryLimit(1 << 40)
	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1TiB")
	TuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent %d with GOGC set, want it left alone (100)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("memory limit %d with GOMEMLIMIT set, want it left alone", got)
	}
}
