package e2e_test

import (
	"bufio"
	"crypto/rsa"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/e2e/harness"
)

// kexInit reads the server's version line and its first packet, the
// unencrypted KEXINIT, and returns its name-lists in RFC 4253 order.
func kexInit(t *testing.T, addr, clientVersion string) (version string, lists [10][]string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, clientVersion+"\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	version, err = r.ReadString('\n')
	if err != nil {
		t.Fatalf("version line: %v", err)
	}
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("packet header: %v", err)
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > 64<<10 {
		t.Fatalf("first packet of %d bytes", n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("packet body: %v", err)
	}
	payload := body[:len(body)-int(hdr[4])]
	if payload[0] != 20 {
		t.Fatalf("first packet is message %d, not KEXINIT", payload[0])
	}
	p := payload[17:] // message number and cookie
	for i := range lists {
		l := binary.BigEndian.Uint32(p[:4])
		if l > 0 {
			lists[i] = strings.Split(string(p[4:4+l]), ",")
		}
		p = p[4+l:]
	}
	return strings.TrimSpace(version), lists
}

// What a default gate offers an OpenSSH client on the wire: strict key
// exchange (Terrapin, CVE-2023-48795), post-quantum hybrid and curve25519
// only, no SHA-1 or NIST-curve key exchange, AES-GCM only, ETM MACs only, no
// ssh-rsa (SHA-1) host key signatures, no compression before authentication.
// (Clients that are not OpenSSH are offered more ciphers: TestCompatOffer.)
func TestOfferedAlgorithms(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	version, l := kexInit(t, w.gate.Addr, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
	if version != "SSH-2.0-sshgate" {
		t.Errorf("server version %q", version)
	}
	want := map[string][]string{
		"kex":     {"mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org"},
		"ciphers": {"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"},
		"macs":    {"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"},
	}
	kex := slices.DeleteFunc(slices.Clone(l[0]), func(s string) bool { return strings.HasPrefix(s, "ext-info") || strings.HasPrefix(s, "kex-strict") })
	if !slices.Equal(kex, want["kex"]) {
		t.Errorf("kex %v, want %v", l[0], want["kex"])
	}
	if !slices.Contains(l[0], "kex-strict-s-v00@openssh.com") {
		t.Errorf("kex %v lacks kex-strict-s-v00@openssh.com (Terrapin)", l[0])
	}
	for i, name := range []string{"ciphers", "ciphers"} {
		if !slices.Equal(l[2+i], want[name]) {
			t.Errorf("ciphers %v, want %v", l[2+i], want[name])
		}
	}
	for i := range 2 {
		if !slices.Equal(l[4+i], want["macs"]) {
			t.Errorf("macs %v, want %v", l[4+i], want["macs"])
		}
		if !slices.Equal(l[6+i], []string{"none"}) {
			t.Errorf("compression %v, want none", l[6+i])
		}
	}
	if l[1][0] != "ssh-ed25519" {
		t.Errorf("host key algorithms %v: ed25519 should come first", l[1])
	}
	// No NIST-curve host key (ssh-audit fails one): ed25519 and RSA only.
	for _, hk := range l[1] {
		if !slices.Contains([]string{"ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"}, hk) {
			t.Errorf("host key algorithm %q offered", hk)
		}
	}
	// A client that wants the RSA host key still gets it, signed with SHA-2,
	// and of 4096 bits.
	out, err := exec.Command("ssh-keyscan", "-t", "rsa", "-p", strconv.Itoa(w.gate.Port), w.gate.Host).Output()
	if err != nil || !strings.Contains(string(out), " ssh-rsa AAAA") {
		t.Errorf("ssh-keyscan -t rsa: %v, %q", err, out)
	}
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(strings.Fields(string(out))[1:], " "))); err != nil {
		t.Errorf("parse scanned RSA key: %v", err)
	} else if ck, ok := k.(ssh.CryptoPublicKey); !ok {
		t.Errorf("scanned key %T", k)
	} else if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); !ok || rk.N.BitLen() < 4096 {
		t.Errorf("RSA host key of %d bits, want 4096", rk.N.BitLen())
	}
	if out, _ := exec.Command("ssh-keyscan", "-t", "ecdsa", "-p", strconv.Itoa(w.gate.Port), w.gate.Host).Output(); len(out) > 0 {
		t.Errorf("an ecdsa host key is offered: %q", out)
	}
}

// ssh-audit (Debian's, 2.5) finds nothing to fail on a default gate: no
// weak host key, key exchange, cipher or MAC. The only warnings it may give
// are for algorithms newer than it (mlkem768x25519-sha256 and strict kex).
// Its built-in policies are exact lists, which no x/crypto server matches
// (README "Algorithm audit" says which and why); the algorithm rules are
// what this holds.
func TestSSHAudit(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	harness.RequireTools(t, "ssh-audit")
	w := newWorld(t, worldOptions{})
	out, _ := exec.Command("ssh-audit", "-n", "-p", strconv.Itoa(w.gate.Port), w.gate.Host).CombinedOutput()
	text := string(out)
	if !strings.Contains(text, "(key) ssh-ed25519") || !strings.Contains(text, "rsa-sha2-512 (4096-bit)") {
		t.Fatalf("ssh-audit did not audit the gate:\n%s", text)
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.Contains(line, "[fail]"):
			t.Errorf("ssh-audit fails: %s", strings.TrimSpace(line))
		case strings.Contains(line, "[warn]") && !strings.Contains(line, "unknown algorithm"):
			t.Errorf("ssh-audit warns: %s", strings.TrimSpace(line))
		}
	}
	if strings.Contains(text, "(rec) -") {
		t.Errorf("ssh-audit recommends removing an algorithm:\n%s", text)
	}
}

// A client that is not OpenSSH (or names no version first) is offered the
// compatibility ciphers and MACs after AES-GCM and the ETM MACs; the key
// exchanges and host keys are the same.
func TestCompatOffer(t *testing.T) {
	gateOnly(t)
	t.Parallel()
	w := newWorld(t, worldOptions{})
	_, openssh := kexInit(t, w.gate.Addr, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
	for _, v := range []string{"SSH-2.0-paramiko_2.12.0", "SSH-2.0-dropbear_2022.83", "SSH-2.0-OpenSSH_5.3"} {
		_, l := kexInit(t, w.gate.Addr, v)
		want := []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"}
		if !slices.Equal(l[2], want) || !slices.Equal(l[3], want) {
			t.Errorf("%s: ciphers %v / %v, want %v", v, l[2], l[3], want)
		}
		macs := []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"}
		if !slices.Equal(l[4], macs) {
			t.Errorf("%s: macs %v, want %v", v, l[4], macs)
		}
		if !slices.Equal(l[0], openssh[0]) || !slices.Equal(l[1], openssh[1]) {
			t.Errorf("%s: kex or host keys differ from OpenSSH's: %v %v", v, l[0], l[1])
		}
	}
}
