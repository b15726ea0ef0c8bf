package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Extension keys under which the agent records who logged in. They are set
// only in VerifiedPublicKeyCallback, after the signature checked out, and
// read only from ServerConn.Permissions.
const (
	extKey    = "sshgate-agent-key"    // SHA256 fingerprint of the key that signed
	extMethod = "sshgate-agent-method" // "publickey" or "cert"
	extCertID = "sshgate-agent-cert-id"
	extCA     = "sshgate-agent-ca"
)

// KeySet is a parsed authorized_keys file: plain user keys and certificate
// authorities (cert-authority lines).
type KeySet struct {
	users map[string]bool // Marshal() of each key
	cas   map[string]bool // Marshal() of each CA key
}

// Len is the number of keys and authorities in the set.
func (k *KeySet) Len() int { return len(k.users) + len(k.cas) }

// ParseAuthorizedKeys reads authorized_keys lines. Blank lines and comments
// are skipped. The only option understood is cert-authority; a line with any
// other option (from=, command=, restrict, ...) is an error, because the
// agent would not enforce it and accepting it would widen access.
func ParseAuthorizedKeys(data []byte) (*KeySet, error) {
	ks := &KeySet{users: map[string]bool{}, cas: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, _, options, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not an authorized_keys line: %w", n, err)
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("line %d: more than one key on a line", n)
		}
		if _, ok := key.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("line %d: a certificate is not a key; list the key or its CA", n)
		}
		ca := false
		for _, o := range options {
			if strings.EqualFold(o, "cert-authority") {
				ca = true
				continue
			}
			name, _, _ := strings.Cut(o, "=")
			return nil, fmt.Errorf("line %d: option %q is not supported (only cert-authority)", n, name)
		}
		if key.Type() == ssh.KeyAlgoDSA {
			return nil, fmt.Errorf("line %d: DSA keys are not accepted", n)
		}
		if ca {
			ks.cas[string(key.Marshal())] = true
		} else {
			ks.users[string(key.Marshal())] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return ks, nil
}

// LoadAuthorizedKeys reads and parses an authorized_keys file.
func LoadAuthorizedKeys(path string) (*KeySet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read authorized keys: %w", err)
	}
	ks, err := ParseAuthorizedKeys(data)
	if err != nil {
		return nil, fmt.Errorf("authorized keys %s: %w", path, err)
	}
	return ks, nil
}

// keySource re-reads the authorized_keys file for every connection (it is
// small), so that keys can be rotated without restarting a long-running
// agent. A file that turns bad keeps the last good set (and is reported).
type keySource struct {
	path string
	mu   sync.Mutex
	keys *KeySet
	last []byte
}

func (s *keySource) get() (*KeySet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return s.keys, nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return s.keys, fmt.Errorf("read authorized keys: %w", err)
	}
	if s.keys != nil && bytes.Equal(data, s.last) {
		return s.keys, nil
	}
	ks, err := ParseAuthorizedKeys(data)
	if err != nil {
		return s.keys, fmt.Errorf("authorized keys %s: %w", s.path, err)
	}
	s.keys, s.last = ks, data
	return ks, nil
}

var errNotAuthorized = errors.New("key not authorized")

// publicKeyCallback decides whether a key (or certificate) may be used. It
// runs for queries too, so it records nothing about the connection: the
// identity is set in verifiedKeyCallback, once the client proved possession.
func publicKeyCallback(ks *KeySet) func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
	return func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if ks == nil {
			return nil, errNotAuthorized
		}
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			if ks.users[string(key.Marshal())] {
				return &ssh.Permissions{}, nil
			}
			return nil, errNotAuthorized
		}
		return checkUserCert(ks, conn, cert, time.Now)
	}
}

// checkUserCert accepts a user certificate signed by one of the set's CAs,
// valid now, naming the requested user among non-empty principals.
func checkUserCert(ks *KeySet, conn ssh.ConnMetadata, cert *ssh.Certificate, now func() time.Time) (*ssh.Permissions, error) {
	if len(ks.cas) == 0 {
		return nil, errNotAuthorized
	}
	// x/crypto treats empty principals as "valid for everyone"; OpenSSH
	// refuses such certificates, and so do we.
	if len(cert.ValidPrincipals) == 0 {
		return nil, errors.New("certificate has no principals")
	}
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			if _, isCert := auth.(*ssh.Certificate); isCert {
				return false // a certificate is never an authority
			}
			return ks.cas[string(auth.Marshal())]
		},
		Clock: now,
	}
	// Authenticate checks the cert type, the authority, the signature,
	// validity, the principal (== conn.User()) and refuses unknown critical
	// options (force-command included, which the agent does not enforce).
	perms, err := checker.Authenticate(conn, cert)
	if err != nil {
		return nil, err
	}
	out := &ssh.Permissions{
		CriticalOptions: perms.CriticalOptions,
		Extensions:      map[string]string{},
	}
	for k, v := range perms.Extensions {
		out.Extensions[k] = v
	}
	return out, nil
}

// verifiedKeyCallback records the identity from the key whose signature
// x/crypto has just verified.
func verifiedKeyCallback(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	if perms == nil {
		perms = &ssh.Permissions{}
	}
	if perms.Extensions == nil {
		perms.Extensions = map[string]string{}
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		perms.Extensions[extMethod] = "cert"
		perms.Extensions[extKey] = ssh.FingerprintSHA256(cert.Key)
		perms.Extensions[extCertID] = cert.KeyId
		perms.Extensions[extCA] = ssh.FingerprintSHA256(cert.SignatureKey)
	} else {
		perms.Extensions[extMethod] = "publickey"
		perms.Extensions[extKey] = ssh.FingerprintSHA256(key)
	}
	return perms, nil
}

// permitted reports whether a connection may use a feature. Plain keys may
// use everything; certificates only what their permit-* extensions grant, as
// OpenSSH sshd does.
func permitted(perms *ssh.Permissions, ext string) bool {
	if perms == nil || perms.Extensions[extMethod] != "cert" {
		return true
	}
	_, ok := perms.Extensions[ext]
	return ok
}
