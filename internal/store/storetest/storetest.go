// Package storetest is the conformance suite every store.Store passes
// (sqlite now, postgres later). An implementation's test calls Run with a
// function that opens a fresh, empty store, and TwoHandles with one that opens
// two handles on one database, as the running gate and the admin CLI do.
//
// Must not import: store/sqlite broker sshd/... relay target/... auth/... policy app
package storetest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
)

// Run runs the whole suite; open must return a new empty store each call
// (closing it is open's business, through t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Ping", func(t *testing.T) {
		if err := open(t).Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
	t.Run("Users", func(t *testing.T) { testUsers(t, open) })
	t.Run("RemoveUserCascades", func(t *testing.T) { testRemoveUserCascades(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("Envs", func(t *testing.T) { testEnvs(t, open) })
	t.Run("Targets", func(t *testing.T) { testTargets(t, open) })
	t.Run("UpdateTarget", func(t *testing.T) { testUpdateTarget(t, open) })
	t.Run("RemoveTargetCascades", func(t *testing.T) { testRemoveTargetCascades(t, open) })
	t.Run("Grants", func(t *testing.T) { testGrants(t, open) })
	t.Run("GrantErrors", func(t *testing.T) { testGrantErrors(t, open) })
	runTOTPAndBans(t, open)
	t.Run("Gates", func(t *testing.T) { testGates(t, open) })
	t.Run("LiveSessions", func(t *testing.T) { testLiveSessions(t, open) })
	t.Run("Menu", func(t *testing.T) { testMenu(t, open) }) // menu.go
	runShared(t, open)                                      // shared.go
	runSSO(t, open)                                         // sso.go
}

// TwoHandles checks that a write through one handle is seen at once by
// another handle on the same database opened before the write.
func TwoHandles(t *testing.T, open2 func(t *testing.T) (store.Store, store.Store)) {
	ctx := context.Background()
	srv, cli := open2(t)
	// The gate has read before the CLI writes, as a running gate has.
	if _, err := srv.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("gate GetUser before add: %v, want ErrNotFound", err)
	}
	if _, err := srv.ListTargets(ctx); err != nil {
		t.Fatal(err)
	}
	mustOK(t, cli.AddUser(ctx, gate.User{Name: "alice"}))
	if _, err := srv.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("gate does not see user added by cli: %v", err)
	}
	mustOK(t, cli.SetPassword(ctx, "alice", "$argon2id$x"))
	if u, err := srv.GetUser(ctx, "alice"); err != nil || u.PasswordHash != "$argon2id$x" {
		t.Fatalf("gate sees %+v, %v after password change", u, err)
	}
	mustOK(t, cli.AddKey(ctx, gate.Key{User: "alice", Fingerprint: "SHA256:a", AuthorizedKey: "ssh-ed25519 AAAA"}))
	if ks, err := srv.ListKeys(ctx, "alice"); err != nil || len(ks) != 1 {
		t.Fatalf("gate sees keys %+v, %v", ks, err)
	}
	mustOK(t, cli.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, cli.AddTarget(ctx, upstream("web-1", "prod")))
	g, err := cli.AddGrant(ctx, gate.Grant{User: "alice", Target: "web-1"})
	mustOK(t, err)
	if gs, err := srv.ListGrants(ctx, "alice"); err != nil || len(gs) != 1 || gs[0].ID != g.ID {
		t.Fatalf("gate sees grants %+v, %v", gs, err)
	}
	// And the other way round, and removals.
	mustOK(t, srv.RemoveGrant(ctx, g.ID))
	if gs, err := cli.ListGrants(ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("cli sees grants %+v, %v after removal", gs, err)
	}
	mustOK(t, cli.RemoveUser(ctx, "alice"))
	if _, err := srv.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("gate GetUser after remove: %v, want ErrNotFound", err)
	}
	if err := srv.AddUser(ctx, gate.User{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := cli.AddUser(ctx, gate.User{Name: "bob"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second AddUser through the other handle: %v, want ErrExists", err)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr checks err against want (nil, ErrNotFound, ErrExists or errAny)
// and, for sentinel errors, that the message names every string in names.
func wantErr(t *testing.T, what string, err, want error, names ...string) {
	t.Helper()
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		return
	case want == errAny:
		if err == nil {
			t.Fatalf("%s: no error, want one", what)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
			t.Fatalf("%s: %v, want an error that is neither ErrNotFound nor ErrExists", what, err)
		}
		return
	case !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error %q does not name %q", what, err, n)
		}
	}
}

var errAny = errors.New("any error")

func recent(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.IsZero() || time.Since(tm) > time.Hour || time.Until(tm) > time.Hour {
		t.Errorf("%s: CreatedAt %v, want about now", what, tm)
	}
}

func upstream(name, env string) gate.Target {
	return gate.Target{
		Name: name, Env: env, Kind: gate.KindUpstream, Login: "root",
		Upstream: &gate.UpstreamSpec{Addr: name + ":22", HostKey: "ssh-ed25519 AAAAC3Nza " + name},
	}
}

func testUsers(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if us, err := s.ListUsers(ctx); err != nil || len(us) != 0 {
		t.Fatalf("ListUsers on empty store: %v, %v", us, err)
	}
	steps := []struct {
		name string
		do   func() error
		want error
		msg  []string
	}{
		{"add carol", func() error { return s.AddUser(ctx, gate.User{Name: "carol", PasswordHash: "h1"}) }, nil, nil},
		{"add alice", func() error { return s.AddUser(ctx, gate.User{Name: "alice"}) }, nil, nil},
		{"add bob", func() error { return s.AddUser(ctx, gate.User{Name: "bob"}) }, nil, nil},
		{"add alice again", func() error { return s.AddUser(ctx, gate.User{Name: "alice", PasswordHash: "x"}) }, store.ErrExists, []string{`"alice"`}},
		{"add empty name", func() error { return s.AddUser(ctx, gate.User{}) }, errAny, nil},
		{"get missing", func() error { _, err := s.GetUser(ctx, "dave"); return err }, store.ErrNotFound, []string{`"dave"`}},
		{"set password", func() error { return s.SetPassword(ctx, "alice", "h2") }, nil, nil},
		{"set password missing", func() error { return s.SetPassword(ctx, "dave", "h") }, store.ErrNotFound, []string{`"dave"`}},
		{"clear password", func() error { return s.SetPassword(ctx, "carol", "") }, nil, nil},
		{"remove missing", func() error { return s.RemoveUser(ctx, "dave") }, store.ErrNotFound, []string{`"dave"`}},
		{"add dave", func() error { return s.AddUser(ctx, gate.User{Name: "dave"}) }, nil, nil},
		{"remove dave", func() error { return s.RemoveUser(ctx, "dave") }, nil, nil},
		{"remove dave again", func() error { return s.RemoveUser(ctx, "dave") }, store.ErrNotFound, []string{`"dave"`}},
	}
	for _, st := range steps {
		wantErr(t, st.name, st.do(), st.want, st.msg...)
	}
	us, err := s.ListUsers(ctx)
	mustOK(t, err)
	var names []string
	for _, u := range us {
		names = append(names, u.Name)
		recent(t, u.Name, u.CreatedAt)
	}
	if want := []string{"alice", "bob", "carol"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ListUsers = %v, want %v", names, want)
	}
	for name, hash := range map[string]string{"alice": "h2", "bob": "", "carol": ""} {
		u, err := s.GetUser(ctx, name)
		mustOK(t, err)
		if u.Name != name || u.PasswordHash != hash {
			t.Errorf("GetUser(%s) = %+v, want hash %q", name, u, hash)
		}
	}
	// A given CreatedAt is kept.
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "erin", CreatedAt: at}))
	if u, err := s.GetUser(ctx, "erin"); err != nil || !u.CreatedAt.Equal(at) {
		t.Fatalf("GetUser(erin) = %+v, %v; want CreatedAt %v", u, err, at)
	}
}

