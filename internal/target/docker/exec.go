package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

func labelFilter(kv ...string) filters.Args {
	f := filters.NewArgs()
	for _, s := range kv {
		f.Add("label", s)
	}
	return f
}

// copyIn puts the agent binary and the keys into a created (not yet
// started) container through the archive API: the exec transport, for
// engines that cannot see the gate's files.
func (b *Backend) copyIn(ctx context.Context, bx *box) error {
	agent, err := os.Open(b.cfg.AgentPath)
	if err != nil {
		return fmt.Errorf("open agent: %w", err)
	}
	defer agent.Close()
	st, err := agent.Stat()
	if err != nil {
		return err
	}
	uid, gid := 0, 0
	keyMode := int64(0o444)
	if u, g, ok := numericUser(bx.execUser); ok {
		uid, gid, keyMode = u, g, 0o400
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		now := time.Now()
		hdrs := []struct {
			h    tar.Header
			data []byte
			r    io.Reader
		}{
			{h: tar.Header{Typeflag: tar.TypeDir, Name: "run/", Mode: 0o755, ModTime: now}},
			{h: tar.Header{Typeflag: tar.TypeDir, Name: "run/sshgate/", Mode: 0o755, ModTime: now}},
			{h: tar.Header{Typeflag: tar.TypeReg, Name: "run/sshgate/" + hostKeyFile, Mode: keyMode, Uid: uid, Gid: gid, ModTime: now}, data: bx.keys.hostPEM},
			{h: tar.Header{Typeflag: tar.TypeReg, Name: "run/sshgate/" + authorizedKeysFile, Mode: 0o444, ModTime: now}, data: bx.keys.authLines},
			{h: tar.Header{Typeflag: tar.TypeReg, Name: "run/sshgate-agent", Mode: 0o555, Size: st.Size(), ModTime: now}, r: agent},
		}
		var err error
		for _, e := range hdrs {
			h := e.h
			if e.data != nil {
				h.Size = int64(len(e.data))
			}
			if err = tw.WriteHeader(&h); err != nil {
				break
			}
			if e.data != nil {
				_, err = tw.Write(e.data)
			} else if e.r != nil {
				_, err = io.Copy(tw, e.r)
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	err = b.api.CopyToContainer(ctx, bx.id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(errors.New("copy ended"))
	return err
}

// execStdio runs `sshgate-agent --stdio` in bx and returns its stdin/stdout
// as a net.Conn.
func (b *Backend) execStdio(ctx context.Context, bx *box) (net.Conn, error) {
	cmd := append([]string{AgentMount}, agentArgs(bx.agentEnv)...)
	cmd = append(cmd, "--stdio")
	ex, err := b.api.ContainerExecCreate(ctx, bx.id, container.ExecOptions{
		User: bx.execUser, Cmd: cmd, Env: containerEnv(bx.agentEnv), AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, engineError(bx.target, "exec agent in "+bx.name, err)
	}
	hj, err := b.api.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, engineError(bx.target, "attach agent in "+bx.name, err)
	}
	return &execConn{Conn: hj.Conn, hj: hj, br: hj.Reader, name: bx.name, b: b}, nil
}

// execConn is a hijacked exec stream as a net.Conn: writes go to the
// agent's stdin, reads return its stdout, demultiplexed in place (8-byte
// frame headers; no goroutine, no extra copy); stderr frames are logged.
type execConn struct {
	net.Conn
	hj     types.HijackedResponse
	br     *bufio.Reader
	remain int
	name   string
	b      *Backend
	mu     sync.Mutex // Read is not called concurrently; guards remain anyway
}

func (c *execConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.remain == 0 {
		var h [8]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return 0, err
		}
		n := int(binary.BigEndian.Uint32(h[4:]))
		switch h[0] {
		case 1: // stdout
			c.remain = n
		case 2, 3: // stderr, or an error from the engine
			buf := make([]byte, min(n, 4096))
			if _, err := io.ReadFull(c.br, buf); err != nil {
				return 0, io.ErrUnexpectedEOF
			}
			if _, err := c.br.Discard(n - len(buf)); err != nil {
				return 0, io.ErrUnexpectedEOF
			}
			c.b.log.Debug("agent stderr", "container", c.name, "text", strings.TrimSpace(strings.ToValidUTF8(string(buf), "?")))
		default:
			if _, err := c.br.Discard(n); err != nil {
				return 0, io.ErrUnexpectedEOF
			}
		}
	}
	if len(p) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.br.Read(p)
	c.remain -= n
	if err == io.EOF && c.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// CloseWrite closes the agent's stdin.
func (c *execConn) CloseWrite() error { return c.hj.CloseWrite() }

// readFull reads until buf is full or the reader ends.
func readFull(r io.Reader, buf []byte) (int, error) {
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// stripMux removes docker log frame headers from a multiplexed buffer.
func stripMux(b []byte) string {
	var out bytes.Buffer
	for len(b) >= 8 && b[0] <= 3 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
		n := int(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
		if n > len(b) {
			n = len(b)
		}
		out.Write(b[:n])
		b = b[n:]
	}
	out.Write(b)
	return out.String()
}
