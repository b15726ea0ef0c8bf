package config

import (
	"slices"
	"testing"
)

func TestOffer(t *testing.T) {
	s := Defaults().SSH
	gcmOnly := []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	broad := []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"}
	for _, tt := range []struct {
		version string
		want    []string
	}{
		{"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", gcmOnly},
		{"SSH-2.0-OpenSSH_8.4", gcmOnly},
		{"SSH-2.0-OpenSSH_6.2", gcmOnly},
		{"SSH-2.0-OpenSSH_for_Windows_8.1", gcmOnly},
		{"SSH-2.0-OpenSSH_10.0", gcmOnly},
		{"SSH-2.0-OpenSSH_6.1", broad},
		{"SSH-2.0-OpenSSH_5.3", broad},
		{"SSH-2.0-OpenSSH_x", broad},
		{"SSH-2.0-paramiko_2.12.0", broad},
		{"SSH-2.0-dropbear_2022.83", broad},
		{"SSH-2.0-PuTTY_Release_0.78", broad},
		{"SSH-2.0-Go", broad},
		{"", broad},
		{"SSH-2.0-OpenSSHish_9.2", broad},
	} {
		c, m := s.Offer(tt.version)
		if !slices.Equal(c, tt.want) {
			t.Errorf("%q: ciphers %v, want %v", tt.version, c, tt.want)
		}
		if len(tt.want) == len(broad) && !slices.Contains(m, "hmac-sha2-256") {
			t.Errorf("%q: macs %v lack hmac-sha2-256", tt.version, m)
		}
	}
	s.CompatCiphers, s.CompatMACs = nil, nil
	if c, _ := s.Offer("SSH-2.0-paramiko_2.12.0"); !slices.Equal(c, gcmOnly) {
		t.Errorf("compat lists empty: %v", c)
	}
}