func testRemoveUserCascades(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	for _, u := range []string{"alice", "bob"} {
		mustOK(t, s.AddUser(ctx, gate.User{Name: u}))
		mustOK(t, s.AddKey(ctx, gate.Key{User: u, Fingerprint: "SHA256:k-" + u, AuthorizedKey: "ssh-ed25519 AAAA"}))
	}
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	for _, u := range []string{"alice", "bob"} {
		_, err := s.AddGrant(ctx, gate.Grant{User: u, Env: "prod"})
		mustOK(t, err)
		_, err = s.AddGrant(ctx, gate.Grant{User: u, Target: "web-1"})
		mustOK(t, err)
	}
	mustOK(t, s.RemoveUser(ctx, "alice"))
	if ks, err := s.ListKeys(ctx, "alice"); err != nil || len(ks) != 0 {
		t.Errorf("ListKeys(removed user) = %+v, %v; want none", ks, err)
	}
	gs, err := s.ListGrants(ctx, "")
	mustOK(t, err)
	if len(gs) != 2 || gs[0].User != "bob" || gs[1].User != "bob" {
		t.Fatalf("grants after RemoveUser(alice) = %+v, want bob's two", gs)
	}
	// Re-adding alice does not resurrect her keys or grants.
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	if ks, err := s.ListKeys(ctx, "alice"); err != nil || len(ks) != 0 {
		t.Fatalf("keys of re-added alice = %+v, %v", ks, err)
	}
	if gs, err := s.ListGrants(ctx, "alice"); err != nil || len(gs) != 0 {
		t.Fatalf("grants of re-added alice = %+v, %v", gs, err)
	}
	if ks, err := s.ListKeys(ctx, "bob"); err != nil || len(ks) != 1 {
		t.Fatalf("keys of bob = %+v, %v", ks, err)
	}
}

