// Package ca is the gate's SSH certificate authority: a user CA that signs
// the short-lived certificates the gate logs in to targets with (targets
// trust it), a client CA that signs the user certificates `sshgate ca
// sign-user` issues for logging in to the gate (only the gate trusts it), and
// a host CA that signs host keys (targets' and the gate's own).
//
// The user CA and the client CA are apart on purpose: a certificate the gate
// issues to alice must not let alice log in directly to a target that trusts
// the user CA and has an account named alice. It also holds what the gate
// trusts beyond its own CA (other user CAs) and what it refuses (revoked
// serials and keys).
//
// The CA keys sit behind ssh.Signer: Load reads ed25519 keys from files in
// the data directory (or, LoadWith, from files configured outside it, read
// with secretfile), but New takes any crypto.Signer, so a KMS or an HSM can
// stand in for the files. It imports sshkeys and secretfile only: no store,
// auth or broker.
//
// Must not import: broker sshd/... relay target/... auth/... policy app store/sqlite
package ca

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/secretfile"
	"github.com/sshgate/sshgate/internal/sshkeys"
)

// File names under the CA directory (DATA/ca).
const (
	UserKeyFile    = "user_ca"                 // the user CA private key (0600), user_ca.pub beside it
	ClientKeyFile  = "client_ca"               // the client CA private key (0600): users' certificates for the gate
	HostKeyFile    = "host_ca"                 // the host CA private key (0600), host_ca.pub beside it
	TrustedFile    = "trusted_user_ca_keys"    // other user CAs trusted outward, authorized_keys lines
	RevokedFile    = "revoked"                 // revoked serials and keys, see ParseRevocations
	keyComment     = "sshgate-ca"              // comment written into the CA key files
	maxUserCertTTL = 366 * 24 * time.Hour      // sign-user refuses longer
	maxHostCertTTL = 10 * 366 * 24 * time.Hour // sign-host refuses longer
)

// ErrNoCA says the CA has not been initialised (`sshgate ca init`).
var ErrNoCA = errors.New("no certificate authority: run `sshgate ca init`")

// Extensions of user certificates, as OpenSSH names them.
const (
	ExtPermitPTY            = "permit-pty"
	ExtPermitPortForwarding = "permit-port-forwarding"
	// ExtPermitAgentForwarding is set on inward certificates only when the
	// grant allows agent forwarding.
	ExtPermitAgentForwarding = "permit-agent-forwarding"
	OptSourceAddress         = "source-address"
	OptForceCommand          = "force-command"
)

// CA holds the CA signers. Any may be nil when not in use.
type CA struct {
	User   ssh.Signer // signs the gate's login certificates for targets (targets trust it)
	Client ssh.Signer // signs user certificates for logging in to the gate (only the gate trusts it)
	Host   ssh.Signer // signs host certificates
	// Now is the clock used for validity windows; time.Now when nil.
	Now func() time.Time
}

// New makes a CA from any signers, e.g. keys held in a KMS; nil leaves that
// CA out.
func New(user, client, host crypto.Signer) (*CA, error) {
	c := &CA{}
	for _, k := range []struct {
		name string
		src  crypto.Signer
		dst  *ssh.Signer
	}{{"user", user, &c.User}, {"client", client, &c.Client}, {"host", host, &c.Host}} {
		if k.src == nil {
			continue
		}
		s, err := ssh.NewSignerFromSigner(k.src)
		if err != nil {
			return nil, fmt.Errorf("%s CA signer: %w", k.name, err)
		}
		*k.dst = s
	}
	return c, nil
}

func (c *CA) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// KeyFiles are CA key files outside the CA directory (the configuration's
// keys section), read strictly (internal/secretfile) and never written;
// "" is the directory's own file.
type KeyFiles struct {
	User, Client, Host string
}

func (k KeyFiles) of(name string) (path, key string) {
	switch name {
	case UserKeyFile:
		return k.User, "keys.user_ca_key_file"
	case ClientKeyFile:
		return k.Client, "keys.client_ca_key_file"
	case HostKeyFile:
		return k.Host, "keys.host_ca_key_file"
	}
	return "", ""
}

// Init creates the user, client and host CA keys in dir (0700) if they are missing,
// ed25519, private files 0600. It returns the files it created; existing
// keys are kept, and so are those configured elsewhere (InitWith).
func Init(dir string) (created []string, err error) { return InitWith(dir, KeyFiles{}) }

