package broker

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/account"
	"github.com/sshgate/sshgate/internal/audit"
	"github.com/sshgate/sshgate/internal/audit/xfer"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
)

// applyControls applies the grant's controls (p.Controls, decided by
// policy.GrantControls) to a session's start request. A forced command
// replaces the request, as OpenSSH's ForceCommand does: an exec's command
// line travels in SSH_ORIGINAL_COMMAND, set by the line the login's shell
// runs. Otherwise a request the grant does not allow returns the user's
// line (and is audited); "" lets it go on. A certificate's force-command
// (applied before) wins over the grant's and is never refused here: the
// certificate's issuer chose it.
func (c *conn) applyControls(s *account.Setup, p policy.Permit) string {
	ctl := p.Controls
	if c.dec.HasForce {
		return ""
	}
	arg := ""
	if s.Start.Type == "exec" || s.Start.Type == "subsystem" {
		var v struct{ S string }
		if ssh.Unmarshal(s.Start.Payload, &v) == nil {
			arg = v.S
		}
	}
	if ctl.Command != "" {
		cmd := ctl.Command
		if s.Start.Type == "exec" {
			cmd = "SSH_ORIGINAL_COMMAND=" + shellQuote(arg) + "; export SSH_ORIGINAL_COMMAND; " + cmd
		}
		c.log.Info("the grant's command replaces the session request", "requested", s.Start.Type)
		s.Start.Type = "exec"
		s.Start.Payload = ssh.Marshal(struct{ Command string }{cmd})
		return ""
	}
	what, reason := "", ""
	switch s.Start.Type {
	case "shell":
		if ctl.NoShell {
			what, reason = "a shell", "no_shell"
		}
	case "subsystem":
		if arg == "sftp" && ctl.NoSFTP {
			what, reason = "sftp", "no_sftp"
		}
	case "exec":
		switch xfer.Transfer("exec", arg) {
		case "scp":
			if ctl.NoSCP {
				what, reason = "scp", "no_scp"
			}
		case "rsync":
			if ctl.NoRsync {
				what, reason = "rsync", "no_rsync"
			}
		default:
			if ctl.NoExec {
				what, reason = "commands", "no_exec"
			}
		}
	}
	line := ""
	if what != "" {
		line = fmt.Sprintf("this grant does not allow %s on %s", what, p.Target.Name)
	} else if s.Start.Type == "exec" {
		line, reason = directionRefusal(ctl, arg, p.Target.Name)
	}
	if line == "" {
		return ""
	}
	e := audit.Event{Type: audit.TypeSessionDeny, Target: p.Target.Name, Login: p.Login, Reason: reason, SessionType: s.Start.Type}
	switch s.Start.Type {
	case "exec":
		e.Command = arg
	case "subsystem":
		e.Subsystem = arg
	}
	c.emit(e)
	c.log.Info("session refused by the grant's controls", "target", p.Target.Name, "type", s.Start.Type, "reason", reason)
	return line
}

// directionRefusal applies --upload-only and --download-only to an exec
// the other controls let through: a legacy scp or an rsync server command
// whose direction is forbidden, or cannot be told, and a FISH session
// (lftp, Midnight Commander). FISH is a shell that its client drives with
// scripts: the "#STOR" or "#RETR" line before each script is a comment the
// shell ignores, so the gate cannot hold a FISH session to one direction
// and refuses it whole. It returns the user's line and the audit reason, or
// "" to let the exec go on (SFTP is filtered per request, sftpGuard).
func directionRefusal(ctl gate.Controls, command, target string) (line, reason string) {
	if !ctl.UploadOnly && !ctl.DownloadOnly {
		return "", ""
	}
	only, reason, dir, allowed := "uploads to", "upload_only", "upload", true
	if ctl.DownloadOnly {
		only, reason, dir = "downloads from", "download_only", "download"
	}
	if ctl.UploadOnly && ctl.DownloadOnly {
		return fmt.Sprintf("this grant allows no file transfers on %s", target), "no_transfer"
	}
	switch {
	case xfer.Transfer("exec", command) != "":
		allowed = xfer.Direction(command) == dir
	case xfer.IsFISH(command):
		return fmt.Sprintf("this grant allows only %s %s, which a FISH session cannot be held to", only, target), reason
	}
	if allowed {
		return "", ""
	}
	return fmt.Sprintf("this grant allows only %s %s", only, target), reason
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