func testKeys(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))
	k1 := gate.Key{User: "alice", Fingerprint: "SHA256:one", AuthorizedKey: "ssh-ed25519 AAAA1", Comment: "laptop"}
	k2 := gate.Key{User: "alice", Fingerprint: "SHA256:two", AuthorizedKey: "ssh-ed25519 AAAA2"}
	steps := []struct {
		name string
		do   func() error
		want error
		msg  []string
	}{
		{"add k1", func() error { return s.AddKey(ctx, k1) }, nil, nil},
		{"add k2", func() error { return s.AddKey(ctx, k2) }, nil, nil},
		{"add k1 again", func() error { return s.AddKey(ctx, k1) }, store.ErrExists, []string{"SHA256:one", `"alice"`}},
		{"same key other user", func() error { k := k1; k.User = "bob"; return s.AddKey(ctx, k) }, nil, nil},
		{"add for missing user", func() error { k := k1; k.User = "dave"; return s.AddKey(ctx, k) }, store.ErrNotFound, []string{`"dave"`}},
		{"list missing user", func() error {
			ks, err := s.ListKeys(ctx, "dave")
			if err == nil && len(ks) != 0 {
				return errors.New("keys listed for a missing user")
			}
			return err
		}, nil, nil},
		{"remove missing key", func() error { return s.RemoveKey(ctx, "alice", "SHA256:nope") }, store.ErrNotFound, []string{"SHA256:nope"}},
		{"remove for missing user", func() error { return s.RemoveKey(ctx, "dave", "SHA256:one") }, store.ErrNotFound, []string{`"dave"`}},
		{"remove bob's k1", func() error { return s.RemoveKey(ctx, "bob", "SHA256:one") }, nil, nil},
		{"remove bob's k1 again", func() error { return s.RemoveKey(ctx, "bob", "SHA256:one") }, store.ErrNotFound, nil},
	}
	for _, st := range steps {
		wantErr(t, st.name, st.do(), st.want, st.msg...)
	}
	ks, err := s.ListKeys(ctx, "alice")
	mustOK(t, err)
	if len(ks) != 2 {
		t.Fatalf("ListKeys(alice) = %+v, want 2 keys", ks)
	}
	got := map[string]gate.Key{}
	for _, k := range ks {
		recent(t, k.Fingerprint, k.CreatedAt)
		k.CreatedAt = time.Time{}
		got[k.Fingerprint] = k
	}
	if !reflect.DeepEqual(got["SHA256:one"], k1) || !reflect.DeepEqual(got["SHA256:two"], k2) {
		t.Fatalf("ListKeys(alice) = %+v, want %+v and %+v", ks, k1, k2)
	}
	if ks, err := s.ListKeys(ctx, "bob"); err != nil || len(ks) != 0 {
		t.Fatalf("ListKeys(bob) = %+v, %v; want none", ks, err)
	}
	// Alice's k1 is untouched by removing bob's.
	mustOK(t, s.RemoveKey(ctx, "alice", "SHA256:one"))
}

