package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// checkImage makes sure a docker target's image is on the engine the gate
// uses ($DOCKER_HOST, else the local socket): the gate never pulls images,
// so a missing one would otherwise show only when a user connects. An
// engine that cannot be reached is said on out and does not stop the add.
func checkImage(ctx context.Context, out io.Writer, image string) error {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintf(out, "could not check that image %s exists (%v); the gate never pulls images\n", image, err)
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.ImageInspect(ctx, image)
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return failf("image %q is not on the Docker engine at %s, and the gate never pulls images: run `docker pull %s` there first (or --skip-image-check)", image, c.DaemonHost(), image)
	default:
		fmt.Fprintf(out, "could not check that image %s exists on %s (%v); the gate never pulls images\n", image, c.DaemonHost(), err)
		return nil
	}
}
