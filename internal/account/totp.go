package account

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/sshgate/sshgate/internal/auth/totp"
	"github.com/sshgate/sshgate/internal/gate"
)

// isTOTPEnroll reports whether a gate command is `totp enroll`.
func (c *Conn) isTOTPEnroll(command string) bool {
	f := strings.Fields(command)
	return c.TOTP != nil && len(f) == 2 && f[0] == "totp" && f[1] == "enroll"
}

// totpEnroll shows a new secret (QR code, URI, secret) on the user's
// terminal and activates it once the user types a valid code from it.
func (c *Conn) totpEnroll(ch ssh.Channel, reqs <-chan *ssh.Request, s *Setup) {
	if s.PTY == nil {
		c.fail(ch, s, "totp enroll needs a terminal: ssh -t "+c.Identity.User+"@GATE totp enroll", 2)
		return
	}
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	go discard(reqs)
	ctx := c.Ctx
	user := c.Identity.User
	enrolled, err := c.TOTP.Enrolled(ctx, user)
	if err != nil {
		c.cannotEnrol(ch, s, "read enrolment", err)
		return
	}
	if enrolled {
		c.message(ch, s, "TOTP is already enrolled for "+user+"; an administrator can reset it (sshgate user totp disable "+user+")")
		c.exit(ch, 1)
		return
	}
	secret, uri, err := totp.Generate(user)
	if err != nil {
		c.cannotEnrol(ch, s, "generate", err)
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
				c.Log.Debug("totp enroll: read code", "err", err)
			}
			c.exit(ch, 1)
			return
		}
		ok, err := c.TOTP.Enrol(ctx, user, secret, line)
		if err != nil {
			c.cannotEnrol(ch, s, "store enrolment", err)
			return
		}
		if ok {
			c.Log.Info("totp enrolled (self-service)")
			fmt.Fprintf(out, "Enrolled: from now on the gate asks for a verification code.\n")
			c.exit(ch, 0)
			return
		}
		fmt.Fprintf(out, "That code is not right (check the device's clock).\n")
	}
	c.message(ch, s, "not enrolled")
	c.exit(ch, 1)
}

// cannotEnrol ends an enrolment the gate could not carry out: the cause in
// the log, the user told only a reference to it.
func (c *Conn) cannotEnrol(ch ssh.Channel, s *Setup, step string, err error) {
	ref := gate.NewRef()
	c.Log.Error("totp enroll: "+step, "ref", ref, "err", err)
	c.message(ch, s, fmt.Sprintf("cannot enrol now (ref %s)", ref))
	c.exit(ch, 1)
}

const totpPromptText = "Verification code: "
