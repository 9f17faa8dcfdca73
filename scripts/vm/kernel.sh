#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kernel.sh BUILD_DIR - fetch and unpack the guest kernel for the VM rig.
#
# The host kernel has no ublk, loop or nbd, so the tests boot Debian's
# cloud kernel (small, virtio built in, ublk_drv as a module) under QEMU.
# Result, cached under BUILD_DIR/vm/kernel/:
#   vmlinuz          the kernel image
#   modules/*.ko     the modules the guest needs, decompressed for busybox
#                    insmod (it cannot read .ko.xz)
#   modules.load     those modules, one file name a line, dependencies first
#   version          the package name the above came from
# Prints the kernel directory on stdout.
#
# Set IMGBLK_KERNEL_REFRESH=1 to look for a newer kernel package.
set -euo pipefail

die() { echo "kernel.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/vm/kernel.sh BUILD_DIR"
BUILD_DIR=$1
VM_DIR=$BUILD_DIR/vm
KDIR=$VM_DIR/kernel

# What the guest needs: the driver under test, loop and nbd as references
# and for qemu-nbd tests, brd as a RAM disk for the benchmark, virtio_blk
# for the run/share disk (the cloud kernel has no 9p, so files go in and
# out on a virtio disk holding an ext4 filesystem; ext4 is built in), and
# virtio_net for the tests that reach a server on the host (tests/vm/rbd.sh).
WANT_MODULES=(ublk_drv loop nbd brd virtio_blk null_blk virtio_net)

# Fast path: everything is there, made for this list of modules, and
# nobody asked for a refresh.
if [ -z "${IMGBLK_KERNEL_REFRESH:-}" ] && [ -s "$KDIR/version" ] &&
   [ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/modules.load" ] &&
   [ "$(cat "$KDIR/wanted" 2>/dev/null)" = "${WANT_MODULES[*]}" ]; then
	echo "$KDIR"
	exit 0
fi

for t in apt-cache apt-get dpkg-deb depmod xz; do
	command -v "$t" >/dev/null ||
		die "$t not found; run scripts/setup.sh deps --vm"
done

# Newest linux-image-6.12.N+debXX-cloud-amd64-unsigned: the unsigned one
# has the same bits as the signed one without the shim/EFI baggage.
find_pkg() {
	apt-cache pkgnames linux-image-6.12. 2>/dev/null |
		grep -E '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$' |
		sort -V | tail -n 1
}
pkg=$(find_pkg || true)
if [ -z "$pkg" ]; then
	echo "kernel.sh: no cloud kernel in the apt lists, running apt-get update" >&2
	apt-get update -qq >/dev/null || die "apt-get update failed"
	pkg=$(find_pkg || true)
fi
[ -n "$pkg" ] || die "no linux-image-6.12.*-cloud-amd64-unsigned package in apt"

if [ -s "$KDIR/version" ] && [ "$(cat "$KDIR/version")" = "$pkg" ] &&
   [ -s "$KDIR/vmlinuz" ] && [ -s "$KDIR/modules.load" ] &&
   [ "$(cat "$KDIR/wanted" 2>/dev/null)" = "${WANT_MODULES[*]}" ]; then
	echo "$KDIR"
	exit 0
fi

mkdir -p "$VM_DIR/deb"
deb=$(ls "$VM_DIR/deb/${pkg}_"*.deb 2>/dev/null | tail -n 1 || true)
if [ -z "$deb" ]; then
	echo "kernel.sh: downloading $pkg" >&2
	# apt-get download writes into the current directory; the _apt
	# sandbox warning when running as root is harmless.
	(cd "$VM_DIR/deb" && apt-get download -qq "$pkg" 2>&1 |
		grep -v 'Download is performed unsandboxed' >&2 || true)
	deb=$(ls "$VM_DIR/deb/${pkg}_"*.deb 2>/dev/null | tail -n 1 || true)
	[ -n "$deb" ] || die "apt-get download $pkg failed"
fi

# Unpack into a fresh directory and swap it in at the end, so an
# interrupted run leaves either the old cache or none, never half of one.
tmp=$(mktemp -d "$VM_DIR/.kernel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $deb failed"
kver=$(ls "$tmp/root/lib/modules" | head -n 1)
[ -n "$kver" ] || die "$deb has no lib/modules"
mdir=$tmp/root/lib/modules/$kver
# The package ships no modules.dep (its postinst runs depmod); make one.
depmod -b "$tmp/root" "$kver" || die "depmod failed for $kver"

mkdir -p "$tmp/out/modules"
cp "$tmp/root/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
cp "$tmp/root/boot/config-$kver" "$tmp/out/config"

# Resolve each wanted module and its dependencies from modules.dep into a
# load order where every module comes after what it needs.
declare -A dep_of=() seen=()
while IFS= read -r line; do
	mod=${line%%:*}
	dep_of[$mod]=${line#*:}
done < "$mdir/modules.dep"

order=()
visit() {
	local path=$1 d
	[ -n "${seen[$path]:-}" ] && return 0
	seen[$path]=1
	for d in ${dep_of[$path]}; do
		visit "$d"
	done
	order+=("$path")
}
for m in "${WANT_MODULES[@]}"; do
	path=$(grep -E "(^|/)$m\.ko(\.xz|\.zst|\.gz)?:" "$mdir/modules.dep" |
		cut -d: -f1 | head -n 1 || true)
	if [ -z "$path" ]; then
		# Built in? Then there is nothing to load.
		grep -qE "(^|/)$m\.ko$" "$mdir/modules.builtin" && continue
		die "module $m not found in $kver"
	fi
	visit "$path"
done

: > "$tmp/out/modules.load"
for path in "${order[@]}"; do
	base=$(basename "$path")
	ko=${base%.xz}
	case "$base" in
	*.ko.xz) xz -dc "$mdir/$path" > "$tmp/out/modules/$ko" ;;
	*.ko) cp "$mdir/$path" "$tmp/out/modules/$ko" ;;
	*) die "unsupported module compression: $path" ;;
	esac
	echo "$ko" >> "$tmp/out/modules.load"
done
echo "$kver" > "$tmp/out/kver"
echo "$pkg" > "$tmp/out/version"
echo "${WANT_MODULES[*]}" > "$tmp/out/wanted"

rm -rf "$KDIR.old"
[ -d "$KDIR" ] && mv "$KDIR" "$KDIR.old"
mv "$tmp/out" "$KDIR"
rm -rf "$KDIR.old" "$tmp"
trap - EXIT
echo "kernel.sh: $pkg ready ($(wc -l < "$KDIR/modules.load") modules)" >&2
echo "$KDIR"
