#!/usr/bin/env bash
# Builds the test cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl) from the Go module proxy into a cache outside the
# repo, keyed by the tools module's go.mod and go.sum: a warm run only checks that
# the binaries are there. Prints the bin directory on stdout.
#
#   K8S_CACHE   cache root (default /var/cache/sshgate-k8s)
#
# The build runs under nice/ionice: it takes about 10 minutes on two idle cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH=$PATH:/usr/local/go/bin
cache=${K8S_CACHE:-/var/cache/sshgate-k8s}
k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/tools/go.mod")
key=$(cat "$here/tools/go.mod" "$here/tools/go.sum" "$here/tools/etcd/main.go" | sha256sum | cut -c1-12)
bin="$cache/bin/$k8s_version-$key"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
ok=1
for c in etcd "${cmds[@]}"; do [[ -x $bin/$c ]] || ok=0; done
if [[ $ok == 1 ]]; then echo "$bin"; exit 0; fi

mkdir -p "$bin.tmp"
minor=${k8s_version#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
start=$(date +%s)
echo "k8s: building $k8s_version into $bin (cold: about 10 minutes on two idle cores)" >&2
cd "$here/tools"
pkgs=(./etcd)
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
# One go build for all six: the shared packages compile once.
CGO_ENABLED=0 nice -n 19 ionice -c3 go build -trimpath -ldflags "$ldflags" -o "$bin.tmp/" "${pkgs[@]}"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
echo "k8s: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
