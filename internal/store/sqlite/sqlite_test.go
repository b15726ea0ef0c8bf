package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/store/storetest"
)

func openTemp(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "sshgate.db"))
	})
}

func TestRaces(t *testing.T) {
	storetest.Races(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "sshgate.db")
		return openTemp(t, path), openTemp(t, path)
	})
}

func TestTwoHandles(t *testing.T) {
	storetest.TwoHandles(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "sshgate.db")
		return openTemp(t, path), openTemp(t, path)
	})
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sshgate.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, gate.User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTemp(t, path)
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	var v int
	if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("schema_version = %d, %v; want %d", v, err, SchemaVersion)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode: %v, %v; want 0600", fi.Mode(), err)
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := s.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sshgate.db")
	openTemp(t, path)
	_, err := open(path, migrations[:2])
	want := fmt.Sprintf("database schema version %d is newer than this sshgate knows (2)", SchemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("old binary on a newer database: %v, want one line containing %q", err, want)
	}
}

func TestMigratesForward(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sshgate.db")
	old, err := open(path, migrations[:2])
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
	s := openTemp(t, path)
	if from, to := s.Migrated(); from != 2 || to != SchemaVersion {
		t.Fatalf("Migrated() = %d -> %d, want 2 -> %d", from, to, SchemaVersion)
	}
	if ui, err := s.GetUserInfo(ctx, "alice"); err != nil || ui.UID == 0 {
		t.Fatalf("GetUserInfo after migration: %+v, %v", ui, err)
	}
	if again := openTemp(t, path); func() bool { f, to := again.Migrated(); return f != to }() {
		t.Fatal("reopen of an up-to-date database reports a migration")
	}
}

// Processes started at once on a new file: every one opens, one migrates.
func TestConcurrentStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sshgate.db")
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(path)
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

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", filepath.Join(t.TempDir(), "a?b.db"), filepath.Join(t.TempDir(), "no", "such", "dir", "x.db")} {
		if s, err := Open(p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

// Several processes write at once: the CLI from a script, the gate. Here
// several handles on one file write concurrently; none may fail with BUSY.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sshgate.db")
	handles := []*Store{openTemp(t, path), openTemp(t, path), openTemp(t, path)}
	if err := handles[0].AddEnv(ctx, gate.Env{Name: "prod"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 15; j++ {
				name := string(rune('a'+i)) + "-" + string(rune('a'+j))
				if err := h.AddUser(ctx, gate.User{Name: name}); err != nil {
					errs <- err
					return
				}
				if _, err := h.AddGrant(ctx, gate.Grant{User: name, Env: "prod"}); err != nil {
					errs <- err
					return
				}
				if _, err := h.ListGrants(ctx, ""); err != nil {
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
	gs, err := handles[1].ListGrants(ctx, "")
	if err != nil || len(gs) != 45 {
		t.Fatalf("%d grants, %v; want 45", len(gs), err)
	}
	if err := handles[2].AddUser(ctx, gate.User{Name: "a-a"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
}
