// Package sdnotify tells systemd about the service's state (sd_notify(3)):
// one datagram to the unix socket named by $NOTIFY_SOCKET.
//
// Must not import: any project package
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Socket is the environment variable systemd sets for Type=notify units.
const Socket = "NOTIFY_SOCKET"

// Messages of sd_notify(3).
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state ("READY=1", or several NAME=VALUE lines) to the socket
// in $NOTIFY_SOCKET. Without that variable (not run by systemd) it does
// nothing and returns false.
func Notify(state string) (bool, error) {
	path := os.Getenv(Socket)
	if path == "" {
		return false, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return false, fmt.Errorf("sd_notify: %s=%q is not a unix socket path", Socket, path)
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}
