package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/secretfile"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// KeyFiles are the key files configured outside the data directory (the
// configuration's keys section), absolute paths; "" (or none): the data
// directory's own file.
type KeyFiles struct {
	Host                     []string // the SSH host keys
	Gate                     string   // the gate's login key for targets
	UserCA, ClientCA, HostCA string
	TOTP                     string
}

// KeyFileError is a configured key file that is missing, refused or not a
// key: a configuration problem (serve exits 2).
type KeyFileError struct {
	Key string // the configuration key, e.g. keys.host_key_files
	Err error  // names the file and why
}

func (e *KeyFileError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyFileError) Unwrap() error { return e.Err }

// UseKeys sets the configured key files, refusing any inside the data
// directory: those are the gate's to generate and rewrite, not the
// operator's to mount.
func (d *Dir) UseKeys(k KeyFiles) error {
	for _, f := range k.list() {
		rel, err := filepath.Rel(d.Path, filepath.Clean(f[1]))
		if err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return &KeyFileError{f[0], fmt.Errorf("%s is inside the data directory %s: give a file outside it, or leave the key unset to use the data directory's own", f[1], d.Path)}
		}
	}
	d.Keys = k
	return nil
}

func (k KeyFiles) list() [][2]string {
	var out [][2]string
	for _, f := range k.Host {
		out = append(out, [2]string{"keys.host_key_files", f})
	}
	for _, f := range [][2]string{{"keys.gate_key_file", k.Gate}, {"keys.user_ca_key_file", k.UserCA},
		{"keys.client_ca_key_file", k.ClientCA}, {"keys.host_ca_key_file", k.HostCA}, {"keys.totp_key_file", k.TOTP}} {
		if f[1] != "" {
			out = append(out, f)
		}
	}
	return out
}

// readKey reads one configured private key file.
func readKey(key, path string) (ssh.Signer, error) {
	data, err := secretfile.Read(path)
	if err != nil {
		return nil, &KeyFileError{key, err}
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, &KeyFileError{key, fmt.Errorf("%s: the key is encrypted (the gate needs it without a passphrase)", path)}
		}
		return nil, &KeyFileError{key, fmt.Errorf("%s: not an OpenSSH or PEM private key: %v", path, err)}
	}
	return s, nil
}

// hostKindOrder is the order host keys are offered in.
var hostKindOrder = []string{sshkeys.Ed25519, sshkeys.ECDSA, sshkeys.RSA}

func (d *Dir) externalHostKeys() ([]ssh.Signer, error) {
	byKind := map[string]string{}
	var out []ssh.Signer
	for _, p := range d.Keys.Host {
		s, err := readKey("keys.host_key_files", p)
		if err != nil {
			return nil, err
		}
		pub := s.PublicKey()
		kind := hostKeyKind(pub)
		if kind == "" {
			return nil, &KeyFileError{"keys.host_key_files", fmt.Errorf("%s: a %s key cannot be a host key of the gate (ed25519, ecdsa-sha2-nistp256 or rsa)", p, pub.Type())}
		}
		if err := sshkeys.CheckKeyStrength(pub); err != nil {
			return nil, &KeyFileError{"keys.host_key_files", fmt.Errorf("%s: %v", p, err)}
		}
		if other, ok := byKind[kind]; ok {
			return nil, &KeyFileError{"keys.host_key_files", fmt.Errorf("%s: a second %s host key (beside %s): give one per type", p, kind, other)}
		}
		byKind[kind] = p
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b ssh.Signer) int {
		return slices.Index(hostKindOrder, hostKeyKind(a.PublicKey())) - slices.Index(hostKindOrder, hostKeyKind(b.PublicKey()))
	})
	// The gate's host certificates (ca) are its own, written beside the
	// data directory's host keys whichever file the key came from.
	if err := os.MkdirAll(d.HostKeyDir(), 0o700); err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return out, nil
}

func hostKeyKind(k ssh.PublicKey) string {
	switch k.Type() {
	case ssh.KeyAlgoED25519:
		return sshkeys.Ed25519
	case ssh.KeyAlgoECDSA256:
		return sshkeys.ECDSA
	case ssh.KeyAlgoRSA:
		return sshkeys.RSA
	}
	return ""
}

// TOTPKey reads the configured TOTP sealing key (32 bytes); ok is false
// when none is configured (the data directory's totp_key is then used).
func (d *Dir) TOTPKey() (key []byte, ok bool, err error) {
	if d.Keys.TOTP == "" {
		return nil, false, nil
	}
	data, err := secretfile.Read(d.Keys.TOTP)
	if err != nil {
		return nil, true, &KeyFileError{"keys.totp_key_file", err}
	}
	if len(data) != 32 {
		return nil, true, &KeyFileError{"keys.totp_key_file", fmt.Errorf("%s: want 32 bytes, have %d (head -c 32 /dev/urandom > FILE)", d.Keys.TOTP, len(data))}
	}
	return data, true, nil
}
