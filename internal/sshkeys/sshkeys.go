// Package sshkeys loads, generates and describes SSH keys: the gate's host
// keys, the gate's own key for logging in to targets, and pinned target host
// keys. It also holds the algorithm lists the gate offers.
//
// Must not import: store/... broker sshd/... relay target/... auth/... policy app ca config
package sshkeys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Key types the gate generates.
const (
	Ed25519 = "ed25519"
	ECDSA   = "ecdsa"
	RSA     = "rsa"
)

// Generate makes a new private key of the given type.
func Generate(kind string) (crypto.Signer, error) {
	switch kind {
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case ECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA:
		// 4096 bits: what hardened sshd policies (ssh-audit's for OpenSSH
		// 9.9 and Debian 12) ask of an RSA host key.
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unknown key type %q", kind)
}

// LoadOrGenerate reads an OpenSSH private key from path, or generates one of
// the given kind and writes it there with mode 0600 (and PATH.pub beside it).
func LoadOrGenerate(path, kind string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	k, err := Generate(kind)
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", kind, err)
	}
	if err := WritePrivate(path, k, ""); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromSigner(k)
}

// WritePrivate writes k in OpenSSH format with mode 0600, atomically, and the
// public half to PATH.pub.
func WritePrivate(path string, k crypto.Signer, comment string) error {
	block, err := ssh.MarshalPrivateKey(k, comment)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	if err := writeAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return err
	}
	line := bytes.TrimSpace(ssh.MarshalAuthorizedKey(pub))
	if comment != "" {
		line = append(append(line, ' '), comment...)
	}
	if err := writeAtomic(path+".pub", append(line, '\n'), 0o644); err != nil {
		return fmt.Errorf("write key %s.pub: %w", path, err)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// AuthorizedLine is the authorized_keys form of a public key, no newline.
func AuthorizedLine(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// ParseAuthorizedKey parses one authorized_keys line (options are refused, a
// comment is kept). It names the problem in its error.
func ParseAuthorizedKey(line string) (ssh.PublicKey, string, error) {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, "", errors.New("empty key")
	}
	k, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, "", fmt.Errorf("not an SSH public key: %w", err)
	}
	if len(options) > 0 {
		return nil, "", errors.New("authorized_keys options are not supported")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, "", errors.New("more than one key given")
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, "", errors.New("a certificate is not a key; add the key it certifies")
	}
	if err := CheckKeyStrength(k); err != nil {
		return nil, "", err
	}
	return k, comment, nil
}

// CheckKeyStrength refuses DSA and RSA keys shorter than 2048 bits.
func CheckKeyStrength(k ssh.PublicKey) error {
	switch k.Type() {
	case ssh.KeyAlgoDSA:
		return errors.New("DSA keys are not accepted")
	case ssh.KeyAlgoRSA:
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return nil
		}
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short (2048 at least)", rk.N.BitLen())
		}
	}
	return nil
}

// Fingerprint is the SHA256 fingerprint as ssh-keygen -l prints it.
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// HostKeyMismatchError is returned by PinnedHostKey when the presented key
// differs from the pinned one. Both fingerprints go to the log.
type HostKeyMismatchError struct {
	Addr     string
	Want     string
	Got      string
	GotType  string
	WantType string
}

func (e *HostKeyMismatchError) Error() string {
	return fmt.Sprintf("host key mismatch for %s: pinned %s %s, presented %s %s", e.Addr, e.WantType, e.Want, e.GotType, e.Got)
}

// PinnedHostKey returns a HostKeyCallback that accepts exactly the given key.
func PinnedHostKey(pinned ssh.PublicKey) ssh.HostKeyCallback {
	want := pinned.Marshal()
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if bytes.Equal(key.Marshal(), want) {
			return nil
		}
		return &HostKeyMismatchError{Addr: hostname, Want: Fingerprint(pinned), WantType: pinned.Type(), Got: Fingerprint(key), GotType: key.Type()}
	}
}

// HostKeyAlgorithms lists the signature algorithms to ask for when a host key
// of this type is pinned, so the server presents that key and no other.
func HostKeyAlgorithms(k ssh.PublicKey) []string {
	switch k.Type() {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	default:
		return []string{k.Type()}
	}
}

// Algorithm offers toward targets (the gate is the client there, so its
// order decides: AES-GCM first). What the gate offers users is in config.
var (
	KeyExchanges = []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519}
	MACs         = []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM}
	// ClientCiphers is what the gate offers to targets: AES-GCM first.
	ClientCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305, "aes128-ctr", "aes256-ctr"}
	// PublicKeyAuthAlgorithms accepted from users (no ssh-rsa SHA-1, no DSA).
	PublicKeyAuthAlgorithms = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	}
)

// HostSigner returns a host key signer that never signs with SHA-1: an RSA
// key is limited to rsa-sha2-512 and rsa-sha2-256 (x/crypto would otherwise
// also offer ssh-rsa).
func HostSigner(s ssh.Signer) (ssh.Signer, error) {
	if s.PublicKey().Type() != ssh.KeyAlgoRSA {
		return s, nil
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("RSA host key signer cannot choose its signature algorithm")
	}
	return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256})
}
