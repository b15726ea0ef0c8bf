#!/usr/bin/env bash
# down.sh: stops the cluster up.sh started (only the processes whose pids it
# recorded, and the container shims of its own containerd), unmounts what they
# mounted under the state directory and removes the pod network bridge.
# Idempotent. Keeps the certificates, the imported images and the binary cache;
# `down.sh --purge` removes the state directory too.
set -uo pipefail
S=${K8S_STATE:-/var/lib/sshgate-k8s}
sock=$S/containerd/containerd.sock
stop() { # name: TERM, then KILL after 10 s
	local f=$S/run/$1.pid p
	[[ -f $f ]] || return 0
	p=$(cat "$f")
	# Only a process of ours: its command line names the state directory or
	# the binary cache (a stale pid file may name someone else's process now).
	local cl
	cl=$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null) || cl=
	if [[ $cl == *"$S"* || $cl == *sshgate-k8s* ]] && kill -0 "$p" 2>/dev/null; then
		kill "$p" 2>/dev/null
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
	fi
	rm -f "$f"
}
stop kubelet
# The pods' containers: kill their tasks through our own containerd.
if [[ -S $sock ]] && timeout 5 ctr -a "$sock" version >/dev/null 2>&1; then
	for c in $(timeout 10 ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
		timeout 10 ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
	done
	for _ in $(seq 1 25); do
		[[ -z $(timeout 5 ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null | head -1) ]] && break
		for c in $(timeout 5 ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
			timeout 5 ctr -a "$sock" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
		done
		sleep 0.2
	done
fi
stop scheduler
stop controller-manager
stop apiserver
stop etcd
stop containerd
# Shims of our containerd (their command line names our socket): by pid.
for p in $(pgrep -f -- "-address $sock" 2>/dev/null); do
	[[ $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null) == *"containerd-shim"*"$sock"* ]] && kill -9 "$p" 2>/dev/null
done
# Mounts under the state directory (volumes, rootfs, netns), deepest first.
awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
	umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
done
ip link del sgk8s0 2>/dev/null || true
if [[ ${1:-} == --purge ]]; then
	rm -rf "$S"
else
	# etcd and the kubelet start afresh each time; images and certs stay.
	rm -rf "$S/etcd" "$S/kubelet/root" "$S/cni/ipam" "$S/run"
fi
echo "k8s-down: stopped ($S)" >&2
