package upstream

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/target"
)

func (b *Backend) ownCA() *ca.CA {
	if b.trust == nil {
		return nil
	}
	return b.trust.Own()
}

// authMethods is how the gate logs in to t: with a certificate (default when
// the gate has a user CA), offered before the gate key as OpenSSH offers a
// CertificateFile before its key, so targets that do not trust the CA yet
// keep working with the gate key in authorized_keys; or with the gate key
// only (Auth "key").
//
// A target that refused the certificate and took the gate key lately
// (refusals) gets the gate key first, and a certificate after it that is
// signed only if the gate key is refused: no key generated, nothing signed
// and one query fewer per login where the certificate is not trusted. Both
// are offered in one publickey method either way (x/crypto tries each
// method name once), so the order is all that changes.
func (b *Backend) authMethods(req target.Request) ([]ssh.AuthMethod, error) {
	t := req.Target
	own := b.ownCA()
	mode := t.Upstream.Auth
	if mode == "" && own != nil && own.User != nil {
		mode = gate.AuthCert
	}
	if mode != gate.AuthCert {
		return []ssh.AuthMethod{ssh.PublicKeys(b.gateKey)}, nil
	}
	if own == nil || own.User == nil {
		return nil, gate.Errorf(fmt.Errorf("target %s wants certificate login but the gate has no user CA", t.Name), "target %q is misconfigured", t.Name)
	}
	user := "-"
	if req.ID != nil {
		user = req.ID.User
	}
	keyID := fmt.Sprintf("sshgate user=%s target=%s conn=%s", user, t.Name, req.ConnID)
	sign := func() (ssh.Signer, error) {
		in, err := own.SignInward(req.Login, keyID, b.inwardTTL, req.Forwarding, req.AgentForwarding)
		if err != nil {
			return nil, err
		}
		b.log.Info("login certificate issued", "conn_id", req.ConnID, "target", t.Name, "login", req.Login,
			"serial", in.Cert.Serial, "key_id", keyID, "valid_before", time.Unix(int64(in.Cert.ValidBefore), 0).UTC().Format(time.RFC3339),
			"port_forwarding", req.Forwarding, "agent_forwarding", req.AgentForwarding)
		return in.Signer, nil
	}
	key := refusalKey(t, req.Login)
	if b.refused.has(key) {
		lazy := &lazyCert{sign: sign, fallback: b.gateKey.PublicKey(), accepted: func() { b.refused.forget(key) }}
		lazy.failed = func(err error) {
			b.log.Error("login certificate could not be signed", "conn_id", req.ConnID, "target", t.Name, "err", err)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(b.gateKey, lazy)}, nil
	}
	s, err := sign()
	if err != nil {
		return nil, gate.Errorf(fmt.Errorf("target %s: %w", t.Name, err), "target %q is unreachable", t.Name)
	}
	// x/crypto signs only with a key the target said it would take: the
	// gate key signing before the certificate did means the target refused
	// the certificate.
	certSigned := false
	cert := noteSign(s, func() { certSigned = true })
	gk := noteSign(b.gateKey, func() {
		if !certSigned && b.refused.add(key) {
			b.log.Info("target refused the login certificate and took the gate key; offering the gate key first there for a while",
				"conn_id", req.ConnID, "target", t.Name, "login", req.Login, "for", b.refused.ttl.String())
		}
	})
	return []ssh.AuthMethod{ssh.PublicKeys(cert, gk)}, nil
}

// hostCheck is how t's host key is verified: the pinned key, or with none
// pinned, a host certificate from the gate's host CA naming the target's
// host principal.
func (b *Backend) hostCheck(t gate.Target) (ssh.HostKeyCallback, []string, error) {
	if t.Upstream.HostKey != "" {
		pinned, _, err := sshkeys.ParseAuthorizedKey(t.Upstream.HostKey)
		if err != nil {
			return nil, nil, gate.Errorf(fmt.Errorf("target %s: pinned host key: %w", t.Name, err), "target %q is misconfigured", t.Name)
		}
		return sshkeys.PinnedHostKey(pinned), sshkeys.HostKeyAlgorithms(pinned), nil
	}
	if own := b.ownCA(); own == nil || own.Host == nil {
		return nil, nil, gate.Errorf(fmt.Errorf("target %s has no pinned host key and the gate has no host CA", t.Name), "target %q is misconfigured", t.Name)
	}
	cb, err := b.trust.HostKeyCallback(ca.HostPrincipal(t.Upstream.HostPrincipal, t.Upstream.Addr))
	if err != nil {
		return nil, nil, gate.Errorf(fmt.Errorf("target %s: %w", t.Name, err), "target %q is misconfigured", t.Name)
	}
	return cb, ca.HostCertAlgorithms, nil
}