func testEnvs(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if es, err := s.ListEnvs(ctx); err != nil || len(es) != 0 {
		t.Fatalf("ListEnvs on empty store: %v, %v", es, err)
	}
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	steps := []struct {
		name string
		do   func() error
		want error
		msg  []string
	}{
		{"add staging", func() error { return s.AddEnv(ctx, gate.Env{Name: "staging"}) }, nil, nil},
		{"add prod", func() error { return s.AddEnv(ctx, gate.Env{Name: "prod"}) }, nil, nil},
		{"add dev", func() error { return s.AddEnv(ctx, gate.Env{Name: "dev"}) }, nil, nil},
		{"add prod again", func() error { return s.AddEnv(ctx, gate.Env{Name: "prod"}) }, store.ErrExists, []string{`"prod"`}},
		{"add empty", func() error { return s.AddEnv(ctx, gate.Env{}) }, errAny, nil},
		{"remove missing", func() error { return s.RemoveEnv(ctx, "qa") }, store.ErrNotFound, []string{`"qa"`}},
		{"target in prod", func() error { return s.AddTarget(ctx, upstream("web-1", "prod")) }, nil, nil},
		{"remove used env", func() error { return s.RemoveEnv(ctx, "prod") }, store.ErrExists, []string{`"prod"`}},
		{"grant on dev", func() error { _, err := s.AddGrant(ctx, gate.Grant{User: "alice", Env: "dev"}); return err }, nil, nil},
		{"remove dev (grants go with it)", func() error { return s.RemoveEnv(ctx, "dev") }, nil, nil},
		{"remove target", func() error { return s.RemoveTarget(ctx, "web-1") }, nil, nil},
		{"remove prod now unused", func() error { return s.RemoveEnv(ctx, "prod") }, nil, nil},
		{"add prod back", func() error { return s.AddEnv(ctx, gate.Env{Name: "prod"}) }, nil, nil},
	}
	for _, st := range steps {
		wantErr(t, st.name, st.do(), st.want, st.msg...)
	}
	es, err := s.ListEnvs(ctx)
	mustOK(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
		recent(t, e.Name, e.CreatedAt)
	}
	if want := []string{"prod", "staging"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ListEnvs = %v, want %v", names, want)
	}
	if gs, err := s.ListGrants(ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("grants after RemoveEnv(dev) = %+v, %v; want none", gs, err)
	}
}

func dockerTarget(name, env string) gate.Target {
	return gate.Target{
		Name: name, Env: env, Kind: gate.KindDocker, Login: "dev",
		Docker: &gate.DockerSpec{
			Image: "alpine:3.20", User: "1000:1000", Cmd: []string{"sleep", "infinity"},
			Env: []string{"A=1"}, Mounts: []string{"/srv:/srv:ro"}, Memory: 512 << 20,
			NanoCPUs: 1_500_000_000, Pids: 256, Network: "none", Per: "user", IdleTTL: "10m", Pool: 2,
		},
	}
}

