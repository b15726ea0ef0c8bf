package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/store"
)

// TOTPStore is the part of the store the second factor needs.
type TOTPStore interface {
	GetTOTP(ctx context.Context, user string) (gate.TOTP, error)
	UseTOTPStep(ctx context.Context, user string, step int64) (bool, error)
	GetTarget(ctx context.Context, name string) (gate.Target, error)
	GetTOTPMode(ctx context.Context, env, target string) (string, error)
	PutTOTP(ctx context.Context, t gate.TOTP) error
	// Grace windows live in the store, so every gate honours one.
	PutTOTPGrace(ctx context.Context, user, cred, addr string, until time.Time) error
	TOTPGraceUntil(ctx context.Context, user, cred, addr string) (time.Time, error)
	// The username's target by alias, NODEID-UID or default target, as the
	// broker resolves it.
	ListTargetInfo(ctx context.Context) ([]gate.TargetInfo, error)
	GetUserInfo(ctx context.Context, user string) (gate.UserInfo, error)
}

// Extension keys recording, in the connection's permissions, how the login
// met the second factor: the broker checks every target it opens against
// them (TOTPProof).
const (
	ExtTOTPProof  = "sshgate-totp"        // a policy.TOTPProof* value
	ExtTOTPMode   = "sshgate-totp-mode"   // the mode decided at login ("" when the factor is off)
	ExtTOTPTarget = "sshgate-totp-target" // the target it was decided for ("" for none)
)

// Throttle is per-account throttling (package penalty). A lock check that
// fails (the store did not answer) returns an error, and the login is
// refused.
type Throttle interface {
	PasswordLocked(user string) (bool, error)
	PasswordFailed(user string)
	CodeLocked(user string) (bool, error)
	CodeFailed(user string)
}

// TOTPConfig is the second factor's policy (mfa.totp.*).
type TOTPConfig struct {
	Required string        // "enrolled", "always" or "never"
	Grace    time.Duration // 0: a code on every connection
	// CodeTimeout: once asked, the user has this long to type the code,
	// past the connection's login deadline if need be (0: no more time).
	CodeTimeout time.Duration
	Key         []byte // seals the secrets at rest
}

// CodePrompt is what keyboard-interactive asks; OpenSSH prints it as is.
const CodePrompt = "Verification code: "

// SecondFactor asks for a TOTP code over keyboard-interactive after a first
// factor succeeded, through x/crypto's PartialSuccessError: the identity is
// granted by the keyboard-interactive callback, and only for a valid code
// never used before.
type SecondFactor struct {
	st       TOTPStore
	cfg      TOTPConfig
	throttle Throttle
	log      interface {
		Warn(msg string, args ...any)
		Info(msg string, args ...any)
	}
	now func() time.Time
}

// graceKey binds a grace window to the user, the key (or "password") and the
// client's address: not transferable to another key or address.
type graceKey struct{ user, cred, addr string }

// NewSecondFactor returns the TOTP step; throttle may be nil.
func NewSecondFactor(st TOTPStore, cfg TOTPConfig, throttle Throttle, log *slog.Logger) *SecondFactor {
	return &SecondFactor{st: st, cfg: cfg, throttle: throttle, log: log, now: time.Now}
}

// passwordLocked reports whether password auth of user is locked (spraying);
// an error wraps store.ErrUnavailable.
func (a *Authenticator) passwordLocked(user string) (bool, error) {
	if a.throttle == nil {
		return false, nil
	}
	locked, err := a.throttle.PasswordLocked(user)
	if err != nil {
		return true, store.Unavailable("password lock", err)
	}
	return locked, nil
}

// codeLocked is passwordLocked for the second factor.
func (f *SecondFactor) codeLocked(user string) (bool, error) {
	if f.throttle == nil {
		return false, nil
	}
	locked, err := f.throttle.CodeLocked(user)
	if err != nil {
		return true, store.Unavailable("code lock", err)
	}
	return locked, nil
}

