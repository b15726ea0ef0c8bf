package ca

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/sshkeys"
)

// Jump host certificates: for `ssh -J USER@GATE LOGIN@TARGET` the gate ends
// the inner SSH connection itself, presenting its own host keys certified
// by its host CA for exactly the target name the client asked for. A user
// trusts them all with one @cert-authority line; their known_hosts never
// needs a target's real key.
const (
	JumpHostCertTTL = 24 * time.Hour
	// a certificate is re-signed when less than this is left, so a
	// connection never gets one about to expire.
	jumpHostCertRenew = 12 * time.Hour
	// jumpHostCacheMax bounds the per-name cache (names come from users,
	// after the policy said they are targets).
	jumpHostCacheMax = 4096
)

// JumpHosts gives the host keys the gate presents as a target for ssh -J:
// with a host CA, certificates for the target name; without one, the
// gate's plain host keys (the user then pins the gate's key for the name).
type JumpHosts struct {
	ca   *CA          // nil, or without a host key: plain keys
	keys []ssh.Signer // the gate's host key signers, algorithms already limited

	mu    sync.Mutex
	cache map[string]jumpEntry
}

type jumpEntry struct {
	signers []ssh.Signer
	renewAt time.Time
}

// NewJumpHosts presents keys (the gate's host key signers) certified by c's
// host CA; c may be nil.
func NewJumpHosts(c *CA, keys []ssh.Signer) *JumpHosts {
	if c != nil && c.Host == nil {
		c = nil
	}
	return &JumpHosts{ca: c, keys: keys, cache: map[string]jumpEntry{}}
}

// Certified reports whether the keys are host certificates (a host CA is
// configured).
func (j *JumpHosts) Certified() bool { return j.ca != nil }

// Signers returns the host keys to present for target name.
func (j *JumpHosts) Signers(name string) ([]ssh.Signer, error) {
	if j.ca == nil {
		return j.keys, nil
	}
	now := j.ca.now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if e, ok := j.cache[name]; ok && now.Before(e.renewAt) {
		return e.signers, nil
	}
	var out []ssh.Signer
	for _, k := range j.keys {
		cert, err := j.ca.SignHost(k.PublicKey(), []string{name}, "sshgate jump host "+name, JumpHostCertTTL)
		if err != nil {
			return nil, fmt.Errorf("jump host certificate for %s: %w", name, err)
		}
		s, err := NewHostCertSigner(cert, k)
		if err != nil {
			return nil, fmt.Errorf("jump host certificate for %s: %w", name, err)
		}
		out = append(out, s)
	}
	if len(j.cache) >= jumpHostCacheMax {
		clear(j.cache)
	}
	j.cache[name] = jumpEntry{signers: out, renewAt: now.Add(JumpHostCertTTL - jumpHostCertRenew)}
	return out, nil
}

// KnownHosts returns the known_hosts lines that make a client trust the
// gate as each of names (hostnames as the client types them): one
// @cert-authority line with a host CA, else a line per gate host key.
func (j *JumpHosts) KnownHosts(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	pattern := strings.Join(names, ",")
	if j.ca != nil {
		return []string{KnownHostsLine(j.ca.Host.PublicKey(), pattern)}
	}
	var out []string
	for _, k := range j.keys {
		out = append(out, pattern+" "+sshkeys.AuthorizedLine(k.PublicKey()))
	}
	return out
}
