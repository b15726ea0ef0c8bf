package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth/oidc"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

// MethodOIDC is Identity.Method for a single sign-on through the identity
// provider (a device login, or a reuse of one); "+totp" after a code.
const MethodOIDC = "oidc"

// Extension keys of a single sign-on, read into gate.SSOLogin by session.
const (
	extSSOPending = "sshgate-sso-pending" // a key PublicKey let the client try for single sign-on; grants nothing
	ExtSSO        = "sshgate-sso"         // "1": this login was a single sign-on
	ExtSSOSubject = "sshgate-sso-sub"
	ExtSSOIssuer  = "sshgate-sso-iss"
	ExtSSOAMR     = "sshgate-sso-amr"    // JSON list
	ExtSSOGroups  = "sshgate-sso-groups" // JSON list
	ExtSSOReused  = "sshgate-sso-reused" // "1": a reuse window, no browser trip
	ExtSSOKey     = "sshgate-sso-key"    // authorized_keys form of the proven key
	ExtSSOSource  = "sshgate-sso-source" // the source prefix of the reuse window
	ExtSSOExpires = "sshgate-sso-expires"
	ExtSSOSecond  = "sshgate-sso-second" // "1": counted as the second factor
)

// DeviceFlow is the provider side of a device login (*oidc.Client).
type DeviceFlow interface {
	Begin(ctx context.Context) (*oidc.Device, error)
	Wait(ctx context.Context, d *oidc.Device) (*oidc.Identity, error)
}

// SSOStore is the part of the store single sign-on needs.
type SSOStore interface {
	GetUser(ctx context.Context, name string) (gate.User, error)
	AddUser(ctx context.Context, u gate.User) error
	SyncSSOGrants(ctx context.Context, user string, want []gate.Grant) (added, removed, skipped int, err error)
	PutSSOSession(ctx context.Context, s gate.SSOSession) error
	GetSSOSession(ctx context.Context, user, fingerprint, source string) (gate.SSOSession, error)
}

// SSOGrant grants members of Group an env or a target.
type SSOGrant struct {
	Group      string
	Env        string
	Target     string
	Login      string
	Forwarding bool
}

// SSOConfig is single sign-on's policy (auth.oidc).
type SSOConfig struct {
	Flow           DeviceFlow
	Store          SSOStore
	UserClaim      string
	GroupsClaim    string
	AllowedGroups  []string
	AllowedDomains []string
	Grants         []SSOGrant // nil: grants are not managed
	ManageGrants   bool       // sync grants at each sign-in (Grants may be empty: remove all)
	AutoProvision  bool
	OfferAll       bool          // every user, not only those with neither key nor password
	Reuse          time.Duration // 0: no reuse window
	Prefix4        int
	Prefix6        int
	SecondFactor   bool // a sign-in counts as the TOTP second factor
	LoginTimeout   time.Duration
}

// sso is the Authenticator's single sign-on.
type sso struct {
	cfg SSOConfig
	now func() time.Time

	mu     sync.Mutex
	failed map[string]time.Time // connections whose sign-in failed for good: no second prompt
}

func newSSO(c SSOConfig) *sso {
	if c.LoginTimeout <= 0 {
		c.LoginTimeout = 5 * time.Minute
	}
	if c.Prefix4 == 0 {
		c.Prefix4 = 32
	}
	if c.Prefix6 == 0 {
		c.Prefix6 = 64
	}
	return &sso{cfg: c, now: time.Now, failed: map[string]time.Time{}}
}

// ssoOffered reports whether user may sign in through the provider:
// everyone with offer all, else users with neither key nor password
// (unknown users too: whether they may have an account is the
// provider's and auto_provision's to say, after the sign-in).
func (a *Authenticator) ssoOffered(ctx context.Context, user string, keys int) bool {
	if a.sso == nil {
		return false
	}
	if a.sso.cfg.OfferAll {
		return true
	}
	if keys > 0 {
		return false
	}
	u, err := a.users.GetUser(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return true
	}
	return err == nil && u.PasswordHash == ""
}

