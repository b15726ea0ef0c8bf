// Package datadir knows the layout of the gate's data directory, shared by
// `sshgate serve` and the admin commands:
//
//	DIR/sshgate.db                 the embedded SQLite store
//	DIR/host_keys/ssh_host_*_key   the gate's host keys (generated, 0600)
//	DIR/gate_key                   the gate's own key for logging in to targets
//	DIR/serve.pid                  the pid of the `sshgate serve` that holds its flock (lock.go)
//	DIR/audit/, DIR/recordings/    audit events and session recordings
//	DIR/containers/                per-container sockets (docker backend)
//	DIR/ca/                        the gate's CA keys, trusted user CAs, revocations
//	DIR/watch.sock                 `sshgate sessions watch` reaches the running gate here (0600)
//
// Must not import: store/... broker sshd/... relay target/... auth/... app config
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// EnvVar names the environment variable that sets the default data directory.
const EnvVar = "SSHGATE_DATA"

// Default is the data directory when neither --data nor SSHGATE_DATA is given.
const Default = "./sshgate-data"

// Dir is an opened data directory.
type Dir struct {
	Path string
	// Keys are key files outside the directory (keys.go): set, they are
	// read from there instead, strictly, and never generated.
	Keys KeyFiles
	lock *os.File // the serve lock (lock.go), when held
}

// Resolve picks the data directory: the flag, else $SSHGATE_DATA, else Default.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv(EnvVar); v != "" {
		return v
	}
	return Default
}

// Open opens an existing data directory and checks its modes (Check). A
// missing directory is an error naming it: only Create makes one, so a
// mistyped --data never starts an empty store.
func Open(path string) (*Dir, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("data directory %s does not exist (`sshgate serve` or `sshgate init` creates it; or give --data or $%s)", abs, EnvVar)
	}
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", abs, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("data directory %s is not a directory", abs)
	}
	d := &Dir{Path: abs}
	if err := d.Check(); err != nil {
		return nil, err
	}
	return d, nil
}

// Create opens the data directory, creating it (0700) if it is missing.
// created reports whether it did.
func Create(path string) (d *Dir, created bool, err error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, false, err
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, false, fmt.Errorf("create data directory %s: %w", abs, err)
		}
		created = true
	}
	d, err = Open(abs)
	return d, created, err
}

func absPath(path string) (string, error) {
	if path == "" {
		path = Default
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("data directory %q: %w", path, err)
	}
	return abs, nil
}

// privateFiles are the files of the data directory that hold secrets,
// relative to it (globs).
var privateFiles = []string{
	"host_keys/ssh_host_*_key", "gate_key", "totp_key",
	"ca/user_ca", "ca/client_ca", "ca/host_ca",
}

// dirs are the directories whose write permission guards those files.
var dirs = []string{".", "host_keys", "ca"}

// Check refuses, as OpenSSH's StrictModes does, a data directory (or its
// host_keys/ and ca/) that others may write to, and a private key that
// others may read; the message says the chmod that fixes it.
func (d *Dir) Check() error {
	for _, rel := range dirs {
		p := filepath.Join(d.Path, rel)
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && rel != "." {
			continue
		}
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if m := fi.Mode().Perm(); m&0o022 != 0 {
			return fmt.Errorf("%s has mode %04o: others may write to it, refusing (chmod go-w %s)", p, m, p)
		}
	}
	for _, g := range privateFiles {
		matches, _ := filepath.Glob(filepath.Join(d.Path, g))
		for _, p := range matches {
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("data directory: %w", err)
			}
			if m := fi.Mode().Perm(); m&0o077 != 0 {
				return fmt.Errorf("private key %s has mode %04o: others may read it, refusing (chmod 600 %s)", p, m, p)
			}
		}
	}
	return nil
}

func (d *Dir) DBPath() string        { return filepath.Join(d.Path, "sshgate.db") }
func (d *Dir) HostKeyDir() string    { return filepath.Join(d.Path, "host_keys") }
func (d *Dir) GateKeyPath() string   { return filepath.Join(d.Path, "gate_key") }
func (d *Dir) AuditDir() string      { return filepath.Join(d.Path, "audit") }
func (d *Dir) RecordingsDir() string { return filepath.Join(d.Path, "recordings") }
func (d *Dir) ContainersDir() string { return filepath.Join(d.Path, "containers") }
func (d *Dir) CADir() string         { return filepath.Join(d.Path, "ca") } // the gate's CA keys and lists (internal/ca)
func (d *Dir) WatchSocket() string   { return filepath.Join(d.Path, "watch.sock") }
func (d *Dir) HostKeyPath(kind string) string {
	return filepath.Join(d.HostKeyDir(), "ssh_host_"+kind+"_key")
}

// HostKeys loads the gate's host keys: the configured files when there are
// (Keys.Host, in the order ed25519, ecdsa, rsa; none generated), else those
// of the directory, generating missing ones, ed25519
// first, then RSA. An ECDSA (NIST P-256) key is loaded or made only with
// ecdsa: hardened policies fail a NIST-curve host key, and every client
// that has ECDSA has ed25519 too (OpenSSH since 6.5); a data directory
// that has one from an older gate keeps the file, unoffered.
func (d *Dir) HostKeys(ecdsa bool) ([]ssh.Signer, error) {
	if len(d.Keys.Host) > 0 {
		return d.externalHostKeys()
	}
	kinds := []string{sshkeys.Ed25519, sshkeys.RSA}
	if ecdsa {
		kinds = []string{sshkeys.Ed25519, sshkeys.ECDSA, sshkeys.RSA}
	}
	var out []ssh.Signer
	for _, kind := range kinds {
		s, err := sshkeys.LoadOrGenerate(d.HostKeyPath(kind), kind)
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// GateKey loads the gate's own ed25519 key, generating it on first use
// (or the configured file, never generated).
func (d *Dir) GateKey() (ssh.Signer, error) {
	if d.Keys.Gate != "" {
		return readKey("keys.gate_key_file", d.Keys.Gate)
	}
	s, err := sshkeys.LoadOrGenerate(d.GateKeyPath(), sshkeys.Ed25519)
	if err != nil {
		return nil, fmt.Errorf("gate key: %w", err)
	}
	return s, nil
}
