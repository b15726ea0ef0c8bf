package xfer

// Transfer names the file-transfer protocol of a session's start request
// for the gate's per-grant controls: "sftp" for the sftp subsystem, "scp"
// for a legacy scp command (scp -O), "rsync" for an rsync server command,
// "" for anything else. FISH is not a transfer here: it is a shell driven
// by scripts on stdin.
//
// An exec line counts as scp or rsync only if the shell that runs it can do
// nothing but start that program: no unquoted metacharacter (`;`, `|`,
// `&`, `$`, a backquote, redirections, globs, ...) and no expansion inside
// double quotes. Anything else is an ordinary command.
func Transfer(start, arg string) string {
	switch start {
	case "subsystem":
		if arg == "sftp" {
			return "sftp"
		}
	case "exec":
		if !plainCommand(arg) {
			return ""
		}
		if NewSCP(arg, nil) != nil {
			return "scp"
		}
		if NewRsync(arg, nil) != nil {
			return "rsync"
		}
	}
	return ""
}

// plainCommand reports whether a POSIX shell runs s as one simple command
// of literal words.
func plainCommand(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(s) && s[j] != '\'' {
				j++
			}
			if j >= len(s) {
				return false
			}
			i = j
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				switch s[j] {
				case '$', '`', '\\', '!':
					return false
				}
				j++
			}
			if j >= len(s) {
				return false
			}
			i = j
		case c == '\\':
			if i+1 >= len(s) || s[i+1] == '\n' {
				return false
			}
			i++
		case c == ' ' || c == '\t':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '/' || c == ':' || c == '=' || c == ',' || c == '+' || c == '@' || c == '%' || c == '-':
		default:
			return false
		}
	}
	return true
}
