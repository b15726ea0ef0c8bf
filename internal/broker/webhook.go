package broker

import (
	"context"
	"slices"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/webhook"
)

// ConfigHookClient asks the operator's config webhook where a connection
// goes and how its container looks. webhook.ConfigClient is one.
type ConfigHookClient interface {
	Configure(ctx context.Context, req webhook.ConfigRequest) (webhook.ConfigReply, error)
}

// ConfigHook is the config webhook and the bounds its answers must keep.
type ConfigHook struct {
	Client ConfigHookClient
	Allow  webhook.Allow
	// ContainerSSHTarget is where a reply in ContainerSSH's format sends the
	// connection; empty: where the username asked.
	ContainerSSHTarget string
}

// askHook asks the config webhook about this connection, once, before the
// decision; nil when none is configured.
func (c *conn) askHook() *policy.Hook {
	h := c.b.Hook
	if h == nil {
		return nil
	}
	req := webhook.ConfigRequest{
		Username:              c.sess.Username,
		RemoteAddress:         c.sc.RemoteAddr().String(),
		ConnectionID:          c.sess.ConnID,
		ClientVersion:         string(c.sc.ClientVersion()),
		AuthenticatedUsername: c.id.User,
		Method:                c.id.Method,
		Target:                c.sess.Route.Target,
		Login:                 c.sess.Route.Login,
		Metadata:              map[string]webhook.Entry{},
	}
	if w := c.sess.Webhook; w != nil {
		for k, v := range w.Meta { // only non-sensitive entries were kept
			req.Metadata[k] = webhook.Entry{Value: v}
		}
	}
	reply, err := h.Client.Configure(c.ctx, req)
	if err != nil {
		c.log.Warn("config webhook failed: connection refused", "err", err)
		return &policy.Hook{Err: err}
	}
	if reply.ContainerSSH && h.ContainerSSHTarget != "" {
		reply.Target = h.ContainerSSHTarget
	}
	attrs := []any{"target", reply.Target, "login", reply.Login, "override", reply.Docker != nil, "containerssh_format", reply.ContainerSSH}
	if d := reply.Docker; d != nil {
		attrs = append(attrs, "image", d.Image, "env_entries", len(d.Env), "mounts", len(d.Mounts))
	}
	c.log.Info("config webhook answered", attrs...)
	hook := &policy.Hook{Target: reply.Target, Login: reply.Login, Forwarding: reply.Forwarding, AllowForwarding: h.Allow.Forwarding}
	if o := reply.Docker; o != nil {
		allow := h.Allow
		hook.Docker = func(spec gate.DockerSpec) (gate.DockerSpec, error) { return allow.Apply(spec, *o) }
	}
	return hook
}

// sendWebhookEnv passes the auth webhook's environment to a target session.
// It goes after the user's own env requests, so it wins, and it is not
// subject to env_allow: only the webhook sets it.
func (c *conn) sendWebhookEnv(ch ssh.Channel) {
	env := c.dec.Env
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, _ = ch.SendRequest("env", false, ssh.Marshal(envReq{Name: k, Value: env[k]}))
	}
}
