package config

import (
	"slices"
	"strconv"
	"strings"
)

// Offer is what the gate offers one client, by its identification string.
// OpenSSH 6.2 and later (every OpenSSH of the last decade, Windows' port
// too) have AES-GCM, and list chacha20 and aes-ctr before it: they are
// offered Ciphers and MACs only, so they get AES-GCM, the fastest here.
// Every other client (paramiko, dropbear, PuTTY, libssh, x/crypto, or one
// that sent no identification first) is offered Ciphers and MACs first and
// CompatCiphers and CompatMACs after them, and gets the first of its own list
// that it finds there.
func (s SSH) Offer(clientVersion string) (ciphers, macs []string) {
	if modernOpenSSH(clientVersion) || (len(s.CompatCiphers) == 0 && len(s.CompatMACs) == 0) {
		return s.Ciphers, s.MACs
	}
	return union(s.Ciphers, s.CompatCiphers), union(s.MACs, s.CompatMACs)
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// modernOpenSSH reports whether v is "SSH-2.0-OpenSSH_X.Y..." (or
// "OpenSSH_for_Windows_X.Y") with X.Y at least 6.2, the first with AES-GCM.
func modernOpenSSH(v string) bool {
	rest, ok := strings.CutPrefix(v, "SSH-2.0-OpenSSH_")
	if !ok {
		return false
	}
	rest = strings.TrimPrefix(rest, "for_Windows_")
	major, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	minor := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = rest[:i]
	}
	x, err1 := strconv.Atoi(major)
	y, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return false
	}
	return x > 6 || x == 6 && y >= 2
}
