package store

import (
	"context"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// SSOStore keeps what single sign-on writes: the grants that follow the
// provider's groups, and the reuse windows (gate.SSOSession) every gate
// sharing the store honours.
type SSOStore interface {
	// SyncSSOGrants makes the grants single sign-on manages for user
	// exactly want (ID and CreatedAt ignored): the ones no longer wanted
	// are removed, new ones added; grants an administrator made are never
	// touched. A wanted grant naming an env or target that does not exist
	// is skipped (skipped counts them). The user must exist.
	SyncSSOGrants(ctx context.Context, user string, want []gate.Grant) (added, removed, skipped int, err error)
	// SSOGrantIDs are the ids of user's grants that single sign-on manages.
	SSOGrantIDs(ctx context.Context, user string) ([]int64, error)

	// PutSSOSession creates or replaces the session of (User, Fingerprint,
	// Source). The user must exist; removing the user removes its sessions.
	PutSSOSession(ctx context.Context, s gate.SSOSession) error
	// GetSSOSession returns the session of exactly that user, key and
	// source, expired or not (the caller compares Expires).
	GetSSOSession(ctx context.Context, user, fingerprint, source string) (gate.SSOSession, error)
	ListSSOSessions(ctx context.Context, user string) ([]gate.SSOSession, error) // user "" lists all; by user, then creation
	RevokeSSOSessions(ctx context.Context, user string) (int, error)             // how many were removed
	PruneSSOSessions(ctx context.Context, before time.Time) (int, error)         // drops sessions that expired before
}
