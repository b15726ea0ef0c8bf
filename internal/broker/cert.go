package broker

import (
	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
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