// InitWith is Init that leaves out the keys of ext: those are the
// operator's files, never generated.
func InitWith(dir string, ext KeyFiles) (created []string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory %s: %w", dir, err)
	}
	for _, name := range []string{UserKeyFile, ClientKeyFile, HostKeyFile} {
		if p, _ := ext.of(name); p != "" {
			continue
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return created, fmt.Errorf("stat %s: %w", p, err)
		}
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return created, fmt.Errorf("generate %s: %w", name, err)
		}
		if err := sshkeys.WritePrivate(p, k, keyComment+"-"+strings.TrimSuffix(name, "_ca")); err != nil {
			return created, err
		}
		created = append(created, p)
	}
	return created, nil
}

// Load reads the CA keys from dir. A missing key leaves its signer nil; with
// neither present Load returns ErrNoCA.
func Load(dir string) (*CA, error) { return LoadWith(dir, KeyFiles{}) }

// LoadWith is Load with the keys of ext read from their files instead: a
// configured file that is missing or refused is a *KeyFileError (never
// ErrNoCA), and the directory's file of that CA is not read.
func LoadWith(dir string, ext KeyFiles) (*CA, error) {
	c := &CA{}
	for _, k := range []struct {
		name string
		dst  *ssh.Signer
	}{{UserKeyFile, &c.User}, {ClientKeyFile, &c.Client}, {HostKeyFile, &c.Host}} {
		if p, key := ext.of(k.name); p != "" {
			s, err := loadExternal(p)
			if err != nil {
				return nil, &KeyFileError{Key: key, Err: err}
			}
			*k.dst = s
			continue
		}
		p := filepath.Join(dir, k.name)
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read CA key %s: %w", p, err)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("CA key %s: mode %v is readable by others; want 0600", p, fi.Mode().Perm())
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("read CA key %s: %w", p, err)
		}
		*k.dst = s
	}
	if c.User == nil && c.Client == nil && c.Host == nil {
		return nil, ErrNoCA
	}
	return c, nil
}

// KeyFileError is a configured CA key file that is missing, refused or not
// a key.
type KeyFileError struct {
	Key string // the configuration key, e.g. keys.user_ca_key_file
	Err error
}

func (e *KeyFileError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyFileError) Unwrap() error { return e.Err }

func loadExternal(p string) (ssh.Signer, error) {
	data, err := secretfile.Read(p)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: the key is encrypted (the gate needs it without a passphrase)", p)
		}
		return nil, fmt.Errorf("%s: not an OpenSSH or PEM private key: %v", p, err)
	}
	if err := CheckCAKey(s.PublicKey()); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	return s, nil
}

// NewSerial returns a random, non-zero certificate serial.
func NewSerial() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if s := binary.BigEndian.Uint64(b[:]) >> 1; s != 0 { // positive as int64, for logs and tools
			return s
		}
	}
}

// UserCert is what SignUser needs.
type UserCert struct {
	Key             ssh.PublicKey
	Principals      []string
	KeyID           string
	TTL             time.Duration
	Backdate        time.Duration     // ValidAfter = now - Backdate, for clock skew
	Extensions      map[string]string // e.g. permit-pty
	CriticalOptions map[string]string // e.g. source-address, force-command
}

// SignUser issues a user certificate from the user CA (the one targets
// trust) with a fresh random serial.
func (c *CA) SignUser(r UserCert) (*ssh.Certificate, error) {
	return c.signUser(c.User, r)
}

// SignClient issues a user certificate from the client CA, for logging in to
// the gate (`sshgate ca sign-user`).
func (c *CA) SignClient(r UserCert) (*ssh.Certificate, error) {
	return c.signUser(c.Client, r)
}

func (c *CA) signUser(s ssh.Signer, r UserCert) (*ssh.Certificate, error) {
	if s == nil {
		return nil, fmt.Errorf("sign user certificate: %w", ErrNoCA)
	}
	if len(r.Principals) == 0 {
		return nil, errors.New("sign user certificate: no principal")
	}
	if r.TTL <= 0 || r.TTL > maxUserCertTTL {
		return nil, fmt.Errorf("sign user certificate: validity %s out of range (up to %s)", r.TTL, maxUserCertTTL)
	}
	return c.sign(s, ssh.UserCert, r.Key, r.Principals, r.KeyID, r.TTL, r.Backdate, r.Extensions, r.CriticalOptions)
}

// SignHost issues a host certificate for key, valid for ttl, naming principals.
func (c *CA) SignHost(key ssh.PublicKey, principals []string, keyID string, ttl time.Duration) (*ssh.Certificate, error) {
	if c.Host == nil {
		return nil, fmt.Errorf("sign host certificate: %w", ErrNoCA)
	}
	if len(principals) == 0 {
		return nil, errors.New("sign host certificate: no principal")
	}
	if ttl <= 0 || ttl > maxHostCertTTL {
		return nil, fmt.Errorf("sign host certificate: validity %s out of range (up to %s)", ttl, maxHostCertTTL)
	}
	return c.sign(c.Host, ssh.HostCert, key, principals, keyID, ttl, 5*time.Minute, nil, nil)
}

