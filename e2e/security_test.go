package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshgate/sshgate/e2e/harness"
)

// The CVE-2024-45337 class: a client offers the victim's public key (the
// server answers "PK_OK" to the query), then signs with its own key. A gate
// that takes the identity from PublicKeyCallback state, rather than from the
// key that actually signed, logs the attacker in as the victim. OpenSSH
// offers a .pub given with -i, gets PK_OK, cannot sign with it and moves on
// to the next identity: the exact sequence of the attack.
func TestIdentityIsTheKeyThatSigned(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	dir := t.TempDir()
	mallory := w.gate.AddUser(t, "mallory") // a user with no grants
	victimPub := filepath.Join(dir, "victim.pub")
	alicePub, err := os.ReadFile(w.alice.Key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victimPub, alicePub, 0o600); err != nil {
		t.Fatal(err)
	}
	malloryPubCopy := filepath.Join(dir, "mallory-copy.pub")
	mp, _ := os.ReadFile(mallory.Key + ".pub")
	os.WriteFile(malloryPubCopy, mp, 0o600)

	orders := map[string][]string{
		"victim first":             {victimPub, mallory.Key},
		"own, victim, own (A,B,A)": {malloryPubCopy, victimPub, mallory.Key},
	}
	for name, ids := range orders {
		t.Run(name, func(t *testing.T) {
			// As mallory: the victim's key is refused, mallory's own accepted;
			// the gate must see mallory, who has no targets.
			// The client's own -i comes first in the offer order.
			c := *mallory
			c.Key = ids[0]
			var args []string
			for _, id := range ids[1:] {
				args = append(args, "-i", id)
			}
			r := harness.MustRun(t, c.SSHTo("", args, "ls", "--json"), nil, short)
			var got []map[string]any
			if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
				t.Fatalf("ls --json: %v in %q", err, r.Stdout)
			}
			if len(got) != 0 {
				t.Fatalf("logged in with alice's targets visible (%v): identity taken from the offered key", got)
			}
			r = harness.Run(c.SSHTo("web-1", args, "echo", "PWNED"), nil, short)
			if strings.Contains(r.Stdout, "PWNED") || r.Code != 1 {
				t.Fatalf("mallory reached alice's target: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
			}
			// As alice, signing with mallory's key: refused outright.
			a := *w.alice
			a.Key = ids[0]
			r = harness.Run(a.SSHTo("web-1", args, "echo", "PWNED"), nil, short)
			if r.Code != 255 || strings.Contains(r.Stdout, "PWNED") || !strings.Contains(r.Stderr, "Permission denied") {
				t.Fatalf("alice+web-1 with mallory's key: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
			}
		})
	}
}

// Passwords (right and wrong) and environment values never reach the log.
func TestSecretsStayOutOfTheLog(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "sshpass")
	w := newWorld(t, worldOptions{})
	const pw, wrong, envValue = "CANARY-PW-5e1f0c", "CANARY-WRONG-77ad", "CANARY-ENV-9b3c"
	w.gate.AdminStdin(t, pw+"\n", "user", "add", "carol", "--password-stdin")
	w.gate.Admin(t, "grant", "carol", "--target", "web-1", "--login", "root")
	carol := w.alice.WithUser("carol").WithPassword(pw)
	carol.Env = append(carol.Env, "LC_CANARY="+envValue)
	r := harness.MustRun(t, carol.SSHTo("web-1", []string{"-o", "SendEnv=LC_CANARY"}, "echo $LC_CANARY; echo ok"), nil, short)
	if r.Stdout != envValue+"\nok\n" { // the value reached the target, so the gate handled it
		t.Fatalf("password login: %q", r.Stdout)
	}
	harness.Run(w.alice.WithUser("carol").WithPassword(wrong).SSHTo("web-1", nil, "true"), nil, short)
	harness.Run(w.alice.WithUser("nosuchuser").WithPassword(wrong).SSHTo("web-1", nil, "true"), nil, short)
	for _, canary := range []string{pw, wrong, envValue} {
		if w.gate.LogContains(canary) {
			t.Errorf("the gate's log holds %q", canary)
		}
	}
	if !w.gate.LogContains("carol") {
		t.Error("the log does not mention carol at all: is it being read?")
	}
}
