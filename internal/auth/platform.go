package auth

import (
	"context"
	"errors"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/route"
	"github.com/sshgate/sshgate/internal/store"
)

// route parses the SSH username and names the gate user it claims. In the
// platform form NODEID-UID the user is the one whose uid is UID: the key or
// password is then checked against that user exactly as for USER, so the
// identity is still only what the credential proves, and NODEID-UID can
// only ever log in as the uid's owner. An invalid name, or a uid nobody
// has, fails here exactly as an unknown user does (ok false; callers burn
// the same time). A malformed target part is not an auth matter: it is
// answered after authentication as an unknown target.
func (a *Authenticator) route(username string) (gate.Route, bool) {
	r, err := route.Parse(username)
	if err != nil && !errors.Is(err, route.ErrInvalidTarget) {
		return gate.Route{}, false
	}
	if !r.Platform() {
		return r, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	u, err := a.users.UserByUID(ctx, r.UID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.log.Warn("look up uid failed", "uid", r.UID, "err", err)
		}
		return gate.Route{}, false
	}
	r.User = u.User
	return r, true
}
