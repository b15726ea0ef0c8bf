package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/app"
	"github.com/sshgate/sshgate/internal/auth/passwd"
	"github.com/sshgate/sshgate/internal/datadir"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/sshkeys"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/sqlite"
)

// runCLI runs the command line in-process against data dir.
func runCLI(t *testing.T, data, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if data != "" {
		args = append([]string{"--data", data}, args...)
	}
	code = Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// newKey makes an ed25519 public key line with a comment.
func newKey(t *testing.T, comment string) (line, fp string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line = sshkeys.AuthorizedLine(k)
	if comment != "" {
		line += " " + comment
	}
	return line, ssh.FingerprintSHA256(k)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type step struct {
	name   string
	args   []string
	stdin  string
	code   int
	out    string   // exact stdout when set
	outHas []string // substrings of stdout
	errHas []string // substrings of stderr
}

func runSteps(t *testing.T, data string, steps []step) {
	t.Helper()
	for _, s := range steps {
		code, out, errOut := runCLI(t, data, s.stdin, s.args...)
		where := s.name
		if where == "" {
			where = strings.Join(s.args, " ")
		}
		if code != s.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", where, code, s.code, out, errOut)
			continue
		}
		if s.out != "" && out != s.out {
			t.Errorf("%s: stdout\n%s\nwant\n%s", where, out, s.out)
		}
		for _, w := range s.outHas {
			if !strings.Contains(out, w) {
				t.Errorf("%s: stdout %q lacks %q", where, out, w)
			}
		}
		for _, w := range s.errHas {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q lacks %q", where, errOut, w)
			}
		}
		switch {
		case s.code == 0 && errOut != "":
			t.Errorf("%s: success wrote to stderr: %q", where, errOut)
		case s.code != 0:
			if !strings.HasPrefix(errOut, "sshgate: ") {
				t.Errorf("%s: stderr %q does not start with \"sshgate: \"", where, errOut)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, ".go:") {
				t.Errorf("%s: stderr looks like a stack: %q", where, errOut)
			}
			lines := strings.Count(errOut, "\n")
			if s.code == ExitUsage && (lines != 2 || !strings.Contains(errOut, "--help' for usage.")) {
				t.Errorf("%s: usage error should be one line and a hint, got %q", where, errOut)
			}
			if s.code == ExitFail && lines != 1 && !strings.Contains(where, "multi") {
				t.Errorf("%s: failure should be one line, got %q", where, errOut)
			}
		}
	}
}

