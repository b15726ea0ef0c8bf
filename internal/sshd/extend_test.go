package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

// A keyboard-interactive step that waits on a person (a browser sign-in)
// moves the login deadline past limits.login_grace, but never past
// limits.InteractiveLogin; without it the grace still cuts the login.
func TestInteractiveLoginExtendsDeadline(t *testing.T) {
	for _, tt := range []struct {
		name        string
		interactive time.Duration
		wantOK      bool
	}{{"extended", 5 * time.Second, true}, {"not allowed", 0, false}} {
		t.Run(tt.name, func(t *testing.T) {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			signer, _ := ssh.NewSignerFromKey(priv)
			got := make(chan time.Time, 1)
			cfg := &ssh.ServerConfig{
				KeyboardInteractiveCallback: func(c ssh.ConnMetadata, _ ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
					got <- gate.ExtendLogin(c, time.Now().Add(time.Hour))
					<-time.After(1500 * time.Millisecond) // the person at the browser, past the 1 s grace
					return loggedIn(c), nil
				},
			}
			cfg.AddHostKey(signer)
			h := func(ctx context.Context, c *Conn) {
				go ssh.DiscardRequests(c.Reqs)
				for nc := range c.Chans {
					nc.Reject(ssh.Prohibited, "test")
				}
			}
			start := time.Now()
			s := New(cfg, Limits{LoginGrace: time.Second, InteractiveLogin: tt.interactive, MaxUnauthenticated: 4, MaxUnauthPerSource: 4},
				nil, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go s.Serve(ln)
			t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
			cc, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "alice", HostKeyCallback: ssh.InsecureIgnoreHostKey(),
				Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) { return nil, nil })}})
			if err == nil {
				defer cc.Close()
			}
			deadline := <-got
			if tt.wantOK {
				if err != nil {
					t.Fatalf("login past the grace with an interactive step: %v", err)
				}
				if deadline.After(start.Add(tt.interactive+time.Second)) || deadline.Before(start.Add(tt.interactive-time.Second)) {
					t.Fatalf("deadline %s after start, want about %s (capped)", deadline.Sub(start), tt.interactive)
				}
			} else if err == nil {
				t.Fatal("login succeeded past limits.login_grace without an interactive allowance")
			}
		})
	}
}
