package account

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/route/menu"
)

// The account menu runs on the user's PTY channel with no target. One
// goroutine (keyPump) is the only reader of the channel's data for the
// menu's whole life, and one (reqRouter) the only reader of its requests:
// the menu, then each session opened from it, then the menu again, take
// their input from those two, so a key typed after Enter is never eaten by
// a reader that is going away, and nothing leaks when the user disconnects
// (both end when the channel does).

// keyPump reads the user's channel and hands each chunk to whichever
// keyReader asks.
type keyPump struct {
	ch      ssh.Channel
	data    chan []byte
	done    chan struct{} // the channel's data ended (EOF, close, disconnect)
	quit    chan struct{}
	quitOne sync.Once
	mu      sync.Mutex
	pending []byte // read from the channel, not yet consumed
}

func newKeyPump(ch ssh.Channel) *keyPump {
	p := &keyPump{ch: ch, data: make(chan []byte), done: make(chan struct{}), quit: make(chan struct{})}
	go p.run()
	return p
}

func (p *keyPump) run() {
	defer close(p.done)
	for {
		buf := make([]byte, 1024)
		n, err := p.ch.Read(buf)
		if n > 0 {
			select {
			case p.data <- buf[:n]:
			case <-p.quit:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stop ends the pump once nobody will read again (it also ends by itself
// when the channel does).
func (p *keyPump) stop() { p.quitOne.Do(func() { close(p.quit) }) }

func (p *keyPump) take(b []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n
}

func (p *keyPump) unread(d []byte) {
	if len(d) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(append([]byte(nil), d...), p.pending...)
}

// keyReader is one consumer's view of the pump: the menu's, or a session's.
// After Stop it returns io.EOF and consumes nothing more; what it had taken
// and not handed out goes back to the pump.
type keyReader struct {
	p    *keyPump
	stop chan struct{}
	once sync.Once
	mu   sync.Mutex // held for the whole of a Read
}

func (p *keyPump) reader() *keyReader { return &keyReader{p: p, stop: make(chan struct{})} }

func (r *keyReader) Read(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stop:
		return 0, io.EOF
	default:
	}
	if n := r.p.take(b); n > 0 {
		return n, nil
	}
	select {
	case d := <-r.p.data:
		select {
		case <-r.stop:
			r.p.unread(d)
			return 0, io.EOF
		default:
		}
		n := copy(b, d)
		r.p.unread(d[n:])
		return n, nil
	case <-r.p.done:
		return 0, io.EOF
	case <-r.stop:
		return 0, io.EOF
	}
}

// Stop makes the reader return io.EOF from now on.
func (r *keyReader) Stop() { r.once.Do(func() { close(r.stop) }) }

// Wait stops the reader and returns once no Read is running.
func (r *keyReader) Wait() {
	r.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
}

// reqRouter reads the user's channel requests: during the menu it keeps the
// window size and tells the menu; during a session it hands every request
// to the session's relay. Only run sends on or closes a session's request
// stream, and it never blocks on one once the session has ended, so a
// relay stuck on a hung target cannot wedge it.
type reqRouter struct {
	mu       sync.Mutex
	pty      PtyReq
	sess     chan *ssh.Request // the current session's requests (nil in the menu)
	ended    chan struct{}     // closed by endSession
	wake     chan struct{}     // startSession tells run to look at sess and ended again
	onResize func(cols, rows int)
	gone     chan struct{} // the channel's requests ended: the channel is closed
}

func newReqRouter(reqs <-chan *ssh.Request, pty PtyReq) *reqRouter {
	rr := &reqRouter{pty: pty, gone: make(chan struct{}), wake: make(chan struct{}, 1)}
	go rr.run(reqs)
	return rr
}

func (rr *reqRouter) run(reqs <-chan *ssh.Request) {
	var sess chan *ssh.Request
	var ended chan struct{}
	closeSess := func() { // the relay's request loop ends
		if sess == nil {
			return
		}
		rr.mu.Lock()
		if rr.sess == sess {
			rr.sess, rr.ended = nil, nil
		}
		rr.mu.Unlock()
		close(sess)
		sess, ended = nil, nil
	}
	defer func() {
		rr.mu.Lock()
		close(rr.gone)
		latest := rr.sess
		rr.sess, rr.ended = nil, nil
		rr.mu.Unlock()
		if latest != nil && latest != sess {
			close(latest)
		}
		closeSess()
	}()
	look := func() {
		rr.mu.Lock()
		if rr.sess != sess {
			s, e := rr.sess, rr.ended
			rr.mu.Unlock()
			closeSess()
			sess, ended = s, e
			return
		}
		rr.mu.Unlock()
	}
	for {
		select {
		case <-rr.wake:
			look()
		case <-ended: // nil, never ready, in the menu
			closeSess()
		case r, ok := <-reqs:
			if !ok {
				return
			}
			look()
			rr.mu.Lock()
			var resize func(cols, rows int)
			var cols, rows int
			if r.Type == "window-change" {
				var w WinChange
				if ssh.Unmarshal(r.Payload, &w) == nil {
					rr.pty.Cols, rr.pty.Rows, rr.pty.Width, rr.pty.Height = w.Cols, w.Rows, w.Width, w.Height
					resize, cols, rows = rr.onResize, int(w.Cols), int(w.Rows)
				}
			}
			rr.mu.Unlock()
			switch {
			case sess != nil:
				select {
				case sess <- r:
				case <-ended:
					if r.WantReply {
						_ = r.Reply(false, nil)
					}
					closeSess()
				}
			case resize != nil:
				resize(cols, rows)
			case r.Type != "window-change" && r.WantReply:
				_ = r.Reply(false, nil)
			}
		}
	}
}

func (rr *reqRouter) ptyNow() PtyReq {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.pty
}

func (rr *reqRouter) setResize(f func(cols, rows int)) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.onResize = f
}

// startSession returns the request stream of a session opened from the
// menu; ok is false when the channel is already gone.
func (rr *reqRouter) startSession() (<-chan *ssh.Request, bool) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	select {
	case <-rr.gone:
		return nil, false
	default:
	}
	rr.sess, rr.ended = make(chan *ssh.Request), make(chan struct{})
	select {
	case rr.wake <- struct{}{}:
	default:
	}
	return rr.sess, true
}

// endSession ends the current session's request stream (run closes it).
func (rr *reqRouter) endSession() {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.ended != nil {
		select {
		case <-rr.ended:
		default:
			close(rr.ended)
		}
	}
}

// inPlace is the user's channel as a session opened from the menu sees it:
// input comes from the pump, and the end of the session (EOF, exit status,
// close) stays at the gate, so the channel can go back to the menu.
type inPlace struct {
	ssh.Channel
	in   *keyReader
	rr   *reqRouter
	once sync.Once

	mu     sync.Mutex
	status uint32
	exited bool
}

func (s *inPlace) Read(b []byte) (int, error) { return s.in.Read(b) }
func (s *inPlace) CloseWrite() error          { return nil }

func (s *inPlace) Close() error {
	s.once.Do(func() {
		s.in.Stop()
		s.rr.endSession()
	})
	return nil
}

func (s *inPlace) SendRequest(name string, wantReply bool, payload []byte) (bool, error) {
	switch name {
	case "exit-status":
		var st struct{ S uint32 }
		if ssh.Unmarshal(payload, &st) == nil {
			s.mu.Lock()
			if !s.exited {
				s.status, s.exited = st.S, true
			}
			s.mu.Unlock()
		}
		return true, nil
	case "exit-signal":
		s.mu.Lock()
		if !s.exited {
			s.status, s.exited = 255, true
		}
		s.mu.Unlock()
		return true, nil
	}
	return s.Channel.SendRequest(name, wantReply, payload)
}

// accountMenu serves a PTY session with no target: the menu, the sessions
// opened from it in place, and the menu again (menu.after_session).
func (c *Conn) accountMenu(ch ssh.Channel, reqs <-chan *ssh.Request, s *Setup) {
	if s.Start.WantReply {
		_ = s.Start.Reply(true, nil)
	}
	pump := newKeyPump(ch)
	defer pump.stop()
	rr := newReqRouter(reqs, *s.PTY)
	status, note, last := uint32(0), "", ""
	motd := readMOTD(c.MOTDFile, c.Log) // once per login, as sshd's PrintMotd
	for {
		items, err := c.menuItems()
		if err != nil {
			c.message(ch, s, policy.ErrPolicy)
			c.exit(ch, 1)
			return
		}
		var name string
		var ok bool
		if dumbTerm(rr.ptyNow().Term) {
			name, ok = c.numberedMenu(ch, pump, items, note, motd)
		} else {
			name, ok = c.tui(ch, pump, rr, items, note, last, motd)
		}
		motd = nil
		if !ok || c.gone(pump, rr) {
			status = 0 // the user quit the menu
			break
		}
		st, err := c.openInPlace(ch, pump, rr, s, name)
		note, last = "", name
		if err != nil {
			note = publicText(err)
			continue
		}
		status = st
		if c.gone(pump, rr) || c.AfterSession == "disconnect" {
			break
		}
	}
	c.exit(ch, status)
}

func (c *Conn) gone(pump *keyPump, rr *reqRouter) bool {
	select {
	case <-pump.done:
		return true
	case <-rr.gone:
		return true
	case <-c.Ctx.Done():
		return true
	default:
		return false
	}
}

// menuItems reads what the user may reach now (a fresh snapshot: the r key
// and each return to the menu see the latest grants).
func (c *Conn) menuItems() ([]menu.Item, error) {
	snap, err := c.snapshot()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Ctx, 10*time.Second)
	defer cancel()
	access := snap.Reachable()
	infos := map[string]gate.TargetInfo{}
	for _, ti := range snap.Infos {
		infos[ti.Target] = ti
	}
	groups, err := c.Store.EnvGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list env groups: %w", err)
	}
	items := make([]menu.Item, len(access))
	var wg sync.WaitGroup
	probes := make(chan struct{}, 32) // dials at once, for users with many targets
	for i, a := range access {
		t, ti := a.Target, infos[a.Target.Name]
		it := menu.Item{ID: ti.ID, Name: t.Name, Aliases: ti.Aliases, Env: t.Env, Group: groups[t.Env], Primary: ti.Primary}
		switch {
		case t.Kind == gate.KindDocker:
			it.Addr, it.State = "docker", "starts on connect"
		case t.Kind == gate.KindKubernetes:
			it.Addr, it.State = "kubernetes", "starts on connect"
		case t.Upstream != nil:
			it.Addr, it.State = t.Upstream.Addr, "upstream"
			items[i] = it
			if d := c.ProbeTimeout; d > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					probes <- struct{}{}
					defer func() { <-probes }()
					items[i].State = probe(ctx, t.Upstream.Addr, d)
				}()
			}
		default:
			it.Addr, it.State = t.Kind, "-"
		}
		if t.Upstream == nil {
			items[i] = it
		}
	}
	wg.Wait()
	return items, nil
}

