package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// engineBurst creates and starts n containers of image at once straight
// through the engine's API (no CLI process, no attach, no wait): the
// engine's own floor for the cold part of a burst of connections, which is
// what the gate asks of it for each connection the pool cannot serve. It
// returns the time until the last was started and removes them all.
func engineBurst(ctx context.Context, n int, image string, labels map[string]string) (time.Duration, error) {
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return 0, err
	}
	defer api.Close()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ids   []string
		first error
	)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := api.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"sleep", "600"}, Labels: labels},
				&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
			if err == nil {
				mu.Lock()
				ids = append(ids, r.ID)
				mu.Unlock()
				err = api.ContainerStart(ctx, r.ID, container.StartOptions{})
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = api.ContainerRemove(rctx, id, container.RemoveOptions{Force: true})
		}()
	}
	wg.Wait()
	if first != nil {
		return took, fmt.Errorf("engine burst: %w", first)
	}
	return took, nil
}
