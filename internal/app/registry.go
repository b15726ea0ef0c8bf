package app

import (
	"context"
	"errors"
	"time"

	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/store"
	"github.com/sshgate/sshgate/internal/target/container"
)

// containerRegistry is the store's registry of containers (its containers
// and gates tables) as the container lifecycle asks for it: the store's
// sentinel errors become booleans, so that the lifecycle imports no store.
type containerRegistry struct{ st store.Store }

var _ container.Registry = containerRegistry{}

func (r containerRegistry) PutContainer(ctx context.Context, c gate.WarmContainer) (bool, error) {
	err := r.st.PutContainer(ctx, c)
	if errors.Is(err, store.ErrExists) {
		return false, nil
	}
	return err == nil, err
}

func (r containerRegistry) ReplaceContainer(ctx context.Context, oldID string, c gate.WarmContainer) (bool, error) {
	err := r.st.ReplaceContainer(ctx, oldID, c)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (r containerRegistry) ClaimContainer(ctx context.Context, key, user, gateID string, alive time.Time) (gate.WarmContainer, bool, bool, error) {
	c, adopted, err := r.st.ClaimContainer(ctx, key, user, gateID, alive)
	if errors.Is(err, store.ErrNotFound) {
		return gate.WarmContainer{}, false, false, nil
	}
	if err != nil {
		return gate.WarmContainer{}, false, false, err
	}
	return c, true, adopted, nil
}

func (r containerRegistry) TouchContainers(ctx context.Context, ids []string, at time.Time) error {
	return r.st.TouchContainers(ctx, ids, at)
}

func (r containerRegistry) ListContainers(ctx context.Context) ([]gate.WarmContainer, error) {
	return r.st.ListContainers(ctx)
}

func (r containerRegistry) ReleaseContainers(ctx context.Context, gateID string) (int, error) {
	return r.st.ReleaseContainers(ctx, gateID)
}

func (r containerRegistry) ClaimRemoval(ctx context.Context, id, gateID string, alive, idleBefore time.Time) (bool, error) {
	return r.st.ClaimRemoval(ctx, id, gateID, alive, idleBefore)
}

func (r containerRegistry) RemoveContainer(ctx context.Context, id string) error {
	return r.st.RemoveContainer(ctx, id)
}

func (r containerRegistry) ListGates(ctx context.Context) ([]gate.GateInfo, error) {
	return r.st.ListGates(ctx)
}
