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
//
// Must not import: store/... broker sshd/... relay target/... auth/... app config
package datadir

import (
	"fmt"
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

// Open creates the directory (0700) if needed.
func Open(path string) (*Dir, error) {
	if path == "" {
		path = Default
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("data directory %q: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %q: %w", abs, err)
	}
	return &Dir{Path: abs}, nil
}

func (d *Dir) DBPath() string        { return filepath.Join(d.Path, "sshgate.db") }
func (d *Dir) HostKeyDir() string    { return filepath.Join(d.Path, "host_keys") }
func (d *Dir) GateKeyPath() string   { return filepath.Join(d.Path, "gate_key") }
func (d *Dir) AuditDir() string      { return filepath.Join(d.Path, "audit") }
func (d *Dir) RecordingsDir() string { return filepath.Join(d.Path, "recordings") }
func (d *Dir) ContainersDir() string { return filepath.Join(d.Path, "containers") }
func (d *Dir) CADir() string         { return filepath.Join(d.Path, "ca") } // the gate's CA keys and lists (internal/ca)
func (d *Dir) HostKeyPath(kind string) string {
	return filepath.Join(d.HostKeyDir(), "ssh_host_"+kind+"_key")
}

// HostKeys loads the gate's host keys, generating missing ones, ed25519 first.
func (d *Dir) HostKeys() ([]ssh.Signer, error) {
	var out []ssh.Signer
	for _, kind := range []string{sshkeys.Ed25519, sshkeys.ECDSA, sshkeys.RSA} {
		s, err := sshkeys.LoadOrGenerate(d.HostKeyPath(kind), kind)
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// GateKey loads the gate's own ed25519 key, generating it on first use.
func (d *Dir) GateKey() (ssh.Signer, error) {
	s, err := sshkeys.LoadOrGenerate(d.GateKeyPath(), sshkeys.Ed25519)
	if err != nil {
		return nil, fmt.Errorf("gate key: %w", err)
	}
	return s, nil
}
