#!/usr/bin/env bash
# make-rootfs.sh BUSYBOX OUTDIR: lay out the image's root filesystem in
# OUTDIR/rootfs from a static busybox binary, next to the Dockerfile.
set -euo pipefail
bb=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$out/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home/user,var/tmp}
cp "$bb" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# one symlink per applet, at the path busybox itself lists (bin/ls, usr/bin/wc...)
"$root/bin/busybox" --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	mkdir -p "$root/$(dirname "$applet")"
	rel=$(realpath --relative-to="$root/$(dirname "$applet")" "$root/bin/busybox")
	ln -sf "$rel" "$root/$applet"
done
cp "$here/passwd" "$here/group" "$root/etc/"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cp "$here/Dockerfile" "$out/Dockerfile"