func TestUsersAndKeys(t *testing.T) {
	data := t.TempDir()
	files := t.TempDir()
	k1, fp1 := newKey(t, "alice@laptop")
	k2, fp2 := newKey(t, "")
	k3, fp3 := newKey(t, "ci key")
	multi := writeFile(t, files, "keys.pub", "# alice's keys\n\n"+k1+"\n   \n"+k2+"\n")
	bad := writeFile(t, files, "bad.pub", k3+"\nssh-ed25519 not-base64 x\n")
	empty := writeFile(t, files, "empty.pub", "# nothing\n\n")
	opts := writeFile(t, files, "opts.pub", `from="10.0.0.1" `+k3+"\n")
	long := strings.Repeat("a", 64)

	runSteps(t, data, []step{
		{args: []string{"user", "list"}, out: "NAME  PASSWORD  KEYS\n"},
		{args: []string{"user", "add", "alice"}, out: "added user alice\n"},
		{args: []string{"user", "add", "bob", "--password-stdin"}, stdin: "hunter22\n", out: "added user bob\n"},
		{args: []string{"user", "add", "carol.x_y-z", "--password-stdin"}, stdin: "no newline", out: "added user carol.x_y-z\n"},
		{args: []string{"user", "add", "alice"}, code: 1, errHas: []string{`sshgate: user "alice" already exists`}},
		{args: []string{"user", "list"}, out: "" +
			"NAME         PASSWORD  KEYS\n" +
			"alice        no        0\n" +
			"bob          yes       0\n" +
			"carol.x_y-z  yes       0\n"},

		// Bad arguments: exit 2, naming the value.
		{args: []string{"user", "add", "Bad Name"}, code: 2, errHas: []string{`sshgate: invalid user name "Bad Name": use lowercase letters, digits, '.', '_' and '-'`}},
		{args: []string{"user", "add", ".alice"}, code: 2, errHas: []string{`invalid user name ".alice": must start with a lowercase letter or digit`}},
		{args: []string{"user", "add", long}, code: 2, errHas: []string{`invalid user name "` + long + `": at most 63 characters`}},
		{args: []string{"user", "add", "bob@x"}, code: 2, errHas: []string{`invalid user name "bob@x"`}},
		{args: []string{"user", "add", "list"}, code: 2, errHas: []string{`invalid user name "list": reserved`}},
		{args: []string{"user", "add", "revoke"}, code: 2, errHas: []string{`invalid user name "revoke": reserved`}},
		{args: []string{"user", "list", "--data", data}, outHas: []string{"alice"}},
		{args: []string{"user", "add", ""}, code: 2, errHas: []string{`invalid user name "": empty`}},
		{args: []string{"user", "add"}, code: 2, errHas: []string{"user add: missing NAME", "Run 'sshgate user add --help' for usage."}},
		{args: []string{"user", "add", "a", "b"}, code: 2, errHas: []string{`user add: unexpected argument "b"`}},
		{args: []string{"user", "add", "eve", "--nope"}, code: 2, errHas: []string{"unknown flag: --nope"}},
		{args: []string{"user", "add", "eve", "--password-stdin"}, stdin: "", code: 2, errHas: []string{"empty password"}},
		{args: []string{"user", "add", "eve", "--password-stdin"}, stdin: "\n", code: 2, errHas: []string{"empty password"}},
		{args: []string{"user", "frob"}, code: 2, errHas: []string{`unknown command "frob" for "sshgate user"`, "Run 'sshgate user --help'"}},
		{args: []string{"user"}, code: 2, errHas: []string{"user: missing command"}},
		{args: []string{"user", "remove", "Nope!"}, code: 2, errHas: []string{`invalid user name "Nope!"`}},
		{args: []string{"user", "passwd", "alice"}, code: 2, errHas: []string{"give exactly one of --password-stdin and --clear"}},
		{args: []string{"user", "passwd", "alice", "--clear", "--password-stdin"}, stdin: "x\n", code: 2, errHas: []string{"exactly one"}},
		{args: []string{"user", "passwd", "alice", "--password-stdin"}, stdin: "\r\n", code: 2, errHas: []string{"empty password"}},

		// Not found.
		{args: []string{"user", "remove", "nobody"}, code: 1, errHas: []string{`sshgate: user "nobody" not found`}},
		{args: []string{"user", "passwd", "nobody", "--clear"}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"user", "passwd", "nobody", "--password-stdin"}, stdin: "password\n", code: 1, errHas: []string{`user "nobody" not found`}},

		// Passwords.
		{args: []string{"user", "passwd", "alice", "--password-stdin"}, stdin: "s3cret-pw\r\n", out: "set the password of alice\n"},
		{args: []string{"user", "passwd", "bob", "--clear"}, out: "removed the password of bob\n"},

		// Keys.
		{args: []string{"key", "add", "alice", multi}, out: "" +
			"added key " + fp1 + " ssh-ed25519 alice@laptop\n" +
			"added key " + fp2 + " ssh-ed25519 -\n"},
		{args: []string{"key", "add", "bob", "-"}, stdin: k3 + "\n", out: "added key " + fp3 + " ssh-ed25519 ci key\n"},
		{name: "key add multi: one exists", args: []string{"key", "add", "bob", "-"}, stdin: k1 + "\n" + k3 + "\n", code: 1,
			out:    "added key " + fp1 + " ssh-ed25519 alice@laptop\n",
			errHas: []string{"stdin line 2: key " + fp3 + " is already a key of bob", "some keys were not added"}},
		{args: []string{"key", "add", "alice", bad}, code: 2, errHas: []string{bad + " line 2: not an SSH public key"}},
		{args: []string{"key", "add", "alice", opts}, code: 2, errHas: []string{opts + " line 1: authorized_keys options are not supported"}},
		{args: []string{"key", "add", "alice", "-"}, stdin: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", code: 2, errHas: []string{"stdin line 1: this is a private key; give the public key (the .pub file)"}},
		{args: []string{"key", "add", "alice", empty}, code: 2, errHas: []string{empty + ": no keys found"}},
		{args: []string{"key", "add", "alice", "-"}, stdin: "garbage\n", code: 2, errHas: []string{"stdin line 1: not an SSH public key"}},
		{args: []string{"key", "add", "alice", filepath.Join(files, "missing.pub")}, code: 1, errHas: []string{`key file "` + filepath.Join(files, "missing.pub") + `": no such file or directory`}},
		{args: []string{"key", "add", "alice"}, code: 2, errHas: []string{"key add: missing FILE"}},
		{args: []string{"key", "add", "Alice", multi}, code: 2, errHas: []string{`invalid user name "Alice"`}},
		{args: []string{"key", "add", "nobody", multi}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"key", "list", "alice"}, out: "" +
			"FINGERPRINT" + strings.Repeat(" ", len(fp1)-len("FINGERPRINT")) + "  TYPE         COMMENT\n" +
			fp1 + "  ssh-ed25519  alice@laptop\n" +
			fp2 + "  ssh-ed25519  -\n"},
		{args: []string{"key", "list", "nobody"}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"key", "remove", "alice", "SHA256:nope"}, code: 2, errHas: []string{`invalid fingerprint "SHA256:nope"`}},
		{args: []string{"key", "remove", "alice", fp3}, code: 1, errHas: []string{"key " + fp3 + ` of user "alice" not found`}},
		{args: []string{"key", "remove", "alice", fp1}, out: "removed key " + fp1 + " of alice\n"},
		{args: []string{"user", "list"}, out: "" +
			"NAME         PASSWORD  KEYS\n" +
			"alice        yes       1\n" +
			"bob          no        2\n" +
			"carol.x_y-z  yes       0\n"},
		{args: []string{"user", "remove", "bob"}, out: "removed user bob\n"},
		{args: []string{"key", "list", "bob"}, code: 1, errHas: []string{`user "bob" not found`}},
	})

	// The stored hashes verify.
	st, err := sqlite.Open(filepath.Join(data, "sshgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for name, pw := range map[string]string{"alice": "s3cret-pw", "carol.x_y-z": "no newline"} {
		u, err := st.GetUser(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !passwd.Verify(u.PasswordHash, []byte(pw)) {
			t.Errorf("password of %s does not verify against %q", name, pw)
		}
	}
}

func TestEnvsTargetsGrants(t *testing.T) {
	data := t.TempDir()
	files := t.TempDir()
	hk, hkfp := newKey(t, "root@web-1")
	hostPub := writeFile(t, files, "ssh_host_ed25519_key.pub", hk+"\n")
	// known_hosts style, as ssh-keyscan prints it.
	kh2, kh2fp := newKey(t, "")
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := ssh.NewPublicKey(ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	// Several keys, as ssh-keyscan prints them: ed25519 is chosen.
	known := writeFile(t, files, "known_hosts", "# scanned\n[10.0.0.2]:22 "+sshkeys.AuthorizedLine(ecPub)+"\n[10.0.0.2]:22 "+kh2+"\n")
	badHost := writeFile(t, files, "bad_host.pub", "not a key\n")
	mk := func(args ...string) []string { return append([]string{"target", "add"}, args...) }
	up := func(name string, extra ...string) []string {
		return mk(append([]string{name, "--env", "prod", "--upstream", "10.0.0.1:22", "--login", "root", "--host-key", hostPub}, extra...)...)
	}
	dk := func(name string, extra ...string) []string {
		return mk(append([]string{name, "--env", "prod", "--docker", "alpine:3.20", "--skip-image-check"}, extra...)...)
	}
	runSteps(t, data, []step{
		{args: []string{"env", "list"}, out: "NAME  TARGETS\n"},
		{args: []string{"env", "add", "prod"}, out: "added env prod\n"},
		{args: []string{"env", "add", "dev"}, out: "added env dev\n"},
		{args: []string{"env", "add", "prod"}, code: 1, errHas: []string{`env "prod" already exists`}},
		{args: []string{"env", "add", "Prod"}, code: 2, errHas: []string{`invalid env name "Prod"`}},
		{args: []string{"env", "remove", "qa"}, code: 1, errHas: []string{`env "qa" not found`}},
		{args: []string{"env", "remove", "dev"}, out: "removed env dev\n"},

		{args: up("web-1"), out: "pinned host key for web-1: ssh-ed25519 " + hkfp + "\nadded target web-1 (upstream) in env prod\n"},
		{args: mk("db-1", "--env", "prod", "--upstream", "[::1]:2200", "--login", "postgres", "--host-key", known),
			out: "pinned host key for db-1: ssh-ed25519 " + kh2fp + "\nadded target db-1 (upstream) in env prod\n"},
		{args: dk("box", "--user", "1000:1000", "--cmd", "sleep", "--cmd", "infinity", "--mount", "/srv/data:/data:ro",
			"--memory", "512m", "--cpus", "1.5", "--pids", "256", "--network", "backend", "--per", "user", "--idle-ttl", "10m", "--pool", "2",
			"--setenv", "LANG=C.UTF-8"), out: "added target box (docker) in env prod\n"},
		{args: dk("tiny", "--login", "dev"), out: "added target tiny (docker) in env prod\n"},
		{args: up("web-1"), code: 1, errHas: []string{`target "web-1" already exists`}},
		{args: mk("web-2", "--env", "qa", "--upstream", "h:22", "--login", "root", "--host-key", hostPub), code: 1, errHas: []string{`env "qa" not found`}},
		{args: []string{"target", "list"}, out: "" +
			"ID  NAME   ENV   KIND      LOGIN     ADDRESS      ALIASES\n" +
			"3   box    prod  docker    -         alpine:3.20  -\n" +
			"2   db-1   prod  upstream  postgres  [::1]:2200   -\n" +
			"4   tiny   prod  docker    dev       alpine:3.20  -\n" +
			"1   web-1  prod  upstream  root      10.0.0.1:22  -\n"},
		{args: []string{"target", "show", "web-1"}, outHas: []string{
			"name      web-1\n", "env       prod\n", "kind      upstream\n", "login     root\n",
			"upstream  10.0.0.1:22\n", "host key  ssh-ed25519 " + hkfp + "\n"}},
		{args: []string{"target", "show", "box"}, outHas: []string{
			"image     alpine:3.20\n", "user      1000:1000\n", "cmd       sleep infinity\n", "mounts    /srv/data:/data:ro\n",
			"memory    512m\n", "cpus      1.5\n", "pids      256\n", "network   backend\n", "per       user\n",
			"idle ttl  10m\n", "pool      2\n", "env vars  LANG=C.UTF-8\n"}},
		{args: []string{"target", "show", "tiny"}, outHas: []string{"network   none\n", "per       connection\n", "memory    1g (default, docker.default_memory)\n", "pids      256 (default, docker.default_pids)\n", "cpus      no limit\n"}},
		{args: []string{"target", "show", "tiny", "--config", writeFile(t, t.TempDir(), "c.yaml", "docker:\n  default_memory: 512MiB\n  default_pids: 64\n")},
			outHas: []string{"memory    512m (default, docker.default_memory)\n", "pids      64 (default, docker.default_pids)\n"}},
		{args: []string{"target", "pin-host-key", "db-1", "--host-key", hostPub},
			out: "pinned host key for db-1: ssh-ed25519 " + hkfp + " (was ssh-ed25519 " + kh2fp + ")\n"},
		{args: []string{"target", "show", "db-1"}, outHas: []string{"host key  ssh-ed25519 " + hkfp + "\n", "login     postgres\n"}},
		{args: []string{"target", "pin-host-key", "db-1", "--host-key", known},
			out: "pinned host key for db-1: ssh-ed25519 " + kh2fp + " (was ssh-ed25519 " + hkfp + ")\n"},
		{args: []string{"target", "pin-host-key", "box", "--host-key", hostPub}, code: 1, errHas: []string{`target "box" is a docker target: it has no host key to pin`}},
		{args: []string{"target", "pin-host-key", "nope", "--host-key", hostPub}, code: 1, errHas: []string{`target "nope" not found`}},
		{args: []string{"target", "pin-host-key", "db-1"}, code: 2, errHas: []string{"give exactly one of --host-key FILE and --scan-host-key"}},
		{args: []string{"target", "pin-host-key", "db-1", "--host-key", badHost}, code: 2, errHas: []string{`--host-key "` + badHost + `" line 1`}},
		{args: []string{"target", "show", "nope"}, code: 1, errHas: []string{`target "nope" not found`}},
		{args: []string{"target", "remove", "nope"}, code: 1, errHas: []string{`target "nope" not found`}},
		{args: []string{"env", "list"}, out: "NAME  TARGETS\nprod  4\n"},
		{args: []string{"env", "remove", "prod"}, code: 1, errHas: []string{`env "prod" is used by targets box, db-1, tiny, web-1`}},

		// Bad target arguments: exit 2, naming the value.
		{args: up("gate"), code: 2, errHas: []string{`invalid target name "gate": reserved`}},
		{args: up("menu"), code: 2, errHas: []string{`invalid target name "menu": reserved`}},
		{args: up("Web_1"), code: 2, errHas: []string{`invalid target name "Web_1"`}},
		{args: mk("x", "--upstream", "h:22", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{"--env is required"}},
		{args: mk("x", "--env", "Prod!", "--upstream", "h:22", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{`invalid env name "Prod!"`}},
		{args: mk("x", "--env", "prod", "--upstream", "nohost", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{`sshgate: --upstream "nohost": want HOST:PORT`}},
		{args: mk("x", "--env", "prod", "--upstream", ":22", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{`--upstream ":22": want HOST:PORT`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:99999", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{`--upstream "h:99999": port "99999"`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:ssh", "--login", "root", "--host-key", hostPub), code: 2, errHas: []string{`--upstream "h:ssh"`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "Root", "--host-key", hostPub), code: 2, errHas: []string{`invalid --login "Root"`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "9lives", "--host-key", hostPub), code: 2, errHas: []string{`invalid --login "9lives"`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--host-key", hostPub), code: 2, errHas: []string{"--login is required with --upstream"}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "root"), code: 2, errHas: []string{"exactly one of --host-key FILE and --scan-host-key"}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", hostPub, "--scan-host-key"), code: 2, errHas: []string{"exactly one of --host-key FILE and --scan-host-key"}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", badHost), code: 2, errHas: []string{`--host-key "` + badHost + `" line 1: not a public key nor a known_hosts line`}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", filepath.Join(files, "nope")), code: 1, errHas: []string{`--host-key "` + filepath.Join(files, "nope") + `": no such file or directory`}},
		{args: mk("x", "--env", "prod"), code: 2, errHas: []string{"exactly one of --upstream, --docker and --kubernetes"}},
		{args: mk("x", "--env", "prod", "--upstream", "h:22", "--docker", "alpine"), code: 2, errHas: []string{"exactly one of --upstream, --docker and --kubernetes"}},
		{args: up("x", "--memory", "1g"), code: 2, errHas: []string{"--memory is for --docker targets"}},
		{args: dk("x", "--host-key", hostPub), code: 2, errHas: []string{"--host-key is for --upstream targets"}},
		{args: dk("x", "--scan-host-key"), code: 2, errHas: []string{"--scan-host-key is for --upstream targets"}},
		{args: mk("x", "--env", "prod", "--docker", ""), code: 2, errHas: []string{`--docker "": want an image reference`}},
		{args: dk("x", "--memory", "5x"), code: 2, errHas: []string{`--memory "5x": want a size such as 512m or 2g`}},
		{args: dk("x", "--memory", "-1g"), code: 2, errHas: []string{`--memory "-1g"`}},
		{args: dk("x", "--memory", "1k"), code: 2, errHas: []string{`--memory "1k": at least 6m`}},
		{args: dk("x", "--cpus", "lots"), code: 2, errHas: []string{`--cpus "lots"`}},
		{args: dk("x", "--cpus", "0"), code: 2, errHas: []string{`--cpus "0"`}},
		{args: dk("x", "--cpus", "NaN"), code: 2, errHas: []string{`--cpus "NaN"`}},
		{args: dk("x", "--pids", "-5"), code: 2, errHas: []string{"--pids -5"}},
		{args: dk("x", "--pids", "many"), code: 2, errHas: []string{`"many"`}},
		{args: dk("x", "--pool", "-1"), code: 2, errHas: []string{"--pool -1"}},
		{args: dk("x", "--network", "host"), code: 2, errHas: []string{`--network "host": the host network is not allowed`}},
		{args: dk("x", "--network", "bad net"), code: 2, errHas: []string{`--network "bad net"`}},
		{args: dk("x", "--per", "day"), code: 2, errHas: []string{`--per "day": want connection or user`}},
		{args: dk("x", "--idle-ttl", "10m"), code: 2, errHas: []string{`--idle-ttl "10m": only with --per user`}},
		{args: dk("x", "--per", "user", "--idle-ttl", "10"), code: 2, errHas: []string{`--idle-ttl "10": want a positive duration`}},
		{args: dk("x", "--mount", "srv:/srv"), code: 2, errHas: []string{`--mount "srv:/srv": source must be an absolute path`}},
		{args: dk("x", "--mount", "/etc:/etc:ro"), code: 2, errHas: []string{`--mount "/etc:/etc:ro"`, "not allowed"}},
		{args: dk("x", "--mount", "/srv"), code: 2, errHas: []string{`--mount "/srv"`}},
		{args: dk("x", "--user", "a b"), code: 2, errHas: []string{`--user "a b"`}},
		{args: dk("x", "--setenv", "NOVALUE"), code: 2, errHas: []string{`--setenv "NOVALUE": want KEY=VALUE`}},

		// Grants.
		{args: []string{"user", "add", "alice"}, out: "added user alice\n"},
		{args: []string{"user", "add", "bob"}, out: "added user bob\n"},
		{args: []string{"grant", "alice", "--target", "web-1", "--login", "deploy", "--forwarding"}, out: "added grant 1: alice -> target web-1\n"},
		{args: []string{"grant", "alice", "--env", "prod"}, out: "added grant 2: alice -> env prod\n"},
		{args: []string{"grant", "bob", "--target", "box", "--login", "root"}, out: "added grant 3: bob -> target box\n"},
		{args: []string{"grant", "list"}, out: "" +
			"ID  USER   SCOPE         LOGIN   FORWARDING  CONTROLS\n" +
			"1   alice  target:web-1  deploy  yes         -\n" +
			"2   alice  env:prod      -       no          -\n" +
			"3   bob    target:box    root    no          -\n"},
		{args: []string{"grant", "list", "bob"}, out: "" +
			"ID  USER  SCOPE       LOGIN  FORWARDING  CONTROLS\n" +
			"3   bob   target:box  root   no          -\n"},
		{args: []string{"grant", "bob", "--target", "box", "--max-session", "soon"}, code: 2, errHas: []string{`"soon"`}},
		{args: []string{"grant", "bob", "--target", "box", "--idle-timeout", "10ms"}, code: 2, errHas: []string{`invalid --idle-timeout 10ms`}},
		{args: []string{"grant", "bob", "--target", "box", "--upload-only", "--download-only"}, code: 2, errHas: []string{`--upload-only and --download-only exclude each other`}},
		{args: []string{"grant", "bob", "--target", "box", "--command", ""}, code: 2, errHas: []string{`invalid --command ""`}},
		{args: []string{"grant", "list", "nobody"}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"grant", "nobody", "--env", "prod"}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"grant", "alice", "--env", "qa"}, code: 1, errHas: []string{`env "qa" not found`}},
		{args: []string{"grant", "alice", "--target", "web-9"}, code: 1, errHas: []string{`target "web-9" not found`}},
		{args: []string{"grant", "alice"}, code: 2, errHas: []string{"give exactly one of --env and --target"}},
		{args: []string{"grant", "alice", "--env", "prod", "--target", "web-1"}, code: 2, errHas: []string{"give exactly one of --env and --target"}},
		{args: []string{"grant", "Alice", "--env", "prod"}, code: 2, errHas: []string{`invalid user name "Alice"`}},
		{args: []string{"grant", "alice", "--target", "Web"}, code: 2, errHas: []string{`invalid target name "Web"`}},
		{args: []string{"grant", "alice", "--env", "prod", "--login", "Bad Login"}, code: 2, errHas: []string{`invalid --login "Bad Login"`}},
		{args: []string{"grant", "alice", "--env", "prod", "--login", ""}, code: 2, errHas: []string{`invalid --login ""`}},
		{args: []string{"grant"}, code: 2, errHas: []string{"grant: missing USER"}},
		{args: []string{"grant", "revoke", "abc"}, code: 2, errHas: []string{`invalid grant ID "abc"`}},
		{args: []string{"grant", "revoke", "0"}, code: 2, errHas: []string{`invalid grant ID "0"`}},
		{args: []string{"grant", "revoke"}, code: 2, errHas: []string{"grant revoke: missing ID"}},
		{args: []string{"grant", "revoke", "99"}, code: 1, errHas: []string{"grant 99 not found"}},
		{args: []string{"grant", "revoke", "2"}, out: "revoked grant 2\n"},
		{args: []string{"grant", "alice", "--target", "web-1", "--login", "root"}, out: "added grant 4: alice -> target web-1\n"},
		{args: []string{"grant", "alice", "--env", "prod"}, out: "added grant 5: alice -> env prod\n"},
		{args: []string{"revoke", "alice", "--target", "web-1"}, out: "revoked grant 1: alice -> target web-1\nrevoked grant 4: alice -> target web-1\n"},
		{args: []string{"revoke", "alice", "--target", "web-1"}, code: 1, errHas: []string{"no grant of alice on target web-1"}},
		{args: []string{"revoke", "alice", "--env", "prod"}, out: "revoked grant 5: alice -> env prod\n"},
		{args: []string{"revoke", "nobody", "--env", "prod"}, code: 1, errHas: []string{`user "nobody" not found`}},
		{args: []string{"revoke", "alice"}, code: 2, errHas: []string{"revoke alice: give exactly one of --env and --target"}},
		{args: []string{"revoke", "alice", "--env", "prod", "--target", "web-1"}, code: 2, errHas: []string{"exactly one of --env and --target"}},
		{args: []string{"revoke", "alice", "--target", "Web!"}, code: 2, errHas: []string{`invalid target name "Web!"`}},
		{args: []string{"revoke"}, code: 2, errHas: []string{"revoke: missing USER"}},
		{args: []string{"grant", "revoke", "2"}, code: 1, errHas: []string{"grant 2 not found"}},
		// Removing a target removes the grants naming it.
		{args: []string{"grant", "alice", "--target", "web-1"}, out: "added grant 6: alice -> target web-1\n"},
		{args: []string{"target", "remove", "web-1"}, out: "removed target web-1\n"},
		{args: []string{"grant", "bob", "--target", "box", "--no-shell", "--no-exec", "--no-sftp", "--no-scp", "--no-rsync", "--command", "uptime",
			"--max-session", "1h", "--idle-timeout", "90s", "--upload-only", "--agent-forwarding", "--watch"}, out: "added grant 7: bob -> target box\n"},
		{args: []string{"grant", "list"}, out: "" +
			"ID  USER  SCOPE       LOGIN  FORWARDING  CONTROLS\n" +
			"3   bob   target:box  root   no          -\n" +
			"7   bob   target:box  -      no          no-shell,no-exec,no-sftp,no-scp,no-rsync,upload-only,agent-forwarding,watch,command,max-session=1h0m0s,idle-timeout=1m30s\n"},
		// Removing a user removes their grants.
		{args: []string{"user", "remove", "bob"}, out: "removed user bob\n"},
		{args: []string{"grant", "list"}, out: "ID  USER  SCOPE  LOGIN  FORWARDING  CONTROLS\n"},
	})

	st, err := sqlite.Open(filepath.Join(data, "sshgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := st.GetTarget(context.Background(), "box")
	if err != nil {
		t.Fatal(err)
	}
	want := gate.DockerSpec{Image: "alpine:3.20", User: "1000:1000", Cmd: []string{"sleep", "infinity"},
		Env: []string{"LANG=C.UTF-8"}, Mounts: []string{"/srv/data:/data:ro"}, Memory: 512 << 20, NanoCPUs: 1_500_000_000,
		Pids: 256, Network: "backend", Per: "user", IdleTTL: "10m", Pool: 2}
	if box.Kind != gate.KindDocker || box.Docker == nil || !equalJSON(t, *box.Docker, want) {
		t.Fatalf("stored box = %+v %+v, want %+v", box, box.Docker, want)
	}
	db1, err := st.GetTarget(context.Background(), "db-1")
	if err != nil {
		t.Fatal(err)
	}
	if db1.Upstream == nil || db1.Upstream.HostKey != strings.TrimSpace(kh2) || db1.Login != "postgres" {
		t.Fatalf("stored db-1 = %+v %+v", db1, db1.Upstream)
	}
}

func equalJSON(t *testing.T, a, b gate.DockerSpec) bool {
	t.Helper()
	return strings.Join(a.Cmd, "\x00") == strings.Join(b.Cmd, "\x00") &&
		strings.Join(a.Env, "\x00") == strings.Join(b.Env, "\x00") &&
		strings.Join(a.Mounts, "\x00") == strings.Join(b.Mounts, "\x00") &&
		a.Image == b.Image && a.User == b.User && a.Memory == b.Memory && a.NanoCPUs == b.NanoCPUs &&
		a.Pids == b.Pids && a.Network == b.Network && a.Per == b.Per && a.IdleTTL == b.IdleTTL && a.Pool == b.Pool
}

func TestTopLevel(t *testing.T) {
	data := t.TempDir()
	runSteps(t, data, []step{
		{args: []string{}, code: 2, errHas: []string{"sshgate: missing command", "Run 'sshgate --help' for usage."}},
		{args: []string{"frob"}, code: 2, errHas: []string{`unknown command "frob" for "sshgate"`}},
		{args: []string{"frob", "--x"}, code: 2, errHas: []string{`unknown command "frob" for "sshgate"`}},
		{args: []string{"user", "frob", "--x"}, code: 2, errHas: []string{`unknown command "frob" for "sshgate user"`}},
		{args: []string{"--bogus"}, code: 2, errHas: []string{"unknown flag: --bogus"}},
		{args: []string{"serve", "--bogus"}, code: 2, errHas: []string{"serve: unknown flag: --bogus", "Run 'sshgate serve --help'"}},
		{args: []string{"serve", "extra"}, code: 2, errHas: []string{`serve: unexpected argument "extra"`}},
		{args: []string{"env"}, code: 2, errHas: []string{"env: missing command"}},
		{args: []string{"target", "frob"}, code: 2, errHas: []string{`unknown command "frob" for "sshgate target"`}},
		{args: []string{"key", "list"}, code: 2, errHas: []string{"key list: missing USER"}},
		{args: []string{"gate-key", "extra"}, code: 2, errHas: []string{`gate-key: unexpected argument "extra"`}},
		{args: []string{"version"}, outHas: []string{"sshgate "}},
		{args: []string{"--help"}, outHas: []string{"Usage:", "serve", "user", "grant", "gate-key"}},
		{args: []string{"target", "add", "--help"}, outHas: []string{"--scan-host-key", "--docker", "--idle-ttl"}},
	})
}

func TestGateKey(t *testing.T) {
	data := t.TempDir()
	code, out, errOut := runCLI(t, data, "", "gate-key")
	if code != 0 || errOut != "" {
		t.Fatalf("gate-key: exit %d, stderr %q", code, errOut)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, " sshgate-gate-key\n") {
		t.Fatalf("gate-key printed %q, want one authorized_keys line ending in sshgate-gate-key", out)
	}
	k, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil || comment != "sshgate-gate-key" || k.Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("gate-key line %q: %v, comment %q", out, err, comment)
	}
	if _, err := os.Stat(filepath.Join(data, "gate_key")); err != nil {
		t.Fatalf("gate_key not generated: %v", err)
	}
	// The same key on the next run.
	_, out2, _ := runCLI(t, data, "", "gate-key")
	if out2 != out {
		t.Fatalf("gate-key changed between runs: %q then %q", out, out2)
	}
}

// The environment variable names the data directory when --data is absent.
func TestDataFromEnvironment(t *testing.T) {
	data := t.TempDir()
	t.Setenv(datadir.EnvVar, data)
	if code, _, errOut := runCLI(t, "", "", "user", "add", "alice"); code != 0 {
		t.Fatalf("user add: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "sshgate.db")); err != nil {
		t.Fatalf("store not in $%s: %v", datadir.EnvVar, err)
	}
}

// A store handle opened before the CLI runs (the running gate's) sees every
// change at once.
func TestRunningGateSeesChanges(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	d, err := datadir.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := sqlite.Open(d.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gate.Close() })
	if _, err := gate.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before: %v", err)
	}
	key, fp := newKey(t, "")
	runSteps(t, data, []step{
		{args: []string{"user", "add", "alice", "--password-stdin"}, stdin: "password1\n", out: "added user alice\n"},
		{args: []string{"key", "add", "alice", "-"}, stdin: key, outHas: []string{fp}},
	})
	u, err := gate.GetUser(ctx, "alice")
	if err != nil || !passwd.Verify(u.PasswordHash, []byte("password1")) {
		t.Fatalf("gate sees %+v, %v", u, err)
	}
	if ks, err := gate.ListKeys(ctx, "alice"); err != nil || len(ks) != 1 || ks[0].Fingerprint != fp {
		t.Fatalf("gate sees keys %+v, %v", ks, err)
	}
	runSteps(t, data, []step{{args: []string{"user", "passwd", "alice", "--password-stdin"}, stdin: "password2\n", out: "set the password of alice\n"}})
	if u, err := gate.GetUser(ctx, "alice"); err != nil || !passwd.Verify(u.PasswordHash, []byte("password2")) {
		t.Fatalf("gate does not see the new password: %+v, %v", u, err)
	}
	runSteps(t, data, []step{{args: []string{"user", "remove", "alice"}, out: "removed user alice\n"}})
	if _, err := gate.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("gate still sees alice: %v", err)
	}
}

func TestServe(t *testing.T) {
	data := t.TempDir()
	var got app.Options
	serveFunc = func(ctx context.Context, o app.Options) error {
		got = o
		// SIGTERM ends serve: the signal reaches the context, not the default handler.
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	t.Cleanup(func() { serveFunc = app.Serve })
	code, out, errOut := runCLI(t, data, "", "serve", "--listen", "127.0.0.1:2222", "--config", "/etc/sshgate.yaml")
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("serve: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got.DataDir != data || got.Listen != "127.0.0.1:2222" || got.ConfigFile != "/etc/sshgate.yaml" || got.Log == nil {
		t.Fatalf("serve passed %+v", got)
	}

	serveFunc = func(ctx context.Context, o app.Options) error {
		return &app.ConfigError{Err: errors.New(`listen: "x" is not HOST:PORT`)}
	}
	runSteps(t, data, []step{{args: []string{"serve", "--listen", "x"}, code: 2, errHas: []string{`listen: "x" is not HOST:PORT`}}})
	serveFunc = func(ctx context.Context, o app.Options) error {
		return errors.New("listen on :22: permission denied")
	}
	runSteps(t, data, []step{{args: []string{"serve"}, code: 1, errHas: []string{"sshgate: listen on :22: permission denied"}}})
}

func TestMenuCommands(t *testing.T) {
	data := t.TempDir()
	hk, _ := newKey(t, "root@web-1")
	hostPub := writeFile(t, t.TempDir(), "ssh_host_ed25519_key.pub", hk+"\n")
	up := func(name string) []string {
		return append([]string{"target", "add"}, name, "--env", "prod", "--upstream", "10.0.0.1:22", "--login", "root", "--host-key", hostPub)
	}
	runSteps(t, data, []step{
		{args: []string{"env", "add", "prod", "--group", "shop"}, out: "added env prod\nenv prod is in group shop\n"},
		{args: []string{"env", "add", "dev", "--group", "Bad"}, code: 2, errHas: []string{`invalid group name "Bad"`}},
		{args: []string{"env", "add", "dev"}, out: "added env dev\n"},
		{args: []string{"env", "group", "dev", "lab"}, out: "env dev is in group lab\n"},
		{args: []string{"env", "group", "dev", "--clear"}, out: "env dev is in no group\n"},
		{args: []string{"env", "group", "dev"}, code: 2, errHas: []string{"give exactly one of GROUP and --clear"}},
		{args: []string{"env", "group", "qa", "x"}, code: 1, errHas: []string{`env "qa" not found`}},
		{args: up("web-1"), outHas: []string{"added target web-1"}},
		{args: up("web-2"), outHas: []string{"added target web-2"}},
		{args: up("12-34"), code: 2, errHas: []string{`invalid target name "12-34": digits-dash-digits is the NODEID-UID login form`}},
		{args: []string{"user", "add", "7-1000"}, code: 2, errHas: []string{`invalid user name "7-1000"`}},
		{args: []string{"target", "alias", "add", "web-1", "www"}, out: "added alias www for target web-1\n"},
		{args: []string{"target", "alias", "add", "web-2", "www"}, code: 1, errHas: []string{`alias "www" already exists`}},
		{args: []string{"target", "alias", "add", "web-2", "web-1"}, code: 1, errHas: []string{`alias "web-1" is a target name already exists`}},
		{args: []string{"target", "alias", "add", "web-2", "gate"}, code: 2, errHas: []string{`invalid alias "gate": reserved`}},
		{args: []string{"target", "alias", "add", "web-2", "1-2"}, code: 2, errHas: []string{`invalid alias name "1-2"`}},
		{args: []string{"target", "alias", "add", "nope", "x"}, code: 1, errHas: []string{`target "nope" not found`}},
		{args: up("www"), code: 1, errHas: []string{`www`}},
		{args: []string{"target", "primary", "web-1"}, out: "target web-1 is marked primary\n"},
		{args: []string{"target", "describe", "web-1", "front end"}, out: "set the description of target web-1\n"},
		{args: []string{"target", "list"}, out: "" +
			"ID  NAME   ENV   KIND      LOGIN  ADDRESS      ALIASES\n" +
			"1   web-1  prod  upstream  root   10.0.0.1:22  www\n" +
			"2   web-2  prod  upstream  root   10.0.0.1:22  -\n"},
		{args: []string{"target", "show", "web-1"}, outHas: []string{"id        1\n", "aliases   www\n", "primary   yes\n", "about     front end\n"}},
		{args: []string{"target", "alias", "remove", "www"}, out: "removed alias www\n"},
		{args: []string{"target", "alias", "remove", "www"}, code: 1, errHas: []string{`alias "www" not found`}},
		{args: []string{"user", "add", "alice"}, outHas: []string{"alice"}},
		{args: []string{"user", "default-target", "alice", "web-2"}, out: "default target of alice is web-2\n"},
		{args: []string{"user", "default-target", "alice", "nope"}, code: 1, errHas: []string{`target "nope" not found`}},
		{args: []string{"user", "default-target", "alice"}, code: 2, errHas: []string{"give exactly one of TARGET and --clear"}},
		{args: []string{"user", "show", "alice"}, out: "FIELD           VALUE\nname            alice\nuid             1\ndefault target  web-2\n"},
		{args: []string{"user", "default-target", "alice", "--clear"}, out: "user alice has no default target\n"},
		{args: []string{"user", "show", "bob"}, code: 1, errHas: []string{`not found`}},
	})
}

func TestContainerLogin(t *testing.T) {
	for _, tt := range []struct{ spec, image, want string }{
		{"", "", ""},
		{"", "root", ""},
		{"", "app", "app"},
		{"", "app:staff", "app"},
		{"", "1000", ""},
		{"", "1000:1000", ""},
		{"deploy", "app", "deploy"},
		{"deploy", "", "deploy"},
		{"1000", "app", ""},
		{"root", "app", ""},
		{"Bad User", "", ""},
	} {
		if got := containerLogin(tt.spec, tt.image); got != tt.want {
			t.Errorf("containerLogin(%q, %q) = %q, want %q", tt.spec, tt.image, got, tt.want)
		}
	}
}

// TestGrantForwardTo: --forward-to entries are stored in their canonical
// spelling, once each, and shown in grant list; bad values name themselves
// and exit 2.
func TestGrantForwardTo(t *testing.T) {
	data := t.TempDir()
	bad := func(spec string, has ...string) step {
		return step{args: []string{"grant", "bob", "--env", "prod", "--forwarding", "--forward-to", "db:5432", "--forward-to", spec}, code: 2,
			errHas: append([]string{fmt.Sprintf("invalid --forward-to %q", spec)}, has...)}
	}
	runSteps(t, data, []step{
		{args: []string{"env", "add", "prod"}, out: "added env prod\n"},
		{args: []string{"user", "add", "bob"}, out: "added user bob\n"},
		{args: []string{"grant", "bob", "--env", "prod", "--forwarding"}, out: "added grant 1: bob -> env prod\n"},
		{args: []string{"grant", "bob", "--env", "prod", "--forwarding", "--forward-to", "DB.internal:5432", "--forward-to", "10.0.0.0/8:8000-8099",
			"--forward-to", "/run/app.sock", "--forward-to", "db.internal:5432", "--forward-to", "[FD00::/8]:*"}, out: "added grant 2: bob -> env prod\n"},
		{args: []string{"grant", "bob", "--env", "prod"}, out: "added grant 3: bob -> env prod\n"},
		{args: []string{"grant", "list"}, out: "" +
			"ID  USER  SCOPE     LOGIN  FORWARDING                                                        CONTROLS\n" +
			"1   bob   env:prod  -      yes                                                               -\n" +
			"2   bob   env:prod  -      db.internal:5432,10.0.0.0/8:8000-8099,/run/app.sock,[fd00::/8]:*  -\n" +
			"3   bob   env:prod  -      no                                                                -\n"},
		{args: []string{"grant", "bob", "--env", "prod", "--forward-to", "db:5432"}, code: 2, errHas: []string{`--forward-to "db:5432" needs --forwarding`}},
		bad("db:99999", `"99999" is not a port`),
		bad("db:90-80", "port range 90-80 is empty"),
		bad("10.0.0.1/8:22", "did you mean 10.0.0.0/8"),
		bad("2852039166:80", "not an IP address, a CIDR prefix or a host name"),
		bad("db", "want HOST:PORT"),
		bad("", "empty"),
		bad("/run/../x.sock", `did you mean "/x.sock"`),
		{args: []string{"grant", "list"}, out: "" +
			"ID  USER  SCOPE     LOGIN  FORWARDING                                                        CONTROLS\n" +
			"1   bob   env:prod  -      yes                                                               -\n" +
			"2   bob   env:prod  -      db.internal:5432,10.0.0.0/8:8000-8099,/run/app.sock,[fd00::/8]:*  -\n" +
			"3   bob   env:prod  -      no                                                                -\n"},
	})
}