// ssoCandidate lets the client try key for a single sign-on as user.
// Nothing is granted until the client has signed with it and then signed
// in at the provider (or holds a reuse window for this very key).
func ssoCandidate(key ssh.PublicKey, user string) (*ssh.Permissions, error) {
	return &ssh.Permissions{Extensions: map[string]string{
		extSSOPending:       user,
		gate.ExtFingerprint: sshkeys.Fingerprint(key),
	}}, nil
}

// sourcePrefix is the client's address masked to the reuse prefix.
func (s *sso) sourcePrefix(a net.Addr) string {
	var ip netip.Addr
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(t.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if !ip.IsValid() {
		return ""
	}
	bits := s.cfg.Prefix6
	if ip.Is4() {
		bits = s.cfg.Prefix4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// verifiedSSO runs once the client proved it holds key: a live reuse
// window for (user, key, source) logs it in; otherwise the device sign-in
// follows over keyboard-interactive, bound to this key.
func (a *Authenticator) verifiedSSO(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions) (*ssh.Permissions, error) {
	user := perms.Extensions[extSSOPending]
	fp := sshkeys.Fingerprint(key)
	if a.sso == nil || perms.Extensions[gate.ExtFingerprint] != fp {
		return nil, ErrDenied
	}
	if r, ok := a.route(conn.User()); !ok || r.User != user {
		return nil, ErrDenied
	}
	s := a.sso
	if s.cfg.Reuse > 0 {
		if ext, ok := a.reuse(conn, user, key); ok {
			return a.afterSSO(conn, &ssh.Permissions{Extensions: ext})
		}
	}
	if s.hasFailed(conn) {
		return nil, ErrDenied
	}
	return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: func(m ssh.ConnMetadata, c ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			return a.deviceLogin(m, c, user, key)
		},
	}}
}

// reuse is the identity of user with key from a live reuse window; ok is
// false when there is none.
func (a *Authenticator) reuse(conn ssh.ConnMetadata, user string, key ssh.PublicKey) (_ map[string]string, ok bool) {
	s := a.sso
	src := s.sourcePrefix(conn.RemoteAddr())
	if src == "" {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	fp := sshkeys.Fingerprint(key)
	w, err := s.cfg.Store.GetSSOSession(ctx, user, fp, src)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("read sso reuse window failed", "user", user, "err", err)
		}
		return nil, false
	}
	if !s.now().Before(w.Expires) {
		return nil, false
	}
	if _, err := a.users.GetUser(ctx, user); err != nil {
		return nil, false
	}
	var amr []string
	if w.AMR != "" {
		amr = strings.Split(w.AMR, ",")
	}
	id := &gate.Identity{User: user, Method: MethodOIDC, Fingerprint: fp}
	ext := id.Extensions()
	ext[ExtSSO], ext[ExtSSOReused], ext[ExtSSOSubject] = "1", "1", w.Subject
	ext[ExtSSOAMR] = jsonList(amr)
	ext[ExtSSOKey] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	ext[ExtSSOSource], ext[ExtSSOExpires] = src, strconv.FormatInt(w.Expires.Unix(), 10)
	a.log.Info("sso reuse window accepted", "user", user, "key", fp, "source", src, "sub", logSafe(w.Subject, 128),
		"expires", w.Expires.UTC().Format(time.RFC3339))
	return ext, true
}

// ssoKeyboardInteractive is keyboard-interactive as a first method: a
// device sign-in without a proven key (no reuse window, no `cert`), for
// those sign-on is offered to (handled); for anyone else the caller asks
// for a password instead.
func (a *Authenticator) ssoKeyboardInteractive(conn ssh.ConnMetadata, c ssh.KeyboardInteractiveChallenge) (_ *ssh.Permissions, _ error, handled bool) {
	r, ok := a.route(conn.User())
	if !ok {
		return nil, ErrDenied, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	keys, err := a.users.ListKeys(ctx, r.User)
	offered := err == nil && a.ssoOffered(ctx, r.User, len(keys))
	cancel()
	if !offered {
		return nil, nil, false
	}
	if a.sso.hasFailed(conn) {
		return nil, ErrDenied, true
	}
	perms, err := a.deviceLogin(conn, c, r.User, nil)
	return perms, err, true
}

func (s *sso) hasFailed(conn ssh.ConnMetadata) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.failed[connectionID(conn)]
	return ok
}