func (a *Authenticator) passwordFailed(user string) {
	if a.throttle != nil {
		a.throttle.PasswordFailed(user)
	}
}

// afterFirstFactor returns perms, or a partial success asking for a code.
func (a *Authenticator) afterFirstFactor(conn ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	if a.second == nil {
		return perms, nil
	}
	return a.second.after(conn, perms)
}

// mode is the TOTP mode for the target the username leads to (resolved as
// the broker does: name, alias, NODEID-UID, or user's default target), and
// that target's name ("" for none).
func (f *SecondFactor) mode(ctx context.Context, username, user string) (mode, target string) {
	t, ok, err := f.routed(ctx, username, user)
	if err != nil {
		f.log.Warn("resolve target for totp failed", "user", user, "err", err)
		return gate.TOTPAlways, "" // fail closed
	}
	if !ok {
		return f.defaultMode(), "" // unknown targets are refused after authentication, as ever
	}
	return f.TargetMode(ctx, t), t.Name
}

// routed is the target the username leads to; ok is false for none (the
// gate itself, a malformed or unknown name).
func (f *SecondFactor) routed(ctx context.Context, username, user string) (_ gate.Target, ok bool, _ error) {
	r, err := route.Parse(username)
	if err != nil || r.Gate {
		return gate.Target{}, false, nil
	}
	var name string
	if r.Target == "" && !r.Platform() {
		ui, err := f.st.GetUserInfo(ctx, user)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return gate.Target{}, false, fmt.Errorf("get user info: %w", err)
		}
		name = ui.DefaultTarget
	} else {
		infos, err := f.st.ListTargetInfo(ctx)
		if err != nil {
			return gate.Target{}, false, fmt.Errorf("list target info: %w", err)
		}
		name = policy.ResolveName(infos, r.Target, r.Node)
	}
	if name == "" {
		return gate.Target{}, false, nil
	}
	t, err := f.st.GetTarget(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return gate.Target{}, false, nil
	}
	if err != nil {
		return gate.Target{}, false, fmt.Errorf("get target: %w", err)
	}
	return t, true, nil
}

// defaultMode applies where neither the target nor its environment sets one:
// grace when mfa.totp.grace is set, else always.
func (f *SecondFactor) defaultMode() string {
	if f.cfg.Grace > 0 {
		return gate.TOTPGrace
	}
	return gate.TOTPAlways
}

// TargetMode is t's effective TOTP mode: the target's, else its
// environment's, else the default. Store errors fail closed (always).
func (f *SecondFactor) TargetMode(ctx context.Context, t gate.Target) string {
	if m, err := f.st.GetTOTPMode(ctx, "", t.Name); err == nil && m != "" {
		return m
	} else if err != nil {
		f.log.Warn("get totp mode failed", "target", t.Name, "err", err)
		return gate.TOTPAlways // fail closed
	}
	if m, err := f.st.GetTOTPMode(ctx, t.Env, ""); err == nil && m != "" {
		return m
	} else if err != nil {
		f.log.Warn("get totp mode failed", "env", t.Env, "err", err)
		return gate.TOTPAlways
	}
	return f.defaultMode()
}

// withProof returns perms with how the second factor was met recorded.
// Every key is set, so nothing a first factor carried can stand for it.
func withProof(perms *ssh.Permissions, proof, mode, target string) *ssh.Permissions {
	ext := make(map[string]string, len(perms.Extensions)+3)
	for k, v := range perms.Extensions {
		ext[k] = v
	}
	ext[ExtTOTPProof], ext[ExtTOTPMode], ext[ExtTOTPTarget] = proof, mode, target
	return &ssh.Permissions{Extensions: ext, CriticalOptions: perms.CriticalOptions}
}

