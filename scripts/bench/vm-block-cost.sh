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
#     -r  fio runtime per run in seconds, at least 3 (default 5)
#     -n  rounds; the two builds alternate within each (default 3)
#
# Prints one line per config with the median IOPS and server CPU time per
# request of each build and their ratios, and writes them to
# BUILD_DIR/bench/block-cost.txt.  A benchmark, not a test: under TCG only
# the ratio of runs in the same boot means anything.
set -euo pipefail

die() { echo "vm-block-cost.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
REV=021b1a1
RUNTIME=5
ROUNDS=3
while getopts "b:B:r:n:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	B) REV=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	h) sed -n '4,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[0-9]+$ ]] && [ "$RUNTIME" -ge 3 ] || die "-r wants 3 seconds or more"
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

ticks() {	# ticks PID: utime + stime of every thread, in USER_HZ ticks
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

ios() {		# ios DEV: reads + writes the block layer completed
	awk '{ print $1 + $5 }' "/sys/block/${1#/dev/}/stat"
}

# run BUILD CONFIG ADD_ARGS...: one fio run; its IOPS and the server's CPU
# time per request (us) to $RES.
run() {
	_b=$1 _c=$2
	shift 2
	_dev=$("$SHARE/imgblk-$_b" add "$@") || { echo "$_b $_c add-failed" >> "$RES"; return; }
	_id=${_dev#/dev/ublkb}
	_pid=$(awk -F= '$1 == "pid" { print $2 }' "/run/imgblk/$_id.state")
	fio --name=c --filename="$_dev" --ioengine=io_uring --direct=1 \
		--rw=randread --bs=4k --iodepth=32 --numjobs=2 --group_reporting \
		--time_based --runtime="$RUNTIME" --size=256M \
		--output-format=terse --terse-version=3 > "$T_TMP/fio" 2>/dev/null &
	_fio=$!
	# Sample the server after fio's start-up, for whole seconds of load.
	sleep 1
	_t0=$(ticks "$_pid") _n0=$(ios "$_dev")
	sleep $((RUNTIME - 2))
	_t1=$(ticks "$_pid") _n1=$(ios "$_dev")
	wait $_fio
	_iops=$(cut -d';' -f8 "$T_TMP/fio")
	"$SHARE/imgblk-$_b" del -n "$_id"
	echo "$_b $_c ${_iops:-0} $(awk -v t=$((_t1 - _t0)) -v n=$((_n1 - _n0)) \
		'BEGIN { if (n > 0) printf "%.2f", t * 10000 / n; else print 0 }')" >> "$RES"
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
res=$tmp/share/results.txt
# The builds alternate within a round: each round's ratio compares runs
# made a few seconds apart, which drift on a busy host cancels out of.
{
	echo "# 4k random reads, QD32, 2 jobs, ${RUNTIME}s runs, $ROUNDS rounds; medians,"
	echo "# and the median and range of the rounds' after/before ratios."
	echo "# cpu_us: the server's CPU time (user + system) per request."
	printf '%-9s %9s %9s %17s  %9s %9s %17s\n' config "iops($REV)" iops \
		"ratio (min-max)" "cpu_us($REV)" cpu_us "ratio (min-max)"
	for c in null-q2 qcow2-q2 qcow2-q1; do
		awk -v c="$c" '
		function median(a, n,   i, j, t) {
			for (i = 2; i <= n; i++)
				for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
					t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
				}
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		$2 == c && $1 == "before" { bi[++nb] = $3; bc[nb] = $4 }
		$2 == c && $1 == "after" { ai[++na] = $3; ac[na] = $4 }
		END {
			n = nb < na ? nb : na
			for (k = 1; k <= 4; k++) { lo[k] = 1e9; hi[k] = 0 }
			for (i = 1; i <= n; i++) {
				ri[i] = bi[i] ? ai[i] / bi[i] : 0
				rc[i] = bc[i] ? ac[i] / bc[i] : 0
				if (ri[i] < lo[1]) lo[1] = ri[i]
				if (ri[i] > hi[1]) hi[1] = ri[i]
				if (rc[i] < lo[2]) lo[2] = rc[i]
				if (rc[i] > hi[2]) hi[2] = rc[i]
			}
			printf "%-9s %9d %9d %5.3f (%.2f-%.2f)  %9.2f %9.2f %5.3f (%.2f-%.2f)\n", c,
			       median(bi, nb), median(ai, na), median(ri, n), lo[1], hi[1],
			       median(bc, nb), median(ac, na), median(rc, n), lo[2], hi[2]
		}' "$res"
	done
} | tee "$out"