func sameTarget(t *testing.T, got, want gate.Target) {
	t.Helper()
	recent(t, got.Name, got.CreatedAt)
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("target = %#v\nwant %#v", got, want)
	}
}

func testTargets(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	if ts, err := s.ListTargets(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("ListTargets on empty store: %v, %v", ts, err)
	}
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	web := upstream("web-1", "prod")
	box := dockerTarget("box", "prod")
	steps := []struct {
		name string
		do   func() error
		want error
		msg  []string
	}{
		{"add web-1", func() error { return s.AddTarget(ctx, web) }, nil, nil},
		{"add box", func() error { return s.AddTarget(ctx, box) }, nil, nil},
		{"add db-1 no host key", func() error {
			return s.AddTarget(ctx, gate.Target{Name: "db-1", Env: "prod", Kind: gate.KindUpstream, Upstream: &gate.UpstreamSpec{Addr: "db:22"}})
		}, nil, nil},
		{"add web-1 again", func() error { return s.AddTarget(ctx, upstream("web-1", "prod")) }, store.ErrExists, []string{`"web-1"`}},
		{"add in missing env", func() error { return s.AddTarget(ctx, upstream("web-2", "qa")) }, store.ErrNotFound, []string{`"qa"`}},
		{"get missing", func() error { _, err := s.GetTarget(ctx, "nope"); return err }, store.ErrNotFound, []string{`"nope"`}},
		{"remove missing", func() error { return s.RemoveTarget(ctx, "nope") }, store.ErrNotFound, []string{`"nope"`}},
		{"unknown kind", func() error {
			return s.AddTarget(ctx, gate.Target{Name: "x", Env: "prod", Kind: "ftp", Upstream: &gate.UpstreamSpec{Addr: "x:22"}})
		}, errAny, nil},
		{"upstream kind without spec", func() error {
			return s.AddTarget(ctx, gate.Target{Name: "x", Env: "prod", Kind: gate.KindUpstream})
		}, errAny, nil},
		{"docker kind with upstream spec", func() error {
			return s.AddTarget(ctx, gate.Target{Name: "x", Env: "prod", Kind: gate.KindDocker, Upstream: &gate.UpstreamSpec{Addr: "x:22"}})
		}, errAny, nil},
		{"kubernetes kind with docker spec", func() error {
			return s.AddTarget(ctx, gate.Target{Name: "x", Env: "prod", Kind: gate.KindKubernetes, Docker: &gate.DockerSpec{Image: "x"}})
		}, errAny, nil},
		{"add and remove a kubernetes target", func() error {
			kt := gate.Target{Name: "lab", Env: "prod", Kind: gate.KindKubernetes, Login: "dev", Kubernetes: &gate.KubernetesSpec{
				Image: "busybox:1.36", Namespace: "labs", User: "1000:1000", Cmd: []string{"sleep"}, Env: []string{"A=1"},
				Memory: 256 << 20, NanoCPUs: 500_000_000, Per: "user", IdleTTL: "10m", Pool: 1}}
			if err := s.AddTarget(ctx, kt); err != nil {
				return err
			}
			got, err := s.GetTarget(ctx, "lab")
			if err != nil {
				return err
			}
			sameTarget(t, got, kt)
			return s.RemoveTarget(ctx, "lab")
		}, nil, nil},
	}
	for _, st := range steps {
		wantErr(t, st.name, st.do(), st.want, st.msg...)
	}
	got, err := s.GetTarget(ctx, "web-1")
	mustOK(t, err)
	sameTarget(t, got, web)
	got, err = s.GetTarget(ctx, "box")
	mustOK(t, err)
	sameTarget(t, got, box)
	ts, err := s.ListTargets(ctx)
	mustOK(t, err)
	var names []string
	for _, x := range ts {
		names = append(names, x.Name)
	}
	if want := []string{"box", "db-1", "web-1"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("ListTargets = %v, want %v", names, want)
	}
	sameTarget(t, ts[0], box)
	sameTarget(t, ts[2], web)
}

