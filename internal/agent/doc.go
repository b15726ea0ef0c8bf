// Package agent is sshgate-agent's SSH server: the process that runs inside
// one container (or on one operator-run host) and serves the gate's relayed
// SSH connection there. It owns, for that one container: public-key and
// user-certificate authentication against an authorized_keys file, session
// channels (shell, exec, PTY, signals, exit status), SFTP served in-process by
// github.com/pkg/sftp, the legacy scp protocol (scp -t / scp -f) served in Go
// so that images need no scp or sftp-server binary, local and remote TCP port
// forwarding, agent forwarding (a private socket per session whose clients
// become auth-agent@openssh.com channels to the gate), and reaping orphaned
// children when it is the container's init.
//
// It runs the container's processes as the user the agent itself runs as.
// Authorization (who may reach this container, which ports they may forward
// to) is the gate's decision; the agent only checks that the connection comes
// from a key or certificate authority it was given.
//
// The agent is built into a small static binary: of the project it may use
// only the vocabulary (gate) and sshkeys, and none of the gate's server-side
// libraries (Docker, Kubernetes, Prometheus, the SQL drivers).
//
// Must not import: store/... target/... obs broker app auth/... sshd/... relay policy route/... webhook config cli audit/... live ca datadir
// Must not import: github.com/docker/... github.com/moby/... github.com/prometheus/... k8s.io/... modernc.org/... github.com/jackc/...
package agent
