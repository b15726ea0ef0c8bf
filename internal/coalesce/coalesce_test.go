package coalesce

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// Bytes arrive complete and in order, and Close sends what was queued.
func TestOrderAndCloseFlushes(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	done := make(chan []byte)
	go func() { got, _ := io.ReadAll(b); done <- got }()
	var want []byte
	for i := 0; i < 2000; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 1+i*37%40000)
		want = append(want, p...)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d bytes, want %d (equal=%v)", len(got), len(want), bytes.Equal(got, want))
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
}

// Concurrent writers never interleave inside one Write.
func TestConcurrentWritesAtomic(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	const writers, each, size = 4, 200, 3000
	done := make(chan []byte)
	go func() { got, _ := io.ReadAll(b); done <- got }()
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte('a' + g)}, size)
			for i := 0; i < each; i++ {
				if _, err := w.Write(p); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	w.Close()
	got := <-done
	if len(got) != writers*each*size {
		t.Fatalf("got %d bytes, want %d", len(got), writers*each*size)
	}
	for off := 0; off < len(got); off += size {
		blk := got[off : off+size]
		if bytes.Count(blk, blk[:1]) != size {
			t.Fatalf("write at offset %d interleaved with another", off)
		}
	}
}

// A failed socket write surfaces on a later Write instead of hanging.
func TestWriteErrorSurfaces(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	b.Close()
	a.(*net.TCPConn).CloseWrite()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = w.Write(make([]byte, 64<<10))
	}
	if err == nil {
		t.Fatal("writes to a closed peer never failed")
	}
	w.Close()
}

// record is one write of TestReuseAfterWrite: writer, sequence number and
// length, then bytes derived from them.
func record(buf []byte, g, i int) []byte {
	n := len(buf)
	binary.BigEndian.PutUint16(buf[0:], uint16(g))
	binary.BigEndian.PutUint32(buf[2:], uint32(i))
	binary.BigEndian.PutUint32(buf[6:], uint32(n))
	for j := 10; j < n; j++ {
		buf[j] = byte(g*131 + i*7 + j)
	}
	return buf
}

// Writers overwrite their buffer as soon as Write returns (as x/crypto
// does: bufio refills its buffer, the cipher seals the next packet into its
// own). Every record must arrive as it was when written: a queued slice kept
// past Write's return would arrive overwritten.
// copyMax is x/crypto's write buffer (bufio, 4 KiB): the sizes around it are
// where a coalescer that kept slices by reference would go wrong.
const copyMax = 4 << 10

func TestReuseAfterWrite(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	const writers, each = 4, 300
	sizes := []int{10, 100, copyMax - 1, copyMax, copyMax + 1, 28 << 10, 32<<10 + 20, 200 << 10}
	done := make(chan error, 1)
	go func() {
		defer b.Close() // on an error, the writers' writes fail rather than block
		br := bufio.NewReaderSize(b, 1<<20)
		next := make([]int, writers)
		hdr := make([]byte, 10)
		for k := 0; k < writers*each; k++ {
			if _, err := io.ReadFull(br, hdr); err != nil {
				done <- err
				return
			}
			g, i, n := int(binary.BigEndian.Uint16(hdr)), int(binary.BigEndian.Uint32(hdr[2:])), int(binary.BigEndian.Uint32(hdr[6:]))
			if g >= writers || i != next[g] || n < 10 || n > 1<<20 {
				done <- fmt.Errorf("record %d: header writer %d seq %d len %d: corrupted", k, g, i, n)
				return
			}
			next[g]++
			got := make([]byte, n)
			copy(got, hdr)
			if _, err := io.ReadFull(br, got[10:]); err != nil {
				done <- err
				return
			}
			if want := record(make([]byte, n), g, i); !bytes.Equal(got, want) {
				done <- fmt.Errorf("record %d (writer %d seq %d, %d bytes) corrupted", k, g, i, n)
				return
			}
		}
		done <- nil
	}()
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 200<<10)
			for i := 0; i < each; i++ {
				n := sizes[(i+g)%len(sizes)]
				if _, err := w.Write(record(buf[:n], g, i)); err != nil {
					t.Error(err)
					return
				}
				for j := range buf[:n] { // reuse at once
					buf[j] = 0xEE
				}
			}
		}(g)
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.Close()
}

