// Package secretfile reads a private key file the gate is given from
// outside its data directory, such as a file of a Kubernetes Secret volume,
// and refuses one that others could read or change. The gate never writes
// such a file: the files are the operator's.
//
// A Secret volume is a directory in which the kubelet makes every key a
// symlink into a hidden, timestamped directory beside it
// (KEY -> ..data/KEY, ..data -> ..2026_12_04_13_00_00.123), read-only, with
// the mode of the volume's defaultMode (0400, or 0440 once fsGroup gives the
// pod's group read access). Read follows symlinks only while they stay in
// the directory that holds the configured path (the mount), so a link
// pointing elsewhere is refused, not read.
//
// Must not import: any project package
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// MaxSize bounds a key file (a 16384-bit RSA key in OpenSSH format is under
// 13 KiB).
const MaxSize = 64 << 10

// Error is a key file refused or unreadable: Path as configured, and why.
type Error struct {
	Path   string
	Reason string
	Err    error // the underlying error, if any (fs.ErrNotExist for a missing file)
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }
func (e *Error) Unwrap() error { return e.Err }

// Read returns the contents of the key file at path (an absolute path),
// after checking it:
//   - it exists (a missing file is an error wrapping fs.ErrNotExist: such a
//     key is never generated);
//   - symlinks, followed, stay within filepath.Dir(path);
//   - it is a regular file of at most MaxSize bytes;
//   - neither its group nor others may write to it, and others may not read
//     it (its group may: a Secret volume with fsGroup is 0440);
//   - it is owned by root or by the gate's own user.
func Read(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, &Error{Path: path, Reason: "not an absolute path"}
	}
	path = filepath.Clean(path)
	real, err := resolve(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &Error{Path: path, Reason: describe(err), Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{Path: path, Reason: describe(err), Err: err}
	}
	if err := check(path, real, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, &Error{Path: path, Reason: describe(err), Err: err}
	}
	if len(data) > MaxSize {
		return nil, &Error{Path: path, Reason: fmt.Sprintf("larger than %d bytes: not a key file", MaxSize)}
	}
	return data, nil
}

// resolve follows the symlinks of path and returns the file they lead to,
// which must lie within the directory holding path (its own symlinks, such
// as /etc -> /private/etc, are resolved first and allowed).
func resolve(path string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return "", &Error{Path: path, Reason: "directory " + describe(err), Err: err}
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.Base(path)))
	if err != nil {
		return "", &Error{Path: path, Reason: describe(err), Err: err}
	}
	rel, err := filepath.Rel(dir, real)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", &Error{Path: path, Reason: fmt.Sprintf("is a symlink to %s, outside its directory %s, refusing", real, dir)}
	}
	return real, nil
}

func check(path, real string, fi fs.FileInfo) error {
	via := ""
	if real != path {
		via = "; the link leads to " + real
	}
	if !fi.Mode().IsRegular() {
		return &Error{Path: path, Reason: "not a regular file, refusing" + via}
	}
	const fix = " (chmod 0400, or 0440 for a group; a Secret volume: defaultMode: 0400" // + via + ")"
	m := fi.Mode().Perm()
	switch {
	case m&0o002 != 0:
		return &Error{Path: path, Reason: fmt.Sprintf("mode %04o: others may write to it, refusing", m) + fix + via + ")"}
	case m&0o020 != 0:
		return &Error{Path: path, Reason: fmt.Sprintf("mode %04o: its group may write to it, refusing", m) + fix + via + ")"}
	case m&0o004 != 0:
		return &Error{Path: path, Reason: fmt.Sprintf("mode %04o: others may read it, refusing", m) + fix + via + ")"}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
			return &Error{Path: path, Reason: fmt.Sprintf("owned by uid %d, neither root nor the gate's own user (uid %d), refusing%s", uid, os.Geteuid(), via)}
		}
	}
	return nil
}

// describe is an error's reason without the path os already put in it.
func describe(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist (a configured key is never generated: create it)"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied (a Secret volume read by a non-root gate: defaultMode: 0400 with the pod's fsGroup)"
	}
	return err.Error()
}
