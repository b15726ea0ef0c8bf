package e2e_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The strings the gate prints for users to copy work as printed, with the
// named client, from a user's own home (key in ~/.ssh/id_ed25519, the gate
// in ~/.ssh/known_hosts, no option on the command line): only what a user
// must put in (a file name for FILE, a target for LOGIN@TARGET, commands
// typed at the shell or prompt) is filled in.

// printedHome is a user's home for w.alice with a file of random bytes,
// up.bin, to send.
func printedHome(t *testing.T, w *world) (*harness.Home, []byte) {
	t.Helper()
	home := harness.NewHome(t, w.alice)
	data := make([]byte, 300<<10)
	rand.Read(data)
	if err := os.WriteFile(home.Path("up.bin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return home, data
}

// runPrinted runs one printed line in home with what the user types on
// stdin, and checks it exits 0 and says want on stdout.
func runPrinted(t *testing.T, home *harness.Home, line, stdin, want string) harness.Result {
	t.Helper()
	r := harness.Run(home.Shell(line), []byte(stdin), short)
	if r.Code != 0 || !strings.Contains(r.Stdout, want) {
		t.Errorf("printed %q (stdin %q): exit %d, stdout %q (want %q), stderr %q", line, stdin, r.Code, r.Stdout, want, r.Stderr)
	}
	return r
}

// sameFile checks that name in home holds data.
func sameFile(t *testing.T, home *harness.Home, what, name string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(home.Path(name))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("%s: %s holds %d bytes (%v), want the %d sent, byte-exact", what, name, len(got), err, len(data))
	}
}

// printedLine is the first line of text that starts with prefix (after
// blanks) and holds has.
func printedLine(t *testing.T, text, prefix, has string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, prefix) && strings.Contains(l, has) {
			return l
		}
	}
	t.Fatalf("no line starting %q with %q in:\n%s", prefix, has, text)
	return ""
}

// menuBlocks are the command lines of a menu screen for client (ssh, scp,
// sftp or lftp), in order, as copied from it: a line that starts with the
// client's name and the lines that continue it (a line ending in a
// backslash goes on on the next), joined with newlines, with the port the
// golden screens normalise put back.
func menuBlocks(w *world, screen, client string) []string {
	var out []string
	lines := strings.Split(screen, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(strings.TrimSpace(lines[i]), client+" ") {
			continue
		}
		b := lines[i]
		for strings.HasSuffix(lines[i], "\\") && i+1 < len(lines) {
			i++
			b += "\n" + lines[i]
		}
		out = append(out, strings.ReplaceAll(b, "GATEPORT", strconv.Itoa(w.gate.Port)))
	}
	return out
}

// runPrintedMenuStrings runs every direct string the menu shows for web-1.
func runPrintedMenuStrings(t *testing.T, w *world, screen string) {
	t.Helper()
	runMenuStrings(t, w, screen, "web-1")
}

// runMenuStrings runs every direct string the menu shows for target
// (screen): ssh, scp, sftp, lftp (FISH) and the NODEID-UID ssh line, each
// pasted whole into a shell. The strings are found by their client's name
// alone: the form after it is what the run checks. Files go up and come
// back byte-exact.
func runMenuStrings(t *testing.T, w *world, screen, target string) {
	t.Helper()
	harness.RequireTools(t, "scp", "sftp", "lftp")
	home, data := printedHome(t, w)
	name := fmt.Sprintf("printed-menu-%d", w.gate.Port) // in the target's home (root's, on this machine)
	t.Cleanup(func() { harness.Run(w.alice.SSHTo(target, nil, "rm -f "+name+"*"), nil, short) })
	one := func(client string, n int) string {
		t.Helper()
		b := menuBlocks(w, screen, client)
		if len(b) != n {
			t.Fatalf("the menu shows %d %s lines, want %d:\n%s", len(b), client, n, screen)
		}
		return b[0]
	}
	ssh := menuBlocks(w, screen, "ssh")
	if len(ssh) != 2 {
		t.Fatalf("the menu shows %d ssh lines, want 2 (USER+TARGET, NODEID-UID):\n%s", len(ssh), screen)
	}
	runPrinted(t, home, ssh[0], "echo printed-$((6*7))\n", "printed-42")
	runPrinted(t, home, ssh[1], "echo uid-$((6*7))\n", "uid-42")

	scp := one("scp", 1)
	if !strings.Contains(scp, " FILE ") {
		t.Fatalf("menu scp line %q has no FILE", scp)
	}
	runPrinted(t, home, strings.Replace(scp, "FILE", "up.bin", 1)+name+".scp", "", "")
	runPrinted(t, home, ssh[0], "sha256sum "+name+".scp\n", sha256Hex(data))
	// And back: the same words, the remote one first.
	runPrinted(t, home, strings.Replace(scp, "FILE ", "", 1)+name+".scp down.scp", "", "")
	sameFile(t, home, "scp as printed, back", "down.scp", data)

	runPrinted(t, home, one("sftp", 1), "put up.bin "+name+".sftp\nget "+name+".sftp down.sftp\n", "")
	sameFile(t, home, "sftp as printed", "down.sftp", data)

	runPrinted(t, home, one("lftp", 1), "set net:max-retries 1\nput up.bin -o "+name+".fish\nget "+name+".fish -o down.fish\ncls -1 /etc/hostname\n", "hostname")
	sameFile(t, home, "lftp as printed", "down.fish", data)
}

