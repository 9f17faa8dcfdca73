#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-raw-vs-loop.sh - benchmark imgblk's raw target against loop.ko.
#
#   scripts/bench/vm-raw-vs-loop.sh [-b BUILD_DIR] [-r SECONDS]
#
# In one VM boot: a 1 GiB file on ext4 on a brd RAM disk, served once by
# imgblk raw (-q 1, then -q 2) and once by loop with direct I/O; fio 4k
# randread and randwrite through io_uring with O_DIRECT at QD1 and QD32.
# brd rather than tmpfs so both paths do real direct I/O to a block device
# (tmpfs O_DIRECT is a page-cache copy) without QEMU's virtio emulation in
# the way.  Prints a markdown table of IOPS and the ublk/loop ratios and
# writes it to BUILD_DIR/bench/raw-vs-loop.md.
#
# A benchmark, not a test: under TCG the absolute numbers say little; the
# ratio is what to watch.
set -euo pipefail

die() { echo "vm-raw-vs-loop.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
RUNTIME=10
while getopts "b:r:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	h) sed -n '4,5s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "-r wants a positive number of seconds"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
mkdir -p "$BUILD_DIR/bench"

tmp=$(mktemp -d "$BUILD_DIR/bench/.run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
echo "RUNTIME=$RUNTIME" > "$tmp/share/bench.conf"

# The guest half, run by the VM rig like a test.
cat > "$tmp/guest/raw-vs-loop.sh" <<'GUEST'
#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
. "$(dirname "$0")/lib.sh"
. "$SHARE/bench.conf"
need_imgblk
need_cmd fio mkfs.ext4
[ -x /usr/sbin/losetup ] || skip_all "util-linux losetup (--direct-io) not available"

RES=$SHARE/results.txt
: > "$RES"
MNT=$T_TMP/mnt
mkdir -p "$MNT"
# 1.2 GiB RAM disk: the 1 GiB file plus ext4's metadata.
load_module brd rd_nr=1 rd_size=1258291 max_part=0 || bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 /dev/ram0 "$MNT"
on_exit "umount $MNT"
FILE=$MNT/disk.raw
# Written out, not fallocated: reads of unwritten extents would not touch
# the disk and writes would convert extents, for loop and ublk alike.
check "write the 1 GiB file" dd if=/dev/zero of="$FILE" bs=1M count=1024 conv=fsync

# bench LABEL DEV: the four fio runs; fio terse v3 has read IOPS in field
# 8, write IOPS in field 49 and the error in field 5.
bench() {
	for rw in randread randwrite; do
		for qd in 1 32; do
			out=$(fio --name=bench --filename="$2" --ioengine=io_uring \
				--direct=1 --rw=$rw --bs=4k --iodepth=$qd \
				--time_based --runtime="$RUNTIME" --ramp_time=2 \
				--norandommap --randrepeat=0 --group_reporting \
				--output-format=terse --terse-version=3 2> "$T_TMP/fio.err")
			if [ $rw = randread ]; then f=8; else f=49; fi
			iops=$(echo "$out" | awk -F';' -v f=$f 'NR == 1 && $5 == 0 { print $f }')
			if [ -n "$iops" ]; then
				echo "$1 $rw $qd $iops" >> "$RES"
				ok "$1 $rw QD$qd: $iops IOPS"
			else
				not_ok "$1 $rw QD$qd"
				diag_file "$T_TMP/fio.err"
			fi
		done
	done
}

for q in 1 2; do
	if add_dev "imgblk raw -q $q" -t raw -f "$FILE" -q $q; then
		bench "ublk-q$q" "$DEV"
		del_dev "del ublk-q$q" "$DEV_ID"
	fi
done

LOOP=$(losetup --direct-io=on -f --show "$FILE" 2> "$T_TMP/losetup.err")
if [ -n "$LOOP" ]; then
	dio=$(cat "/sys/block/${LOOP#/dev/}/loop/dio" 2>/dev/null)
	if [ "$dio" = 1 ]; then ok "$LOOP uses direct I/O"; else
		not_ok "$LOOP uses direct I/O"; diag "loop/dio is '$dio'"; fi
	bench loop "$LOOP"
	check "losetup -d" losetup -d "$LOOP"
else
	not_ok "losetup --direct-io=on"
	diag_file "$T_TMP/losetup.err"
fi
done_testing
GUEST

# Room for the brd disk next to the initramfs.
"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m 3G -t $((RUNTIME * 20 + 300)) \
	-s "$tmp/share" "$tmp/guest/raw-vs-loop.sh" >&2 ||
	echo "vm-raw-vs-loop.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"

iops() {	# iops LABEL RW QD
	awk -v l="$1" -v r="$2" -v q="$3" '$1 == l && $2 == r && $3 == q { printf "%.0f", $4 }' "$RES"
}
ratio() {	# ratio A B
	if [ -n "$1" ] && [ -n "$2" ] && [ "$2" != 0 ]; then
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
	else
		echo "n/a"
	fi
}
kver=$(cat "$BUILD_DIR/vm/kernel/version" 2>/dev/null || echo unknown)
{
	echo "# imgblk raw vs loop (VM, TCG)"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), imgblk $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'),"
	echo "guest $kver, 2 vCPUs; 1 GiB file on ext4 on brd; fio io_uring O_DIRECT 4k, ${RUNTIME}s per run."
	echo
	echo "| workload | QD | ublk -q 1 IOPS | ublk -q 2 IOPS | loop (dio) IOPS | ublk q1/loop | ublk q2/loop |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for rw in randread randwrite; do
		for qd in 1 32; do
			a=$(iops ublk-q1 $rw $qd)
			b=$(iops ublk-q2 $rw $qd)
			c=$(iops loop $rw $qd)
			echo "| $rw | $qd | ${a:-n/a} | ${b:-n/a} | ${c:-n/a} | $(ratio "$a" "$c") | $(ratio "$b" "$c") |"
		done
	done
} > "$BUILD_DIR/bench/raw-vs-loop.md"
cat "$BUILD_DIR/bench/raw-vs-loop.md"
