package agent

import (
	"io"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"
)

// BenchmarkSessionThroughput moves b.N MiB through one session each way
// (x/crypto client, AES-128-GCM, loopback) and reports MB/s. Compare with
// `ssh host 'head -c 1G /dev/zero' >/dev/null` against OpenSSH sshd in the
// same run.
func BenchmarkSessionThroughput(b *testing.B) {
	for _, dir := range []string{"download", "upload"} {
		b.Run(dir, func(b *testing.B) {
			f := newFixture(b, "", nil)
			cfg := &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(f.user.signer)},
				HostKeyCallback: ssh.FixedHostKey(f.hostPub)}
			cfg.Ciphers = []string{ssh.CipherAES128GCM}
			c, err := ssh.Dial("tcp", f.addr, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			n := int64(b.N) << 20
			b.SetBytes(1 << 20)
			b.ResetTimer()
			if dir == "download" {
				out, _ := s.StdoutPipe()
				if err := s.Start("head -c " + strconv.FormatInt(n, 10) + " /dev/zero"); err != nil {
					b.Fatal(err)
				}
				if got, err := io.Copy(io.Discard, out); err != nil || got != n {
					b.Fatalf("read %d of %d: %v", got, n, err)
				}
			} else {
				in, _ := s.StdinPipe()
				if err := s.Start("cat >/dev/null"); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 1<<20)
				for i := 0; i < b.N; i++ {
					if _, err := in.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				in.Close()
			}
			if err := s.Wait(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
