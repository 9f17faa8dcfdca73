#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run-all.sh - the whole benchmark suite, as `make bench` runs it.
#
#   scripts/bench/run-all.sh [-b BUILD_DIR] [-r SECONDS] [-H] [-V]
#     -r  fio runtime per VM run (vm-suite.sh -r; default 2)
#     -H  keep BUILD_DIR/bench/host.md, profile.md and block-host.txt, skip
#         the host rows
#     -V  keep BUILD_DIR/bench/vm-suite.txt and block-cost.txt, skip the VM
#         (about 32 min)
#
# Host rows (host-bench.sh, host-profile.sh, host-block-cost.sh,
# host-luks.sh, host-bitmap-cost.sh, host-protocols.sh), then the VM rows
# (vm-suite.sh, vm-block-cost.sh, vm-jobs.sh, vm-incremental.sh,
# vm-snapshot-hold.sh, vm-luks.sh, vm-rbd.sh), one after the other so neither
# takes CPU from the other, then report.sh writes BUILD_DIR/bench/report.md
# and report.png.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=$HERE/../../build
RUNTIME=
HOST=1
VM=1
while getopts "b:r:HVh" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	H) HOST=0 ;;
	V) VM=0 ;;
	h) sed -n '4,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done

# valgrind, strace and gnuplot (and the VM rig's and Ceph's packages): a fresh
# machine has none of them, and this is a no-op once it has.
"$HERE/../setup.sh" deps --vm --bench --ceph
if [ $HOST = 1 ]; then
	echo "# run-all: host rows" >&2
	"$HERE/host-bench.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: host profile (instructions and system calls per request)" >&2
	"$HERE/host-profile.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: the block layer's cost per request, natively" >&2
	"$HERE/host-block-cost.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: LUKS encryption's cost on the host engine" >&2
	"$HERE/host-luks.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: dirty bitmaps' cost per write" >&2
	"$HERE/host-bitmap-cost.sh" -b "$BUILD_DIR" > /dev/null
	# It needs qemu-nbd and, for its RBD rows, a Ceph cluster of its own:
	# whatever it cannot run must not cost the rest of the suite.
	echo "# run-all: remote files, NBD and RBD (build/bench/protocols.txt)" >&2
	"$HERE/host-protocols.sh" -b "$BUILD_DIR" > "$BUILD_DIR/bench/protocols.txt" ||
		echo "# run-all: host-protocols.sh failed (above); going on without it" >&2
fi
if [ $VM = 1 ]; then
	echo "# run-all: VM rows" >&2
	"$HERE/vm-suite.sh" -b "$BUILD_DIR" ${RUNTIME:+-r "$RUNTIME"}
	echo "# run-all: what the block layer costs (this build against the one before it)" >&2
	"$HERE/vm-block-cost.sh" -b "$BUILD_DIR" ${RUNTIME:+-r "$RUNTIME"}
	echo "# run-all: block jobs (build/bench/jobs.md)" >&2
	"$HERE/vm-jobs.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: incremental against full backup (build/bench/incremental.md)" >&2
	"$HERE/vm-incremental.sh" -b "$BUILD_DIR" > /dev/null
	echo "# run-all: how long a live snapshot holds I/O at QD32" >&2
	"$HERE/vm-snapshot-hold.sh" -b "$BUILD_DIR"
	echo "# run-all: LUKS encryption's cost in the guest (build/bench/luks.md)" >&2
	"$HERE/vm-luks.sh" -b "$BUILD_DIR" > /dev/null
	# It needs Ceph on the host: without it, the rest goes on.
	echo "# run-all: the rbd target against rbd-nbd (build/bench/rbd.md)" >&2
	"$HERE/vm-rbd.sh" -b "$BUILD_DIR" > /dev/null ||
		echo "# run-all: vm-rbd.sh failed (above); going on without it" >&2
fi
"$HERE/report.sh" -b "$BUILD_DIR"