// fail remembers that conn's sign-in failed for good: OpenSSH retries
// keyboard-interactive after a failure, and a second browser trip on the
// same connection would only hide the first failure's message.
func (s *sso) fail(conn ssh.ConnMetadata) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.failed) > 1000 {
		for k, t := range s.failed {
			if now.Sub(t) > s.cfg.LoginTimeout {
				delete(s.failed, k)
			}
		}
	}
	s.failed[connectionID(conn)] = now
}

// ssoFailure is one line to the user (a banner: OpenSSH prints it) and
// the reason with the same ref in the log.
func (a *Authenticator) ssoFailure(conn ssh.ConnMetadata, user, public, reason string, err error) error {
	a.sso.fail(conn)
	ref := gate.NewRef()
	args := []any{"user", user, "reason", reason, "ref", ref}
	if err != nil {
		args = append(args, "err", logSafe(err.Error(), 400))
	}
	a.log.Warn("sso sign-in failed", args...)
	return &ssh.BannerError{Err: ErrDenied, Message: fmt.Sprintf("sshgate: %s (ref %s)\r\n", public, ref)}
}

// deviceLogin runs the device authorization grant inside one
// keyboard-interactive prompt: the URL, the code and a QR code are shown,
// the provider is polled from then on, and the login completes once the
// user has approved and pressed Enter. key is the proven key the login
// binds to (nil: none).
func (a *Authenticator) deviceLogin(conn ssh.ConnMetadata, challenge ssh.KeyboardInteractiveChallenge, user string, key ssh.PublicKey) (*ssh.Permissions, error) {
	s := a.sso
	if s.hasFailed(conn) {
		return nil, ErrDenied
	}
	start := s.now()
	deadline := gate.ExtendLogin(conn, start.Add(s.cfg.LoginTimeout))
	if deadline.IsZero() {
		deadline = start.Add(s.cfg.LoginTimeout) // callbacks driven directly: the budget still bounds the wait
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	d, err := s.cfg.Flow.Begin(ctx)
	if err != nil {
		return nil, a.ssoFailure(conn, user, "the identity provider cannot be reached now; try again later", "provider_unreachable", err)
	}
	type result struct {
		id  *oidc.Identity
		err error
	}
	done := make(chan result, 1)
	go func() {
		id, err := s.cfg.Flow.Wait(ctx, d)
		done <- result{id, err}
	}()
	a.log.Info("sso sign-in started", "user", user, "bound_key", key != nil, "expires", d.Expires.UTC().Format(time.RFC3339))
	if _, err := challenge("", "", []string{ssoPrompt(d.VerificationURI, d.VerificationURIComplete, d.UserCode)}, []bool{false}); err != nil {
		cancel()
		<-done
		return nil, err // the client went away or gave up
	}
	res := <-done
	if res.err != nil {
		switch oidc.KindOf(res.err) {
		case oidc.KindDenied:
			return nil, a.ssoFailure(conn, user, "sign-in was denied by the identity provider", "denied", res.err)
		case oidc.KindExpired:
			return nil, a.ssoFailure(conn, user, "the sign-in code expired before it was approved; connect again", "expired", res.err)
		case oidc.KindInvalidToken:
			return nil, a.ssoFailure(conn, user, "the identity provider's answer could not be verified", "invalid_token", res.err)
		case oidc.KindCancelled:
			return nil, a.ssoFailure(conn, user, "the sign-in took too long; connect again", "timeout", res.err)
		default:
			return nil, a.ssoFailure(conn, user, "the identity provider cannot be reached now; try again later", "provider_unreachable", res.err)
		}
	}
	return a.signedIn(ctx, conn, user, key, res.id)
}

// signedIn maps a verified identity to the gate user, provisions the
// user and syncs the grants when configured, opens the reuse window for
// a proven key, and completes the login.
func (a *Authenticator) signedIn(ctx context.Context, conn ssh.ConnMetadata, user string, key ssh.PublicKey, id *oidc.Identity) (*ssh.Permissions, error) {
	s := a.sso
	groups, refusal := s.checkClaims(user, id.Claims)
	if refusal != nil {
		return nil, a.ssoFailure(conn, user, refusal.public, refusal.reason, fmt.Errorf("%s (sub %s)", refusal.detail, logSafe(id.Subject, 128)))
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	if _, err := s.cfg.Store.GetUser(sctx, user); errors.Is(err, store.ErrNotFound) {
		if !s.cfg.AutoProvision {
			return nil, a.ssoFailure(conn, user, fmt.Sprintf("%s has no account on this gate; ask an administrator", user), "no_account", nil)
		}
		if err := s.cfg.Store.AddUser(sctx, gate.User{Name: user}); err != nil && !errors.Is(err, store.ErrExists) {
			return nil, a.ssoFailure(conn, user, "the gate could not complete the sign-in", "provision_failed", err)
		}
		a.log.Info("sso user provisioned", "user", user, "sub", logSafe(id.Subject, 128))
	} else if err != nil {
		return nil, a.ssoFailure(conn, user, "the gate could not complete the sign-in", "store", err)
	}
	if s.cfg.ManageGrants {
		added, removed, skipped, err := s.cfg.Store.SyncSSOGrants(sctx, user, s.wantGrants(user, groups))
		if err != nil {
			return nil, a.ssoFailure(conn, user, "the gate could not complete the sign-in", "sync_grants", err)
		}
		if added+removed+skipped > 0 {
			a.log.Info("sso grants synced", "user", user, "added", added, "removed", removed, "skipped_missing", skipped)
		}
	}
	fp := ""
	ext := map[string]string{}
	if key != nil {
		fp = sshkeys.Fingerprint(key)
		ext[ExtSSOKey] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
		if s.cfg.Reuse > 0 {
			if src := s.sourcePrefix(conn.RemoteAddr()); src != "" {
				now := s.now()
				w := gate.SSOSession{User: user, Fingerprint: fp, Source: src, Subject: id.Subject,
					AMR: strings.Join(id.AMR, ","), Expires: now.Add(s.cfg.Reuse), CreatedAt: now}
				if err := s.cfg.Store.PutSSOSession(sctx, w); err != nil {
					a.log.Warn("store sso reuse window failed", "user", user, "err", err) // this login still succeeds
				} else {
					ext[ExtSSOSource], ext[ExtSSOExpires] = src, strconv.FormatInt(w.Expires.Unix(), 10)
				}
			}
		}
	}
	ident := &gate.Identity{User: user, Method: MethodOIDC, Fingerprint: fp}
	for k, v := range ident.Extensions() {
		ext[k] = v
	}
	ext[ExtSSO], ext[ExtSSOSubject], ext[ExtSSOIssuer] = "1", id.Subject, id.Issuer
	ext[ExtSSOAMR], ext[ExtSSOGroups] = jsonList(id.AMR), jsonList(groups)
	a.log.Info("sso sign-in succeeded", "user", user, "sub", logSafe(id.Subject, 128), "amr", logSafe(strings.Join(id.AMR, ","), 100),
		"key", fp, "reuse_until", ext[ExtSSOExpires])
	return a.afterSSO(conn, &ssh.Permissions{Extensions: ext})
}

// claimRefusal is why the claims of a verified ID token do not let the
// user in: what the user reads, the reason class and a detail for the log.
type claimRefusal struct{ public, reason, detail string }

// checkClaims maps the claims of a verified ID token (the provider's
// JSON, untrusted in shape) to the gate user of the SSH username: the user
// claim must name exactly user, and the allowed groups and email domains
// apply. It returns the user's groups.
func (s *sso) checkClaims(user string, claims map[string]any) ([]string, *claimRefusal) {
	name, _ := claims[s.cfg.UserClaim].(string)
	if name == "" {
		return nil, &claimRefusal{"the identity provider did not say who you are", "no_user_claim",
			fmt.Sprintf("claim %q missing or not a string", s.cfg.UserClaim)}
	}
	if name != user {
		return nil, &claimRefusal{fmt.Sprintf("you signed in as %q, not %q", route.Printable(name), user), "user_mismatch",
			fmt.Sprintf("claim %s = %q", s.cfg.UserClaim, logSafe(name, 128))}
	}
	groups := oidc.StringList(claims[s.cfg.GroupsClaim])
	if len(s.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(s.cfg.AllowedGroups, g) }) {
		return nil, &claimRefusal{"your account is not in a group allowed on this gate", "group_not_allowed",
			fmt.Sprintf("groups %q", logSafe(strings.Join(groups, ","), 300))}
	}
	if len(s.cfg.AllowedDomains) > 0 {
		email, _ := claims["email"].(string)
		verified, _ := claims["email_verified"].(bool)
		at := strings.LastIndexByte(email, '@')
		if !verified || at < 0 || !slices.Contains(s.cfg.AllowedDomains, strings.ToLower(email[at+1:])) {
			return nil, &claimRefusal{"your email domain is not allowed on this gate", "domain_not_allowed",
				fmt.Sprintf("email %q verified %v", logSafe(email, 128), verified)}
		}
	}
	return groups, nil
}

// wantGrants are the grants the groups give user.
func (s *sso) wantGrants(user string, groups []string) []gate.Grant {
	var out []gate.Grant
	for _, g := range s.cfg.Grants {
		if slices.Contains(groups, g.Group) {
			gr := gate.Grant{User: user, Env: g.Env, Target: g.Target, Login: g.Login, Forwarding: g.Forwarding}
			if !slices.ContainsFunc(out, func(o gate.Grant) bool { return o == gr }) {
				out = append(out, gr)
			}
		}
	}
	return out
}

// afterSSO is the second factor after a sign-in: where the operator counts
// the sign-in as one, it is recorded as a code; otherwise TOTP follows as
// after any first factor.
func (a *Authenticator) afterSSO(conn ssh.ConnMetadata, perms *ssh.Permissions) (*ssh.Permissions, error) {
	if !a.sso.cfg.SecondFactor || a.second == nil {
		return a.afterFirstFactor(conn, perms)
	}
	perms.Extensions[ExtSSOSecond] = "1"
	if a.second.cfg.Required == "never" {
		return withProof(perms, policy.TOTPProofExempt, "", ""), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	mode, tgt := a.second.mode(ctx, conn.User(), perms.Extensions[gate.ExtUser])
	return withProof(perms, policy.TOTPProofCode, mode, tgt), nil
}

func jsonList(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

func readList(s string) []string {
	var l []string
	_ = json.Unmarshal([]byte(s), &l)
	return l
}

// ssoLogin reads a single sign-on's facts from the permissions (nil when
// the login was none).
func ssoLogin(perms *ssh.Permissions) *gate.SSOLogin {
	e := perms.Extensions
	if e[ExtSSO] != "1" {
		return nil
	}
	l := &gate.SSOLogin{Subject: e[ExtSSOSubject], Issuer: e[ExtSSOIssuer], AMR: readList(e[ExtSSOAMR]),
		Groups: readList(e[ExtSSOGroups]), Reused: e[ExtSSOReused] == "1", PublicKey: e[ExtSSOKey],
		Source: e[ExtSSOSource], SecondFactor: e[ExtSSOSecond] == "1"}
	if n, err := strconv.ParseInt(e[ExtSSOExpires], 10, 64); err == nil {
		l.Expires = time.Unix(n, 0)
	}
	return l
}
