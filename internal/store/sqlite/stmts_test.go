package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

// The login path's reads compile once: a second round prepares nothing new,
// and what another handle (another process) writes between rounds is read
// through the kept statements at once.
func TestStatementsKeptResultsNot(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sshgate.db")
	gateSide, cli := openTemp(t, path), openTemp(t, path)
	if err := cli.AddUser(ctx, gate.User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	reads := func() []gate.Key {
		t.Helper()
		keys, err := gateSide.ListKeys(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateSide.GetUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := gateSide.ListGrants(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := gateSide.ListTargets(ctx); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if keys := reads(); len(keys) != 0 {
		t.Fatalf("keys before any was added: %v", keys)
	}
	gateSide.db.mu.Lock()
	kept := len(gateSide.db.stmts)
	gateSide.db.mu.Unlock()
	if kept < 4 {
		t.Fatalf("%d statements kept after the login reads, want at least 4", kept)
	}
	if err := cli.AddKey(ctx, gate.Key{User: "alice", Fingerprint: "SHA256:a", AuthorizedKey: "ssh-ed25519 AAAA"}); err != nil {
		t.Fatal(err)
	}
	if keys := reads(); len(keys) != 1 {
		t.Fatalf("a key added by another handle is not read through the kept statement: %v", keys)
	}
	if err := cli.RemoveKey(ctx, "alice", "SHA256:a"); err != nil {
		t.Fatal(err)
	}
	if keys := reads(); len(keys) != 0 {
		t.Fatalf("a key removed by another handle is still read: %v", keys)
	}
	gateSide.db.mu.Lock()
	again := len(gateSide.db.stmts)
	gateSide.db.mu.Unlock()
	if again != kept {
		t.Fatalf("%d statements kept after a second round, %d after the first: the reads are not reused", again, kept)
	}
}

// Past maxStmts distinct queries, new ones run unprepared and nothing more
// is kept; a query that cannot be prepared reports its error as before.
func TestStatementsBounded(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, filepath.Join(t.TempDir(), "sshgate.db"))
	for i := 0; i < maxStmts+10; i++ {
		var n int
		if err := s.db.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&n); err != nil || n != i {
			t.Fatalf("SELECT %d: %d, %v", i, n, err)
		}
	}
	s.db.mu.Lock()
	kept := len(s.db.stmts)
	s.db.mu.Unlock()
	if kept > maxStmts {
		t.Fatalf("%d statements kept, bound %d", kept, maxStmts)
	}
	if _, err := s.db.ExecContext(ctx, "SELEC nonsense"); err == nil {
		t.Fatal("a bad statement ran")
	}
}

// BenchmarkLoginReads is the store's part of one login: the key lookup, the
// user, the grants, the targets.
func BenchmarkLoginReads(b *testing.B) {
	ctx := context.Background()
	s, err := Open(filepath.Join(b.TempDir(), "sshgate.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.AddUser(ctx, gate.User{Name: "alice"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ListKeys(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.GetUser(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ListGrants(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ListTargets(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
