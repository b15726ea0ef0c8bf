package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
)

// Snapshot is what one decision reads of the store: read once per
// connection (and once more for each choice made in the account menu).
type Snapshot struct {
	Targets []gate.Target
	Infos   []gate.TargetInfo // ids and aliases, for NODEID-UID and alias routing
	Grants  []gate.Grant      // the user's
	User    gate.UserInfo     // the user's default target
	// TOTP is on when the second factor is configured: every target the
	// decision permits is then checked against its mode.
	TOTP bool
	// Modes holds the effective TOTP mode of the candidate target (see
	// Candidate) by name; a target missing here counts as "always".
	Modes map[string]string
	// Sessions are the gate's default time limits for grants that set none.
	Sessions Sessions
}

// Reachable is what the user may reach: the one answer behind `ls`,
// `config`, the menu, the default target and every decision.
func (s Snapshot) Reachable() []Access { return Accessible(s.Targets, s.Grants) }

// Hook is the config webhook's answer for the connection, when a config
// webhook is configured (nil otherwise).
type Hook struct {
	Err        error  // the webhook failed or refused: no target for this connection
	Target     string // the webhook's choice of target ("" leaves routing to the grants)
	Login      string
	Forwarding bool // asked for
	// AllowForwarding is config_webhook.allow.forwarding.
	AllowForwarding bool
	// Docker applies the webhook's container settings to a docker target's
	// spec within config_webhook.allow; nil when it asked for none.
	Docker func(gate.DockerSpec) (gate.DockerSpec, error)
}

// Decision is everything the broker does with a connection (or with one
// menu choice), decided once. Exactly one of Gate, Err and a Permit holds.
type Decision struct {
	Gate   bool              // no target: the gate's own commands, or the menu on a PTY
	Err    *gate.PublicError // refused: every session gets this line, every forward is rejected
	Permit Permit            // the target (its spec as it will be started), login and forwarding

	PTY          bool              // a PTY may be granted (a certificate without permit-pty forbids it)
	ForceCommand string            // the certificate's force-command replaces what sessions ask for
	HasForce     bool              //
	Env          map[string]string // the auth webhook's environment for every target session
}

// ErrHookRefused is what a user sees when the config webhook fails or asks
// for something out of bounds.
const ErrHookRefused = "the gate's configuration service did not allow this connection"

// ErrPolicy is what a user sees when the gate cannot read its policy.
const ErrPolicy = "the gate cannot read its policy"

// NotPermitted is the answer, identical for unknown and ungranted targets.
func NotPermitted(name string) *gate.PublicError {
	return &gate.PublicError{Public: fmt.Sprintf("target %q not found or not permitted", name)}
}

// Decide is the one access decision of a connection: where route r leads
// (a target by name, alias or NODEID, the user's default target, or the gate
// itself), whether the user's grants (or the config webhook) allow it, as
// which login, with what forwarding and session controls (GrantControls;
// a config webhook's target gets the gate's defaults only), narrowed by the login's certificate,
// checked against the target's TOTP mode and the way the login met it, and
// the target's container spec as the webhooks set it. It is pure.
//
// r is the session's own route, or a target chosen in the account menu
// (Route{Target: name}).
func Decide(snap Snapshot, s *gate.Session, r gate.Route, badTarget bool, hook *Hook) Decision {
	d := Decision{PTY: true}
	if s.Cert != nil {
		d.PTY, d.ForceCommand, d.HasForce = s.Cert.PTY, s.Cert.ForceCommand, s.Cert.HasForce
	}
	if s.Webhook != nil && len(s.Webhook.Env) > 0 {
		d.Env = maps.Clone(s.Webhook.Env)
	}
	p, err := decidePermit(snap, s, r, badTarget, hook)
	switch {
	case err != nil:
		d.Err = err
	case p == nil:
		d.Gate = true
	default:
		d.Permit = *p
	}
	return d
}

