package datadir

import (
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestHostKeys(t *testing.T) {
	d, _, err := Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := d.HostKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].PublicKey().Type() != ssh.KeyAlgoED25519 || keys[1].PublicKey().Type() != ssh.KeyAlgoRSA {
		t.Fatalf("host keys %v, want ed25519 then rsa", types(keys))
	}
	rk := keys[1].PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
	if rk.N.BitLen() != 4096 {
		t.Errorf("RSA host key of %d bits, want 4096", rk.N.BitLen())
	}
	if _, err := os.Stat(d.HostKeyPath("ecdsa")); !os.IsNotExist(err) {
		t.Errorf("an ecdsa host key was made without being asked for: %v", err)
	}
	// Asked for: made, offered between the two; the others are kept.
	again, err := d.HostKeys(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 3 || again[1].PublicKey().Type() != ssh.KeyAlgoECDSA256 ||
		string(again[0].PublicKey().Marshal()) != string(keys[0].PublicKey().Marshal()) {
		t.Fatalf("with ecdsa: %v", types(again))
	}
	// Once made, a gate that no longer asks for it leaves the file alone
	// and does not offer it.
	if later, err := d.HostKeys(false); err != nil || len(later) != 2 {
		t.Fatalf("without ecdsa again: %v %v", types(later), err)
	}
	if _, err := os.Stat(d.HostKeyPath("ecdsa")); err != nil {
		t.Errorf("the ecdsa key file was removed: %v", err)
	}
}

func types(keys []ssh.Signer) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.PublicKey().Type())
	}
	return out
}
