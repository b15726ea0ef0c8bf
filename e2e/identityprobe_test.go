package e2e_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshgate/sshgate/e2e/harness"
)

// queryOnly offers a public key it does not hold: x/crypto's client asks
// the server about it (a query, no signature), and on PK_OK sends a
// "signature" in a format the server refuses before verifying anything
// (ssh-dss), so the server answers failure and the client goes on to its
// next key, as OpenSSH does with a .pub it cannot sign with.
type queryOnly struct{ pub ssh.PublicKey }

// pkOK counts the queries the server answered PK_OK: only then does the
// client call Sign.
var pkOK atomic.Int32

func (q queryOnly) PublicKey() ssh.PublicKey { return q.pub }
func (q queryOnly) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	pkOK.Add(1)
	return &ssh.Signature{Format: ssh.KeyAlgoDSA, Blob: []byte{0}}, nil
}

func loadSigner(t *testing.T, path string) ssh.Signer {
	t.Helper()
	pem, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The CVE-2024-45337 probe in every order, with an x/crypto client that
// queries keys without signing and then signs with another: the gate's
// audited identity, key and landing target are always those of the key (or
// password) that was proven, never of a key merely queried.
func TestIdentityProbeEveryOrder(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	g := w.gate
	dir := t.TempDir()
	mallory := g.AddUser(t, "mallory")
	g.Admin(t, "grant", "mallory", "--target", "web-2", "--login", "root")
	alice2Key, alice2Pub := harness.Keygen(t, dir, "alice2")
	g.AdminStdin(t, alice2Pub+"\n", "key", "add", "alice", "-")
	const alicePW = "probe-pw-3c91e7"
	g.AdminStdin(t, alicePW+"\n", "user", "passwd", "alice", "--password-stdin")
	// A certificate for alice, over mallory's own key, from a trusted CA.
	extCA, _ := harness.Keygen(t, dir, "ext_ca")
	g.Admin(t, "ca", "trust-user-ca", extCA+".pub")
	if out, err := exec.Command("ssh-keygen", "-q", "-s", extCA, "-I", "probe", "-n", "alice", "-V", "-5m:+1h", mallory.Key+".pub").CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -s: %v %s", err, out)
	}
	certBytes, _ := os.ReadFile(mallory.Key + "-cert.pub")
	certPub, _, _, _, err := ssh.ParseAuthorizedKey(certBytes)
	if err != nil {
		t.Fatal(err)
	}
	cert := certPub.(*ssh.Certificate)

	A := loadSigner(t, w.alice.Key)
	A2 := loadSigner(t, alice2Key)
	M := loadSigner(t, mallory.Key)
	certM, err := ssh.NewCertSigner(cert, M)
	if err != nil {
		t.Fatal(err)
	}
	q := func(s ssh.Signer) ssh.Signer { return queryOnly{s.PublicKey()} }
	qCert := queryOnly{cert}
	fp := ssh.FingerprintSHA256
	hk, err := knownhosts.New(g.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	pw := ssh.Password(alicePW)
	kiPW := ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
		if len(qs) == 1 && strings.Contains(qs[0], "Password") {
			return []string{alicePW}, nil
		}
		return make([]string, len(qs)), nil
	})

	type probe struct {
		name   string
		login  string // user+target
		keys   []ssh.Signer
		more   []ssh.AuthMethod // after the keys
		ok     bool
		user   string // audited
		method string
		fp     string // audited key fingerprint ("" for a password)
		pkOK   int32  // queried keys the gate answered PK_OK
	}
	probes := []probe{
		{name: "victim queried, own key signs, as self", login: "mallory+web-2", keys: []ssh.Signer{q(A), M}, ok: true, user: "mallory", method: "publickey", fp: fp(M.PublicKey()), pkOK: 0},
		{name: "victim queried, own key signs, as victim", login: "alice+web-1", keys: []ssh.Signer{q(A), M}, pkOK: 1},
		{name: "own, victim, own (A,B,A)", login: "mallory+web-2", keys: []ssh.Signer{q(M), q(A), M}, ok: true, user: "mallory", method: "publickey", fp: fp(M.PublicKey()), pkOK: 1},
		{name: "victim, own, victim queried, own signs as victim", login: "alice+web-1", keys: []ssh.Signer{q(A), q(M), q(A), M}, pkOK: 2},
		{name: "one authorised key queried, another signs", login: "alice+web-1", keys: []ssh.Signer{q(A), A2}, ok: true, user: "alice", method: "publickey", fp: fp(A2.PublicKey()), pkOK: 1},
		{name: "both queried, the first signs", login: "alice+web-1", keys: []ssh.Signer{q(A), q(A2), A}, ok: true, user: "alice", method: "publickey", fp: fp(A.PublicKey()), pkOK: 2},
		{name: "several queries, then a certificate", login: "alice+web-1", keys: []ssh.Signer{q(A), q(A2), q(M), certM}, ok: true, user: "alice", method: "cert", fp: fp(cert), pkOK: 2},
		{name: "certificate queried, its plain key signs", login: "alice+web-1", keys: []ssh.Signer{qCert, M}, pkOK: 1},
		{name: "certificate queried, another authorised key signs", login: "alice+web-1", keys: []ssh.Signer{qCert, A2}, ok: true, user: "alice", method: "publickey", fp: fp(A2.PublicKey()), pkOK: 1},
		{name: "certificate queried as its non-principal", login: "mallory+web-2", keys: []ssh.Signer{qCert, q(A)}, pkOK: 0},
		{name: "victim queried, then the victim's password", login: "alice+web-1", keys: []ssh.Signer{q(A)}, more: []ssh.AuthMethod{pw}, ok: true, user: "alice", method: "password", pkOK: 1},
		{name: "victim queried, then the password over keyboard-interactive", login: "alice+web-1", keys: []ssh.Signer{q(A), q(M)}, more: []ssh.AuthMethod{kiPW}, ok: true, user: "alice", method: "password", pkOK: 1},
		{name: "victim queried, then the victim's password as another user", login: "mallory+web-2", keys: []ssh.Signer{q(A)}, more: []ssh.AuthMethod{pw, kiPW}, pkOK: 0},
	}
	log := &auditLog{path: filepath.Join(g.DataDir, "audit", "audit.jsonl")}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			cfg := &ssh.ClientConfig{User: p.login, Auth: append([]ssh.AuthMethod{ssh.PublicKeys(p.keys...)}, p.more...),
				HostKeyCallback: hk, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 60 * time.Second}
			pkOK.Store(0)
			cl, err := ssh.Dial("tcp", g.Addr, cfg)
			if n := pkOK.Load(); n != p.pkOK {
				t.Errorf("%d queried keys answered PK_OK, want %d", n, p.pkOK)
			}
			if !p.ok {
				if err == nil {
					cl.Close()
					t.Fatalf("logged in as %s", p.login)
				}
				if !strings.Contains(err.Error(), "unable to authenticate") {
					t.Fatalf("refused with %v, want an authentication failure", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("login as %s: %v", p.login, err)
			}
			sess, err := cl.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			out, err := sess.Output("echo landed-$((40+2))")
			cl.Close()
			if err != nil || string(out) != "landed-42\n" {
				t.Fatalf("command on %s: %q %v", p.login, out, err)
			}
			var opens []map[string]any
			var target any
			for _, e := range log.next(t) {
				switch e["type"] {
				case "conn.open":
					opens = append(opens, e)
				case "target.chosen":
					target = e["target"]
				}
			}
			if len(opens) != 1 {
				t.Fatalf("want one conn.open, got %v", opens)
			}
			e := opens[0]
			wantTarget := strings.SplitN(p.login, "+", 2)[1]
			fpGot, _ := e["key_fingerprint"].(string)
			if e["user"] != p.user || e["auth_method"] != p.method || fpGot != p.fp || target != wantTarget {
				t.Fatalf("audited user %v method %v key %q target %v; want %s %s %q %s", e["user"], e["auth_method"], fpGot, target, p.user, p.method, p.fp, wantTarget)
			}
		})
	}
	if g.LogContains(alicePW) {
		t.Error("the password is in the gate's log")
	}
}
