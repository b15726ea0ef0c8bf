package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/postgres/pgtest"
	"github.com/sshgate/sshgate/internal/store/storetest"
)

func openDSN(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{DSN: dsn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openDSN(t, pgtest.Schema(t))
	})
}

func TestRaces(t *testing.T) {
	t.Parallel()
	storetest.Races(t, func(t *testing.T) (store.Store, store.Store) {
		dsn := pgtest.Schema(t)
		return openDSN(t, dsn), openDSN(t, dsn)
	})
}

func TestTwoHandles(t *testing.T) {
	t.Parallel()
	storetest.TwoHandles(t, func(t *testing.T) (store.Store, store.Store) {
		dsn := pgtest.Schema(t)
		return openDSN(t, dsn), openDSN(t, dsn)
	})
}

func version(t *testing.T, s *Store) int {
	t.Helper()
	var v int
	if err := s.pool.QueryRow(context.Background(), `SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigratesForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	old, err := open(ctx, Options{DSN: dsn}, migrations[:2])
	if err != nil {
		t.Fatal(err)
	}
	if from, to := old.Migrated(); from != 0 || to != 2 {
		t.Fatalf("first open migrated %d -> %d, want 0 -> 2", from, to)
	}
	if err := old.AddUser(ctx, gate.User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	s := openDSN(t, dsn)
	if from, to := s.Migrated(); from != 2 || to != SchemaVersion {
		t.Fatalf("Migrated() = %d -> %d, want 2 -> %d", from, to, SchemaVersion)
	}
	if v := version(t, s); v != SchemaVersion {
		t.Fatalf("schema_version = %d, want %d", v, SchemaVersion)
	}
	// The user added before the menu migration got a uid.
	if ui, err := s.GetUserInfo(ctx, "alice"); err != nil || ui.UID == 0 {
		t.Fatalf("GetUserInfo after migration: %+v, %v", ui, err)
	}
	again := openDSN(t, dsn)
	if from, to := again.Migrated(); from != SchemaVersion || to != SchemaVersion {
		t.Fatalf("reopen Migrated() = %d -> %d, want no migration", from, to)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	openDSN(t, dsn)
	_, err := open(ctx, Options{DSN: dsn}, migrations[:2])
	want := fmt.Sprintf("database schema version %d is newer than this sshgate knows (2)", SchemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("old binary on a newer schema: %v, want one line containing %q", err, want)
	}
	if strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "://") {
		t.Fatalf("error shows the DSN: %v", err)
	}
}

// Gates started at once on an empty database: every one opens, the schema
// is migrated exactly once.
func TestConcurrentStarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, Options{DSN: dsn, MaxConns: 2})
		}()
	}
	wg.Wait()
	migrated := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("start %d: %v", i, errs[i])
			continue
		}
		if from, to := stores[i].Migrated(); from < to {
			migrated++
		}
		stores[i].Close()
	}
	if migrated != 1 {
		t.Fatalf("%d starts migrated, want 1", migrated)
	}
}

// Several gates write at once through their own pools.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := pgtest.Schema(t)
	handles := []*Store{openDSN(t, dsn), openDSN(t, dsn), openDSN(t, dsn)}
	if err := handles[0].AddEnv(ctx, gate.Env{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 15 {
				name := fmt.Sprintf("%c-%c", 'a'+i, 'a'+j)
				if err := h.AddUser(ctx, gate.User{Name: name}); err != nil {
					errs <- err
					return
				}
				if _, err := h.AddGrant(ctx, gate.Grant{User: name, Env: "prod"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if gs, err := handles[1].ListGrants(ctx, ""); err != nil || len(gs) != 45 {
		t.Fatalf("%d grants, %v; want 45", len(gs), err)
	}
	if err := handles[2].AddUser(ctx, gate.User{Name: "a-a"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		o       Options
		wantErr string
		check   func(t *testing.T, s string)
	}{
		{o: Options{}, wantErr: "empty postgres dsn"},
		{o: Options{DSN: "postgres://u:secret@[::1"}, wantErr: "cannot parse"},
		{o: Options{DSN: "host=h user=u password=secret port=notaport"}, wantErr: "cannot parse"},
	} {
		_, err := parseConfig(c.o)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("parseConfig(%+v) = %v, want %q", c.o, err, c.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	cfg, err := parseConfig(Options{DSN: "postgres://u:inurl@db.example:6543/gate", Password: "fromfile", SSLMode: "require", MaxConns: 7})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.ConnConfig
	if c.Password != "fromfile" || c.Host != "db.example" || c.Port != 6543 || c.Database != "gate" || c.TLSConfig == nil || cfg.MaxConns != 7 {
		t.Fatalf("config: %+v", c)
	}
	if d := describe(cfg); d != "postgres u@db.example:6543/gate" {
		t.Fatalf("describe = %q", d)
	}
	if _, err := parseConfig(Options{DSN: "host=h user=u dbname=d", SSLMode: "disable"}); err != nil {
		t.Fatalf("keyword/value dsn: %v", err)
	}
	if _, err := parseConfig(Options{DSN: "host=h", CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Fatalf("missing ca file: %v", err)
	}
}

// A server that does not answer is one line, naming the database but not
// the password.
func TestUnreachableOneLine(t *testing.T) {
	_, err := Open(context.Background(), Options{DSN: "postgres://gate:secret@127.0.0.1:1/gatedb", SSLMode: "prefer"})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || strings.Contains(msg, "secret") || !strings.Contains(msg, "gate@127.0.0.1:1/gatedb") ||
		strings.Count(msg, "connection refused") != 1 {
		t.Fatalf("error %q: want one line naming the database once, no password", msg)
	}
}