func (c *CA) sign(s ssh.Signer, typ uint32, key ssh.PublicKey, principals []string, keyID string, ttl, backdate time.Duration, ext, opts map[string]string) (*ssh.Certificate, error) {
	if key == nil {
		return nil, errors.New("sign certificate: no key")
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return nil, errors.New("sign certificate: the key is already a certificate; sign the plain public key")
	}
	if err := sshkeys.CheckKeyStrength(key); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	for _, p := range principals {
		if p == "" || strings.ContainsAny(p, ", \t\n") {
			return nil, fmt.Errorf("sign certificate: principal %q is empty or has a comma or a space", p)
		}
	}
	now := c.now()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          NewSerial(),
		CertType:        typ,
		KeyId:           keyID,
		ValidPrincipals: append([]string(nil), principals...),
		ValidAfter:      uint64(now.Add(-backdate).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions:     ssh.Permissions{Extensions: copyMap(ext), CriticalOptions: copyMap(opts)},
	}
	if err := cert.SignCert(rand.Reader, s); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return cert, nil
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TrustedUserCAKeysLine is the line for sshd's TrustedUserCAKeys file.
func TrustedUserCAKeysLine(ca ssh.PublicKey) string {
	return sshkeys.AuthorizedLine(ca) + " " + keyComment + "-user"
}

// KnownHostsLine is the @cert-authority line for known_hosts; pattern "*"
// when empty.
func KnownHostsLine(ca ssh.PublicKey, pattern string) string {
	if pattern == "" {
		pattern = "*"
	}
	return "@cert-authority " + pattern + " " + sshkeys.AuthorizedLine(ca) + " " + keyComment + "-host"
}

// CertLine is a certificate as ssh-keygen writes KEY-cert.pub.
func CertLine(cert *ssh.Certificate, comment string) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// CertPath is where ssh-keygen -s writes the certificate of KEY.pub:
// KEY-cert.pub.
func CertPath(pubPath string) string {
	return strings.TrimSuffix(pubPath, ".pub") + "-cert.pub"
}

// WriteCert writes cert as one line to path (0644), atomically.
func WriteCert(path string, cert *ssh.Certificate, comment string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write certificate %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_ = tmp.Chmod(0o644)
	if _, err := tmp.WriteString(CertLine(cert, comment) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write certificate %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write certificate %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write certificate %s: %w", path, err)
	}
	return nil
}

// ReadPublicKeyFile reads one public key (or certificate) from an
// authorized_keys-style file. Its errors name the file and the problem.
func ReadPublicKeyFile(path string) (ssh.PublicKey, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	k, comment, err := ParsePublicKey(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", path, err)
	}
	return k, comment, nil
}

// ParsePublicKey parses exactly one public key or certificate line (blank
// lines and # comments allowed around it). Options are refused.
func ParsePublicKey(data []byte) (ssh.PublicKey, string, error) {
	var found ssh.PublicKey
	var comment string
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if found != nil {
			return nil, "", fmt.Errorf("line %d: more than one key", i+1)
		}
		k, c, opts, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, "", fmt.Errorf("line %d: not an SSH public key", i+1)
		}
		if len(opts) > 0 || len(bytes.TrimSpace(rest)) > 0 {
			return nil, "", fmt.Errorf("line %d: options or extra data after the key", i+1)
		}
		found, comment = k, c
	}
	if found == nil {
		return nil, "", errors.New("no public key found")
	}
	return found, comment, nil
}

// CheckCAKey refuses CA keys the gate will not trust: DSA, RSA under 3072
// bits, certificates.
func CheckCAKey(k ssh.PublicKey) error {
	if _, ok := k.(*ssh.Certificate); ok {
		return errors.New("a certificate cannot be a CA key")
	}
	switch k.Type() {
	case ssh.KeyAlgoDSA:
		return errors.New("DSA CA keys are not accepted")
	case ssh.KeyAlgoRSA:
		if err := sshkeys.CheckKeyStrength(k); err != nil {
			return err
		}
		if ck, ok := k.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(interface{ Size() int }); ok && rk.Size()*8 < 3072 {
				return fmt.Errorf("RSA CA key of %d bits is too short (3072 at least)", rk.Size()*8)
			}
		}
	}
	return nil
}
