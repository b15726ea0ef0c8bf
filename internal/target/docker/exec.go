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
	"log/slog"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"

	lifecycle "github.com/sshgate/sshgate/internal/target/container"
)

// Exec runs a second process in the container: detached, or attached with
// its stdin and stdout as a net.Conn (a hijacked exec stream).
func (e *Engine) Exec(ctx context.Context, r lifecycle.Ref, x lifecycle.ExecRequest) (*lifecycle.Process, error) {
	ex, err := e.api.ContainerExecCreate(ctx, r.ID, container.ExecOptions{
		User: x.User, Cmd: x.Cmd, Env: x.Env, AttachStdin: x.Attach, AttachStdout: x.Attach, AttachStderr: x.Attach,
	})
	if err != nil {
		return nil, engineError(r.Target, "exec in "+r.Name, err)
	}
	if x.Attach {
		hj, err := e.api.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
		if err != nil {
			return nil, engineError(r.Target, "attach exec in "+r.Name, err)
		}
		return &lifecycle.Process{Conn: &execConn{Conn: hj.Conn, hj: hj, br: hj.Reader, name: r.Name, log: e.log}}, nil
	}
	if err := e.api.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{Detach: true}); err != nil {
		return nil, engineError(r.Target, "start exec in "+r.Name, err)
	}
	return &lifecycle.Process{Exited: func(ctx context.Context) (bool, int, error) {
		st, err := e.api.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return false, 0, err
		}
		// An exec not yet begun shows neither running nor a pid.
		return !st.Running && (st.Pid != 0 || st.ExitCode != 0), st.ExitCode, nil
	}}, nil
}

// copyIn puts files into a created (not yet started) container through the
// archive API, for engines that cannot see the gate's files.
func (e *Engine) copyIn(ctx context.Context, id string, files []lifecycle.File) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, files)) }()
	err := e.api.CopyToContainer(ctx, id, "/", pr, container.CopyToContainerOptions{})
	pr.CloseWithError(errors.New("copy ended"))
	return err
}

// writeTar writes files as a tar stream rooted at /, each preceded by its
// parent directories (0755, root).
func writeTar(w io.Writer, files []lifecycle.File) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	dirs := map[string]bool{}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean(f.Path), "/")
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: now}); err != nil {
				return err
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID, ModTime: now, Size: int64(len(f.Data))}
		var src io.Reader = bytes.NewReader(f.Data)
		if f.Source != "" {
			sf, err := os.Open(f.Source)
			if err != nil {
				return fmt.Errorf("open %s: %w", f.Source, err)
			}
			defer sf.Close()
			st, err := sf.Stat()
			if err != nil {
				return err
			}
			h.Size, src = st.Size(), sf
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, src); err != nil {
			return err
		}
	}
	return tw.Close()
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
	log    *slog.Logger
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
			c.log.Debug("agent stderr", "container", c.name, "text", strings.TrimSpace(strings.ToValidUTF8(string(buf), "?")))
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