func testUpdateTarget(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "staging"}))
	at := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	web := upstream("web-1", "prod")
	web.CreatedAt = at
	mustOK(t, s.AddTarget(ctx, web))

	// Change login and host key.
	web.Login = "deploy"
	web.Upstream.HostKey = "ssh-ed25519 AAAAnew"
	web.CreatedAt = time.Time{}
	mustOK(t, s.UpdateTarget(ctx, web))
	got, err := s.GetTarget(ctx, "web-1")
	mustOK(t, err)
	if !got.CreatedAt.Equal(at) {
		t.Errorf("UpdateTarget changed CreatedAt to %v, want %v", got.CreatedAt, at)
	}
	got.CreatedAt = time.Time{}
	if !reflect.DeepEqual(got, web) {
		t.Fatalf("after update %#v, want %#v", got, web)
	}
	// Change kind and env.
	box := dockerTarget("web-1", "staging")
	mustOK(t, s.UpdateTarget(ctx, box))
	got, err = s.GetTarget(ctx, "web-1")
	mustOK(t, err)
	got.CreatedAt = time.Time{}
	if !reflect.DeepEqual(got, box) {
		t.Fatalf("after kind change %#v, want %#v", got, box)
	}
	// prod is now unused.
	mustOK(t, s.RemoveEnv(ctx, "prod"))

	wantErr(t, "update missing", s.UpdateTarget(ctx, upstream("nope", "staging")), store.ErrNotFound, `"nope"`)
	wantErr(t, "update into missing env", s.UpdateTarget(ctx, upstream("web-1", "qa")), store.ErrNotFound, `"qa"`)
	wantErr(t, "update to bad kind", s.UpdateTarget(ctx, gate.Target{Name: "web-1", Env: "staging", Kind: "ftp"}), errAny)
}

func testRemoveTargetCascades(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	mustOK(t, s.AddTarget(ctx, upstream("web-2", "prod")))
	g1, err := s.AddGrant(ctx, gate.Grant{User: "alice", Target: "web-1"})
	mustOK(t, err)
	g2, err := s.AddGrant(ctx, gate.Grant{User: "alice", Target: "web-2"})
	mustOK(t, err)
	g3, err := s.AddGrant(ctx, gate.Grant{User: "alice", Env: "prod"})
	mustOK(t, err)
	mustOK(t, s.RemoveTarget(ctx, "web-1"))
	gs, err := s.ListGrants(ctx, "alice")
	mustOK(t, err)
	if len(gs) != 2 || gs[0].ID != g2.ID || gs[1].ID != g3.ID {
		t.Fatalf("grants after RemoveTarget(web-1) = %+v, want ids %d, %d (not %d)", gs, g2.ID, g3.ID, g1.ID)
	}
	// A new target of the same name does not inherit the old grants.
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	gs, err = s.ListGrants(ctx, "alice")
	mustOK(t, err)
	if len(gs) != 2 {
		t.Fatalf("grants after re-adding web-1 = %+v", gs)
	}
}

