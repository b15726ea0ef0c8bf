package ca

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// Gate host certificates: the gate presents its own host keys certified by
// its host CA, so clients with an @cert-authority line connect without a
// trust-on-first-use prompt.
const (
	GateHostCertTTL   = 365 * 24 * time.Hour
	GateHostCertRenew = 30 * 24 * time.Hour // re-signed at start when less is left
)

// GateHostCert returns the certificate for the gate host key signer kept at
// certPath (KEY-cert.pub): the one there if the host CA signed it for
// exactly principals and it has more than GateHostCertRenew left, else a new
// one, written there. renewed says which.
func (c *CA) GateHostCert(key ssh.PublicKey, certPath string, principals []string) (cert *ssh.Certificate, renewed bool, err error) {
	if c == nil || c.Host == nil {
		return nil, false, ErrNoCA
	}
	// A missing or damaged certificate file is replaced.
	if old, err := readCert(certPath); err == nil && c.stillGood(old, key, principals) {
		return old, false, nil
	}
	cert, err = c.SignHost(key, principals, "sshgate gate host key", GateHostCertTTL)
	if err != nil {
		return nil, false, err
	}
	if err := WriteCert(certPath, cert, "sshgate-host-cert"); err != nil {
		return nil, false, err
	}
	return cert, true, nil
}

func (c *CA) stillGood(old *ssh.Certificate, key ssh.PublicKey, principals []string) bool {
	return old.CertType == ssh.HostCert &&
		bytes.Equal(old.Key.Marshal(), key.Marshal()) &&
		bytes.Equal(old.SignatureKey.Marshal(), c.Host.PublicKey().Marshal()) &&
		slices.Equal(old.ValidPrincipals, principals) &&
		time.Unix(int64(old.ValidBefore), 0).Sub(c.now()) > GateHostCertRenew
}

func readCert(path string) (*ssh.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, _, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s: not a certificate", path)
	}
	return cert, nil
}

// KeyKind names a host key's type as the data directory does (ed25519,
// ecdsa, rsa), for DATA/host_keys/ssh_host_KIND_key-cert.pub.
func KeyKind(k ssh.PublicKey) string {
	switch {
	case k.Type() == ssh.KeyAlgoED25519:
		return sshkeys.Ed25519
	case strings.HasPrefix(k.Type(), "ecdsa-"):
		return sshkeys.ECDSA
	default:
		return sshkeys.RSA
	}
}
