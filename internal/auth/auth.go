// Package auth turns external credentials (public keys, passwords, user
// certificates, TOTP codes, the auth webhook) into a typed gate.Session.
// Identity is granted only where possession is proven:
// VerifiedPublicKeyCallback (after the signature checks out), the password
// callback and the second factor's keyboard-interactive callback.
// PublicKeyCallback only answers "may this key be tried", and what it
// returns is never read as an identity on its own (CVE-2024-45337).
//
// Must not import: broker account relay target/... sshd app live audit/recording store/sqlite
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/passwd"
	"github.com/sshgate/sshgate/internal/ca"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

// ErrDenied is the only error a client ever learns about: SSH says "Permission denied".
var ErrDenied = errors.New("access denied")

// Users is the part of the store auth needs.
type Users interface {
	GetUser(ctx context.Context, name string) (gate.User, error)
	ListKeys(ctx context.Context, user string) ([]gate.Key, error)
	UserByUID(ctx context.Context, uid int64) (gate.UserInfo, error) // the NODEID-UID form (platform.go)
}

// Authenticator holds the ssh.ServerConfig callbacks.
type Authenticator struct {
	users   Users
	log     *slog.Logger
	timeout time.Duration
	hashing chan struct{} // bounds concurrent password hashes (64 MiB each)

	second   *SecondFactor // TOTP after the first factor (totp.go); nil: none
	throttle Throttle      // per-account password throttling; nil: none
	hook     *authHook     // the auth webhook (webhook.go); nil: none
	certs    *ca.Trust     // user certificates (cert.go); nil refuses them
	sso      *sso          // single sign-on (sso.go); nil: none
}

// Deps is what an Authenticator works with; only Users and Log are required.
type Deps struct {
	Users        Users
	Log          *slog.Logger
	SecondFactor *SecondFactor // TOTP after the first factor; nil: none
	Throttle     Throttle      // per-account password throttling; nil: none
	Certs        *ca.Trust     // user certificates; nil refuses them
	Webhook      Poster        // the auth webhook; nil: none
	// WebhookMode "only": the webhook decides every login; "fallback":
	// logins of names the local store does not know.
	WebhookMode string
	SSO         *SSOConfig // single sign-on through an OIDC provider; nil: none
}

// New returns an Authenticator ready to install.
func New(d Deps) *Authenticator {
	a := &Authenticator{users: d.Users, log: d.Log, timeout: 5 * time.Second,
		hashing: make(chan struct{}, max(2, runtime.NumCPU())),
		second:  d.SecondFactor, throttle: d.Throttle, certs: d.Certs}
	if d.Webhook != nil {
		a.hook = &authHook{client: d.Webhook, only: d.WebhookMode == "only"}
	}
	if d.SSO != nil {
		a.sso = newSSO(*d.SSO)
	}
	return a
}

// Install sets the authentication callbacks on cfg.
func (a *Authenticator) Install(cfg *ssh.ServerConfig) {
	cfg.PublicKeyCallback = a.PublicKey
	cfg.VerifiedPublicKeyCallback = func(m ssh.ConnMetadata, k ssh.PublicKey, p *ssh.Permissions, alg string) (*ssh.Permissions, error) {
		perms, err := a.VerifiedPublicKey(m, k, p, alg)
		return a.done(m, perms, err)
	}
	cfg.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		perms, err := a.Password(m, pw)
		return a.done(m, perms, err)
	}
	// Keyboard-interactive as a first method: a device sign-in for those
	// single sign-on is offered to, else a password asked in one prompt
	// (PuTTY, sshpass and PAM-minded clients send passwords this way). The
	// password goes through cfg.PasswordCallback as it is when asked, so
	// whatever wraps that callback later (the honeypot record) sees both.
	cfg.KeyboardInteractiveCallback = func(m ssh.ConnMetadata, c ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
		if a.sso != nil {
			if perms, err, handled := a.ssoKeyboardInteractive(m, c); handled {
				return a.done(m, perms, err)
			}
		}
		return passwordPrompt(m, c, cfg.PasswordCallback)
	}
	cfg.PublicKeyAuthAlgorithms = sshkeys.PublicKeyAuthAlgorithms
}

