#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-protocols.sh - remote files on the host (issue 16), 4k random,
# 32 in flight:
#   rbd:  `imgblk bench` on a raw RBD image against `rbd bench` (librbd
#         alone, the floor of any RBD client) on the same image, reads and
#         writes, on a one-node cluster of its own (scripts/ceph-cluster.sh).
#   nbd:  reads of base data through a local qcow2 overlay whose base is
#         a qemu-nbd export (`imgblk bench` on the overlay) against
#         `qemu-img bench` reading the same overlay served by qemu-nbd.
# The issue's device-level comparison (the rbd target against rbd-nbd +
# nbd.ko) needs a kernel with ublk and nbd: scripts/bench/vm-rbd.sh.
#
#   scripts/bench/host-protocols.sh [-b BUILD_DIR] [-c COUNT]
#
# Prints IOPS and ratios.  A benchmark, not a test.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
COUNT=50000
while getopts "b:c:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	c) COUNT=$OPTARG ;;
	h) sed -n '4,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
IMGBLK=$BUILD_DIR/imgblk
[ -x "$IMGBLK" ] || { echo "host-protocols.sh: build $IMGBLK first (make)" >&2; exit 1; }
mkdir -p "$BUILD_DIR/bench"
tmp=$(mktemp -d "$BUILD_DIR/bench/.proto.XXXXXX")
PIDS=
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	[ -f "$tmp/ceph/ceph.conf" ] && "$REPO/scripts/ceph-cluster.sh" stop "$tmp/ceph" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT

iops() { sed -n 's/^\([0-9]*\) IOPS.*/\1/p'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }

# NBD: an overlay on an NBD base.
missing=
for t in qemu-img qemu-io qemu-nbd; do
	command -v $t > /dev/null || missing="$missing $t"
done
if [ -n "$missing" ]; then
	echo "nbd: skipped (not installed:$missing; scripts/setup.sh deps installs them)"
else
	qemu-img create -q -f raw "$tmp/base.raw" 1G
	qemu-io -f raw -c "write -P 0x11 0 1G" "$tmp/base.raw" > /dev/null
	qemu-nbd -f raw -r -t -e 16 -k "$tmp/base.sock" -x base "$tmp/base.raw" 2>/dev/null &
	PIDS="$PIDS $!"
	while [ ! -S "$tmp/base.sock" ]; do sleep 0.1; done
	base="nbd+unix:///base?socket=$tmp/base.sock"
	qemu-img create -q -f qcow2 -b "$base" -F raw "$tmp/ov.qcow2"
	ours=$("$IMGBLK" bench --random -c "$COUNT" -d 32 "$tmp/ov.qcow2" | iops)
	qemu-nbd -f qcow2 -r -t -k "$tmp/ov.sock" -x ov "$tmp/ov.qcow2" 2>/dev/null &
	PIDS="$PIDS $!"
	while [ ! -S "$tmp/ov.sock" ]; do sleep 0.1; done
	# qemu-img bench has no random mode: the same count with a 1 MiB + 4 KiB step.
	secs=$(qemu-img bench -f raw -c "$COUNT" -d 32 -S 1052672 \
		"nbd+unix:///ov?socket=$tmp/ov.sock" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	theirs=$(awk -v c="$COUNT" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? c / s : 0) }')
	ours_seq=$("$IMGBLK" bench -c "$COUNT" -d 32 -S 1052672 "$tmp/ov.qcow2" | iops)
	printf 'nbd base, overlay reads 4k QD32: imgblk %s IOPS random, %s stepped; qemu-nbd + qemu-img bench %s stepped (%sx)\n' \
		"$ours" "$ours_seq" "$theirs" "$(ratio "$ours_seq" "$theirs")"
fi

# RBD.
if ! command -v ceph-mon > /dev/null || ! command -v rbd > /dev/null; then
	echo "rbd: skipped (scripts/setup.sh deps --ceph installs the cluster)"
	exit 0
fi
mkdir -p "$tmp/ceph"
"$REPO/scripts/ceph-cluster.sh" start "$tmp/ceph" > /dev/null
export CEPH_CONF=$tmp/ceph/ceph.conf
# The OSD keeps everything in 1 GiB of memory (memstore): a full cluster
# holds writes forever, so the image stays well below it.
rbd create --size 256M rbd/bench
for mode in write read; do
	w=
	[ $mode = write ] && w=-w
	ours=$("$IMGBLK" bench $w --random -f raw -c "$COUNT" -d 32 rbd:rbd/bench | iops)
	theirs=$(rbd bench --io-type $mode --io-size 4K --io-threads 32 --io-pattern rand \
		--io-total $((COUNT * 4096)) rbd/bench 2>/dev/null |
		sed -n 's/^elapsed:.*ops\/sec: *\([0-9.]*\).*/\1/p' | cut -d. -f1)
	printf 'rbd 4k random %s QD32: imgblk %s IOPS, rbd bench %s IOPS (%sx)\n' \
		$mode "$ours" "$theirs" "$(ratio "$ours" "$theirs")"
done
