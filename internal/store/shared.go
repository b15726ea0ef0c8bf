package store

import (
	"context"
	"fmt"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
)

// ErrUnavailable marks a store failure met while deciding a login: the
// caller fails closed (the login is refused) and tells the user the service
// is temporarily unavailable, never that the credential was wrong.
// It is gate.ErrUnavailable, so that every layer tells it apart the same way.
var ErrUnavailable = gate.ErrUnavailable

// Unavailable wraps err (a store error during op) in ErrUnavailable.
func Unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Kinds of per-account failure counters.
const (
	FailPassword = "password" // wrong passwords, from any source
	FailCode     = "code"     // wrong TOTP codes
)

// AuthStateStore is the login state every gate sharing the store counts
// together: TOTP grace windows and per-account failure counters. Each
// method is one atomic statement, so two gates racing count both.
type AuthStateStore interface {
	// PutTOTPGrace records that user passed the second factor with cred
	// (a key fingerprint, or the method) from addr, valid until until.
	PutTOTPGrace(ctx context.Context, user, cred, addr string, until time.Time) error
	// TOTPGraceUntil is the end of that window; zero when none.
	TOTPGraceUntil(ctx context.Context, user, cred, addr string) (time.Time, error)
	// CountFailure counts one failure of kind for user at at: counts older
	// than window start afresh; the limit-th within a window locks the
	// account until at+lock (unless it is locked already) and starts the
	// count afresh. It returns the account's lock end (zero if never
	// locked) and whether this failure set it.
	CountFailure(ctx context.Context, kind, user string, at time.Time, limit int, window, lock time.Duration) (lockedUntil time.Time, locked bool, err error)
	// FailureLockedUntil is the lock end of kind for user; zero when none.
	FailureLockedUntil(ctx context.Context, kind, user string) (time.Time, error)
}

// ContainerStore is the shared registry of warm containers (per-user,
// pooled, and per-connection ones so that their gate's death is noticed).
// A gate is alive when its row in gates has a heartbeat at or after the
// alive time the caller passes; "" (free) and dead owners may be adopted.
type ContainerStore interface {
	// PutContainer records c. For a per-user container another row for
	// the same Key and User is ErrExists (another gate won the race).
	PutContainer(ctx context.Context, c gate.WarmContainer) error
	// ReplaceContainer turns row oldID, if it is still c.Gate's, into c
	// (one statement): a gate records a placeholder for a per-user
	// container before starting it (so that another gate waits for it
	// rather than starting a second), then the container. ErrNotFound
	// when the row is gone or another gate's; ErrExists when c.ID is taken.
	ReplaceContainer(ctx context.Context, oldID string, c gate.WarmContainer) error
	// ClaimContainer returns the per-user container for key and user. One
	// owned by a live gate is shared as it is; a free one, or one whose
	// owner is dead, becomes gateID's (one of two racing gates adopts it,
	// and both may use it); adopted reports whether this call did.
	// ErrNotFound when none.
	ClaimContainer(ctx context.Context, key, user, gateID string, alive time.Time) (_ gate.WarmContainer, adopted bool, _ error)
	// TakePooled takes a pool container of key that is gateID's, free, or
	// a dead gate's: it becomes a per-connection container of gateID.
	// Exactly one of two racing gates gets each. ErrNotFound when none.
	TakePooled(ctx context.Context, key, gateID string, alive time.Time, at time.Time) (gate.WarmContainer, error)
	// TouchContainers sets the last use of the containers ids (one
	// statement) to at, unless it is later already (another gate's use).
	TouchContainers(ctx context.Context, ids []string, at time.Time) error
	ListContainers(ctx context.Context) ([]gate.WarmContainer, error) // by created
	// ReleaseContainers hands over gateID's per-user and pool containers
	// (their owner becomes free) and returns how many.
	ReleaseContainers(ctx context.Context, gateID string) (int, error)
	// ClaimRemoval deletes the row of id when the caller may remove the
	// container: it is gateID's, free, or a dead gate's, and (for per-user
	// and pool containers) was last used before idleBefore. true: the
	// caller removes the container; false: someone else keeps it.
	ClaimRemoval(ctx context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error)
	RemoveContainer(ctx context.Context, id string) error // no error when absent
}
