package account

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
)

// accountUsage lists the gate's own commands (a session with no target and
// no PTY, or USER+gate).
const accountUsage = `usage: ssh USER@GATE COMMAND (USER+gate@GATE when you have a default target)
  ls [--json]       the targets you may reach, with the strings to connect
  config            an ssh_config block for them (use with ssh -F)
  config known-hosts the known_hosts line for ssh -J USER@GATE LOGIN@TARGET
  whoami            who the gate thinks you are
  keys ls           your public keys
  keys add          add the public key read from stdin
  keys rm SHA256:.. remove one of your keys
  totp enroll       set up a TOTP second factor (needs a terminal: ssh -t)
  cert              after a single sign-on: a short-lived certificate for this session's key
  watch ID          watch a live session, read only (ssh -t; q or Ctrl-C leaves; needs a grant with --watch)
  help              this text
connect to a target as USER+TARGET[+LOGIN]@GATE or NODEID-UID@GATE`

// reported is a usage error (exit 2) whose one line was already written.
const reported = -2

// maxKeyInput bounds what `keys add` reads from stdin.
const maxKeyInput = 16 << 10

// accountCommand runs the account commands (whoami, keys, help). ok is false for anything it does not know.
func (c *Conn) accountCommand(stdin io.Reader, out, errOut io.Writer, args []string) (status int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(c.Ctx, 10*time.Second)
	defer cancel()
	switch {
	case args[0] == "help" && len(args) == 1:
		fmt.Fprintln(out, accountUsage)
		return 0, true
	case args[0] == "whoami" && len(args) == 1:
		fmt.Fprintf(out, "user    %s\n", c.Identity.User)
		if snap, err := c.snapshot(); err == nil {
			fmt.Fprintf(out, "uid     %d\n", snap.User.UID)
			def := snap.User.DefaultTarget
			if def == "" {
				def = "-"
			}
			fmt.Fprintf(out, "default %s\n", def)
		}
		fmt.Fprintf(out, "method  %s\n", c.Identity.Method)
		if c.Identity.Fingerprint != "" {
			fmt.Fprintf(out, "key     %s\n", c.Identity.Fingerprint)
		}
		return 0, true
	case args[0] == "cert" && len(args) == 1:
		return c.certCommand(ctx, out, errOut), true
	case args[0] == "keys":
		return c.keysCommand(ctx, c.Store, stdin, out, errOut, args[1:]), true
	}
	return 0, false
}

func (c *Conn) keysCommand(ctx context.Context, ms Store, stdin io.Reader, out, errOut io.Writer, args []string) int {
	say := func(format string, a ...any) { fmt.Fprintf(errOut, "sshgate: "+format+"\n", a...) }
	switch {
	case len(args) == 1 && (args[0] == "ls" || args[0] == "list"):
		keys, err := ms.ListKeys(ctx, c.Identity.User)
		if err != nil {
			c.Log.Error("list keys", "err", err)
			return 3
		}
		for _, k := range keys {
			typ, _, _ := strings.Cut(k.AuthorizedKey, " ")
			mark := ""
			if k.Fingerprint == c.Identity.Fingerprint {
				mark = " (this session)"
			}
			comment := k.Comment
			if comment == "" {
				comment = "-"
			}
			fmt.Fprintf(out, "%s %s %s%s\n", k.Fingerprint, typ, comment, mark)
		}
		return 0
	case len(args) == 1 && args[0] == "add":
		data, err := io.ReadAll(io.LimitReader(stdin, maxKeyInput+1))
		if err != nil {
			say("could not read the key from stdin")
			return 1
		}
		if len(data) > maxKeyInput {
			say("the key on stdin is too long")
			return reported
		}
		line := strings.TrimSpace(string(data))
		if strings.HasPrefix(line, "-----BEGIN") {
			say("this is a private key; send the public key (the .pub file)")
			return reported
		}
		if strings.Contains(line, "\n") {
			say("send one public key")
			return reported
		}
		k, comment, err := sshkeys.ParseAuthorizedKey(line)
		if err != nil {
			// sshkeys' own messages (weak, certificate, options) are chosen
			// text; a parse failure carries x/crypto's words: not shown.
			msg := err.Error()
			if strings.HasPrefix(msg, "not an SSH public key") {
				msg = "not an SSH public key"
			}
			say("invalid key: %s", msg)
			return reported
		}
		fp := sshkeys.Fingerprint(k)
		err = ms.AddKey(ctx, gate.Key{User: c.Identity.User, Fingerprint: fp, AuthorizedKey: sshkeys.AuthorizedLine(k), Comment: comment})
		if errors.Is(err, store.ErrExists) {
			say("key %s is already one of your keys", fp)
			return 1
		}
		if err != nil {
			c.Log.Error("add key", "err", err)
			return 3
		}
		c.Log.Info("user added a key", "fingerprint", fp)
		fmt.Fprintf(out, "added key %s %s\n", fp, k.Type())
		return 0
	case len(args) == 2 && (args[0] == "rm" || args[0] == "remove"):
		fp := args[1]
		keys, err := ms.ListKeys(ctx, c.Identity.User)
		if err != nil {
			c.Log.Error("list keys", "err", err)
			return 3
		}
		found := false
		for _, k := range keys {
			found = found || k.Fingerprint == fp
		}
		if !found {
			say("%s is not one of your keys", strconv.Quote(route.Printable(fp)))
			return 1
		}
		if len(keys) == 1 {
			if u, err := ms.GetUser(ctx, c.Identity.User); err != nil || u.PasswordHash == "" {
				say("refusing to remove your last key: you could not log in again")
				return 1
			}
		}
		if err := ms.RemoveKey(ctx, c.Identity.User, fp); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				say("%s is not one of your keys", strconv.Quote(route.Printable(fp)))
				return 1
			}
			c.Log.Error("remove key", "err", err)
			return 3
		}
		c.Log.Info("user removed a key", "fingerprint", fp)
		fmt.Fprintf(out, "removed key %s\n", fp)
		return 0
	}
	return 2
}

// decorate adds ids, aliases, primary markers and groups to `ls` entries.
func (c *Conn) decorate(snap policy.Snapshot, views []targetView) {
	ctx, cancel := context.WithTimeout(c.Ctx, 10*time.Second)
	defer cancel()
	groups, err := c.Store.EnvGroups(ctx)
	if err != nil {
		c.Log.Warn("list env groups", "err", err)
	}
	byName := map[string]gate.TargetInfo{}
	for _, ti := range snap.Infos {
		byName[ti.Target] = ti
	}
	for i := range views {
		ti := byName[views[i].Name]
		views[i].ID, views[i].Aliases, views[i].Primary = ti.ID, ti.Aliases, ti.Primary
		views[i].Group = groups[views[i].Env]
		if ti.ID != 0 && snap.User.UID != 0 {
			views[i].Platform = fmt.Sprintf("%d-%d", ti.ID, snap.User.UID)
		}
	}
}

// stdinOf is a gate command's stdin. On a PTY the client sends keystrokes,
// never EOF: there the input ends at the first Enter or Ctrl-D.
func stdinOf(ch io.Reader, s *Setup) io.Reader {
	if s.PTY == nil {
		return ch
	}
	return &lineReader{r: ch}
}

type lineReader struct {
	r    io.Reader
	done bool
}

func (l *lineReader) Read(b []byte) (int, error) {
	if l.done {
		return 0, io.EOF
	}
	n, err := l.r.Read(b)
	for i := 0; i < n; i++ {
		if b[i] == '\r' || b[i] == '\n' || b[i] == 0x04 {
			l.done = true
			return i, nil
		}
	}
	return n, err
}