// probe says whether an upstream target accepts TCP connections.
func probe(ctx context.Context, addr string, d time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return "stopped"
	}
	_ = conn.Close()
	return "running"
}

// dumbTerm reports whether TERM is one the full-screen menu should not
// drive: empty, dumb, or of no family known to speak ANSI.
func dumbTerm(t string) bool {
	for _, p := range []string{"xterm", "screen", "tmux", "vt1", "vt2", "vt3", "vt4", "vt5", "linux", "rxvt", "putty",
		"alacritty", "kitty", "foot", "st-", "ansi", "wezterm", "konsole", "gnome", "cygwin", "ms-terminal", "iterm", "eterm", "mintty"} {
		if strings.HasPrefix(t, p) || t == strings.TrimSuffix(p, "-") {
			return false
		}
	}
	return true
}

// tui runs the bubbletea menu on the channel until the user chooses or quits.
func (c *Conn) tui(ch ssh.Channel, pump *keyPump, rr *reqRouter, items []menu.Item, note, at string, motd []string) (string, bool) {
	in := pump.reader()
	ctx, cancel := context.WithCancel(c.Ctx)
	defer cancel()
	go func() {
		select {
		case <-pump.done:
		case <-rr.gone:
		case <-ctx.Done():
		}
		cancel()
	}()
	pty := rr.ptyNow()
	lr := lipgloss.NewRenderer(ch, termenv.WithProfile(termenv.ANSI))
	lr.SetColorProfile(termenv.ANSI)
	host, port := c.Host, c.Port
	var uid int64
	if snap, err := c.Snapshot(ctx); err == nil {
		uid = snap.User.UID
	}
	m := menu.New(items, menu.Options{
		User: c.Identity.User, UID: uid, Host: host, Port: port,
		Width: int(pty.Cols), Height: int(pty.Rows), Note: note, At: at, MOTD: motd,
		Refresh: c.menuItems, Chosen: in.Stop,
	}, lr)
	prog := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(ch), tea.WithContext(ctx),
		tea.WithoutSignalHandler(), tea.WithAltScreen(), tea.WithEnvironment([]string{"TERM=" + pty.Term}))
	rr.setResize(func(cols, rows int) { prog.Send(tea.WindowSizeMsg{Width: cols, Height: rows}) })
	_, err := prog.Run()
	rr.setResize(nil)
	in.Wait()
	if err != nil {
		return "", false
	}
	return m.Choice()
}

