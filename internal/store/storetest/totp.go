package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// runTOTPAndBans is the part of the suite for TOTP enrolments, TOTP modes and
// bans.
func runTOTPAndBans(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("TOTP", func(t *testing.T) { testTOTP(t, open) })
	t.Run("TOTPModes", func(t *testing.T) { testTOTPModes(t, open) })
	t.Run("Bans", func(t *testing.T) { testBans(t, open) })
}

func testTOTP(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if err := s.PutTOTP(ctx, gate.TOTP{User: "nobody", Secret: "x"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutTOTP unknown user: %v, want ErrNotFound", err)
	}
	if _, err := s.GetTOTP(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetTOTP none: %v, want ErrNotFound", err)
	}
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "sealed1"}))
	got, err := s.GetTOTP(ctx, "alice")
	if err != nil || got.Secret != "sealed1" || got.Active || got.LastStep != 0 {
		t.Fatalf("GetTOTP = %+v, %v", got, err)
	}
	mustOK(t, s.ActivateTOTP(ctx, "alice"))
	for _, c := range []struct {
		step int64
		want bool
	}{{100, true}, {100, false}, {99, false}, {101, true}} {
		ok, err := s.UseTOTPStep(ctx, "alice", c.step)
		if err != nil || ok != c.want {
			t.Fatalf("UseTOTPStep(%d) = %v, %v; want %v", c.step, ok, err, c.want)
		}
	}
	if got, _ := s.GetTOTP(ctx, "alice"); !got.Active || got.LastStep != 101 {
		t.Fatalf("after use: %+v", got)
	}
	if ok, err := s.UseTOTPStep(ctx, "bob", 5); ok || err != nil {
		t.Fatalf("UseTOTPStep unknown user = %v, %v", ok, err)
	}
	// Re-enrolling replaces the secret, deactivates and forgets the last step.
	mustOK(t, s.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "sealed2"}))
	if got, _ := s.GetTOTP(ctx, "alice"); got.Secret != "sealed2" || got.Active || got.LastStep != 0 {
		t.Fatalf("after re-enrol: %+v", got)
	}
	if l, err := s.ListTOTP(ctx); err != nil || len(l) != 1 || l[0].User != "alice" {
		t.Fatalf("ListTOTP = %+v, %v", l, err)
	}
	// A pending secret leaves the active enrolment alone until it is put.
	mustOK(t, s.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "sealed2", Active: true}))
	mustOK(t, s.SetPendingTOTP(ctx, "alice", "pending1"))
	if got, _ := s.GetTOTP(ctx, "alice"); got.Secret != "sealed2" || !got.Active || got.Pending != "pending1" {
		t.Fatalf("after pending: %+v", got)
	}
	mustOK(t, s.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "pending1", Active: true}))
	if got, _ := s.GetTOTP(ctx, "alice"); got.Secret != "pending1" || got.Pending != "" {
		t.Fatalf("after activating the pending secret: %+v", got)
	}
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))
	mustOK(t, s.SetPendingTOTP(ctx, "bob", "pending2"))
	if got, err := s.GetTOTP(ctx, "bob"); err != nil || got.Active || got.Secret != "" || got.Pending != "pending2" {
		t.Fatalf("pending only: %+v, %v", got, err)
	}
	if err := s.SetPendingTOTP(ctx, "nobody", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPendingTOTP unknown user: %v", err)
	}
	mustOK(t, s.RemoveTOTP(ctx, "bob"))
	mustOK(t, s.RemoveTOTP(ctx, "alice"))
	if err := s.RemoveTOTP(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RemoveTOTP twice: %v", err)
	}
	if err := s.ActivateTOTP(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ActivateTOTP none: %v", err)
	}
	// Removing the user removes the enrolment.
	mustOK(t, s.PutTOTP(ctx, gate.TOTP{User: "alice", Secret: "sealed3", Active: true}))
	mustOK(t, s.RemoveUser(ctx, "alice"))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	if _, err := s.GetTOTP(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("totp survived user removal: %v", err)
	}
}