// The write pattern of x/crypto's transport, over a real SSH connection: both
// ends on coalesced connections, several channels in both directions at
// once, each stream's digest checked.
func TestSSHChannelsIntact(t *testing.T) {
	a, b := tcpPair(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	scfg := &ssh.ServerConfig{NoClientAuth: true}
	scfg.AddHostKey(signer)
	ccfg := &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()}
	ccfg.Ciphers = []string{"aes128-gcm@openssh.com"}
	// A rekey every 1 MiB: key exchanges run between data packets.
	ccfg.RekeyThreshold = 1 << 20

	const chans, size = 4, 8 << 20
	srvErr := make(chan error, 1)
	go func() {
		sc, chs, reqs, err := ssh.NewServerConn(New(b), scfg)
		if err != nil {
			srvErr <- err
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		var wg sync.WaitGroup
		for nc := range chs {
			ch, creqs, err := nc.Accept()
			if err != nil {
				srvErr <- err
				return
			}
			go ssh.DiscardRequests(creqs)
			wg.Add(1)
			go func() { // echo the digest of what came, then send as much back
				defer wg.Done()
				h := sha256.New()
				io.Copy(h, ch)
				ch.Write(h.Sum(nil))
				ch.Write(stream(string(nc.ExtraData()), size))
				ch.Close()
			}()
		}
		wg.Wait()
		srvErr <- nil
	}()
	cc, cchs, creqs, err := ssh.NewClientConn(New(a), "x", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(cc, cchs, creqs)
	var wg sync.WaitGroup
	errs := make(chan error, chans)
	for i := 0; i < chans; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprint("chan-", i)
			ch, reqs, err := client.OpenChannel("x", []byte(name))
			if err != nil {
				errs <- err
				return
			}
			go ssh.DiscardRequests(reqs)
			data := stream(name, size)
			go func() {
				// Small and large writes, the buffer scribbled over after each.
				buf := make([]byte, 100<<10)
				for off, k := 0, 0; off < len(data); k++ {
					n := min([]int{1, 300, 5000, 32 << 10, 100 << 10}[k%5], len(data)-off)
					copy(buf, data[off:off+n])
					if _, err := ch.Write(buf[:n]); err != nil {
						return
					}
					for j := range buf[:n] {
						buf[j] = 0xEE
					}
					off += n
				}
				ch.CloseWrite()
			}()
			got, err := io.ReadAll(ch)
			if err != nil {
				errs <- err
				return
			}
			want := sha256.Sum256(data)
			if len(got) != 32+size || !bytes.Equal(got[:32], want[:]) {
				errs <- fmt.Errorf("%s: the server got other bytes than were sent", name)
				return
			}
			if !bytes.Equal(got[32:], data) {
				errs <- fmt.Errorf("%s: the client got other bytes than were sent", name)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	client.Close()
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
}

// stream is size pseudo-random bytes named by seed.
func stream(seed string, size int) []byte {
	var key [32]byte
	copy(key[:], seed)
	out := make([]byte, size)
	mrand.NewChaCha8(key).Read(out)
	return out
}

// A small write leaves on its own, without a later write or a close
// (interactive latency).
func TestSmallWriteLeavesAlone(t *testing.T) {
	a, b := tcpPair(t)
	w := New(a)
	for i := 0; i < 20; i++ {
		if _, err := w.Write([]byte{'k', byte(i)}); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 2)
		if _, err := io.ReadFull(b, got); err != nil || got[0] != 'k' || got[1] != byte(i) {
			t.Fatalf("keystroke %d: got %q, %v", i, got, err)
		}
	}
	w.Close()
}

// A large write to a peer that does not read blocks; Close ends it within
// its flush timeout, and the write reports an error.
func TestCloseEndsBlockedWrite(t *testing.T) {
	a, _ := tcpPair(t)
	w := New(a)
	res := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := w.Write(buf); err != nil {
				res <- err
				return
			}
		}
	}()
	// Wait until the socket buffers are full: a write is in flight and stays.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		busy := w.writing
		w.mu.Unlock()
		if busy || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	start := time.Now()
	w.Close()
	if err := <-res; err == nil {
		t.Fatal("blocked write returned no error after Close")
	}
	if d := time.Since(start); d > closeFlushTimeout+5*time.Second {
		t.Fatalf("Close took %v", d)
	}
}