// totpProof reads how a login met the second factor (a
// policy.TOTPProof* value). A login the auth webhook decided is exempt: the
// webhook is its authority. ok is false when nothing was recorded, which
// callers must refuse whenever the second factor is on.
func totpProof(perms *ssh.Permissions) (proof, mode, target string, ok bool) {
	if perms == nil {
		return "", "", "", false
	}
	if p, set := perms.Extensions[ExtTOTPProof]; set && p != "" {
		return p, perms.Extensions[ExtTOTPMode], perms.Extensions[ExtTOTPTarget], true
	}
	if perms.Extensions[ExtWebhook] == "1" {
		return policy.TOTPProofExempt, "", "", true
	}
	return "", "", "", false
}

func (f *SecondFactor) key(conn ssh.ConnMetadata, id *gate.Identity) graceKey {
	cred := id.Fingerprint
	if cred == "" {
		cred = id.Method
	}
	return graceKey{user: id.User, cred: cred, addr: hostOf(conn.RemoteAddr())}
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}

var errReplayed = &ssh.BannerError{Err: ErrDenied,
	Message: "sshgate: that code was already used; wait for the next one\r\n"}

var errLocked = &ssh.BannerError{Err: ErrDenied,
	Message: "sshgate: too many wrong verification codes for this account; try again later\r\n"}

var errEnrolRequired = &ssh.BannerError{Err: ErrDenied,
	Message: "sshgate: a verification code is required and this account has none; ask an administrator to enrol it\r\n"}

func (f *SecondFactor) after(conn ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	p, err := f.afterFirst(conn, perms)
	return p, asBanner(f.log, conn, err)
}

func (f *SecondFactor) afterFirst(conn ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	if f.cfg.Required == "never" {
		return withProof(perms, policy.TOTPProofExempt, "", ""), nil
	}
	id, err := gate.IdentityFromExtensions(perms.Extensions)
	if err != nil {
		return nil, ErrDenied
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mode, tgt := f.mode(ctx, conn.User(), id.User)
	enrol, err := f.st.GetTOTP(ctx, id.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.log.Warn("get totp failed", "user", id.User, "err", err)
		if mode == gate.TOTPNever {
			return withProof(perms, policy.TOTPProofNone, mode, tgt), nil
		}
		return nil, store.Unavailable("get totp", err)
	}
	enrolled := err == nil && enrol.Active
	if !enrolled && f.cfg.Required != "always" {
		return withProof(perms, policy.TOTPProofExempt, mode, tgt), nil
	}
	if mode == gate.TOTPNever {
		return withProof(perms, policy.TOTPProofNone, mode, tgt), nil
	}
	if !enrolled {
		f.log.Info("second factor required, user not enrolled", "user", id.User)
		return nil, errEnrolRequired
	}
	k := f.key(conn, id)
	if mode == gate.TOTPGrace && f.cfg.Grace > 0 {
		until, err := f.st.TOTPGraceUntil(ctx, k.user, k.cred, k.addr)
		if err != nil {
			f.log.Warn("read totp grace failed", "user", id.User, "err", err)
			return nil, store.Unavailable("read totp grace", err) // fail closed
		}
		if f.now().Before(until) {
			return withProof(perms, policy.TOTPProofGrace, mode, tgt), nil
		}
	}
	if locked, err := f.codeLocked(id.User); err != nil {
		f.log.Warn("read code lock failed", "user", id.User, "err", err)
		return nil, err
	} else if locked {
		return nil, errLocked
	}
	return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: func(conn ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			p, err := f.challenge(conn, client, perms, id, k, mode, tgt)
			return p, asBanner(f.log, conn, err)
		},
	}}
}

