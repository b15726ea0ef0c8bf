package agent

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Port forwarding. Which destinations a user may reach is the gate's
// decision; the agent dials from inside the container's network namespace.

type directTCPIPMsg struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

type tcpipForwardMsg struct {
	Addr string
	Port uint32
}

type tcpipForwardReply struct{ Port uint32 }

type forwardedTCPIPMsg struct {
	Addr     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

const dialTimeout = 10 * time.Second

func (c *connState) handleDirectTCPIP(nc ssh.NewChannel) {
	if !permitted(c.sconn.Permissions, "permit-port-forwarding") {
		_ = nc.Reject(ssh.Prohibited, "port forwarding not permitted")
		return
	}
	var m directTCPIPMsg
	if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil || m.Port > 65535 {
		_ = nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "connect failed")
		return
	}
	if !c.trackConn(conn, true) {
		_ = nc.Reject(ssh.ConnectionFailed, "connection closing")
		conn.Close()
		return
	}
	defer c.trackConn(conn, false)
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	pipeBoth(ch, conn)
}

// trackConn records a forwarded TCP connection so that it is closed when
// the SSH connection ends. It reports false if that already happened.
func (c *connState) trackConn(conn net.Conn, on bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !on {
		delete(c.conns, conn)
		return true
	}
	if c.closed {
		return false
	}
	c.conns[conn] = struct{}{}
	return true
}

// pipeBoth copies both ways, passing half-closes on, and closes both ends
// when both directions are done.
func pipeBoth(ch ssh.Channel, conn net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(conn, ch)
		if tc, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		} else {
			conn.Close()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, conn)
		_ = ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	conn.Close()
}

func forwardKey(addr string, port uint32) string {
	return addr + "\x00" + strconv.Itoa(int(port))
}

// bindHost maps the requested bind address: "" and "localhost" mean the
// loopback address, anything else is used as given.
func bindHost(addr string) string {
	if addr == "" || addr == "localhost" {
		return "127.0.0.1"
	}
	return addr
}

func (c *connState) tcpipForward(payload []byte) (bool, []byte) {
	if !permitted(c.sconn.Permissions, "permit-port-forwarding") {
		return false, nil
	}
	var m tcpipForwardMsg
	if err := ssh.Unmarshal(payload, &m); err != nil || m.Port > 65535 {
		return false, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(bindHost(m.Addr), strconv.Itoa(int(m.Port))))
	if err != nil {
		c.log.Info("remote forward listen", "err", err)
		return false, nil
	}
	port := uint32(l.Addr().(*net.TCPAddr).Port)
	c.mu.Lock()
	key := forwardKey(m.Addr, port)
	if c.closed || c.forwards[key] != nil {
		c.mu.Unlock()
		l.Close()
		return false, nil
	}
	c.forwards[key] = l
	if m.Port == 0 {
		c.forwards[forwardKey(m.Addr, 0)] = l // cancel may name port 0 too
	}
	c.mu.Unlock()
	go c.acceptForwarded(l, m.Addr, port)
	var reply []byte
	if m.Port == 0 {
		reply = ssh.Marshal(&tcpipForwardReply{Port: port})
	}
	return true, reply
}

func (c *connState) acceptForwarded(l net.Listener, addr string, port uint32) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			if !c.trackConn(conn, true) {
				conn.Close()
				return
			}
			defer c.trackConn(conn, false)
			orig := conn.RemoteAddr().(*net.TCPAddr)
			ch, reqs, err := c.sconn.OpenChannel("forwarded-tcpip", ssh.Marshal(&forwardedTCPIPMsg{
				Addr: addr, Port: port, OrigHost: orig.IP.String(), OrigPort: uint32(orig.Port),
			}))
			if err != nil {
				conn.Close()
				return
			}
			go ssh.DiscardRequests(reqs)
			pipeBoth(ch, conn)
		}()
	}
}

func (c *connState) cancelTCPIPForward(payload []byte) bool {
	var m tcpipForwardMsg
	if ssh.Unmarshal(payload, &m) != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.forwards[forwardKey(m.Addr, m.Port)]
	if l == nil {
		return false
	}
	for k, v := range c.forwards {
		if v == l {
			delete(c.forwards, k)
		}
	}
	l.Close()
	return true
}

func (c *connState) closeForwards() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, l := range c.forwards {
		l.Close()
		delete(c.forwards, k)
	}
	for conn := range c.conns {
		conn.Close()
	}
}