// refusalKey names what a refusal is remembered for: the target as dialled
// and the login (sshd may trust the CA for some principals only).
func refusalKey(t gate.Target, login string) string {
	return t.Name + "\x00" + t.Upstream.Addr + "\x00" + login
}

// Refusals bound the memory of targets that refused the login certificate:
// an entry lasts refusalTTL (then the certificate goes first again, so a
// target that starts trusting the CA gets certificates within that time),
// and at most maxRefusals are kept.
const (
	refusalTTL  = 10 * time.Minute
	maxRefusals = 4096
)

// refusals remembers, per target and login, that the target refused the
// gate's login certificate and took its gate key. It only ever changes the
// order of the two keys offered, never what is offered, so an entry that is
// wrong or gone costs one query at worst; each gate keeps its own (nothing
// is shared through the store), so gates behind one address may disagree
// harmlessly.
type refusals struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
}

func newRefusals() *refusals {
	return &refusals{ttl: refusalTTL, max: maxRefusals, now: time.Now, until: map[string]time.Time{}}
}

// has reports whether key's refusal is remembered and not expired.
func (r *refusals) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.until[key]
	if ok && !r.now().Before(u) {
		delete(r.until, key)
		return false
	}
	return ok
}

// add remembers key's refusal for ttl; it reports whether key was not
// remembered already. Past max entries the expired ones go, then any one.
func (r *refusals) add(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	_, had := r.until[key]
	if !had && len(r.until) >= r.max {
		for k, u := range r.until {
			if !now.Before(u) {
				delete(r.until, k)
			}
		}
		for k := range r.until {
			if len(r.until) < r.max {
				break
			}
			delete(r.until, k)
		}
	}
	r.until[key] = now.Add(r.ttl)
	return !had
}

func (r *refusals) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.until, key)
}

func (r *refusals) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.until)
}

// noteSign returns s calling f before each signature, as the same kind of
// signer (plain, AlgorithmSigner, MultiAlgorithmSigner), so that x/crypto
// picks the same signature algorithms for it as for s.
func noteSign(s ssh.Signer, f func()) ssh.Signer {
	n := noted{s: s, f: f}
	switch v := s.(type) {
	case ssh.MultiAlgorithmSigner:
		return notedMulti{notedAlgo{n, v}, v}
	case ssh.AlgorithmSigner:
		return notedAlgo{n, v}
	default:
		return n
	}
}

type noted struct {
	s ssh.Signer
	f func()
}

func (n noted) PublicKey() ssh.PublicKey { return n.s.PublicKey() }
func (n noted) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	n.f()
	return n.s.Sign(r, data)
}

type notedAlgo struct {
	noted
	as ssh.AlgorithmSigner
}

func (n notedAlgo) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	n.f()
	return n.as.SignWithAlgorithm(r, data, algo)
}

type notedMulti struct {
	notedAlgo
	ms ssh.MultiAlgorithmSigner
}

func (n notedMulti) Algorithms() []string { return n.ms.Algorithms() }

// lazyCert is the login certificate offered after the gate key: its key is
// generated and signed when x/crypto first asks for its public key, which
// it does only once the gate key was refused. If signing fails, it stands
// for fallback (the gate key, which the target just refused) and cannot
// sign, so the login fails as it would have without it.
type lazyCert struct {
	sign     func() (ssh.Signer, error)
	fallback ssh.PublicKey
	accepted func()          // the target took the certificate
	failed   func(err error) // signing failed

	once sync.Once
	s    ssh.AlgorithmSigner
	err  error
}

func (l *lazyCert) get() {
	l.once.Do(func() {
		s, err := l.sign()
		if err == nil {
			as, ok := s.(ssh.AlgorithmSigner)
			if !ok {
				err = fmt.Errorf("login certificate signer %T cannot choose its algorithm", s)
			}
			l.s = as
		}
		if err != nil {
			l.s, l.err = nil, err
			if l.failed != nil {
				l.failed(err)
			}
		}
	})
}

func (l *lazyCert) PublicKey() ssh.PublicKey {
	l.get()
	if l.s == nil {
		return l.fallback
	}
	return l.s.PublicKey()
}

func (l *lazyCert) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	l.get()
	if l.s == nil {
		return nil, fmt.Errorf("sign login certificate: %w", l.err)
	}
	if l.accepted != nil {
		l.accepted()
	}
	return l.s.Sign(r, data)
}

func (l *lazyCert) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	l.get()
	if l.s == nil {
		return nil, fmt.Errorf("sign login certificate: %w", l.err)
	}
	if l.accepted != nil {
		l.accepted()
	}
	return l.s.SignWithAlgorithm(r, data, algo)
}
