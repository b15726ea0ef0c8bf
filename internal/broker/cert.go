package broker

import (
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/policy"
)

// forceCommand applies the force-command of the user's certificate: every
// session runs that command instead of what it asked for (a shell, a
// command, a subsystem such as sftp). On a target it is run there, as an
// exec; with no target it is read as one of the gate's own commands. The
// command is not logged (exec lines are audit material, not log lines).
func (c *conn) forceCommand(s *setup) {
	cmd, ok := auth.ForceCommand(c.sc.ServerConn)
	if !ok {
		return
	}
	c.log.Info("certificate force-command replaces the session request", "requested", s.start.Type)
	s.start.Type = "exec"
	s.start.Payload = ssh.Marshal(struct{ Command string }{cmd})
}

// certPTY says whether the user's certificate (if any) permits a PTY.
func (c *conn) certPTY() bool {
	pty, _ := auth.CertAllows(c.sc.ServerConn)
	return pty
}

// certForwarding narrows a permit by the user's certificate: without
// permit-port-forwarding no forwarding, whatever the grant says.
func (c *conn) certForwarding(p policy.Permit) policy.Permit {
	if _, fwd := auth.CertAllows(c.sc.ServerConn); !fwd {
		p.Forwarding = false
	}
	return p
}
