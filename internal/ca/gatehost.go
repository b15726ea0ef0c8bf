package ca

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
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

// HostCertSigner presents a host key with its current certificate; Set
// swaps the certificate (a renewal) for the connections that follow, so a
// gate that runs for a year keeps presenting a valid one.
type HostCertSigner struct {
	mu    sync.RWMutex
	cur   ssh.AlgorithmSigner
	algos []string
}

var _ ssh.MultiAlgorithmSigner = (*HostCertSigner)(nil)

// NewHostCertSigner certifies key (a host key signer, possibly limited to
// some algorithms) with cert.
func NewHostCertSigner(cert *ssh.Certificate, key ssh.Signer) (*HostCertSigner, error) {
	h := &HostCertSigner{algos: []string{key.PublicKey().Type()}}
	if ms, ok := key.(ssh.MultiAlgorithmSigner); ok {
		h.algos = ms.Algorithms()
	}
	if err := h.Set(cert, key); err != nil {
		return nil, err
	}
	return h, nil
}

// Set replaces the certificate.
func (h *HostCertSigner) Set(cert *ssh.Certificate, key ssh.Signer) error {
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return fmt.Errorf("host certificate signer: %w", err)
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return errors.New("host certificate signer: the key cannot choose its signature algorithm")
	}
	h.mu.Lock()
	h.cur = as
	h.mu.Unlock()
	return nil
}

func (h *HostCertSigner) current() ssh.AlgorithmSigner {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.cur
}

func (h *HostCertSigner) PublicKey() ssh.PublicKey { return h.current().PublicKey() }
func (h *HostCertSigner) Algorithms() []string     { return h.algos }
func (h *HostCertSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return h.current().Sign(rand, data)
}
func (h *HostCertSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	return h.current().SignWithAlgorithm(rand, data, algorithm)
}
