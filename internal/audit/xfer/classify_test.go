package xfer

import "testing"

func TestTransfer(t *testing.T) {
	for _, tt := range []struct {
		start, arg, want string
	}{
		{"subsystem", "sftp", "sftp"},
		{"subsystem", "other", ""},
		{"exec", "scp -t /srv/", "scp"},
		{"exec", "scp -v -d -t -- /srv/", "scp"},
		{"exec", "scp -f 'a file'", "scp"},
		{"exec", `scp -f a\ file`, "scp"},
		{"exec", `scp -f "a file"`, "scp"},
		{"exec", "/usr/bin/scp -r -f /srv", "scp"},
		{"exec", "rsync --server -logDtpre.iLsfxCIvu . /srv/site/", "rsync"},
		{"exec", "rsync --server --sender -logDtpre.iLsfxCIvu . /srv/site/", "rsync"},
		{"exec", "scp -t /x; rm -rf ~", ""},
		{"exec", "scp -t /x && id", ""},
		{"exec", "scp -t $(id)", ""},
		{"exec", "scp -t `id`", ""},
		{"exec", `scp -t "$HOME"`, ""},
		{"exec", "scp -t /x | nc", ""},
		{"exec", "scp -t /x > /etc/passwd", ""},
		{"exec", "scp -t /x\nid", ""},
		{"exec", "scp -t 'unterminated", ""},
		{"exec", "scp -t *", ""},
		{"exec", "rsync --server . /x; id", ""},
		{"exec", "echo FISH:;/bin/sh", ""},
		{"exec", "ls -l", ""},
		{"exec", "scp", ""},
		{"shell", "", ""},
	} {
		if got := Transfer(tt.start, tt.arg); got != tt.want {
			t.Errorf("Transfer(%q, %q) = %q, want %q", tt.start, tt.arg, got, tt.want)
		}
	}
}

// FuzzTransfer: a line called a transfer never holds an unquoted shell
// metacharacter (checked the slow way) and nothing panics.
func FuzzTransfer(f *testing.F) {
	for _, s := range []string{"scp -t /srv/", "scp -f 'a;b'", "rsync --server . x", `scp -t "a b"`, "scp -t x;id"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Transfer("exec", s) == "" {
			return
		}
		quote := byte(0)
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '\\':
				i++
			case c == '\'' || c == '"':
				quote = c
			default:
				for _, m := range []byte(";&|<>$`()*?[]{}~!#\n\r") {
					if c == m {
						t.Fatalf("%q is a transfer with an unquoted %q", s, c)
					}
				}
			}
		}
	})
}
