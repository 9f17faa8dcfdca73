#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-jobs.sh - what block jobs cost the guest, and how fast they copy.
#
#   scripts/bench/vm-jobs.sh [-b BUILD_DIR] [-r SECONDS]
#
# In one VM boot, a 256 MiB qcow2 image full of random data on a brd RAM
# disk, served with one queue: guest 4k random write IOPS at QD32 for
# SECONDS (default 5) with no job, during a mirror (ready, so each write
# is copied in the background) and during a backup (its speed set so it
# runs the whole time, and at 8 MiB/s), and over the first 32768 writes
# after a backup starts (where its copy-before-write falls); a backup's
# and a mirror's time on the idle device
# against `imgblk convert` of the same image; how long the end of a
# mirror (last copy, flush, pivot) held I/O under fio QD32.  Writes the
# table to BUILD_DIR/bench/jobs.md.  A benchmark,
# not a test (goals: IOPS during a job >= 0.6x, job throughput >= 0.8x
# convert, pivot under 50 ms).
set -euo pipefail

die() { echo "vm-jobs.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
RUNTIME=5
while getopts "b:r:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	h) sed -n '4,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "-r wants a positive number of seconds"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
mkdir -p "$BUILD_DIR/bench"
tmp=$(mktemp -d "$BUILD_DIR/bench/.jobs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
echo "RUNTIME=$RUNTIME" > "$tmp/share/bench.conf"

cat > "$tmp/guest/jobs.sh" <<'GUEST'
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
load_module brd rd_nr=1 rd_size=1048576 max_part=0 || bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 /dev/ram0 "$MNT"
on_exit "umount $MNT"
IMG=$MNT/disk.qcow2
check "a 256 MiB qcow2 image" qemu-img create -q -f qcow2 "$IMG" 256M
add_dev "add it" -f "$IMG" || bail "no device"
ID=$DEV_ID
check "fill it with random data" dd if=/dev/urandom of="$DEV" bs=1M count=256 oflag=direct

now() { cut -d' ' -f1 /proc/uptime; }

# lasted NAME: whether the job was still running when its fio run ended
# (a backup whose copy-before-write saved every cluster ends early).
lasted() {
	if imgblk job -n "$ID" 2>/dev/null | grep -q running; then
		echo "lasted $1 yes" >> "$RES"
	else
		echo "lasted $1 no" >> "$RES"
	fi
}

# iops NAME: 4k random write IOPS at QD32 for RUNTIME s (terse field 49).
iops() {
	v=$(fio --name=w --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --iodepth=32 --time_based --runtime="$RUNTIME" --ramp_time=1 \
		--output-format=terse --terse-version=3 2> "$T_TMP/fio.err" |
		awk -F';' 'NR == 1 && $5 == 0 { print $49 }')
	if [ -n "$v" ]; then
		echo "iops $1 $v" >> "$RES"
		ok "iops $1: $v"
	else
		not_ok "iops $1"
		diag_file "$T_TMP/fio.err"
	fi
}

# first NAME: IOPS of the first 32768 4k random writes (128 MiB, no ramp)
# after a job starts.  A backup's copy-before-write saves a 64 KiB granule
# on its first write, so on a 256 MiB device random writes have saved
# nearly all of them within these: the backup's cost to the guest falls
# here, which iops()'s ramp second would leave out.
first() {
	v=$(fio --name=f --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --iodepth=32 --io_size=128M \
		--output-format=terse --terse-version=3 2> "$T_TMP/fio.err" |
		awk -F';' 'NR == 1 && $5 == 0 { print $49 }')
	if [ -n "$v" ]; then
		echo "first $1 $v" >> "$RES"
		ok "first writes $1: $v"
	else
		not_ok "first writes $1"
		diag_file "$T_TMP/fio.err"
	fi
}

iops none
first none
check "mirror --wait (ready)" imgblk mirror -n "$ID" --wait "$MNT/m.qcow2"
iops mirror
check "cancel the mirror" imgblk job -n "$ID" cancel --wait
rm -f "$MNT/m.qcow2"
check "backup slow enough to last the run" \
	imgblk backup -n "$ID" --sync full --speed $((256 / (RUNTIME + 2) + 1))M "$MNT/b.qcow2"
iops backup
lasted backup
check "cancel the backup" sh -c "imgblk job -n $ID cancel --wait; true"
rm -f "$MNT/b.qcow2"
check "backup, as slow, for the first writes" \
	imgblk backup -n "$ID" --sync full --speed $((256 / (RUNTIME + 2) + 1))M "$MNT/b.qcow2"
first backup
lasted backup-first
check "cancel the backup" sh -c "imgblk job -n $ID cancel --wait; true"
rm -f "$MNT/b.qcow2"
check "backup to raw, as slow, for the first writes" \
	imgblk backup -n "$ID" --sync full -f raw --speed $((256 / (RUNTIME + 2) + 1))M "$MNT/b.raw"
first backup-raw
lasted backup-raw-first
check "cancel the backup" sh -c "imgblk job -n $ID cancel --wait; true"
rm -f "$MNT/b.raw"
# At 8 MiB/s: mostly the copy-before-write's cost, little of the copy's.
check "backup at 8 MiB/s" imgblk backup -n "$ID" --sync full --speed 8M "$MNT/b.qcow2"
iops backup-8M
lasted backup-8M
check "cancel the backup" sh -c "imgblk job -n $ID cancel --wait; true"
rm -f "$MNT/b.qcow2"
# The same to a raw target: no cluster allocation in the target per save.
check "backup to raw, as slow" \
	imgblk backup -n "$ID" --sync full -f raw --speed $((256 / (RUNTIME + 2) + 1))M "$MNT/b.raw"
iops backup-raw
lasted backup-raw
check "cancel the backup" sh -c "imgblk job -n $ID cancel --wait; true"
rm -f "$MNT/b.raw"

# Throughput on the idle device, and convert of the same image.
t0=$(now)
check "backup --wait" imgblk backup -n "$ID" --sync full --wait "$MNT/b.qcow2"
t1=$(now)
echo "secs backup $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$RES"
rm -f "$MNT/b.qcow2"
t0=$(now)
check "mirror --pivot" imgblk mirror -n "$ID" --pivot "$MNT/m.qcow2"
t1=$(now)
echo "secs mirror-pivot $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$RES"
# How long the end of a mirror (last copy, flush, pivot) holds I/O, under QD32.
check "mirror --wait to a second image" imgblk mirror -n "$ID" --wait "$MNT/m2.qcow2"
fio --name=h --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
	--iodepth=32 --time_based --runtime=4 > /dev/null 2>&1 &
sleep 2
check "complete under fio QD32" imgblk job -n "$ID" complete --wait
wait
rm -f "$MNT/m.qcow2" "$IMG"	# the RAM disk is small
held=$(sed -n 's/.*held I\/O for \([0-9.]*\) ms to finish.*/\1/p' "/run/imgblk/$ID.log" | tail -n 1)
[ -n "$held" ] && echo "held pivot $held" >> "$RES"
t0=$(now)
check "convert -U of the served image" imgblk convert -U -O qcow2 "$MNT/m2.qcow2" "$MNT/c.qcow2"
t1=$(now)
echo "secs convert $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >> "$RES"
del_dev "del" "$ID"
done_testing
GUEST

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m 2G -t $((RUNTIME * 10 + 400)) \
	-s "$tmp/share" "$tmp/guest/jobs.sh" >&2 ||
	echo "vm-jobs.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"
{
	echo "# imgblk block jobs (VM, TCG), qcow2 256 MiB on brd, one queue"
	echo
	awk -v rt="$RUNTIME" '
		$1 == "iops" { iops[$2] = $3 }
		$1 == "secs" { secs[$2] = $3 }
		$1 == "held" { held = $3 }
		$1 == "lasted" { lasted[$2] = $3 }
		$1 == "first" { first[$2] = $3 }
		END {
			printf "4k random write QD32, %s s each:\n\n", rt
			printf "| job | IOPS | vs none | job ran throughout |\n|---|---:|---:|---|\n"
			n = iops["none"]
			for (j in iops)
				printf "| %s | %.0f | %.2f | %s |\n", j, iops[j], n ? iops[j] / n : 0,
					j in lasted ? lasted[j] : ""
			printf "\nThe first 32768 4k random writes at QD32 after the job starts (no ramp; a backup pays its copy-before-write here):\n\n"
			printf "| job | IOPS | vs none | job ran throughout |\n|---|---:|---:|---|\n"
			n = first["none"]
			for (j in first)
				printf "| %s | %.0f | %.2f | %s |\n", j, first[j], n ? first[j] / n : 0,
					(j "-first") in lasted ? lasted[j "-first"] : ""
			printf "\nCopy of 256 MiB on the idle device:\n\n"
			printf "| what | seconds | MiB/s | vs convert |\n|---|---:|---:|---:|\n"
			c = secs["convert"]
			for (j in secs)
				printf "| %s | %.2f | %.1f | %.2f |\n", j, secs[j],
					secs[j] ? 256 / secs[j] : 0, secs[j] ? c / secs[j] : 0
			if (held != "")
				printf "\nThe end of a mirror (last copy, flush, pivot) held I/O for %s ms under fio QD32.\n", held
		}' "$RES"
} > "$BUILD_DIR/bench/jobs.md"
cat "$BUILD_DIR/bench/jobs.md"
