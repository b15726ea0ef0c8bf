package broker

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/auth/totp"
)

// The second factor for the target actually opened. Auth decides the TOTP
// mode for the target the username leads to, but a connection can open
// another one (the account menu), and a target's mode can change after
// login: every target opened is checked against how the login was proven.

// TOTPModes answers a target's effective TOTP mode (auth.SecondFactor).
type TOTPModes interface {
	TargetMode(ctx context.Context, t gate.Target) string
}

// SetTOTPModes makes every target opened check the connection's second
// factor against the target's mode.
func (b *Broker) SetTOTPModes(m TOTPModes) { b.modes = m }

// secondFactorAllows refuses a target whose TOTP mode the way this
// connection logged in does not satisfy (policy.TOTPSatisfied): no code
// where one is required, a grace-window login for an always target.
func (c *conn) secondFactorAllows(p policy.Permit) error {
	if c.b.modes == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	mode := c.b.modes.TargetMode(ctx, p.Target)
	proof, loginMode, loginTarget, ok := auth.TOTPProof(c.sc.Permissions)
	if ok && policy.TOTPSatisfied(mode, proof) {
		return nil
	}
	name := p.Target.Name
	c.log.Warn("target refused: second factor not satisfied", "target", name, "target_mode", mode,
		"proof", proof, "login_mode", loginMode, "login_target", loginTarget)
	return &gate.PublicError{Public: fmt.Sprintf("target %q requires a verification code: reconnect as %s+%s", name, c.id.User, name)}
}

// Self-service TOTP enrolment, `ssh -t USER@GATE totp enroll` (issue 6 part A).

// TOTPEnroller stores enrolments (auth.SecondFactor).
type TOTPEnroller interface {
	Enrolled(ctx context.Context, user string) (bool, error)
	// Enrol activates secret for user if code is valid for it; ok is false
	// for a wrong code.
	Enrol(ctx context.Context, user, secret, code string) (ok bool, err error)
}

// SetTOTPEnroller enables `totp enroll` in the gate's own commands.
func (b *Broker) SetTOTPEnroller(e TOTPEnroller) { b.totp = e }

// isTOTPEnroll reports whether a gate command is `totp enroll`.
func (c *conn) isTOTPEnroll(command string) bool {
	f := strings.Fields(command)
	return c.b.totp != nil && len(f) == 2 && f[0] == "totp" && f[1] == "enroll"
}

// totpEnroll shows a new secret (QR code, URI, secret) on the user's
// terminal and activates it once the user types a valid code from it.
func (c *conn) totpEnroll(ch ssh.Channel, reqs <-chan *ssh.Request, s *setup) {
	if s.pty == nil {
		c.fail(ch, s, &gate.PublicError{Public: "totp enroll needs a terminal: ssh -t " + c.id.User + "@GATE totp enroll"}, 2)
		return
	}
	if s.start.WantReply {
		_ = s.start.Reply(true, nil)
	}
	go discard(reqs)
	ctx := c.ctx
	user := c.id.User
	enrolled, err := c.b.totp.Enrolled(ctx, user)
	if err != nil {
		ref := gate.NewRef()
		c.log.Error("totp enroll: read enrolment", "ref", ref, "err", err)
		c.message(ch, s, fmt.Sprintf("cannot enrol now (ref %s)", ref))
		c.exit(ch, 1)
		return
	}
	if enrolled {
		c.message(ch, s, "TOTP is already enrolled for "+user+"; an administrator can reset it (sshgate user totp disable "+user+")")
		c.exit(ch, 1)
		return
	}
	secret, uri, err := totp.Generate(user)
	if err != nil {
		c.log.Error("totp enroll: generate", "err", err)
		c.message(ch, s, "cannot enrol now")
		c.exit(ch, 1)
		return
	}
	out := crlfWriter{ch}
	fmt.Fprintf(out, "Scan this with an authenticator app, or type the secret into it.\n\n")
	_ = totp.WriteQR(ch, uri, "\r\n")
	fmt.Fprintf(out, "\n%s\n\nsecret: %s\n\n", uri, secret)
	t := term.NewTerminal(ch, totpPromptText)
	for attempt := 0; attempt < 3; attempt++ {
		line, err := t.ReadLine()
		if err != nil {
			if err != io.EOF {
				c.log.Debug("totp enroll: read code", "err", err)
			}
			c.exit(ch, 1)
			return
		}
		ok, err := c.b.totp.Enrol(ctx, user, secret, line)
		if err != nil {
			ref := gate.NewRef()
			c.log.Error("totp enroll: store enrolment", "ref", ref, "err", err)
			c.message(ch, s, fmt.Sprintf("cannot enrol now (ref %s)", ref))
			c.exit(ch, 1)
			return
		}
		if ok {
			c.log.Info("totp enrolled (self-service)")
			fmt.Fprintf(out, "Enrolled: from now on the gate asks for a verification code.\n")
			c.exit(ch, 0)
			return
		}
		fmt.Fprintf(out, "That code is not right (check the device's clock).\n")
	}
	c.message(ch, s, "not enrolled")
	c.exit(ch, 1)
}

const totpPromptText = "Verification code: "