// numberedMenu is the menu for a terminal that cannot do full-screen: a
// numbered list and a prompt.
func (c *Conn) numberedMenu(ch ssh.Channel, pump *keyPump, items []menu.Item, note string, motd []string) (string, bool) {
	in := pump.reader()
	defer in.Wait()
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{in, ch}, "")
	for _, l := range motd {
		fmt.Fprintf(t, "%s\n", l)
	}
	if note != "" {
		fmt.Fprintf(t, "sshgate: %s\n", note)
	}
	if len(items) == 0 {
		fmt.Fprintf(t, "sshgate: no targets are granted to %s\n", c.Identity.User)
		return "", false
	}
	fmt.Fprintf(t, "Targets for %s:\n", c.Identity.User)
	for i, it := range items {
		extra := ""
		if len(it.Aliases) > 0 {
			extra = ", alias " + strings.Join(it.Aliases, ",")
		}
		fmt.Fprintf(t, "  %d) %s  (id %d, env %s%s, %s)\n", i+1, it.Name, it.ID, it.Env, extra, it.State)
	}
	t.SetPrompt(fmt.Sprintf("Choose a target [1-%d, q to quit]: ", len(items)))
	for {
		line, err := t.ReadLine()
		if err != nil {
			return "", false
		}
		line = strings.TrimSpace(line)
		if line == "q" || line == "0" {
			return "", false
		}
		if n, err := strconv.Atoi(line); err == nil && n >= 1 && n <= len(items) {
			return items[n-1].Name, true
		}
		fmt.Fprintf(t, "Type a number from 1 to %d, or q.\n", len(items))
	}
}

