package kube

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/httpstream"
)

// TestUpgradeFailed: which failed exec streams are retried over the other
// protocol. The SPDY messages are those of apimachinery's SPDY round
// tripper (httpstream/spdy, NewConnection) for the API server's answers.
func TestUpgradeFailed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&httpstream.UpgradeFailureError{Cause: errors.New("bad handshake")}, true},
		{fmt.Errorf("wrapped: %w", &httpstream.UpgradeFailureError{Cause: errors.New("x")}), true},
		{errors.New("unable to upgrade connection: 400 Bad Request"), true},
		{errors.New("unable to upgrade connection: Upgrade request required"), true},
		{errors.New(`unable to upgrade connection: pods "p" is forbidden: User "u" cannot create resource "pods/exec"`), false},
		{errors.New(`unable to upgrade connection: pods "p" not found`), false},
		{errors.New("unable to upgrade connection: Unauthorized"), false},
		{errors.New("command terminated with non-zero exit code"), false},
		{errors.New("read: connection reset by peer"), false},
	} {
		if got := upgradeFailed(c.err); got != c.want {
			t.Errorf("upgradeFailed(%q) = %v, want %v", c.err, got, c.want)
		}
	}
}
