package coalesce

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSSHChannel moves b.N x 1 MiB over one x/crypto channel
// (aes128-gcm), both ends on coalesced TCP connections, and reports the
// process's CPU per GiB (both ends: encryption, decryption, the coalescer).
func BenchmarkSSHChannel(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		sc, chs, reqs, err := ssh.NewServerConn(New(nc), scfg)
		if err != nil {
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nc := range chs {
			ch, creqs, _ := nc.Accept()
			go ssh.DiscardRequests(creqs)
			go func() { io.Copy(io.Discard, ch); ch.Close() }()
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Config: ssh.Config{Ciphers: []string{"aes128-gcm@openssh.com"}}}
	cc, cchs, creqs, err := ssh.NewClientConn(New(nc), "x", ccfg)
	if err != nil {
		b.Fatal(err)
	}
	client := ssh.NewClient(cc, cchs, creqs)
	defer client.Close()
	ch, reqs, err := client.OpenChannel("x", nil)
	if err != nil {
		b.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := ch.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	ch.CloseWrite()
	b.StopTimer()
	gib := float64(b.N) / 1024
	b.ReportMetric((cpuTime()-cpu0).Seconds()/gib, "cpu-s/GiB")
}
