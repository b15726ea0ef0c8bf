#!/usr/bin/env bash
# test-setup.sh: prepare a fresh Debian bookworm machine (as root) for the
# sshgate test suite. Idempotent and non-interactive: installs only what is
# missing, starts a Docker engine if none answers, builds the local test image
# sshgate-test/busybox:latest (FROM scratch, no pull), and starts a private
# PostgreSQL cluster on 127.0.0.1 for the store tests. Safe to run again.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
start=$(date +%s)
summary=()
note() { summary+=("$*"); echo "test-setup: $*"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "test-setup: must run as root (installs packages, starts dockerd)" >&2
	exit 1
fi

# ---- packages ---------------------------------------------------------------
pkgs=(openssh-client openssh-server rsync git docker.io lftp busybox-static socat procps iproute2 iptables tmux sshpass make prometheus asciinema python3-paramiko dropbear-bin systemd ansible-core putty-tools mc)
missing=()
pkgs+=(postgresql) # the store tests' server (see "postgresql" below)
pkgs+=(ssh-audit) # the algorithm audit (e2e TestSSHAudit)
pkgs+=(haproxy)    # the e2e tests start their own haproxy processes (install only: the package service is not started)
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	note "installing: ${missing[*]}"
	apt-get update -q
	# policy-rc.d keeps the packages' own services (sshd, docker) from being
	# started by the postinst scripts: the tests start their own.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	note "packages: all present"
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd

# ---- docker engine ----------------------------------------------------------
docker_ok=0
if timeout 10 docker info >/dev/null 2>&1; then
	docker_ok=1
	note "docker: engine already running"
else
	log=/var/log/sshgate-dockerd.log
	if ! pgrep -x dockerd >/dev/null 2>&1; then
		note "docker: starting dockerd (log $log)"
		# setsid: its own session and process group, so that stopping whatever
		# ran this script (a CI step, a terminal job) does not take the engine along.
		setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 </dev/null &
		disown || true
	else
		note "docker: dockerd process found but not answering yet; waiting"
	fi
	# The process is only named dockerd once setsid and nohup have exec'd
	# it: give it a few seconds before taking its absence as a failure.
	for i in $(seq 1 120); do
		if timeout 5 docker info >/dev/null 2>&1; then
			docker_ok=1
			break
		fi
		if [ "$i" -gt 10 ] && ! pgrep -x dockerd >/dev/null 2>&1; then
			break
		fi
		sleep 0.5
	done
	if [ "$docker_ok" = 1 ]; then
		note "docker: engine started"
	else
		note "docker: ENGINE NOT AVAILABLE; docker tests will skip. Last lines of $log:"
		tail -n 15 "$log" 2>/dev/null | sed 's/^/    /' || true
	fi
fi

# ---- test image ---------------------------------------------------------------
image=sshgate-test/busybox:latest
if [ "$docker_ok" = 1 ]; then
	if docker image inspect "$image" >/dev/null 2>&1; then
		note "image $image: present"
	else
		ctx=$(mktemp -d)
		bb=/bin/busybox
		[ -x "$bb" ] || bb=/usr/bin/busybox
		e2e/images/busybox/make-rootfs.sh "$bb" "$ctx"
		# The legacy builder needs neither BuildKit nor a network for
		# FROM scratch + COPY; docker import is the fallback for engines
		# whose builder is unavailable.
		if DOCKER_BUILDKIT=0 docker build -q --network none -t "$image" "$ctx" >"$ctx.log" 2>&1; then
			note "image $image: built"
		else
			sed 's/^/    /' "$ctx.log" >&2
			tar -C "$ctx/rootfs" -c . | docker import \
				-c 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' -c 'ENV HOME=/root' -c 'CMD ["/bin/sh"]' \
				- "$image" >/dev/null
			note "image $image: imported (docker build failed, see above)"
		fi
		rm -rf "$ctx" "$ctx.log"
	fi
	if out=$(timeout 60 docker run --rm --network none "$image" echo hi 2>&1) && [ "$out" = hi ]; then
		note "image $image: runs (echo hi)"
	else
		note "image $image: FAILED to run: $out"
		exit 1
	fi
fi

# ---- postgresql -------------------------------------------------------------
# A private cluster (not Debian's "main" one, which needs an init system):
# its data directory under /var/tmp, run as the postgres user, listening on
# 127.0.0.1 only, with a test role that may create schemas. The tests read
# the DSN from $pg_dir/dsn (or $SSHGATE_TEST_POSTGRES).
pg_dir=/var/tmp/sshgate-pg
pg_port=55432
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_ctl() { runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" "$@"; }
if [ -z "$pg_bin" ]; then
	note "postgresql: NOT INSTALLED; postgres tests will fail under CI=true"
else
	install -d -o postgres -g postgres -m 0700 "$pg_dir"
	if [ ! -s "$pg_dir/data/PG_VERSION" ]; then
		rm -rf "$pg_dir/data"
		runuser -u postgres -- "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth-local=peer \
			--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1
		note "postgresql: cluster created in $pg_dir/data"
	fi
	if pg_ctl status >/dev/null 2>&1; then
		note "postgresql: already running on 127.0.0.1:$pg_port"
	else
		# setsid: like dockerd, the server outlives whatever ran this script.
		setsid runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir -c max_connections=300 -c fsync=off" \
			start >/dev/null </dev/null
		note "postgresql: started on 127.0.0.1:$pg_port (log $pg_dir/server.log)"
	fi
	psql_admin() { runuser -u postgres -- "$pg_bin/psql" -h "$pg_dir" -p "$pg_port" -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }
	if [ ! -s "$pg_dir/password" ]; then
		(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pg_dir/password")
	fi
	pw=$(cat "$pg_dir/password")
	if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'sshgate_test'")" != 1 ]; then
		psql_admin -c "CREATE ROLE sshgate_test LOGIN CREATEDB PASSWORD '$pw'"
	else
		psql_admin -c "ALTER ROLE sshgate_test PASSWORD '$pw'"
	fi
	if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'sshgate_test'")" != 1 ]; then
		psql_admin -c "CREATE DATABASE sshgate_test OWNER sshgate_test"
	fi
	(umask 022; echo "postgres://sshgate_test:$pw@127.0.0.1:$pg_port/sshgate_test?sslmode=disable" >"$pg_dir/dsn.tmp")
	mv "$pg_dir/dsn.tmp" "$pg_dir/dsn"
	chmod 0644 "$pg_dir/dsn"
	note "postgresql: test DSN in $pg_dir/dsn"
fi

# ---- kubernetes ---------------------------------------------------------------
# The private single-node cluster of scripts/k8s (built from the Go module
# proxy into /var/cache/sshgate-k8s: about 15 minutes cold on two shared cores,
# seconds warm; up in about 10 s). A failure here is reported and the
# kubernetes e2e tests skip; SSHGATE_K8S=0 leaves the cluster out.
if [ "${SSHGATE_K8S:-1}" = 0 ]; then
	note "kubernetes: skipped (SSHGATE_K8S=0)"
elif [ "$docker_ok" != 1 ]; then
	note "kubernetes: skipped (its images come from the Docker engine)"
else
	k8s_start=$(date +%s)
	if timeout 2700 bash scripts/k8s/up.sh >/var/log/sshgate-k8s-up.log 2>&1; then
		note "kubernetes: cluster up in $(( $(date +%s) - k8s_start ))s (kubeconfig /var/lib/sshgate-k8s/admin.kubeconfig)"
	else
		note "kubernetes: CLUSTER NOT AVAILABLE after $(( $(date +%s) - k8s_start ))s; kubernetes tests will skip. Last lines of /var/log/sshgate-k8s-up.log:"
		tail -n 25 /var/log/sshgate-k8s-up.log 2>/dev/null | sed 's/^/    /' || true
		timeout 120 bash scripts/k8s/down.sh >/dev/null 2>&1 || true
	fi
fi

note "done in $(( $(date +%s) - start ))s"
echo "---- test-setup summary ----"
printf '  %s\n' "${summary[@]}"
