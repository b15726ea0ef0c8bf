package ca

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// Revocations is a parsed revocation list: certificate serials and key
// fingerprints (a certified key, a CA key, or a host key).
type Revocations struct {
	Serials map[uint64]bool
	Keys    map[string]bool // "SHA256:..." fingerprints
}

// maxListFile bounds the revocation and trust files the gate reads.
const maxListFile = 4 << 20

// ParseRevocations reads the revocation file format, one entry a line:
//
//	serial 1234            # a certificate serial (any CA)
//	key SHA256:Base64...   # a key: certificates of it, or signed by it, are refused
//
// Blank lines and text after # are ignored. Errors name the line.
func ParseRevocations(data []byte) (*Revocations, error) {
	if len(data) > maxListFile {
		return nil, fmt.Errorf("revocation list larger than %d bytes", maxListFile)
	}
	r := &Revocations{Serials: map[uint64]bool{}, Keys: map[string]bool{}}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"serial N\" or \"key SHA256:...\"", i+1)
		}
		switch f[0] {
		case "serial":
			n, err := ParseSerial(f[1])
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			r.Serials[n] = true
		case "key":
			if err := checkFingerprint(f[1]); err != nil {
				return nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			r.Keys[f[1]] = true
		default:
			return nil, fmt.Errorf("line %d: unknown entry %q (want serial or key)", i+1, f[0])
		}
	}
	return r, nil
}

// ParseSerial reads a certificate serial in decimal.
func ParseSerial(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("serial %q is not a number from 0 to %d", s, uint64(1<<64-1))
	}
	return n, nil
}

func checkFingerprint(fp string) error {
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok {
		return fmt.Errorf("fingerprint %q does not start with SHA256:", fp)
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("fingerprint %q is not a SHA256 fingerprint", fp)
	}
	return nil
}

// Revoked reports whether cert (or the key behind it, or its CA) is revoked.
func (r *Revocations) Revoked(cert *ssh.Certificate) bool {
	if r == nil {
		return false
	}
	return r.Serials[cert.Serial] || r.Keys[sshkeys.Fingerprint(cert.Key)] || r.Keys[sshkeys.Fingerprint(cert.SignatureKey)]
}

// KeyRevoked reports whether a plain key is revoked.
func (r *Revocations) KeyRevoked(k ssh.PublicKey) bool {
	return r != nil && r.Keys[sshkeys.Fingerprint(k)]
}

// AppendRevocation adds one entry ("serial N" or "key SHA256:...") with a
// comment to the revocation file in dir. It reports false when the entry
// was already there.
func AppendRevocation(dir, entry, comment string) (bool, error) {
	p := filepath.Join(dir, RevokedFile)
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	cur, err := ParseRevocations(old)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	add, err := ParseRevocations([]byte(entry))
	if err != nil {
		return false, err
	}
	dup := true
	for s := range add.Serials {
		dup = dup && cur.Serials[s]
	}
	for k := range add.Keys {
		dup = dup && cur.Keys[k]
	}
	if dup {
		return false, nil
	}
	line := entry
	if comment = strings.ReplaceAll(comment, "\n", " "); comment != "" {
		line += " # " + comment
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	return true, writeFileAtomic(p, append(old, line+"\n"...), 0o644)
}

// AppendTrusted adds a user CA key to the trusted file in dir; false when it
// was already there.
func AppendTrusted(dir string, k ssh.PublicKey, comment string) (bool, error) {
	if err := CheckCAKey(k); err != nil {
		return false, err
	}
	p := filepath.Join(dir, TrustedFile)
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	cur, err := ParseTrusted(old)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	for _, c := range cur {
		if bytes.Equal(c.Marshal(), k.Marshal()) {
			return false, nil
		}
	}
	line := sshkeys.AuthorizedLine(k)
	if comment = strings.TrimSpace(strings.ReplaceAll(comment, "\n", " ")); comment != "" {
		line += " " + comment
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	return true, writeFileAtomic(p, append(old, line+"\n"...), 0o644)
}

// ParseTrusted reads CA keys, one authorized_keys line each (no options),
// as in sshd's TrustedUserCAKeys file.
func ParseTrusted(data []byte) ([]ssh.PublicKey, error) {
	if len(data) > maxListFile {
		return nil, fmt.Errorf("trusted CA file larger than %d bytes", maxListFile)
	}
	var out []ssh.PublicKey
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, opts, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not an SSH public key", i+1)
		}
		if len(opts) > 0 || len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("line %d: options or extra data after the key", i+1)
		}
		if err := CheckCAKey(k); err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		out = append(out, k)
	}
	return out, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_ = tmp.Chmod(mode)
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// cachedFile re-reads and re-parses a file when its size or mtime changes,
// so a running gate sees `sshgate ca revoke` at the next connection.
type cachedFile[T any] struct {
	path  string
	parse func([]byte) (T, error)

	mu    sync.Mutex
	size  int64
	mtime time.Time
	ok    bool
	val   T
	err   error
}

