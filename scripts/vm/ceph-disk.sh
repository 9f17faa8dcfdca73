#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# ceph-disk.sh BUILD_DIR - build BUILD_DIR/vm/ceph.img, the Ceph client
# for the VM tests that use RBD (tests/vm/rbd.sh, scripts/bench/vm-rbd.sh).
#
# librbd and its libraries are about 70 MB: in the initramfs they would be
# unpacked by the kernel under TCG at every boot, for the few tests that
# use them.  They go on a disk of their own instead, an ext4 image (label
# imgblk-ceph, made with mkfs.ext4 -d) that run.sh attaches only when a
# selected test needs Ceph; the guest mounts it read-only and pages in
# only what it runs.  It holds:
#   bin/   rbd (to make images) and rbd-nbd (the benchmark's peer)
#   lib/   librbd.so.1, librados.so.2 (imgblk dlopen()s them) and every
#          library the four need, flat, for LD_LIBRARY_PATH
#
# Rebuilt only when an input changed (paths, sizes and mtimes hashed into
# BUILD_DIR/vm/ceph.sig).  Prints the image's path.
set -euo pipefail

die() { echo "ceph-disk.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/vm/ceph-disk.sh BUILD_DIR"
BUILD_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
VM_DIR=$BUILD_DIR/vm
OUT=$VM_DIR/ceph.img
SIG=$VM_DIR/ceph.sig
export PATH=$PATH:/usr/sbin:/sbin

bins=()
for b in rbd rbd-nbd; do
	p=$(command -v "$b") || die "$b not found (scripts/setup.sh deps --ceph)"
	bins+=("$p")
done
libs=()
for l in librbd.so.1 librados.so.2; do
	p=$(ldconfig -p | awk -v l="$l" '$1 == l && !p { p = $NF } END { print p }')
	[ -n "$p" ] || die "$l not found (scripts/setup.sh deps --ceph)"
	libs+=("$p")
done
# The closure, less the dynamic loader (ld.so finds it by its absolute
# path, which the initramfs has).
mapfile -t deps < <(ldd "${bins[@]}" "${libs[@]}" 2>/dev/null |
	awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)

inputs=("$SELF" "${bins[@]}" "${libs[@]}" "${deps[@]}")
sig=$(stat -L -c '%n %s %Y' "${inputs[@]}" | sha256sum | cut -d' ' -f1)
if [ -s "$OUT" ] && [ -s "$SIG" ] && [ "$(cat "$SIG")" = "$sig" ]; then
	echo "$OUT"
	exit 0
fi

tmp=$(mktemp -d "$VM_DIR/.ceph.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/bin" "$tmp/root/lib"
for p in "${bins[@]}"; do cp -L "$p" "$tmp/root/bin/"; done
for p in "${libs[@]}" "${deps[@]}"; do cp -L "$p" "$tmp/root/lib/"; done
kib=$(du -sk --apparent-size "$tmp/root" | cut -f1)
truncate -s $(( kib / 1024 + 32 ))M "$tmp/ceph.img"
mkfs.ext4 -q -F -L imgblk-ceph -E lazy_itable_init=1,lazy_journal_init=1 \
	-d "$tmp/root" "$tmp/ceph.img" || die "mkfs.ext4 failed"
mv -f "$tmp/ceph.img" "$OUT"
echo "$sig" > "$SIG"
echo "ceph-disk.sh: built $OUT ($(du -h --apparent-size "$OUT" | cut -f1))" >&2
echo "$OUT"