func (f *SecondFactor) challenge(conn ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge, perms *ssh.Permissions, id *gate.Identity, k graceKey, mode, tgt string) (*ssh.Permissions, error) {
	if locked, err := f.codeLocked(id.User); err != nil {
		f.log.Warn("read code lock failed", "user", id.User, "err", err)
		return nil, err
	} else if locked {
		return nil, errLocked
	}
	if f.cfg.CodeTimeout > 0 {
		// A person types the code: give them their own budget rather than
		// what is left of limits.login_grace (bounded by the accept loop).
		gate.ExtendLogin(conn, f.now().Add(f.cfg.CodeTimeout))
	}
	answers, err := client("", "", []string{CodePrompt}, []bool{false})
	if err != nil {
		return nil, err
	}
	if len(answers) != 1 {
		return nil, ErrDenied
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	enrol, err := f.st.GetTOTP(ctx, id.User)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		f.log.Warn("get totp failed", "user", id.User, "err", err)
		return nil, store.Unavailable("get totp", err)
	}
	if err != nil || !enrol.Active {
		return nil, ErrDenied
	}
	secret, err := totp.Open(f.cfg.Key, id.User, enrol.Secret)
	if err != nil {
		f.log.Warn("totp secret unusable", "user", id.User, "err", err)
		return nil, ErrDenied
	}
	now := f.now()
	step, ok := totp.Check(secret, answers[0], now)
	replayed := false
	if ok {
		if ok, err = f.st.UseTOTPStep(ctx, id.User, step); err != nil {
			f.log.Warn("record totp step failed", "user", id.User, "err", err)
			return nil, store.Unavailable("record totp step", err)
		}
		if !ok {
			replayed = true
			f.log.Warn("verification code replayed", "user", id.User)
		}
	}
	if !ok {
		if f.throttle != nil {
			f.throttle.CodeFailed(id.User)
		}
		if replayed {
			// A right code used before (often the one that just finished
			// an enrolment): say so. It still counts as a failure.
			return nil, errReplayed
		}
		f.log.Info("wrong verification code", "user", id.User)
		return nil, ErrDenied
	}
	if f.cfg.Grace > 0 {
		// The code was right: a grace window that could not be written only
		// means a code next time.
		if err := f.st.PutTOTPGrace(ctx, k.user, k.cred, k.addr, now.Add(f.cfg.Grace)); err != nil {
			f.log.Warn("record totp grace failed", "user", id.User, "err", err)
		}
	}
	out := &gate.Identity{User: id.User, Method: id.Method + "+totp", Fingerprint: id.Fingerprint}
	ext := out.Extensions()
	ext[ExtTOTPProof], ext[ExtTOTPMode], ext[ExtTOTPTarget] = policy.TOTPProofCode, mode, tgt
	// Everything else the first factor recorded stays: a certificate's
	// serial, its permit-* restrictions and its critical options
	// (force-command, source-address) bind the whole login.
	for key, v := range perms.Extensions {
		if _, set := ext[key]; !set {
			ext[key] = v
		}
	}
	return &ssh.Permissions{Extensions: ext, CriticalOptions: perms.CriticalOptions}, nil
}

var errPasswordLocked = errors.New("password authentication locked")

// Enrolled reports whether user has an active TOTP enrolment.
func (f *SecondFactor) Enrolled(ctx context.Context, user string) (bool, error) {
	t, err := f.st.GetTOTP(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.Active, nil
}

// Enrol activates secret for user when code is valid for it (self-service
// enrolment); the code's step counts as used. Wrong codes are throttled like
// wrong codes at login.
func (f *SecondFactor) Enrol(ctx context.Context, user, secret, code string) (bool, error) {
	if locked, err := f.codeLocked(user); err != nil || locked {
		return false, err
	}
	step, ok := totp.Check(secret, code, f.now())
	if !ok {
		if f.throttle != nil {
			f.throttle.CodeFailed(user)
		}
		return false, nil
	}
	sealed, err := totp.Seal(f.cfg.Key, user, secret)
	if err != nil {
		return false, err
	}
	if err := f.st.PutTOTP(ctx, gate.TOTP{User: user, Secret: sealed, Active: true, CreatedAt: f.now()}); err != nil {
		return false, err
	}
	if _, err := f.st.UseTOTPStep(ctx, user, step); err != nil {
		return false, err
	}
	return true, nil
}
