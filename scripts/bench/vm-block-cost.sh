#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-block-cost.sh - what the block layer (block/: the gate, statistics,
# error policy) costs per request: IOPS of this build against a build of
# REV, in one VM boot, on the null target (nothing but the request path)
# and on an allocated qcow2 image on a RAM disk.
#
#   scripts/bench/vm-block-cost.sh [-b BUILD_DIR] [-B REV] [-r SECONDS] [-n ROUNDS]
#     -B  the build to compare with (default 021b1a1, the last commit
#         before the block layer: requests went from queue.c to the target)
#     -r  fio runtime per run in seconds (default 3)
#     -n  rounds; the two builds alternate within each (default 3)
#
# Prints one line per config with the median IOPS of each build and the
# ratio, and writes them to BUILD_DIR/bench/block-cost.txt.  A benchmark,
# not a test: under TCG only the ratio of runs in the same boot means
# anything.
set -euo pipefail

die() { echo "vm-block-cost.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
REV=021b1a1
RUNTIME=3
ROUNDS=3
while getopts "b:B:r:n:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	B) REV=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	h) sed -n '4,14s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "-r wants a positive number of seconds"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive number"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
mkdir -p "$BUILD_DIR/bench"

tmp=$(mktemp -d "$BUILD_DIR/bench/.cost.XXXXXX")
cleanup() {
	git -C "$REPO" worktree remove --force "$tmp/src" > /dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# The other build, from a clean checkout of REV, with our fetched headers.
git -C "$REPO" worktree add -q --detach "$tmp/src" "$REV" ||
	die "cannot check out $REV"
make -s -C "$tmp/src" O="$tmp/before" KHDR_BUILD="$BUILD_DIR" "$tmp/before/imgblk" \
	> "$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; die "cannot build $REV"; }
mkdir -p "$tmp/share" "$tmp/guest"
cp "$tmp/before/imgblk" "$tmp/share/imgblk-before"
cp "$BUILD_DIR/imgblk" "$tmp/share/imgblk-after"
printf 'RUNTIME=%s\nROUNDS=%s\n' "$RUNTIME" "$ROUNDS" > "$tmp/share/cost.conf"

# The guest half (busybox sh), run by the VM rig like a test.
cat > "$tmp/guest/cost.sh" <<'GUEST'
#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
. "$(dirname "$0")/lib.sh"
. "$SHARE/cost.conf"
need_imgblk
need_cmd fio mkfs.ext4
load_module brd rd_nr=1 rd_size=$((600 * 1024)) || skip_all "no brd"
MNT=$T_TMP/mnt
mkdir -p "$MNT"
mkfs.ext4 -q -F /dev/ram0 && mount /dev/ram0 "$MNT" || bail "RAM disk"
on_exit "umount $MNT"
IMG=$MNT/alloc.qcow2
"$SHARE/imgblk-after" create -q -f qcow2 "$IMG" 512M || bail "create"
dev=$("$SHARE/imgblk-after" add -f "$IMG") || bail "add"
dd if=/dev/zero of="$dev" bs=1M count=512 oflag=direct 2>/dev/null
"$SHARE/imgblk-after" del -n "${dev#/dev/ublkb}"
cat "$IMG" > /dev/null
RES=$SHARE/results.txt
: > "$RES"

run() {	# run BUILD CONFIG ADD_ARGS...: one fio run, its IOPS to $RES
	_b=$1 _c=$2
	shift 2
	_dev=$("$SHARE/imgblk-$_b" add "$@") || { echo "$_b $_c add-failed" >> "$RES"; return; }
	_iops=$(fio --name=c --filename="$_dev" --ioengine=io_uring --direct=1 \
		--rw=randread --bs=4k --iodepth=32 --numjobs=2 --group_reporting \
		--time_based --runtime="$RUNTIME" --ramp_time=1 --size=256M \
		--output-format=terse --terse-version=3 2>/dev/null | cut -d';' -f8)
	"$SHARE/imgblk-$_b" del -n "${_dev#/dev/ublkb}"
	echo "$_b $_c ${_iops:-0}" >> "$RES"
}

r=0
while [ $r -lt "$ROUNDS" ]; do
	for b in before after; do
		run $b null-q2 -t null --size 1G -q 2
		run $b qcow2-q2 -f "$IMG" -q 2
		run $b qcow2-q1 -f "$IMG" -q 1
	done
	r=$((r + 1))
done
ok "$(wc -l < "$RES") runs"
done_testing
GUEST
chmod +x "$tmp/guest/cost.sh"

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -s "$tmp/share" -m 2G \
	-t $((ROUNDS * 6 * (RUNTIME + 10) + 300)) "$tmp/guest/cost.sh" >&2 ||
	die "the VM run failed"

out=$BUILD_DIR/bench/block-cost.txt
{
	echo "# 4k random reads, QD32, 2 jobs; median IOPS of $ROUNDS runs each"
	printf '%-10s %12s %12s %8s\n' config "before($REV)" after ratio
	for c in null-q2 qcow2-q2 qcow2-q1; do
		b=$(awk -v c=$c '$1 == "before" && $2 == c { print $3 }' "$tmp/share/results.txt" |
			sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		a=$(awk -v c=$c '$1 == "after" && $2 == c { print $3 }' "$tmp/share/results.txt" |
			sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
		printf '%-10s %12s %12s %8s\n' "$c" "$b" "$a" \
			"$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')"
	done
} | tee "$out"
