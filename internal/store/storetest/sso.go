package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

func runSSO(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("SSOGrants", func(t *testing.T) { testSSOGrants(t, open) })
	t.Run("SSOSessions", func(t *testing.T) { testSSOSessions(t, open) })
}

func testSSOGrants(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if _, _, _, err := s.SyncSSOGrants(ctx, "nobody", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SyncSSOGrants unknown user: %v, want ErrNotFound", err)
	}
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "dev"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, gate.Target{Name: "web-1", Env: "prod", Kind: gate.KindUpstream, Login: "deploy",
		Upstream: &gate.UpstreamSpec{Addr: "127.0.0.1:22"}}))
	admin, err := s.AddGrant(ctx, gate.Grant{User: "alice", Env: "prod"})
	mustOK(t, err)

	want := []gate.Grant{{Env: "dev"}, {Target: "web-1", Login: "root", Forwarding: true}, {Env: "missing"}}
	a, r, sk, err := s.SyncSSOGrants(ctx, "alice", want)
	if err != nil || a != 2 || r != 0 || sk != 1 {
		t.Fatalf("first sync = %d added, %d removed, %d skipped, %v", a, r, sk, err)
	}
	gs, _ := s.ListGrants(ctx, "alice")
	if len(gs) != 3 {
		t.Fatalf("grants after sync: %+v", gs)
	}
	ids, err := s.SSOGrantIDs(ctx, "alice")
	if err != nil || len(ids) != 2 {
		t.Fatalf("SSOGrantIDs = %v, %v", ids, err)
	}
	for _, id := range ids {
		if id == admin.ID {
			t.Fatalf("the admin's grant is marked as single sign-on's: %v", ids)
		}
	}
	// The same set again changes nothing (ids stay).
	if a, r, _, err := s.SyncSSOGrants(ctx, "alice", want); err != nil || a != 0 || r != 0 {
		t.Fatalf("idempotent sync = %d, %d, %v", a, r, err)
	}
	if again, _ := s.SSOGrantIDs(ctx, "alice"); len(again) != 2 || again[0] != ids[0] || again[1] != ids[1] {
		t.Fatalf("ids changed on a no-op sync: %v -> %v", ids, again)
	}
	// A group gone: its grant goes; a changed login is a new grant. The
	// admin's grant on prod stays even though the provider no longer says prod.
	if a, r, _, err := s.SyncSSOGrants(ctx, "alice", []gate.Grant{{Target: "web-1", Login: "deploy"}}); err != nil || a != 1 || r != 2 {
		t.Fatalf("shrinking sync = %d added, %d removed, %v", a, r, err)
	}
	gs, _ = s.ListGrants(ctx, "alice")
	if len(gs) != 2 || gs[0].ID != admin.ID || gs[1].Target != "web-1" || gs[1].Login != "deploy" {
		t.Fatalf("grants after shrinking sync: %+v", gs)
	}
	if _, r, _, err := s.SyncSSOGrants(ctx, "alice", nil); err != nil || r != 1 {
		t.Fatalf("empty sync removed %d, %v", r, err)
	}
	if gs, _ := s.ListGrants(ctx, "alice"); len(gs) != 1 || gs[0].ID != admin.ID {
		t.Fatalf("only the admin's grant should be left: %+v", gs)
	}
	if _, _, _, err := s.SyncSSOGrants(ctx, "alice", []gate.Grant{{Env: "dev", Target: "web-1"}}); err == nil {
		t.Fatal("a grant with both env and target was accepted")
	}
	// Removing a grant by id drops its mark too.
	_, _, _, err = s.SyncSSOGrants(ctx, "alice", []gate.Grant{{Env: "dev"}})
	mustOK(t, err)
	ids, _ = s.SSOGrantIDs(ctx, "alice")
	mustOK(t, s.RemoveGrant(ctx, ids[0]))
	if ids, _ := s.SSOGrantIDs(ctx, "alice"); len(ids) != 0 {
		t.Fatalf("mark of a removed grant left: %v", ids)
	}
}

func testSSOSessions(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	now := time.Now().Truncate(time.Microsecond)
	ss := gate.SSOSession{User: "alice", Fingerprint: "SHA256:aaa", Source: "10.1.2.0/24", Subject: "sub-1",
		AMR: "pwd,otp", Expires: now.Add(time.Hour), CreatedAt: now}
	if err := s.PutSSOSession(ctx, ss); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutSSOSession unknown user: %v, want ErrNotFound", err)
	}
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))
	mustOK(t, s.PutSSOSession(ctx, ss))
	got, err := s.GetSSOSession(ctx, "alice", "SHA256:aaa", "10.1.2.0/24")
	if err != nil || got.Subject != "sub-1" || got.AMR != "pwd,otp" || !got.Expires.Equal(ss.Expires) || !got.CreatedAt.Equal(now) {
		t.Fatalf("GetSSOSession = %+v, %v", got, err)
	}
	// Bound to all three: another key, source or user finds nothing.
	for _, k := range [][3]string{{"bob", "SHA256:aaa", "10.1.2.0/24"}, {"alice", "SHA256:bbb", "10.1.2.0/24"}, {"alice", "SHA256:aaa", "10.1.3.0/24"}} {
		if _, err := s.GetSSOSession(ctx, k[0], k[1], k[2]); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetSSOSession%v: %v, want ErrNotFound", k, err)
		}
	}
	// Replacing moves the expiry.
	ss.Expires = now.Add(2 * time.Hour)
	mustOK(t, s.PutSSOSession(ctx, ss))
	if got, _ := s.GetSSOSession(ctx, "alice", "SHA256:aaa", "10.1.2.0/24"); !got.Expires.Equal(ss.Expires) {
		t.Fatalf("replaced session expires %v, want %v", got.Expires, ss.Expires)
	}
	old := gate.SSOSession{User: "alice", Fingerprint: "SHA256:old", Source: "10.1.2.0/24", Expires: now.Add(-time.Minute), CreatedAt: now.Add(-time.Hour)}
	mustOK(t, s.PutSSOSession(ctx, old))
	mustOK(t, s.PutSSOSession(ctx, gate.SSOSession{User: "bob", Fingerprint: "SHA256:bbb", Source: "::1/128", Expires: now.Add(time.Hour), CreatedAt: now}))
	if l, err := s.ListSSOSessions(ctx, ""); err != nil || len(l) != 3 || l[0].User != "alice" || l[0].Fingerprint != "SHA256:old" || l[2].User != "bob" {
		t.Fatalf("ListSSOSessions all = %+v, %v", l, err)
	}
	if l, err := s.ListSSOSessions(ctx, "bob"); err != nil || len(l) != 1 {
		t.Fatalf("ListSSOSessions bob = %+v, %v", l, err)
	}
	if n, err := s.PruneSSOSessions(ctx, now); err != nil || n != 1 {
		t.Fatalf("PruneSSOSessions = %d, %v", n, err)
	}
	if n, err := s.RevokeSSOSessions(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("RevokeSSOSessions = %d, %v", n, err)
	}
	if n, err := s.RevokeSSOSessions(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("RevokeSSOSessions again = %d, %v", n, err)
	}
	if _, err := s.GetSSOSession(ctx, "alice", "SHA256:aaa", "10.1.2.0/24"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked session still found: %v", err)
	}
	// Removing the user removes its sessions.
	mustOK(t, s.RemoveUser(ctx, "bob"))
	if l, _ := s.ListSSOSessions(ctx, ""); len(l) != 0 {
		t.Fatalf("sessions of a removed user left: %+v", l)
	}
}
