package storetest

import (
	"context"
	"reflect"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// testMenu covers MenuStore: target ids, aliases, primary, description,
// user uids and default targets, env groups.
func testMenu(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "dev"}))
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	mustOK(t, s.AddTarget(ctx, upstream("web-2", "prod")))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))

	// ids: assigned on add, distinct, stable, never reused.
	w1, err := s.GetTargetInfo(ctx, "web-1")
	mustOK(t, err)
	w2, err := s.GetTargetInfo(ctx, "web-2")
	mustOK(t, err)
	if w1.ID <= 0 || w2.ID <= w1.ID {
		t.Fatalf("ids %d, %d: want positive and increasing", w1.ID, w2.ID)
	}
	if !reflect.DeepEqual(w1, gate.TargetInfo{Target: "web-1", ID: w1.ID, Aliases: []string{}}) {
		t.Fatalf("fresh target info %+v", w1)
	}
	mustOK(t, s.RemoveTarget(ctx, "web-2"))
	mustOK(t, s.AddTarget(ctx, upstream("web-2", "prod")))
	w2b, err := s.GetTargetInfo(ctx, "web-2")
	mustOK(t, err)
	if w2b.ID == w2.ID || w2b.ID == w1.ID {
		t.Fatalf("re-added target got id %d (old %d, %d): ids must not be reused", w2b.ID, w2.ID, w1.ID)
	}
	_, err = s.GetTargetInfo(ctx, "nope")
	wantErr(t, "GetTargetInfo unknown", err, store.ErrNotFound, "nope")

	// aliases
	mustOK(t, s.AddTargetAlias(ctx, "web-1", "www"))
	mustOK(t, s.AddTargetAlias(ctx, "web-1", "front"))
	wantErr(t, "alias twice", s.AddTargetAlias(ctx, "web-2", "www"), store.ErrExists, "www")
	wantErr(t, "alias = target name", s.AddTargetAlias(ctx, "web-1", "web-2"), store.ErrExists, "web-2")
	wantErr(t, "alias of unknown target", s.AddTargetAlias(ctx, "nope", "x"), store.ErrNotFound, "nope")
	wantErr(t, "target named as an alias", s.AddTarget(ctx, upstream("www", "prod")), store.ErrExists, "www")
	mustOK(t, s.SetTargetPrimary(ctx, "web-1", true))
	mustOK(t, s.SetTargetDescription(ctx, "web-1", "front end"))
	wantErr(t, "primary of unknown", s.SetTargetPrimary(ctx, "nope", true), store.ErrNotFound, "nope")
	all, err := s.ListTargetInfo(ctx)
	mustOK(t, err)
	want := []gate.TargetInfo{
		{Target: "web-1", ID: w1.ID, Aliases: []string{"front", "www"}, Primary: true, Description: "front end"},
		{Target: "web-2", ID: w2b.ID, Aliases: []string{}},
	}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("ListTargetInfo = %+v, want %+v", all, want)
	}
	mustOK(t, s.RemoveTargetAlias(ctx, "front"))
	wantErr(t, "remove alias twice", s.RemoveTargetAlias(ctx, "front"), store.ErrNotFound, "front")
	mustOK(t, s.AddTargetAlias(ctx, "web-2", "front")) // free again

	// users: uids and default targets
	a, err := s.GetUserInfo(ctx, "alice")
	mustOK(t, err)
	b, err := s.GetUserInfo(ctx, "bob")
	mustOK(t, err)
	if a.UID <= 0 || b.UID == a.UID || a.DefaultTarget != "" {
		t.Fatalf("user info %+v, %+v", a, b)
	}
	got, err := s.UserByUID(ctx, b.UID)
	mustOK(t, err)
	if got.User != "bob" {
		t.Fatalf("UserByUID(%d) = %+v, want bob", b.UID, got)
	}
	_, err = s.UserByUID(ctx, 999999)
	wantErr(t, "UserByUID unknown", err, store.ErrNotFound)
	mustOK(t, s.SetDefaultTarget(ctx, "alice", "web-2"))
	wantErr(t, "default target unknown", s.SetDefaultTarget(ctx, "alice", "nope"), store.ErrNotFound, "nope")
	wantErr(t, "default target of unknown user", s.SetDefaultTarget(ctx, "carol", "web-1"), store.ErrNotFound, "carol")
	if a, _ = s.GetUserInfo(ctx, "alice"); a.DefaultTarget != "web-2" {
		t.Fatalf("default target %q, want web-2", a.DefaultTarget)
	}
	mustOK(t, s.RemoveTarget(ctx, "web-2"))
	if a, _ = s.GetUserInfo(ctx, "alice"); a.DefaultTarget != "" {
		t.Fatalf("default target %q after the target was removed, want none", a.DefaultTarget)
	}
	mustOK(t, s.SetDefaultTarget(ctx, "alice", "web-1"))
	mustOK(t, s.SetDefaultTarget(ctx, "alice", ""))
	if a, _ = s.GetUserInfo(ctx, "alice"); a.DefaultTarget != "" {
		t.Fatalf("default target %q after clearing", a.DefaultTarget)
	}
	mustOK(t, s.RemoveUser(ctx, "bob"))
	_, err = s.UserByUID(ctx, b.UID)
	wantErr(t, "UserByUID removed", err, store.ErrNotFound)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))
	if b2, _ := s.GetUserInfo(ctx, "bob"); b2.UID == b.UID {
		t.Fatalf("re-added user got uid %d again: uids must not be reused", b.UID)
	}

	// env groups
	mustOK(t, s.SetEnvGroup(ctx, "prod", "shop"))
	mustOK(t, s.SetEnvGroup(ctx, "dev", "shop"))
	mustOK(t, s.SetEnvGroup(ctx, "dev", "lab"))
	wantErr(t, "group of unknown env", s.SetEnvGroup(ctx, "nope", "x"), store.ErrNotFound, "nope")
	g, err := s.EnvGroups(ctx)
	mustOK(t, err)
	if !reflect.DeepEqual(g, map[string]string{"prod": "shop", "dev": "lab"}) {
		t.Fatalf("EnvGroups = %v", g)
	}
	mustOK(t, s.SetEnvGroup(ctx, "dev", ""))
	mustOK(t, s.RemoveEnv(ctx, "dev"))
	if g, _ = s.EnvGroups(ctx); !reflect.DeepEqual(g, map[string]string{"prod": "shop"}) {
		t.Fatalf("EnvGroups after clear = %v", g)
	}
}
