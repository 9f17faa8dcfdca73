#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-bitmap-cost.sh - what dirty tracking costs the qcow2 engine: 4k
# random writes (imgblk bench, host engine, depth 32, O_DIRECT) into an
# allocated 1 GiB image with 0, 1 and 4 enabled bitmaps, the median of
# ROUNDS runs each, and the ratios to none (the goal: at most 3% fewer
# IOPS).  Overwrites, so that allocation does not hide the cost.  On a
# shared machine the IOPS move by 15% from run to run; the per-call
# figures of tests/bench/bitmap_cost that follow do not.
#
#   scripts/bench/host-bitmap-cost.sh [-b BUILD_DIR] [-d DIR] [-r ROUNDS] [-c COUNT] [-t CACHE]
#
# The image goes in a temporary directory under DIR (default /var/tmp);
# -d /dev/shm -t writeback takes the disk out, leaving the CPU cost.
# Writes BUILD_DIR/bench/bitmap-host.txt.  A benchmark, not a test.
set -euo pipefail

die() { echo "host-bitmap-cost.sh: $*" >&2; exit 1; }

BUILD_DIR=$(cd "$(dirname "$0")/../.." && pwd)/build
DIR=
ROUNDS=5
CACHE=none
COUNT=200000
while getopts "b:d:r:c:t:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	d) DIR=$OPTARG ;;
	r) ROUNDS=$OPTARG ;;
	c) COUNT=$OPTARG ;;
	t) CACHE=$OPTARG ;;
	h) sed -n '4,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
IMGBLK=$BUILD_DIR/imgblk
[ -x "$IMGBLK" ] || die "$IMGBLK not built; run make first"
DIR=$(mktemp -d "${DIR:-/var/tmp}/bitmap-cost.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
mkdir -p "$BUILD_DIR/bench"
IMG=$DIR/bench.qcow2

bench() {	# one run: IOPS
	"$IMGBLK" bench -f qcow2 -t "$CACHE" -w --random -c "$COUNT" -d 32 -s 4k "$IMG" |
		awk '/IOPS/ { print $1 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

"$IMGBLK" create -f qcow2 "$IMG" 1G > /dev/null
# Every cluster allocated once: the runs below overwrite in place.
"$IMGBLK" io -f qcow2 -c "write 0 1G" "$IMG" > /dev/null

# Four bitmaps, enabled as each run needs; the runs interleave in turning
# orders, so that what the machine does meanwhile falls on all three alike.
for b in 0 1 2 3; do "$IMGBLK" bitmap --add --disable "$IMG" b$b; done
enable() {	# enable N: b0..b(N-1) enabled, the rest disabled
	local b
	for b in 0 1 2 3; do
		if [ $b -lt "$1" ]; then
			"$IMGBLK" bitmap --enable "$IMG" b$b
		else
			"$IMGBLK" bitmap --disable "$IMG" b$b
		fi
	done
}
declare -A runs iops
orders=("0 1 4" "1 4 0" "4 0 1")
for r in $(seq "$ROUNDS"); do
	for n in ${orders[$((r % 3))]}; do
		enable $n
		runs[$n]="${runs[$n]:-} $(bench)"
	done
done
for n in 0 1 4; do iops[$n]=$(tr ' ' '\n' <<< "${runs[$n]}" | grep . | median); done
{
	echo "# 4k random overwrites, depth 32, $COUNT per run, median of $ROUNDS ($(nproc) CPUs)"
	printf "%-10s %10s %8s\n" bitmaps IOPS ratio
	for n in 0 1 4; do
		awk -v n=$n -v i="${iops[$n]}" -v z="${iops[0]}" \
			'BEGIN { printf "%-10s %10d %8.3f\n", n, i, i / z }'
	done
	prog=$BUILD_DIR/tests/bench/bitmap_cost
	if [ -x "$prog" ]; then
		echo "# the marking call alone and 4k buffered overwrites on tmpfs (tests/bench/bitmap_cost)"
		"$prog" /dev/shm 200000
	else
		echo "# $prog not built (make bench-progs): no per-call figures"
	fi
} | tee "$BUILD_DIR/bench/bitmap-host.txt"
