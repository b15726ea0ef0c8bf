package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/webhook"
)

// Extension keys set on connections the auth webhook authenticated.
const (
	// extWebhookPending marks a key PublicKey let the client try on the
	// webhook's behalf; it names the user and never grants anything: the
	// webhook is asked only in VerifiedPublicKey, once the client has signed
	// with this very key (so an unsigned key query costs no webhook call).
	extWebhookPending = "sshgate-webhook-pending"
	ExtWebhook        = "sshgate-webhook"      // "1": the auth webhook authenticated this connection
	ExtWebhookEnv     = "sshgate-webhook-env"  // JSON {"NAME":"value"}: env for every target session
	ExtWebhookMeta    = "sshgate-webhook-meta" // JSON {"key":"value"}: the non-sensitive metadata
)

// Poster posts JSON to a webhook and returns the body of a 200 reply.
// *webhook.Client is one.
type Poster interface {
	Post(ctx context.Context, path string, body any) ([]byte, error)
}

type authHook struct {
	client Poster
	only   bool // the webhook decides every login; the store's keys and passwords are not read
}

// webhookCandidate lets the client try key for user on the webhook's behalf.
func webhookCandidate(key ssh.PublicKey, user string) (*ssh.Permissions, error) {
	return &ssh.Permissions{Extensions: map[string]string{
		extWebhookPending:   user,
		gate.ExtFingerprint: sshkeys.Fingerprint(key),
	}}, nil
}

// noLocalMatch is what PublicKey answers when no stored key matched: in
// fallback mode, a user with no stored key at all (unknown to the store, or
// a local account kept only to hold grants) may try the key with the
// webhook; a user with stored keys uses those only.
func (a *Authenticator) noLocalMatch(key ssh.PublicKey, user string, stored int) (*ssh.Permissions, error) {
	if a.hook == nil || stored > 0 {
		return nil, ErrDenied
	}
	return webhookCandidate(key, user)
}

// verifiedWebhook asks the webhook about a key the client has just proven
// it holds. The key must be the one PublicKey let through.
func (a *Authenticator) verifiedWebhook(conn ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions) (*ssh.Permissions, error) {
	user := perms.Extensions[extWebhookPending]
	if a.hook == nil || perms.Extensions[gate.ExtFingerprint] != sshkeys.Fingerprint(key) {
		return nil, ErrDenied
	}
	if r, err := route.Parse(conn.User()); (err != nil && !errors.Is(err, route.ErrInvalidTarget)) || r.User != user {
		return nil, ErrDenied
	}
	req := request(conn, user)
	req.PublicKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	return a.askWebhook(conn, "/pubkey", "publickey", sshkeys.Fingerprint(key), req)
}

// webhookPassword handles a password login that belongs to the webhook.
// handled is false when the local store decides it.
func (a *Authenticator) webhookPassword(conn ssh.ConnMetadata, password []byte) (_ *ssh.Permissions, handled bool, _ error) {
	if a.hook == nil {
		return nil, false, nil
	}
	r, err := route.Parse(conn.User())
	if err != nil && !errors.Is(err, route.ErrInvalidTarget) {
		return nil, false, nil // the local path denies it, in the same time
	}
	if !a.hook.only {
		// fallback: a user with a stored password uses it; the webhook
		// decides for the others (unknown, or a local account without one).
		ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
		u, err := a.users.GetUser(ctx, r.User)
		cancel()
		if err == nil && u.PasswordHash != "" {
			return nil, false, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("get user failed", "user", r.User, "err", err)
			return nil, true, ErrDenied
		}
	}
	req := request(conn, r.User)
	req.PasswordBase64 = base64.StdEncoding.EncodeToString(password)
	p, err := a.askWebhook(conn, "/password", "password", "", req)
	return p, true, err
}

func request(conn ssh.ConnMetadata, user string) webhook.AuthRequest {
	return webhook.AuthRequest{
		Username:      user,
		RemoteAddress: conn.RemoteAddr().String(),
		ConnectionID:  connectionID(conn),
		ClientVersion: string(conn.ClientVersion()),
	}
}

// askWebhook posts req and turns a successful reply into the connection's
// identity. Anything but a well-formed reply with "success": true denies.
func (a *Authenticator) askWebhook(conn ssh.ConnMetadata, path, method, fp string, req webhook.AuthRequest) (*ssh.Permissions, error) {
	ctx, cancel := context.WithCancel(context.Background()) // the client bounds the call
	defer cancel()
	body, err := a.hook.client.Post(ctx, path, req)
	if err != nil {
		a.log.Warn("auth webhook failed: login denied", "user", req.Username, "method", method, "err", err)
		return nil, ErrDenied
	}
	reply, err := webhook.ParseAuthReply(body)
	if err != nil {
		a.log.Warn("auth webhook reply malformed: login denied", "user", req.Username, "method", method, "err", err)
		return nil, ErrDenied
	}
	if !reply.Success {
		a.log.Info("auth webhook denied login", "user", req.Username, "method", method)
		return nil, ErrDenied
	}
	name := reply.AuthenticatedUsername
	if name == "" {
		name = req.Username
	}
	if !route.ValidName(name) {
		a.log.Warn("auth webhook named an invalid user: login denied", "user", req.Username, "authenticated", route.Printable(name))
		return nil, ErrDenied
	}
	id := &gate.Identity{User: name, Method: method, Fingerprint: fp}
	ext := id.Extensions()
	ext[ExtWebhook] = "1"
	env := map[string]string{}
	for k, e := range reply.Environment {
		env[k] = e.Value // sensitive ones too: they exist to reach the session
	}
	meta := map[string]string{}
	for k, e := range reply.Metadata {
		if !e.Sensitive {
			meta[k] = e.Value
		}
	}
	if b, err := json.Marshal(env); err == nil && len(env) > 0 {
		ext[ExtWebhookEnv] = string(b)
	}
	if b, err := json.Marshal(meta); err == nil && len(meta) > 0 {
		ext[ExtWebhookMeta] = string(b)
	}
	a.log.Info("auth webhook accepted login", "user", req.Username, "authenticated", name, "method", method,
		"env_entries", len(env), "metadata_entries", len(reply.Metadata))
	return &ssh.Permissions{Extensions: ext}, nil
}

// webhookAttrs reads what the auth webhook attached to a login: the
// environment for target sessions and the non-sensitive metadata. Both are
// nil for logins the webhook did not authenticate.
func webhookAttrs(perms *ssh.Permissions) (env, meta map[string]string) {
	if perms == nil || perms.Extensions[ExtWebhook] != "1" {
		return nil, nil
	}
	if s := perms.Extensions[ExtWebhookEnv]; s != "" {
		_ = json.Unmarshal([]byte(s), &env)
	}
	if s := perms.Extensions[ExtWebhookMeta]; s != "" {
		_ = json.Unmarshal([]byte(s), &meta)
	}
	return env, meta
}
