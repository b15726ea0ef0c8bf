#!/usr/bin/env bash
# up.sh: a private single-node Kubernetes cluster for the e2e tests, on
# 127.0.0.1 only: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and a kubelet over a private containerd (its own root, state
# and socket; Debian's containerd and containernetworking-plugins). Images are
# imported locally (a pause image built here, the e2e busybox image from the
# system Docker); nothing is ever pulled. Idempotent: a cluster that answers is
# left alone. It never touches the system dockerd or its containerd.
#
#   K8S_STATE  state directory (default /var/lib/sshgate-k8s)
#   K8S_CACHE  binary cache (default /var/cache/sshgate-k8s, see build.sh)
#
# Writes $K8S_STATE/admin.kubeconfig (cluster-admin) and
# $K8S_STATE/gate.kubeconfig (user "sshgate", no rights until
# dist/kubernetes/rbac.yaml binds them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
S=${K8S_STATE:-/var/lib/sshgate-k8s}
export PATH=$PATH:/usr/local/go/bin
start=$(date +%s)
say() { echo "k8s-up: $*" >&2; }
fail() {
	say "FAILED: $*"
	for f in "$S"/log/*.log; do [[ -f $f ]] && { echo "---- last lines of $f" >&2; tail -n 15 "$f" >&2; }; done
	exit 1
}

# The node is named localhost: the apiserver reaches the kubelet by its
# Hostname address (a loopback node IP is refused by the kubelet).
NODE=localhost
API=127.0.0.1:26443
ETCD=127.0.0.1:23791
ETCD_PEER=127.0.0.1:23801
KUBELET_PORT=20250

need=()
dpkg-query -W -f='${Status}' containerd 2>/dev/null | grep -q 'install ok installed' || need+=(containerd)
dpkg-query -W -f='${Status}' containernetworking-plugins 2>/dev/null | grep -q 'install ok installed' || need+=(containernetworking-plugins)
dpkg-query -W -f='${Status}' openssl 2>/dev/null | grep -q 'install ok installed' || need+=(openssl)
if ((${#need[@]})); then
	say "installing ${need[*]}"
	# policy-rc.d: the package's own containerd service must not start.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; } ||
		fail "apt-get install ${need[*]}"
fi

BIN=$(bash "$here/build.sh") || fail "build"
kubectl() { "$BIN/kubectl" --kubeconfig "$S/admin.kubeconfig" --request-timeout=20s "$@"; }

if [[ -s $S/admin.kubeconfig ]] && kubectl get --raw /readyz >/dev/null 2>&1 &&
	kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
	echo "$BIN" >"$S/bin"
	say "already up ($S)"
	echo "$S"
	exit 0
fi
# Anything half-started goes first.
bash "$here/down.sh" >/dev/null 2>&1 || true

mkdir -p "$S"/{pki,log,run,etcd,kubelet,containerd/root,containerd/state,cni/net.d,cni/cache,images}
chmod 0700 "$S" "$S/pki"

# ---- certificates -------------------------------------------------------
pki=$S/pki
if [[ ! -s $pki/ca.crt ]]; then
	say "generating certificates"
	o() { openssl "$@" 2>/dev/null; }
	o req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 -subj "/CN=sshgate-k8s-ca" ||
		fail "openssl ca"
	cert() { # name CN O [SAN]
		local n=$1 cn=$2 org=$3 san=${4:-}
		local subj="/CN=$cn"; [[ -n $org ]] && subj="/O=$org/CN=$cn"
		o req -newkey rsa:2048 -nodes -keyout "$pki/$n.key" -out "$pki/$n.csr" -subj "$subj" || fail "openssl $n"
		local ext=$pki/$n.ext
		{
			echo "basicConstraints=CA:FALSE"
			echo "keyUsage=critical,digitalSignature,keyEncipherment"
			if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
			else echo "extendedKeyUsage=clientAuth"; fi
		} >"$ext"
		o x509 -req -in "$pki/$n.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -out "$pki/$n.crt" -days 3650 -extfile "$ext" ||
			fail "openssl sign $n"
		rm -f "$pki/$n.csr" "$ext"
	}
	cert apiserver kube-apiserver "" "IP:127.0.0.1,IP:198.18.1.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	cert admin admin system:masters
	cert apiserver-kubelet kube-apiserver-kubelet-client system:masters
	cert kubelet "system:node:$NODE" system:nodes "IP:127.0.0.1,DNS:$NODE,DNS:localhost"
	cert gate sshgate ""
	o genrsa -out "$pki/sa.key" 2048 || fail "openssl sa"
	o rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" || fail "openssl sa pub"
	chmod 0600 "$pki"/*.key
fi
kubeconfig() { # file cert-name
	cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sshgate-k8s
  cluster: {server: "https://$API", certificate-authority: "$pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$pki/$2.crt", client-key: "$pki/$2.key"}
contexts:
- name: sshgate-k8s
  context: {cluster: sshgate-k8s, user: $2}
current-context: sshgate-k8s
KC
	chmod 0600 "$1"
}
kubeconfig "$S/admin.kubeconfig" admin
kubeconfig "$S/kubelet.kubeconfig" kubelet
kubeconfig "$S/gate.kubeconfig" gate

run() { # name cmd...: started in its own session, pid in run/NAME.pid
	local n=$1; shift
	setsid nohup "$@" >"$S/log/$n.log" 2>&1 </dev/null &
	echo $! >"$S/run/$n.pid"
}
alive() { kill -0 "$(cat "$S/run/$1.pid" 2>/dev/null)" 2>/dev/null; }
waitfor() { # what seconds command...
	local what=$1 secs=$2; shift 2
	local end=$(( $(date +%s) + secs ))
	until "$@" >/dev/null 2>&1; do
		(( $(date +%s) < end )) || fail "$what not ready within ${secs}s"
		sleep 0.2
	done
}

# ---- containerd -----------------------------------------------------------
sock=$S/containerd/containerd.sock
cat >"$S/containerd/config.toml" <<TOML
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = "$sock.debug"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "sshgate-k8s/pause:1"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
TOML
# The pods' network: a bridge with no gateway, no masquerade and no route, on
# a benchmarking range (198.18.0.0/24): a pod has its own loopback and can
# reach nothing on the host nor beyond it.
cat >"$S/cni/net.d/10-sshgate.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "sshgate-k8s", "plugins": [
  {"type": "bridge", "bridge": "sgk8s0", "isGateway": false, "ipMasq": false, "hairpinMode": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.0.0/24"}]], "dataDir": "$S/cni/ipam"}},
  {"type": "loopback"}
]}
CNI
run containerd containerd --config "$S/containerd/config.toml"
waitfor containerd 30 ctr -a "$sock" version
ctr_() { ctr -a "$sock" -n k8s.io "$@"; }

# ---- images (local only) ----------------------------------------------------
if ! ctr_ images ls -q | grep -qx 'docker.io/sshgate-k8s/pause:1'; then
	say "building the pause image"
	ctx=$(mktemp -d)
	(cd "$here/tools" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ctx/pause" ./pause) || fail "build pause"
	printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
	DOCKER_BUILDKIT=0 docker build -q --network none -t sshgate-k8s/pause:1 "$ctx" >/dev/null || fail "docker build pause"
	docker save sshgate-k8s/pause:1 >"$S/images/pause.tar"
	rm -rf "$ctx"
	ctr_ images import --no-unpack=false "$S/images/pause.tar" >/dev/null || fail "import pause"
fi
for img in sshgate-test/busybox:latest sshgate-test/busybox-user:latest; do
	docker image inspect "$img" >/dev/null 2>&1 || continue
	id=$(docker image inspect -f '{{.Id}}' "$img")
	stamp=$S/images/$(echo "$img" | tr '/:' '__').id
	if [[ $(cat "$stamp" 2>/dev/null) != "$id" ]] || ! ctr_ images ls -q | grep -qx "docker.io/$img"; then
		docker save "$img" | ctr_ images import - >/dev/null || fail "import $img"
		echo "$id" >"$stamp"
		say "imported $img"
	fi
done

# ---- etcd, apiserver -------------------------------------------------------
run etcd "$BIN/etcd" --name default --data-dir "$S/etcd" \
	--listen-client-urls "http://$ETCD" --advertise-client-urls "http://$ETCD" \
	--listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
	--initial-cluster "default=http://$ETCD_PEER" --listen-metrics-urls "" --log-level warn \
	--quota-backend-bytes $((1 << 30))
run apiserver "$BIN/kube-apiserver" --etcd-servers "http://$ETCD" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "${API##*:}" \
	--service-cluster-ip-range 198.18.1.0/24 \
	--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
	--kubelet-client-certificate "$pki/apiserver-kubelet.crt" --kubelet-client-key "$pki/apiserver-kubelet.key" \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc \
	--authorization-mode Node,RBAC --allow-privileged=false --profiling=false \
	--enable-priority-and-fairness=false --endpoint-reconciler-type none \
	--kubelet-preferred-address-types Hostname
waitfor etcd 30 alive etcd
waitfor apiserver 90 kubectl get --raw /readyz

# ---- controller-manager, scheduler, kubelet ---------------------------------
run controller-manager "$BIN/kube-controller-manager" --kubeconfig "$S/admin.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 20257 --leader-elect=false \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
	--use-service-account-credentials=false --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route' \
	--profiling=false
run scheduler "$BIN/kube-scheduler" --kubeconfig "$S/admin.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port 20259 --leader-elect=false --profiling=false
cat >"$S/kubelet/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
tlsCertFile: "$pki/kubelet.crt"
tlsPrivateKeyFile: "$pki/kubelet.key"
containerRuntimeEndpoint: "unix://$sock"
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
resolvConf: ""
registerNode: true
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
localStorageCapacityIsolation: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
KCFG
run kubelet "$BIN/kubelet" --config "$S/kubelet/config.yaml" --kubeconfig "$S/kubelet.kubeconfig" \
	--root-dir "$S/kubelet/root" --hostname-override "$NODE" \
	--pod-infra-container-image sshgate-k8s/pause:1
waitfor "node $NODE" 120 bash -c "'$BIN/kubectl' --kubeconfig '$S/admin.kubeconfig' get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
waitfor "default service account" 60 kubectl -n default get serviceaccount default
echo "$BIN" >"$S/bin"
say "up in $(( $(date +%s) - start ))s ($S; kubeconfig $S/admin.kubeconfig)"
echo "$S"