func (c *cachedFile[T]) get() (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fi, err := os.Stat(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		var zero T
		c.ok, c.val, c.err = false, zero, nil
		return c.parse(nil)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("stat %s: %w", c.path, err)
	}
	if c.ok && fi.Size() == c.size && fi.ModTime().Equal(c.mtime) {
		return c.val, c.err
	}
	data, err := os.ReadFile(c.path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("read %s: %w", c.path, err)
	}
	c.val, c.err = c.parse(data)
	if c.err != nil {
		c.err = fmt.Errorf("%s: %w", c.path, c.err)
	}
	c.ok, c.size, c.mtime = true, fi.Size(), fi.ModTime()
	return c.val, c.err
}

// Trust is what the running gate consults for certificates: the gate's own
// CAs, other trusted user CAs (the trusted file and config files) and the
// revocation list. Files are re-read when they change. Every failure to read
// them fails closed.
type Trust struct {
	own     *CA
	revoked *cachedFile[*Revocations]
	trusted []*cachedFile[[]ssh.PublicKey]
	Now     func() time.Time
}

// NewTrust reads from dir (DATA/ca) and extra trusted-CA files (config).
// own may be nil when the gate has no CA of its own.
func NewTrust(dir string, own *CA, extraTrusted []string) *Trust {
	t := &Trust{own: own, revoked: &cachedFile[*Revocations]{path: filepath.Join(dir, RevokedFile), parse: ParseRevocations}}
	for _, p := range append([]string{filepath.Join(dir, TrustedFile)}, extraTrusted...) {
		t.trusted = append(t.trusted, &cachedFile[[]ssh.PublicKey]{path: p, parse: ParseTrusted})
	}
	return t
}

// Own is the gate's CA (nil when none).
func (t *Trust) Own() *CA { return t.own }

func (t *Trust) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Revocations returns the current revocation list.
func (t *Trust) Revocations() (*Revocations, error) { return t.revoked.get() }

// UserAuthorities are the CA keys whose user certificates the gate accepts:
// its own client CA first, then the trusted files. Never its user CA: the
// certificates that one signs are for targets.
func (t *Trust) UserAuthorities() ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	if t.own != nil && t.own.Client != nil {
		out = append(out, t.own.Client.PublicKey())
	}
	for _, f := range t.trusted {
		ks, err := f.get()
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// CertError says why a certificate was refused. Reason is for logs.
type CertError struct{ Reason string }

func (e *CertError) Error() string { return "certificate refused: " + e.Reason }

func refuse(format string, args ...any) error {
	return &CertError{Reason: fmt.Sprintf(format, args...)}
}

// supportedUserOptions are the critical options the gate enforces; any
// other one refuses the certificate, as OpenSSH does.
var supportedUserOptions = []string{OptSourceAddress, OptForceCommand}

// CheckUserCert decides whether a user certificate may log in user from
// addr: a user certificate, signed by a trusted user CA (never by a
// certificate), not revoked, within its validity window, naming user among
// its principals (empty principals are refused, unlike x/crypto's default),
// with only critical options the gate enforces, and from an address its
// source-address allows.
func (t *Trust) CheckUserCert(cert *ssh.Certificate, user string, addr net.Addr) error {
	if cert.CertType != ssh.UserCert {
		return refuse("type %d is not a user certificate", cert.CertType)
	}
	if _, isCert := cert.SignatureKey.(*ssh.Certificate); isCert {
		return refuse("signed by a certificate, not a CA key")
	}
	if cert.Signature == nil || cert.Signature.Format == ssh.KeyAlgoRSA || cert.Signature.Format == ssh.KeyAlgoDSA {
		return refuse("CA signature algorithm not accepted")
	}
	if err := sshkeys.CheckKeyStrength(cert.Key); err != nil {
		return refuse("certified key: %v", err)
	}
	if len(cert.ValidPrincipals) == 0 {
		return refuse("no principals")
	}
	auths, err := t.UserAuthorities()
	if err != nil {
		return refuse("trusted CA list unreadable: %v", err)
	}
	if len(auths) == 0 {
		return refuse("no user CA is trusted")
	}
	rev, err := t.Revocations()
	if err != nil {
		return refuse("revocation list unreadable: %v", err)
	}
	want := cert.SignatureKey.Marshal()
	trusted := false
	for _, a := range auths {
		trusted = trusted || bytes.Equal(a.Marshal(), want)
	}
	if !trusted {
		return refuse("signed by an untrusted CA %s", sshkeys.Fingerprint(cert.SignatureKey))
	}
	if rev.Revoked(cert) {
		return refuse("serial %d or its key or CA is revoked", cert.Serial)
	}
	checker := &ssh.CertChecker{
		IsUserAuthority:          func(ssh.PublicKey) bool { return trusted },
		Clock:                    t.now,
		SupportedCriticalOptions: supportedUserOptions,
	}
	if err := checker.CheckCert(user, cert); err != nil {
		return refuse("%s", strings.TrimPrefix(err.Error(), "ssh: "))
	}
	if sa, ok := cert.CriticalOptions[OptSourceAddress]; ok {
		if err := CheckSourceAddress(sa, addr); err != nil {
			return refuse("%v", err)
		}
	}
	return nil
}