// PublicKey answers whether key may be tried for the user. It records the
// candidate in the returned permissions, which x/crypto hands to
// VerifiedPublicKey only once the client has signed with this very key.
func (a *Authenticator) PublicKey(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	r, ok := a.route(conn.User())
	if !ok {
		return nil, ErrDenied
	}
	if cert, isCert := key.(*ssh.Certificate); isCert {
		return a.certPublicKey(conn, r.User, cert)
	}
	if sshkeys.CheckKeyStrength(key) != nil {
		return nil, ErrDenied
	}
	if a.hook != nil && a.hook.only {
		return webhookCandidate(key, r.User)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	keys, err := a.users.ListKeys(ctx, r.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, a.unavailable("list keys", r.User, err)
	}
	if err != nil {
		return nil, ErrDenied
	}
	want := key.Marshal()
	for _, k := range keys {
		pk, _, err := sshkeys.ParseAuthorizedKey(k.AuthorizedKey)
		if err != nil {
			continue
		}
		if string(pk.Marshal()) == string(want) {
			id := &gate.Identity{User: r.User, Method: "publickey", Fingerprint: sshkeys.Fingerprint(key)}
			return &ssh.Permissions{Extensions: id.Extensions()}, nil
		}
	}
	if a.ssoOffered(ctx, r.User, len(keys)) {
		return ssoCandidate(key, r.User)
	}
	return a.noLocalMatch(key, r.User, len(keys))
}

// VerifiedPublicKey runs after the client proved possession of key. The
// permissions are the ones PublicKey returned for this same key.
func (a *Authenticator) VerifiedPublicKey(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	if perms != nil && perms.Extensions[extWebhookPending] != "" {
		return a.verifiedWebhook(conn, key, perms)
	}
	if perms != nil && perms.Extensions[extSSOPending] != "" {
		return a.verifiedSSO(conn, key, perms)
	}
	if perms == nil || perms.Extensions[gate.ExtFingerprint] != sshkeys.Fingerprint(key) {
		return nil, ErrDenied
	}
	if perms.Extensions[gate.ExtMethod] == MethodCert {
		if err := a.certVerified(conn, key, perms); err != nil {
			return nil, err
		}
		return a.afterFirstFactor(conn, perms) // a certificate is a first factor like a key
	}
	// The user may have been removed between query and signature.
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	if _, err := a.users.GetUser(ctx, perms.Extensions[gate.ExtUser]); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, a.unavailable("get user", perms.Extensions[gate.ExtUser], err)
		}
		return nil, ErrDenied
	}
	return a.afterFirstFactor(conn, perms)
}

// Password checks a password against the stored hash. Unknown users and users
// without a password burn the same time, so timing reveals nothing. With an
// auth webhook, the logins it handles (webhook.go) take the webhook's time.
func (a *Authenticator) Password(conn ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	if p, handled, err := a.webhookPassword(conn, password); handled {
		return p, err
	}
	// An argon2id check holds 64 MiB for ~80 ms: a flood of password attempts
	// queues here (a waiting attempt costs a goroutine, not 64 MiB) rather
	// than running the gate out of memory.
	a.hashing <- struct{}{}
	defer func() { <-a.hashing }()
	r, ok := a.route(conn.User())
	if !ok {
		passwd.VerifyDummy(password)
		return nil, ErrDenied
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	u, err := a.users.GetUser(ctx, r.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.log.Warn("get user failed", "user", r.User, "err", err)
		passwd.VerifyDummy(password)
		return nil, a.unavailable("get user", r.User, err) // fail closed, told apart from a wrong password
	}
	if err == nil {
		if locked, lerr := a.passwordLocked(u.Name); lerr != nil {
			a.log.Warn("read password lock failed", "user", r.User, "err", lerr)
			passwd.VerifyDummy(password)
			return nil, a.unavailable("read password lock", r.User, lerr)
		} else if locked {
			err = errPasswordLocked // spraying: same answer, same time as a wrong password
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) && err != errPasswordLocked {
		return nil, a.unavailable("get user", r.User, err)
	}
	if err != nil || u.PasswordHash == "" {
		passwd.VerifyDummy(password)
		return nil, ErrDenied
	}
	if !passwd.Verify(u.PasswordHash, password) {
		a.passwordFailed(u.Name)
		return nil, ErrDenied
	}
	id := &gate.Identity{User: u.Name, Method: "password"}
	return a.afterFirstFactor(conn, &ssh.Permissions{Extensions: id.Extensions()})
}

// passwordPrompt asks for a password over keyboard-interactive in one
// prompt, as OpenSSH's sshd does through PAM, and checks it with password.
func passwordPrompt(m ssh.ConnMetadata, c ssh.KeyboardInteractiveChallenge, password func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error)) (*ssh.Permissions, error) {
	answers, err := c("", "", []string{"Password: "}, []bool{false})
	if err != nil {
		return nil, err
	}
	if len(answers) != 1 {
		return nil, ErrDenied
	}
	return password(m, []byte(answers[0]))
}

// unavailable is a login that cannot be decided because the store did not
// answer (down, restarting, slower than the auth timeout): the user gets
// one line to try again, with a reference; the cause is logged under it.
// It is not a wrong credential: penalties count it as a failed attempt
// no more than any other failure, and the connection's later attempts are
// refused without asking the store again (sshd).
func (a *Authenticator) unavailable(op, user string, err error) error {
	return unavailableBanner(a.log, op, user, err)
}

// warner is the part of a logger the banner needs.
type warner interface{ Warn(msg string, args ...any) }

func unavailableBanner(log warner, op, user string, err error) error {
	ref := gate.NewRef()
	log.Warn("login failed: store unavailable", "op", op, "user", user, "ref", ref, "err", err)
	return &ssh.BannerError{Err: fmt.Errorf("%w: %s: %v", gate.ErrUnavailable, op, err), Message: gate.UnavailableMessage(ref) + "\r\n"}
}

// asBanner turns a store failure met deep in a login (the second factor's
// reads and writes) into the one "try again" banner; other errors pass.
func asBanner(log warner, conn ssh.ConnMetadata, err error) error {
	var be *ssh.BannerError
	if err == nil || !errors.Is(err, gate.ErrUnavailable) || errors.As(err, &be) {
		return err
	}
	return unavailableBanner(log, "second factor", conn.User(), err)
}
