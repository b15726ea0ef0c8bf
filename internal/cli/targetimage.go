package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/sshgate/sshgate/internal/route"
)

// checkImage makes sure a docker target's image is on the engine the gate
// uses ($DOCKER_HOST, else the local socket): the gate never pulls images,
// so a missing one would otherwise show only when a user connects. An
// engine that cannot be reached is said on out and does not stop the add.
// user is the user the image runs as (Docker's Config.User; "" for root or
// when unknown).
func checkImage(ctx context.Context, out io.Writer, image string) (user string, err error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintf(out, "could not check that image %s exists (%v); the gate never pulls images\n", image, err)
		return "", nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ii, err := c.ImageInspect(ctx, image)
	switch {
	case err == nil:
		if ii.Config != nil {
			user = ii.Config.User
		}
		return user, nil
	case cerrdefs.IsNotFound(err):
		return "", failf("image %q is not on the Docker engine at %s, and the gate never pulls images: run `docker pull %s` there first (or --skip-image-check)", image, c.DaemonHost(), image)
	default:
		fmt.Fprintf(out, "could not check that image %s exists on %s (%v); the gate never pulls images\n", image, c.DaemonHost(), err)
		return "", nil
	}
}

// containerLogin is the login a docker target without --login shows and
// accepts: the user its containers run as (--user, else the image's user)
// when that is a user name other than root; "" otherwise, which `ls` and
// the menu show as the login "default" and users reach as
// USER+TARGET+default. Root is left unnamed: whether a container may run
// as root is the gate's docker.allow_root, not the image's.
func containerLogin(specUser, imageUser string) string {
	u := specUser
	if u == "" {
		u = imageUser
	}
	u, _, _ = strings.Cut(u, ":") // user:group
	if u == "root" || !route.ValidLogin(u) {
		return ""
	}
	return u
}
