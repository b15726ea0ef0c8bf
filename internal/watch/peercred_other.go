//go:build !linux

package watch

import (
	"errors"
	"net"
)

// peerUID is not implemented here: every admin watcher is refused.
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("peer credentials are not supported on this system")
}
