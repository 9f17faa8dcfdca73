#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-block-cost.sh - the block layer's cost per request, natively: runs
# BUILD_DIR/tests/bench/blk_cost (4k reads of the null target, directly
# and through blk_submit()), and one clock read (the executor's, once per
# turn of its loop), and says up to what request rate per queue thread
# the layer stays within 1% of the thread's time.
#
#   scripts/bench/host-block-cost.sh [-b BUILD_DIR]
#
# Writes BUILD_DIR/bench/block-host.txt.  A benchmark, not a test.
set -euo pipefail

die() { echo "host-block-cost.sh: $*" >&2; exit 1; }

BUILD_DIR=$(cd "$(dirname "$0")/../.." && pwd)/build
while getopts "b:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	h) sed -n '4,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
prog=$BUILD_DIR/tests/bench/blk_cost
[ -x "$prog" ] || die "$prog not built; run make bench-progs first"
mkdir -p "$BUILD_DIR/bench"

out=$("$prog")
added=$(awk '$1 == "added_ns" { print $2 }' <<< "$out")
{
	echo "# The block layer natively, 4k null reads ($(nproc) CPUs: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
	echo "$out"
	awk -v a="$added" 'BEGIN {
		if (a <= 0) { print "# below the timer noise: no measurable cost"; exit }
		printf "# within 1%% of a queue thread up to %.0f requests/s per queue\n", 1e9 / (100 * a)
	}'
} | tee "$BUILD_DIR/bench/block-host.txt"
