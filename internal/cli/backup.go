package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// A backup is a tar file of the data directory's state: a consistent copy
// of the store (taken with the gate running) and the key and CA files.
// Audit logs, recordings and container sockets are not in it.
const backupDB = "sshgate.db"

// backupFiles are the files a backup holds besides the store, relative to
// the data directory (globs); restore accepts nothing else.
var backupFiles = []string{
	"host_keys/ssh_host_*_key", "host_keys/ssh_host_*_key.pub", "host_keys/*-cert.pub",
	"gate_key", "gate_key.pub", "totp_key",
	"ca/user_ca", "ca/user_ca.pub", "ca/client_ca", "ca/client_ca.pub", "ca/host_ca", "ca/host_ca.pub",
	"ca/trusted_user_ca_keys", "ca/revoked",
}

// backupName reports whether name is a file a backup may hold: the store,
// or a file matching backupFiles. Anything else (absolute paths, "..",
// other files) is refused by restore.
func backupName(name string) bool {
	if name != path.Clean(name) || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "..") {
		return false
	}
	if name == backupDB {
		return true
	}
	for _, g := range backupFiles {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (e *env) backupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the store and the gate's key and CA files to FILE (a tar), while the gate runs",
		Args:  argsOf([]string{"FILE"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			out := args[0]
			d, err := e.dataDir()
			if err != nil {
				return err
			}
			if _, err := os.Stat(d.DBPath()); err != nil {
				return failf("backup: no store in %s", d.Path)
			}
			st, err := sqlite.Open(d.DBPath())
			if err != nil {
				return failf("%v", err)
			}
			defer st.Close()
			tmp, err := os.MkdirTemp(filepath.Dir(out), ".sshgate-backup-")
			if err != nil {
				return failf("backup: %v", err)
			}
			defer os.RemoveAll(tmp)
			snap := filepath.Join(tmp, backupDB)
			if err := st.BackupTo(cmd.Context(), snap); err != nil {
				return err
			}
			files := []string{backupDB}
			for _, g := range backupFiles {
				m, _ := filepath.Glob(filepath.Join(d.Path, g))
				for _, p := range m {
					rel, _ := filepath.Rel(d.Path, p)
					files = append(files, filepath.ToSlash(rel))
				}
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return failf("backup: %s already exists", out)
			}
			if err != nil {
				return fileErr("backup", err)
			}
			if err := writeBackup(f, d.Path, snap, files); err != nil {
				f.Close()
				os.Remove(out)
				return failf("backup %s: %v", out, err)
			}
			if err := f.Close(); err != nil {
				os.Remove(out)
				return failf("backup %s: %v", out, err)
			}
			fmt.Fprintf(e.stdout, "wrote %s: the store and %d key and CA files of %s\n", out, len(files)-1, d.Path)
			return nil
		}),
	}
}

func writeBackup(w io.Writer, dir, snap string, files []string) error {
	tw := tar.NewWriter(w)
	for _, name := range files {
		src := filepath.Join(dir, filepath.FromSlash(name))
		if name == backupDB {
			src = snap
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		mode := int64(0o600)
		if strings.HasSuffix(name, ".pub") {
			mode = 0o644
		}
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Now().UTC(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (e *env) restoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into a new or empty data directory (--data); then start the gate on it",
		Args:  argsOf([]string{"FILE"}, 0),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			in, err := os.Open(args[0])
			if err != nil {
				return fileErr("restore", err)
			}
			defer in.Close()
			target := datadir.Resolve(e.data)
			if entries, err := os.ReadDir(target); err == nil && len(entries) > 0 {
				return failf("restore: data directory %s is not empty; restore into a new directory (stop the gate and move the old one aside first)", target)
			}
			d, _, err := datadir.Create(target)
			if err != nil {
				return failf("%v", err)
			}
			n, err := readBackup(in, d.Path)
			if err != nil {
				return failf("restore %s: %v (the partly restored files are in %s)", args[0], err, d.Path)
			}
			// The restored store must open (and is migrated forward if the
			// backup came from an older binary).
			st, err := sqlite.Open(d.DBPath())
			if err != nil {
				return failf("restore: %v", err)
			}
			st.Close()
			fmt.Fprintf(e.stdout, "restored %d files into %s\n", n, d.Path)
			return nil
		}),
	}
}

// readBackup extracts a backup into dir, accepting only the files a backup
// holds, each at most 64 MiB, and requiring the store.
func readBackup(r io.Reader, dir string) (int, error) {
	tr := tar.NewReader(r)
	n, sawDB := 0, false
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("not a sshgate backup: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg || !backupName(hdr.Name) || seen[hdr.Name] {
			return n, fmt.Errorf("unexpected entry %q: not a sshgate backup", hdr.Name)
		}
		if hdr.Size > 64<<20 && hdr.Name != backupDB {
			return n, fmt.Errorf("entry %q is too large", hdr.Name)
		}
		seen[hdr.Name] = true
		dst := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return n, err
		}
		mode := os.FileMode(0o600)
		if strings.HasSuffix(hdr.Name, ".pub") {
			mode = 0o644
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return n, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return n, err
		}
		sawDB = sawDB || hdr.Name == backupDB
		n++
	}
	if !sawDB {
		return n, errors.New("no store in it: not a sshgate backup")
	}
	return n, nil
}