// openInPlace connects the user's channel to target: a session on the
// target with the pty replayed, relayed until it ends. It returns the
// target's exit status.
func (c *Conn) openInPlace(ch ssh.Channel, pump *keyPump, rr *reqRouter, s *Setup, name string) (uint32, error) {
	t, err := c.Open(name, func(target, login string) {
		fmt.Fprintf(ch, "Connecting to %s as %s...\r\n", target, loginLabel(login))
	})
	if err != nil {
		return 0, err
	}
	defer t.Close()
	reqs, ok := rr.startSession()
	if !ok {
		return 0, nil
	}
	in := pump.reader()
	sess := &inPlace{Channel: ch, in: in, rr: rr}
	t.Shell(sess, reqs, rr.ptyNow(), s.Env)
	_ = sess.Close()
	in.Wait()
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.status, nil
}

// publicText is the line shown for an error: its chosen text, never its cause.
func publicText(err error) string {
	var pe *gate.PublicError
	if errors.As(err, &pe) {
		return pe.UserMessage()
	}
	return "internal error"
}

// maxMOTDLines bounds the message of the day shown above the menu.
const maxMOTDLines = 20

// readMOTD reads the message of the day: at most maxMOTDLines lines of
// printable text (control characters dropped, tabs as spaces, lines cut at
// 200 characters). A file that cannot be read shows nothing (and is logged).
func readMOTD(path string, log *slog.Logger) []string {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		log.Warn("menu.motd", "err", err)
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 8<<10))
	if err != nil {
		log.Warn("menu.motd", "err", err)
		return nil
	}
	return motdLines(string(b))
}

func motdLines(text string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if len(out) == maxMOTDLines {
			break
		}
		l = strings.Map(func(r rune) rune {
			switch {
			case r == '\t':
				return ' '
			case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError:
				return -1
			}
			return r
		}, l)
		if r := []rune(l); len(r) > 200 {
			l = string(r[:200])
		}
		out = append(out, strings.TrimRight(l, " "))
	}
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}
