package xfer

import (
	"syscall"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/audit"
)

// BenchmarkSFTPUpload feeds an upload (OPEN, then WRITEs of 32 KiB, as
// OpenSSH's sftp and scp send them) to the parser in the pieces a relay
// hands over (64 KiB reads, so packets straddle them): the audit's cost per
// byte of file data, with and without the sha256.
func BenchmarkSFTPUpload(b *testing.B) {
	open := sftpScript(nil, nil)[:4] // INIT, version, OPEN, HANDLE
	data := make([]byte, 32<<10)
	var c []byte
	for i := 0; i < 256; i++ { // 8 MiB
		c = append(c, sftpPkt(sftpWrite, uint32(10+i), "H1", uint64(i*len(data)), data)...)
	}
	for _, noHash := range []bool{false, true} {
		name := "sha256"
		if noHash {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(c)))
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				p := NewSFTP(func(audit.Event) {})
				p.noHash = noHash
				for _, m := range open {
					if m.toTarget {
						p.ToTarget(m.pkt)
					} else {
						p.ToUser(m.pkt)
					}
				}
				for off := 0; off < len(c); off += 64 << 10 {
					p.ToTarget(c[off:min(off+64<<10, len(c))])
				}
				if f := p.handles["H1"]; f == nil || f.wrote != 256*32<<10 {
					b.Fatal("the upload was not followed")
				}
			}
			b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(b.N)*float64(len(c))/(1<<30)), "cpu-s/GiB")
		})
	}
}

// cpuTime is the process's CPU time (the wall time of a benchmark is not,
// on a shared machine).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