func testTOTPModes(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if err := s.SetTOTPMode(ctx, "prod", "", gate.TOTPAlways); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetTOTPMode unknown env: %v", err)
	}
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, gate.Target{Name: "web", Env: "prod", Kind: gate.KindUpstream, Login: "root",
		Upstream: &gate.UpstreamSpec{Addr: "127.0.0.1:22"}}))
	if m, err := s.GetTOTPMode(ctx, "prod", ""); m != "" || err != nil {
		t.Fatalf("unset env mode = %q, %v", m, err)
	}
	mustOK(t, s.SetTOTPMode(ctx, "prod", "", gate.TOTPAlways))
	mustOK(t, s.SetTOTPMode(ctx, "", "web", gate.TOTPNever))
	mustOK(t, s.SetTOTPMode(ctx, "", "web", gate.TOTPGrace))
	if m, err := s.GetTOTPMode(ctx, "prod", ""); m != gate.TOTPAlways || err != nil {
		t.Fatalf("env mode = %q, %v", m, err)
	}
	if m, err := s.GetTOTPMode(ctx, "", "web"); m != gate.TOTPGrace || err != nil {
		t.Fatalf("target mode = %q, %v", m, err)
	}
	mustOK(t, s.SetTOTPMode(ctx, "", "web", ""))
	if m, err := s.GetTOTPMode(ctx, "", "web"); m != "" || err != nil {
		t.Fatalf("cleared target mode = %q, %v", m, err)
	}
	if err := s.SetTOTPMode(ctx, "prod", "web", gate.TOTPNever); err == nil {
		t.Fatal("SetTOTPMode with env and target: no error")
	}
	mustOK(t, s.SetTOTPMode(ctx, "", "web", gate.TOTPNever))
	mustOK(t, s.RemoveTarget(ctx, "web"))
	mustOK(t, s.AddTarget(ctx, gate.Target{Name: "web", Env: "prod", Kind: gate.KindUpstream, Login: "root",
		Upstream: &gate.UpstreamSpec{Addr: "127.0.0.1:22"}}))
	if m, _ := s.GetTOTPMode(ctx, "", "web"); m != "" {
		t.Fatalf("target mode survived target removal: %q", m)
	}
}

func testBans(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	now := time.Now().Truncate(time.Millisecond)
	if _, err := s.GetBan(ctx, "192.0.2.1/32"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBan none: %v", err)
	}
	mustOK(t, s.PutBan(ctx, gate.Ban{Source: "192.0.2.1/32", Until: now.Add(time.Minute), Reason: "authfail", Count: 1, CreatedAt: now}))
	mustOK(t, s.PutBan(ctx, gate.Ban{Source: "2001:db8::/64", Until: now.Add(-time.Minute), Reason: "flood", Count: 2, CreatedAt: now}))
	b, err := s.GetBan(ctx, "192.0.2.1/32")
	if err != nil || !b.Until.Equal(now.Add(time.Minute)) || b.Reason != "authfail" || b.Count != 1 {
		t.Fatalf("GetBan = %+v, %v", b, err)
	}
	mustOK(t, s.PutBan(ctx, gate.Ban{Source: "192.0.2.1/32", Until: now.Add(2 * time.Minute), Reason: "authfail", Count: 2, CreatedAt: now}))
	if b, _ := s.GetBan(ctx, "192.0.2.1/32"); b.Count != 2 || !b.Until.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("replaced ban = %+v", b)
	}
	l, err := s.ListBans(ctx)
	if err != nil || len(l) != 2 {
		t.Fatalf("ListBans = %+v, %v", l, err)
	}
	if n, err := s.PruneBans(ctx, now); n != 1 || err != nil {
		t.Fatalf("PruneBans = %d, %v", n, err)
	}
	mustOK(t, s.RemoveBan(ctx, "192.0.2.1/32"))
	if err := s.RemoveBan(ctx, "192.0.2.1/32"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RemoveBan twice: %v", err)
	}
	if l, _ := s.ListBans(ctx); len(l) != 0 {
		t.Fatalf("bans left: %+v", l)
	}
}