// decidePermit returns the permit, nil for the gate itself, or the refusal.
func decidePermit(snap Snapshot, s *gate.Session, r gate.Route, badTarget bool, hook *Hook) (*Permit, *gate.PublicError) {
	if hook != nil && hook.Err != nil {
		return nil, &gate.PublicError{Public: ErrHookRefused, Ref: gate.NewRef(), Cause: hook.Err}
	}
	var p Permit
	switch {
	case hook != nil && hook.Target != "":
		var err *gate.PublicError
		if p, err = hookPermit(snap, hook); err != nil {
			return nil, err
		}
	case badTarget:
		return nil, NotPermitted(r.Raw)
	default:
		name, isGate := resolve(snap, r)
		if isGate {
			return nil, nil
		}
		var ok bool
		if p, ok = Permitted(snap.Reachable(), name, r.Login); !ok || name == "" {
			if r.Raw == "" && r.Target == "" { // the user's default target
				return nil, NotPermitted(name)
			}
			shown := r.Raw
			if shown == "" {
				shown = r.Target
			}
			return nil, NotPermitted(shown)
		}
		p.Controls = GrantControls(snap.Grants, p.Target, p.Login, snap.Sessions)
	}
	if s.Cert != nil && s.Cert.HasForce {
		p.Controls.Command = "" // the certificate's force-command wins (Decision.ForceCommand)
	}
	if s.Cert != nil && !s.Cert.Forwarding {
		p.Forwarding = false
	}
	if !p.Forwarding {
		p.Reach = Reach{}
	}
	if s.Cert != nil && !s.Cert.Agent {
		p.Controls.AgentForwarding = false
	}
	if err := secondFactor(snap, s, p.Target); err != nil {
		return nil, err
	}
	if err := containerSpec(s, hook, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Candidate is the target a decision for r would consider ("" for none):
// the config webhook's choice, else the target r resolves to. The caller
// reads that target's TOTP mode into the snapshot before deciding.
func Candidate(snap Snapshot, r gate.Route, badTarget bool, hook *Hook) string {
	if hook != nil && hook.Err == nil && hook.Target != "" {
		return hook.Target
	}
	if badTarget {
		return ""
	}
	name, _ := resolve(snap, r)
	return name
}

// resolve turns a route into a canonical target name: NODEID-UID by the
// target's id, USER+NAME by name then alias, USER alone by the user's
// default target (none: the gate), USER+gate never. Unknown ids and names
// resolve to "", which the grants then refuse like an ungranted target.
func resolve(snap Snapshot, r gate.Route) (name string, isGate bool) {
	switch {
	case r.Gate:
		return "", true
	case r.Target == "" && !r.Platform():
		return snap.User.DefaultTarget, snap.User.DefaultTarget == ""
	}
	return ResolveName(snap.Infos, r.Target, r.Node), false
}

// hookPermit is the config webhook's choice of target: it is the authority
// for the connection, so grants are not consulted, but the target must
// exist and the names must be valid.
func hookPermit(snap Snapshot, hook *Hook) (Permit, *gate.PublicError) {
	refuse := func(cause error) (Permit, *gate.PublicError) {
		return Permit{}, &gate.PublicError{Public: ErrHookRefused, Ref: gate.NewRef(), Cause: cause}
	}
	if !route.ValidName(hook.Target) || (hook.Login != "" && !route.ValidLogin(hook.Login)) {
		return refuse(fmt.Errorf("target %q or login %q is invalid", route.Printable(hook.Target), route.Printable(hook.Login)))
	}
	i := slices.IndexFunc(snap.Targets, func(t gate.Target) bool { return t.Name == hook.Target })
	if i < 0 {
		return refuse(fmt.Errorf("target %q is not in the store", hook.Target))
	}
	t := snap.Targets[i]
	login := hook.Login
	if login == "" {
		login = t.Login
	}
	fwd := hook.Forwarding && hook.AllowForwarding
	return Permit{Target: t, Login: login, Forwarding: fwd, Reach: Reach{AnyTCP: fwd},
		Controls: gate.Controls{MaxSession: snap.Sessions.MaxSession, IdleTimeout: snap.Sessions.IdleTimeout}}, nil
}

// secondFactor refuses a target whose TOTP mode the way this login was
// proven does not satisfy (TOTPSatisfied): no code where one is required, a
// grace-window login for an always target.
func secondFactor(snap Snapshot, s *gate.Session, t gate.Target) *gate.PublicError {
	if !snap.TOTP {
		return nil
	}
	mode, ok := snap.Modes[t.Name]
	if !ok {
		mode = gate.TOTPAlways // fail closed
	}
	if s.TOTP.Recorded && TOTPSatisfied(mode, s.TOTP.Proof) {
		return nil
	}
	return &gate.PublicError{
		Public: fmt.Sprintf("target %q requires a verification code: reconnect as %s+%s", t.Name, s.Identity.User, t.Name),
		Cause: fmt.Errorf("second factor not satisfied: target mode %q, proof %q (decided at login: mode %q for target %q)",
			mode, s.TOTP.Proof, s.TOTP.Mode, s.TOTP.Target),
	}
}

// containerSpec prepares a docker target's spec: the auth webhook's
// environment (the agent, like sshd, takes few env requests), then the
// config webhook's container settings within config_webhook.allow.
func containerSpec(s *gate.Session, hook *Hook, p *Permit) *gate.PublicError {
	refuse := func(cause error) *gate.PublicError {
		return &gate.PublicError{Public: ErrHookRefused, Ref: gate.NewRef(), Cause: cause}
	}
	if s.Webhook != nil && len(s.Webhook.Env) > 0 && p.Target.Kind == gate.KindDocker && p.Target.Docker != nil {
		env := s.Webhook.Env
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
	if hook == nil {
		return nil
	}
	if hook.Forwarding && !hook.AllowForwarding {
		return refuse(errors.New("forwarding asked for, and config_webhook.allow.forwarding is off"))
	}
	if hook.Docker == nil {
		return nil
	}
	if p.Target.Kind != gate.KindDocker || p.Target.Docker == nil {
		return refuse(fmt.Errorf("docker settings for target %s of kind %s", p.Target.Name, p.Target.Kind))
	}
	spec, err := hook.Docker(*p.Target.Docker)
	if err != nil {
		return refuse(err)
	}
	p.Target.Docker = &spec
	return nil
}