func testGrants(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddUser(ctx, gate.User{Name: "bob"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	if gs, err := s.ListGrants(ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("ListGrants on empty store: %v, %v", gs, err)
	}
	in := []gate.Grant{
		{User: "bob", Env: "prod"},
		{User: "alice", Target: "web-1", Login: "deploy", Forwarding: true},
		{User: "alice", Env: "prod", Login: "root", Forwarding: true, ForwardTo: []string{"db.internal:5432", "10.0.0.0/8:8000-8099", "/run/app.sock"}},
		{User: "alice", Target: "web-1"}, // duplicates are allowed; each has its ID
		{User: "bob", Target: "web-1", Controls: gate.Controls{NoShell: true, NoExec: true, NoSFTP: true, NoSCP: true, NoRsync: true,
			Command: "uptime -p 'x'", MaxSession: 90 * time.Minute, IdleTimeout: 150 * time.Second}},
	}
	var added []gate.Grant
	for i, g := range in {
		out, err := s.AddGrant(ctx, g)
		mustOK(t, err)
		if out.ID == 0 || (i > 0 && out.ID <= added[i-1].ID) {
			t.Fatalf("grant %d got ID %d after %v", i, out.ID, added)
		}
		recent(t, "grant", out.CreatedAt)
		g.ID, g.CreatedAt = out.ID, out.CreatedAt
		if !reflect.DeepEqual(out, g) {
			t.Fatalf("AddGrant returned %+v, want %+v", out, g)
		}
		added = append(added, out)
	}
	check := func(user string, want ...gate.Grant) {
		t.Helper()
		gs, err := s.ListGrants(ctx, user)
		mustOK(t, err)
		if len(gs) != len(want) {
			t.Fatalf("ListGrants(%q) = %+v, want %+v", user, gs, want)
		}
		for i := range gs {
			if !gs[i].CreatedAt.Equal(want[i].CreatedAt) {
				t.Errorf("ListGrants(%q)[%d].CreatedAt = %v, want %v", user, i, gs[i].CreatedAt, want[i].CreatedAt)
			}
			g, w := gs[i], want[i]
			g.CreatedAt, w.CreatedAt = time.Time{}, time.Time{}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("ListGrants(%q)[%d] = %+v, want %+v", user, i, g, w)
			}
		}
	}
	check("", added...)
	check("alice", added[1], added[2], added[3])
	check("bob", added[0], added[4])
	check("nobody")
	mustOK(t, s.RemoveGrant(ctx, added[2].ID))
	check("alice", added[1], added[3])
	wantErr(t, "remove grant twice", s.RemoveGrant(ctx, added[2].ID), store.ErrNotFound)
	wantErr(t, "remove grant 0", s.RemoveGrant(ctx, 0), store.ErrNotFound)
	// IDs are not reused after removal.
	last := added[len(added)-1]
	mustOK(t, s.RemoveGrant(ctx, last.ID))
	g, err := s.AddGrant(ctx, gate.Grant{User: "bob", Target: "web-1"})
	mustOK(t, err)
	if g.ID <= last.ID {
		t.Errorf("new grant ID %d reuses or precedes removed %d", g.ID, last.ID)
	}
}

func testGrantErrors(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	s := open(t)
	mustOK(t, s.AddUser(ctx, gate.User{Name: "alice"}))
	mustOK(t, s.AddEnv(ctx, gate.Env{Name: "prod"}))
	mustOK(t, s.AddTarget(ctx, upstream("web-1", "prod")))
	cases := []struct {
		name string
		g    gate.Grant
		want error
		msg  []string
	}{
		{"missing user", gate.Grant{User: "dave", Env: "prod"}, store.ErrNotFound, []string{`"dave"`}},
		{"missing env", gate.Grant{User: "alice", Env: "qa"}, store.ErrNotFound, []string{`"qa"`}},
		{"missing target", gate.Grant{User: "alice", Target: "web-9"}, store.ErrNotFound, []string{`"web-9"`}},
		{"both env and target", gate.Grant{User: "alice", Env: "prod", Target: "web-1"}, errAny, nil},
		{"neither env nor target", gate.Grant{User: "alice"}, errAny, nil},
	}
	for _, c := range cases {
		_, err := s.AddGrant(ctx, c.g)
		wantErr(t, c.name, err, c.want, c.msg...)
	}
	if gs, err := s.ListGrants(ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("failed AddGrants left %+v, %v", gs, err)
	}
}
