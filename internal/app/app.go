// Package app is the composition root: it turns configuration into
// components, runs the gate and shuts it down in order.
package app

import (
	"context"
	"errors"
	"io"
)

// Options are what `sshgate serve` passes in from its flags.
type Options struct {
	DataDir    string // resolved data directory
	Listen     string // overrides the config's listen address when set
	ConfigFile string // optional YAML file
	Log        io.Writer
}

// Serve runs the gate until ctx is cancelled.
func Serve(ctx context.Context, o Options) error {
	return errors.New("not implemented yet")
}
