#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-incremental.sh - an incremental backup's time against a full one's,
# and what tracking bitmaps costs the guest's writes.
#
#   scripts/bench/vm-incremental.sh [-b BUILD_DIR] [-s SIZE_MIB]
#
# In one VM boot, a SIZE_MIB (default 1024) qcow2 image full of random
# data on a brd RAM disk, served with one queue, with a persistent bitmap:
# 4k random write IOPS with 0, 1 and 4 enabled bitmaps (goal: at most 3%
# fewer than with none); the time of `backup --sync full --wait` on the idle device (as a user
# sees it, from the command to its return), then five rounds of: 1% of
# the device's 64 KiB clusters rewritten at random, and the time of
# `backup --sync incremental --bitmap --wait` over the previous backup;
# once with nothing changed (the fixed cost: the verb, target creation,
# the drain, the job's start and end); and once the same 1% of data
# written as scattered 4k writes (each dirties a whole 64 KiB granule).  Writes the table to BUILD_DIR/bench/incremental.md.
# A benchmark, not a test (goal: an incremental backup of 1% changed data
# takes at most 5% of the full backup's time).
set -euo pipefail

die() { echo "vm-incremental.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
SIZE=1024
while getopts "b:s:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	h) sed -n '4,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $SIZE =~ ^[1-9][0-9]*$ ]] && [ "$SIZE" -ge 64 ] && [ "$SIZE" -le 2048 ] ||
	die "-s wants 64 to 2048 MiB"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
mkdir -p "$BUILD_DIR/bench"
tmp=$(mktemp -d "$BUILD_DIR/bench/.incremental.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
echo "SIZE=$SIZE" > "$tmp/share/bench.conf"

cat > "$tmp/guest/incremental.sh" <<'GUEST'
#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
. "$(dirname "$0")/lib.sh"
. "$SHARE/bench.conf"
need_imgblk
need_cmd fio mkfs.ext4 qemu-img

RES=$SHARE/results.txt
: > "$RES"
MNT=$T_TMP/mnt
mkdir -p "$MNT"
# The image, its full backup and the incremental ones, with room to spare.
load_module brd rd_nr=1 rd_size=$((SIZE * 5 / 2 * 1024 + 262144)) max_part=0 ||
	bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 /dev/ram0 "$MNT"
on_exit "umount $MNT"
IMG=$MNT/disk.qcow2
check "a $SIZE MiB qcow2 image with a bitmap" sh -c "qemu-img create -q -f qcow2 '$IMG' ${SIZE}M &&
	qemu-img bitmap --add '$IMG' b0"
add_dev "add it" -f "$IMG" || bail "no device"
ID=$DEV_ID
check "fill it with random data" dd if=/dev/urandom of="$DEV" bs=1M count="$SIZE" oflag=direct

now() { cut -d' ' -f1 /proc/uptime; }
count() {
	imgblk qmp -n "$ID" query-block | tr -d ' \n' |
		sed -n 's/.*"name":"b0"[^}]*"count":\([0-9]*\).*/\1/p'
}

# timed NAME CMD...: CMD's wall time as "secs NAME S".
timed() {
	_n=$1
	shift
	t0=$(now)
	check "$_n" "$@"
	t1=$(now)
	echo "secs $_n $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$RES"
}

# change BS SEED: 1% of the device rewritten in BS writes at random
# offsets, none twice (fio's random map).
change() {
	check "1% of the data in $1 writes" fio --name=c --filename="$DEV" --ioengine=io_uring \
		--direct=1 --rw=randwrite --bs="$1" --iodepth=16 --randseed="$2" \
		--io_size=$((SIZE * 1024 * 1024 / 100 / 65536 * 65536)) --output="$T_TMP/fio.out"
	echo "dirty $3 $(count)" >> "$RES"
}

# What tracking costs the guest: 4k random overwrites at QD32 for 5 s with
# 0, 1 and 4 enabled bitmaps, in the order 0 1 4 4 1 0 so that a drift of
# the machine falls on each count alike.
wiops() {
	v=$(fio --name=w --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --iodepth=32 --time_based --runtime=5 --ramp_time=1 \
		--output-format=terse --terse-version=3 2> "$T_TMP/fio.err" |
		awk -F';' 'NR == 1 && $5 == 0 { print $49 }')
	if [ -n "$v" ]; then
		echo "track $1 $v" >> "$RES"
		ok "4k writes with $1 bitmaps: $v IOPS"
	else
		not_ok "4k writes with $1 bitmaps"
		diag_file "$T_TMP/fio.err"
	fi
}
bitmaps() {	# bitmaps N: b0 (enabled or not) and b1-b3 as N asks
	if [ "$1" = 0 ]; then
		imgblk bitmap -n "$ID" --disable b0
	else
		imgblk bitmap -n "$ID" --enable b0
	fi
	for b in b1 b2 b3; do
		imgblk bitmap -n "$ID" --remove $b 2>/dev/null
		[ "$1" = 4 ] && imgblk bitmap -n "$ID" --add $b
	done
	true
}
for n in 0 1 4 4 1 0; do
	check "$n enabled bitmaps" bitmaps $n
	wiops $n
done
check "back to b0 alone" bitmaps 1

check "bitmap --clear: the full backup's moment" imgblk bitmap -n "$ID" --clear b0
timed full imgblk backup -n "$ID" --sync full --wait "$MNT/b0.qcow2"
prev=$MNT/b0.qcow2
for r in 1 2 3 4 5; do
	change 64k $r inc$r
	timed inc$r imgblk backup -n "$ID" --sync incremental --bitmap b0 -b "$prev" --wait \
		"$MNT/b$r.qcow2"
	prev=$MNT/b$r.qcow2
done
timed inc-none imgblk backup -n "$ID" --sync incremental --bitmap b0 -b "$prev" --wait \
	"$MNT/b6.qcow2"
change 4k 9 inc-4k
timed inc-4k imgblk backup -n "$ID" --sync incremental --bitmap b0 -b "$MNT/b6.qcow2" --wait \
	"$MNT/b7.qcow2"
check "the last backup point checks clean" qemu-img check -q "$MNT/b7.qcow2"
del_dev "del" "$ID"
check "it reads as the device" qemu-img compare -q "$IMG" "$MNT/b7.qcow2"
done_testing
GUEST

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m $((SIZE * 3 / 1024 + 2))G -t $((SIZE + 600)) \
	-s "$tmp/share" "$tmp/guest/incremental.sh" >&2 ||
	echo "vm-incremental.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"
{
	echo "# imgblk incremental backup (VM, TCG), qcow2 $SIZE MiB on brd, one queue"
	echo
	awk -v size="$SIZE" '
		$1 == "secs" { secs[$2] = $3 }
		$1 == "dirty" { dirty[$2] = $3 }
		$1 == "track" { track[$2] += $3; runs[$2]++; each[$2] = each[$2] " " $3 }
		END {
			printf "4k random overwrites at QD32, 5 s, mean of %d runs per count, with enabled bitmaps (goal: at most 3%% fewer IOPS):\n\n", runs[0]
			printf "| enabled bitmaps | IOPS | vs none | each run |\n|---:|---:|---:|---|\n"
			z = runs[0] ? track[0] / runs[0] : 0
			for (k = 0; k <= 4; k++)
				if (runs[k])
					printf "| %d | %.0f | %.3f |%s |\n", k, track[k] / runs[k],
						z ? track[k] / runs[k] / z : 0, each[k]
			printf "\n"
			f = secs["full"]
			printf "Backup of the idle device, `--wait` from command to return; "
			printf "1%% of the data changed between backups (goal: incremental <= 5%% of full):\n\n"
			printf "| backup | changed as | bytes marked | seconds | vs full |\n"
			printf "|---|---|---:|---:|---:|\n"
			printf "| full | | %d | %.3f | 1.000 |\n", size * 1048576, f
			for (i = 1; i <= 5; i++) {
				k = "inc" i
				printf "| incremental %d | 64k writes | %d | %.3f | %.3f |\n", i,
					dirty[k], secs[k], f ? secs[k] / f : 0
				v[i] = secs[k]
			}
			printf "| incremental | nothing | 0 | %.3f | %.3f |\n", secs["inc-none"],
				f ? secs["inc-none"] / f : 0
			# The median of the five rounds against the full backup.
			for (i = 1; i <= 5; i++)
				for (j = i + 1; j <= 5; j++)
					if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			v[2] = v[3]
			printf "| incremental | 4k writes, scattered | %d | %.3f | %.3f |\n",
				dirty["inc-4k"], secs["inc-4k"], f ? secs["inc-4k"] / f : 0
			printf "\nMedian incremental (64k writes): %.3f s, %.1f%% of the full backup (goal <= 5%%: %s).\n",
				v[2], f ? 100 * v[2] / f : 0, f && v[2] / f <= 0.05 ? "met" : "missed"
		}' "$RES"
} > "$BUILD_DIR/bench/incremental.md"
cat "$BUILD_DIR/bench/incremental.md"
