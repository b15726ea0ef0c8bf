package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCACommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	key, _ := newKey(t, "k")
	keyFile := writeFile(t, dir, "id.pub", key+"\n")
	caKey, caFP := newKey(t, "ext-ca")
	caFile := writeFile(t, dir, "ext_ca.pub", caKey+"\n")
	bad := writeFile(t, dir, "bad.pub", "ssh-ed25519 AAAA!!!\n")
	hostKey, _ := newKey(t, "")
	hostFile := writeFile(t, dir, "ssh_host_ed25519_key.pub", hostKey+"\n")

	runSteps(t, data, []step{
		// Before init.
		{args: []string{"ca", "show", "user"}, code: 1, errHas: []string{"sshgate ca init"}},
		{args: []string{"env", "add", "prod"}},
		{name: "unpinned target without a host CA", args: []string{"target", "add", "w", "--env", "prod", "--upstream", "h:22", "--login", "root"}, code: 2, errHas: []string{"--host-ca"}},
		{args: []string{"target", "add", "w", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-ca"}, code: 1, errHas: []string{"no host CA"}},
		{args: []string{"target", "add", "w", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", hostFile, "--auth", "cert"}, code: 1, errHas: []string{"no user CA"}},

		{args: []string{"ca", "init"}, outHas: []string{"created", "TrustedUserCAKeys", "@cert-authority * ssh-ed25519 ", "signed the gate's host key"}},
		{args: []string{"ca", "init"}, outHas: []string{"kept"}},
		{args: []string{"ca", "show", "user"}, outHas: []string{"ssh-ed25519 "}},
		{args: []string{"ca", "show", "host"}, outHas: []string{"@cert-authority * ssh-ed25519 "}},
		{args: []string{"ca", "show", "client"}, outHas: []string{"ssh-ed25519 ", "sshgate-ca-client"}},
		{args: []string{"ca", "show", "both"}, code: 2, errHas: []string{`"both"`}},

		{args: []string{"ca", "sign-user", "alice", keyFile, "--ttl", "8h"}, code: 1, errHas: []string{`ca sign-user: user "alice" not found (add it with `}},
		{args: []string{"user", "add", "alice"}},
		{args: []string{"ca", "sign-user", "alice", keyFile, "--ttl", "8h"}, outHas: []string{"id-cert.pub", "serial ", `"sshgate user alice"`}},
		{args: []string{"ca", "sign-user", "alice", keyFile, "--ttl", "forever"}, code: 2, errHas: []string{`--ttl "forever"`}},
		{args: []string{"ca", "sign-user", "Alice", keyFile}, code: 2, errHas: []string{`"Alice"`}},
		{args: []string{"ca", "sign-user", "alice", keyFile, "--source-address", "10.0.0.0/33"}, code: 2, errHas: []string{"--source-address"}},
		{args: []string{"ca", "sign-user", "alice", bad}, code: 2, errHas: []string{bad, "not an SSH public key"}},
		{args: []string{"ca", "sign-user", "alice", filepath.Join(dir, "id-cert.pub")}, code: 2, errHas: []string{"a certificate"}},
		{args: []string{"ca", "sign-host", hostFile}, code: 2, errHas: []string{"--principal is required"}},
		{args: []string{"ca", "sign-host", "--principal", "web-1,10.0.0.5", "--ttl", "90d", hostFile}, outHas: []string{"ssh_host_ed25519_key-cert.pub", "web-1,10.0.0.5"}},

		{args: []string{"ca", "trust-user-ca", caFile}, outHas: []string{"trusted user CA", caFP}},
		{args: []string{"ca", "trust-user-ca", caFile}, outHas: []string{"already trusted"}},
		{args: []string{"ca", "trust-user-ca", bad}, code: 2, errHas: []string{bad}},

		{args: []string{"ca", "revoke", "42", "--reason", "lost laptop"}, out: "revoked certificate serial 42\n"},
		{args: []string{"ca", "revoke", "42"}, outHas: []string{"already revoked"}},
		{args: []string{"ca", "revoke", keyFile}, outHas: []string{"revoked key ssh-ed25519 SHA256:"}},
		{args: []string{"ca", "revoke", "99999999999999999999999"}, code: 2, errHas: []string{"serial"}},
		{args: []string{"ca", "revoked"}, outHas: []string{"serial", "42", "lost laptop", "key"}},

		// With a CA: no pin needed.
		// The mode is said, and the target tried at once (here: nothing answers).
		{args: []string{"target", "add", "w", "--env", "prod", "--upstream", "127.0.0.1:1", "--login", "root"}, outHas: []string{
			"host key of w: none pinned, so each connection verifies a host certificate from the gate's host CA",
			`host key of w: not checked now (127.0.0.1:1 does not answer`, `check its host certificate for "127.0.0.1"`}},
		{args: []string{"target", "add", "w2", "--env", "prod", "--upstream", "127.0.0.1:1", "--login", "root", "--host-principal", "web.internal", "--auth", "key"}, outHas: []string{`"web.internal"`}},
		{args: []string{"target", "show", "w2"}, outHas: []string{"principal web.internal", "auth", "key"}},
		{args: []string{"target", "add", "pinned", "--env", "prod", "--upstream", "10.0.0.9:22", "--login", "root", "--host-key", hostFile}},
		{args: []string{"target", "pin-host-key", "pinned", "--host-ca", "--host-key", hostFile}, code: 2, errHas: []string{"exactly one"}},
		{args: []string{"target", "pin-host-key", "pinned", "--host-ca", "--host-principal", "db-9"}, outHas: []string{`verified through the host CA (principal "db-9")`}},
		{args: []string{"target", "show", "pinned"}, outHas: []string{"principal db-9"}},
		{args: []string{"target", "add", "w3", "--env", "prod", "--upstream", "h:22", "--login", "root", "--auth", "password"}, code: 2, errHas: []string{`--auth "password"`}},
		{args: []string{"target", "add", "w3", "--env", "prod", "--upstream", "h:22", "--login", "root", "--host-key", hostFile, "--host-principal", "x"}, code: 2, errHas: []string{"--host-principal"}},
	})
	for _, name := range []string{"user_ca", "host_ca"} {
		fi, err := os.Stat(filepath.Join(data, "ca", name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", name, fi, err)
		}
	}
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"8h": 8 * time.Hour, "30d": 30 * 24 * time.Hour, "52w": 52 * 7 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseTTL("--ttl", in); err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "-1h", "d", "1.5d", "99999d", "forever"} {
		if _, err := parseTTL("--ttl", in); err == nil || !strings.Contains(err.Error(), "--ttl") {
			t.Errorf("parseTTL(%q) = %v, want an error naming --ttl", in, err)
		}
	}
}
