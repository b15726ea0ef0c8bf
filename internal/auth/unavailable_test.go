package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/gate"
)

type downUsers struct{ fakeUsers }

var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func (downUsers) GetUser(context.Context, string) (gate.User, error)   { return gate.User{}, errDown }
func (downUsers) ListKeys(context.Context, string) ([]gate.Key, error) { return nil, errDown }

// A store that does not answer is not a wrong credential: the login fails
// with the one "try again" line (a banner, with a reference), and the
// cause stays out of it.
func TestStoreUnavailable(t *testing.T) {
	a := New(Deps{Users: &downUsers{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	line := regexp.MustCompile(`^sshgate: service temporarily unavailable, try again \(ref [2-9a-z]{6}\)\r\n$`)
	check := func(name string, err error) {
		t.Helper()
		var be *ssh.BannerError
		if !errors.As(err, &be) || !errors.Is(err, gate.ErrUnavailable) || !line.MatchString(be.Message) {
			t.Fatalf("%s: %#v, want the unavailable banner", name, err)
		}
	}
	_, err := a.PublicKey(meta{"alice"}, newKey(t))
	check("publickey", err)
	_, err = a.Password(meta{"alice"}, []byte("pw"))
	check("password", err)
	k := newKey(t)
	id := &gate.Identity{User: "alice", Method: "publickey", Fingerprint: ssh.FingerprintSHA256(k)}
	_, err = a.VerifiedPublicKey(meta{"alice"}, k, &ssh.Permissions{Extensions: id.Extensions()}, "")
	check("verified", err)
}