// On an IPv6 gate, in a terminal too narrow for them, the menu's direct
// strings for a long target name still run as printed: folded over lines
// (copied with their line breaks), the address bracketed where scp, sftp and
// lftp need it.
func TestPrintedMenuFoldedIPv6(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "/usr/sbin/sshd", "ssh", "tmux")
	sshd := harness.StartSSHD(t, harness.SSHDOptions{})
	g := harness.StartGate(t, harness.GateOptions{Host: "::1"})
	sshd.Authorize(t, g.GateKey(t))
	long := "payments-api-production-eu-west-1-blue"
	g.Admin(t, "env", "add", "prod")
	g.Admin(t, "target", "add", long, "--env", "prod", "--upstream", sshd.Addr, "--login", "root", "--host-key", sshd.HostKeyPub)
	alice := g.AddUser(t, "alice")
	g.Admin(t, "grant", "alice", "--env", "prod", "--login", "root")
	w := &world{gate: g, sshd: sshd, alice: alice}
	m := startTmuxSSH(t, w, "alice", 60, 24) // one env: the menu opens on its targets
	screen := m.waitScreen(t, "lftp ", "Enter connect")
	if !strings.Contains(screen, "\\\n") {
		t.Errorf("nothing is folded at 60 columns:\n%s", screen)
	}
	runMenuStrings(t, w, screen, long)
	m.keys(t, "q")
	if code := m.exited(t); code != 0 {
		t.Errorf("q: ssh exited %d", code)
	}
}

var configHost = regexp.MustCompile(`(?m)^Host (\S+)$`)

// ls, ls --json and config, from a user's home, on an IPv4 and an IPv6
// gate: every CONNECT string runs;
// the known_hosts command config's header prints works, and then so does its
// ssh -J line; `config >> ~/.ssh/config` makes `ssh NAME` work for every
// Host it prints, and scp, sftp and rsync by those names move files
// byte-exact.
func TestPrintedGateStrings(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "scp", "sftp", "rsync")
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			printedGateStrings(t, menuWorldWith(t, harness.GateOptions{Host: host}))
		})
	}
}

func printedGateStrings(t *testing.T, w *world) {
	home, data := printedHome(t, w)
	gate := fmt.Sprintf("ssh -p %d alice@%s", w.gate.Port, w.gate.Host) // as the first-run hint and the README print it
	name := fmt.Sprintf("printed-config-%d", w.gate.Port)
	// menuWorld's gate has no docker backend: box is listed, not reached.
	up := map[string]bool{"web-1": true, "api-1": true}

	// ls: one CONNECT string per target.
	ls := runPrinted(t, home, gate+" ls", "", "CONNECT")
	connect := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(ls.Stdout), "\n")[1:] {
		target, _, _ := strings.Cut(l, " ")
		i := strings.Index(l, "ssh ")
		if i < 0 {
			t.Fatalf("ls row %q has no ssh string", l)
		}
		connect[target] = strings.TrimSpace(l[i:])
	}
	for target := range up {
		runPrinted(t, home, connect[target], "echo ls-$((6*7))\n", "ls-42")
	}
	var views []struct{ Name, SSH string }
	if err := json.Unmarshal([]byte(runPrinted(t, home, gate+" ls --json", "", "[").Stdout), &views); err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if v.SSH != connect[v.Name] {
			t.Errorf("ls --json %s: ssh %q, ls prints %q", v.Name, v.SSH, connect[v.Name])
		}
	}

	// config's header: the known_hosts command, then ssh -J with it.
	config := runPrinted(t, home, gate+" config", "", "Host web-1").Stdout
	header := regexp.MustCompile(`\((ssh .*>> ~/\.ssh/known_hosts)\)`).FindStringSubmatch(config)
	if header == nil {
		t.Fatalf("config prints no known_hosts command:\n%s", config)
	}
	runPrinted(t, home, header[1], "", "")
	jump := printedLine(t, strings.ReplaceAll(config, "# ssh -J", "ssh -J"), "ssh -J ", "")
	jump, _, _ = strings.Cut(jump, " reaches")
	if !strings.HasSuffix(jump, " LOGIN@TARGET") {
		t.Fatalf("config's ssh -J line %q", jump)
	}
	runPrinted(t, home, strings.Replace(jump, "LOGIN@TARGET", "root@web-1", 1)+" echo jump-$((6*7))", "", "jump-42")

	// config >> ~/.ssh/config, then every Host by name.
	runPrinted(t, home, gate+" config >> ~/.ssh/config", "", "")
	hosts := configHost.FindAllStringSubmatch(config, -1)
	if len(hosts) != 4 {
		t.Fatalf("config has %d Host blocks, want 4:\n%s", len(hosts), config)
	}
	for _, h := range hosts {
		if up[h[1]] {
			runPrinted(t, home, "ssh "+h[1]+" echo host-$((6*7))", "", "host-42")
		}
	}
	t.Cleanup(func() { harness.Run(w.alice.SSHTo("web-1", nil, "rm -f "+name+"*"), nil, short) })
	runPrinted(t, home, "scp up.bin web-1:"+name+".scp && scp web-1:"+name+".scp down.scp", "", "")
	sameFile(t, home, "scp by the config's name", "down.scp", data)
	runPrinted(t, home, "sftp web-1", "put up.bin "+name+".sftp\nget "+name+".sftp down.sftp\n", "")
	sameFile(t, home, "sftp by the config's name", "down.sftp", data)
	runPrinted(t, home, "rsync up.bin web-1:"+name+".rsync && rsync web-1:"+name+".rsync down.rsync", "", "")
	sameFile(t, home, "rsync by the config's name", "down.rsync", data)
}
