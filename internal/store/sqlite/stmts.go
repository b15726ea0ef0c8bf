package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// maxStmts bounds the statements db keeps prepared (each on up to MaxConns
// connections). The store's queries are constant strings, far fewer than
// this; the few built with a variable number of placeholders go through
// db.DB directly and are never kept.
const maxStmts = 256

// db is the store's *sql.DB with its constant queries prepared once and
// kept: SQLite then compiles each query once per connection instead of on
// every call (parsing was a tenth of the gate's CPU per login). Results are
// never cached: every call runs the statement against the database, so every
// read still sees the latest committed write of any process. SQLite
// recompiles a kept statement by itself when another process changes the
// schema.
type db struct {
	*sql.DB

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newDB(d *sql.DB) *db { return &db{DB: d, stmts: map[string]*sql.Stmt{}} }

// stmt returns the kept statement for query, preparing it on first use;
// nil when it cannot be prepared (the caller runs query unprepared, which
// reports the same error) or when maxStmts are kept already.
func (d *db) stmt(ctx context.Context, query string) *sql.Stmt {
	d.mu.Lock()
	st, ok := d.stmts[query]
	full := len(d.stmts) >= maxStmts
	d.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := d.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if prev, ok := d.stmts[query]; ok { // prepared meanwhile by another call
		_ = st.Close()
		return prev
	}
	if len(d.stmts) >= maxStmts {
		_ = st.Close()
		return nil
	}
	d.stmts[query] = st
	return st
}

func (d *db) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, query, args...)
}

func (d *db) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, query, args...)
}

func (d *db) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// Close closes the kept statements, then the database.
func (d *db) Close() error {
	d.mu.Lock()
	for q, st := range d.stmts {
		_ = st.Close()
		delete(d.stmts, q)
	}
	d.mu.Unlock()
	return d.DB.Close()
}
