package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/webhook"
)

// ConfigHook asks the operator's config webhook where a connection goes and
// how its container looks. webhook.ConfigClient is one.
type ConfigHook interface {
	Configure(ctx context.Context, req webhook.ConfigRequest) (webhook.ConfigReply, error)
}

type configHook struct {
	hook  ConfigHook
	allow webhook.Allow
}

// SetConfigHook makes every authenticated connection ask h (once, when it
// first needs a target) and keeps its answers within allow.
func (b *Broker) SetConfigHook(h ConfigHook, allow webhook.Allow) {
	b.hook = &configHook{hook: h, allow: allow}
}

// hookState is one connection's answer from the config webhook.
type hookState struct {
	once  sync.Once
	reply webhook.ConfigReply
	err   error
}

// errHookRefused is what a user sees when the config webhook fails or asks
// for something out of bounds.
const errHookRefused = "the gate's configuration service did not allow this connection"

// decision asks the config webhook about this connection, once.
func (c *conn) decision() (webhook.ConfigReply, error) {
	c.hook.once.Do(func() {
		_, meta := auth.WebhookAttrs(c.sc.Permissions)
		req := webhook.ConfigRequest{
			Username:              c.sc.User(),
			RemoteAddress:         c.sc.RemoteAddr().String(),
			ConnectionID:          auth.ConnectionID(c.sc.ServerConn),
			ClientVersion:         string(c.sc.ClientVersion()),
			AuthenticatedUsername: c.id.User,
			Method:                c.id.Method,
			Target:                c.route.Target,
			Login:                 c.route.Login,
			Metadata:              map[string]webhook.Entry{},
		}
		for k, v := range meta { // only non-sensitive entries were kept
			req.Metadata[k] = webhook.Entry{Value: v}
		}
		reply, err := c.b.hook.hook.Configure(c.ctx, req)
		if err != nil {
			pe := gate.Errorf(err, errHookRefused)
			c.log.Warn("config webhook failed: connection refused", "ref", pe.Ref, "err", err)
			c.hook.err = pe
			return
		}
		c.hook.reply = reply
		attrs := []any{"target", reply.Target, "login", reply.Login, "override", reply.Docker != nil}
		if d := reply.Docker; d != nil {
			attrs = append(attrs, "image", d.Image, "env_entries", len(d.Env), "mounts", len(d.Mounts))
		}
		c.log.Info("config webhook answered", attrs...)
	})
	return c.hook.reply, c.hook.err
}

// hookRoutes reports whether the config webhook decides where a connection
// without a target goes (it chose a target, or failed and so refuses it).
func (c *conn) hookRoutes() bool {
	if c.b.hook == nil {
		return false
	}
	r, err := c.decision()
	return err != nil || r.Target != ""
}

// permit decides the connection's target: the config webhook's choice when
// it makes one, else the user's grants for the routed target.
func (c *conn) permit() (policy.Permit, error) {
	if c.b.hook == nil {
		return c.grantPermit()
	}
	r, err := c.decision()
	if err != nil {
		return policy.Permit{}, err
	}
	if r.Target == "" {
		return c.grantPermit()
	}
	if !route.ValidName(r.Target) || (r.Login != "" && !route.ValidLogin(r.Login)) {
		return c.refusedLogged(fmt.Errorf("target %q or login %q is invalid", route.Printable(r.Target), route.Printable(r.Login)))
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	targets, err := c.b.store.ListTargets(ctx)
	if err != nil {
		return policy.Permit{}, gate.Errorf(fmt.Errorf("list targets: %w", err), "the gate cannot read its policy")
	}
	i := slices.IndexFunc(targets, func(t gate.Target) bool { return t.Name == r.Target })
	if i < 0 {
		return c.refusedLogged(fmt.Errorf("target %q is not in the store", r.Target))
	}
	t := targets[i]
	login := r.Login
	if login == "" {
		login = t.Login
	}
	return policy.Permit{Target: t, Login: login, Forwarding: r.Forwarding && c.b.hook.allow.Forwarding}, nil
}

// override prepares a permit about to be dialled: a container gets the auth
// webhook's environment (the agent, like sshd, takes few env requests), and
// the config webhook's container settings, within config_webhook.allow.
func (c *conn) override(p policy.Permit) (policy.Permit, error) {
	if env, _ := auth.WebhookAttrs(c.sc.Permissions); len(env) > 0 && p.Target.Kind == gate.KindDocker && p.Target.Docker != nil {
		spec := *p.Target.Docker
		spec.Env = slices.DeleteFunc(slices.Clone(spec.Env), func(e string) bool {
			k, _, _ := strings.Cut(e, "=")
			_, over := env[k]
			return over
		})
		for _, k := range slices.Sorted(maps.Keys(env)) {
			spec.Env = append(spec.Env, k+"="+env[k])
		}
		spec.Pool = 0 // a pool container has none of it
		p.Target.Docker = &spec
	}
	if c.b.hook == nil {
		return p, nil
	}
	r, err := c.decision()
	if err != nil {
		return p, err
	}
	if r.Forwarding && !c.b.hook.allow.Forwarding {
		return c.refused(errors.New("forwarding asked for, and config_webhook.allow.forwarding is off"))
	}
	if r.Docker == nil {
		return p, nil
	}
	if p.Target.Kind != gate.KindDocker || p.Target.Docker == nil {
		return c.refused(fmt.Errorf("docker settings for target %s of kind %s", p.Target.Name, p.Target.Kind))
	}
	spec, err := c.b.hook.allow.Apply(*p.Target.Docker, *r.Docker)
	if err != nil {
		return c.refused(err)
	}
	p.Target.Docker = &spec
	return p, nil
}

// refused answers a config webhook reply this gate will not follow. The
// cause is logged by whoever shows the error (logPublic).
func (c *conn) refused(cause error) (policy.Permit, error) {
	return policy.Permit{}, gate.Errorf(cause, errHookRefused)
}

// sendWebhookEnv passes the auth webhook's environment to a target session.
// It goes after the user's own env requests, so it wins, and it is not
// subject to env_allow: only the webhook sets it.
func (c *conn) sendWebhookEnv(ch ssh.Channel) {
	env, _ := auth.WebhookAttrs(c.sc.Permissions)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, _ = ch.SendRequest("env", false, ssh.Marshal(envReq{Name: k, Value: env[k]}))
	}
}

func (c *conn) refusedLogged(cause error) (policy.Permit, error) {
	p, err := c.refused(cause)
	c.logPublic(err)
	return p, err
}
