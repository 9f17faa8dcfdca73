#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-throttle.sh - how close a throttled device keeps to its limits.
#
#   scripts/bench/vm-throttle.sh [-b BUILD_DIR] [-r SECONDS]
#
# In one VM boot, a qcow2 image on a brd RAM disk served with each limit
# in turn (--iops-read, --iops-write, --bps-read, --bps-write,
# --iops-total), fio as fast as it can for SECONDS (default 10) at QD 16;
# prints the achieved rate against the limit and writes the table to
# BUILD_DIR/bench/throttle.md.  A benchmark, not a test: the goal is the
# achieved rate within 10% of the limit, which this only reports.
set -euo pipefail

die() { echo "vm-throttle.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
RUNTIME=10
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
tmp=$(mktemp -d "$BUILD_DIR/bench/.thr.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
echo "RUNTIME=$RUNTIME" > "$tmp/share/bench.conf"

cat > "$tmp/guest/throttle.sh" <<'GUEST'
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
load_module brd rd_nr=1 rd_size=524288 max_part=0 || bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 /dev/ram0 "$MNT"
on_exit "umount $MNT"
IMG=$MNT/disk.qcow2
check "a filled 256 MiB qcow2 image" qemu-img create -q -f qcow2 -o preallocation=full "$IMG" 256M

# measure OPTION LIMIT RW BS FIELD: fio terse v3 fields: read IOPS 8,
# read KiB/s 7, write IOPS 49, write KiB/s 48, error 5.
measure() {
	if add_dev "add $1 $2" -f "$IMG" "$1" "$2"; then
		out=$(fio --name=t --filename="$DEV" --ioengine=io_uring --direct=1 \
			--rw="$3" --bs="$4" --iodepth=16 --time_based --runtime="$RUNTIME" \
			--ramp_time=2 --output-format=terse --terse-version=3 2> "$T_TMP/fio.err")
		v=$(echo "$out" | awk -F';' -v f="$5" 'NR == 1 && $5 == 0 { print $f }')
		if [ -n "$v" ]; then
			echo "$1 $2 $3 $v" >> "$RES"
			ok "$1 $2: $3 $v"
		else
			not_ok "$1 $2 $3"
			diag_file "$T_TMP/fio.err"
		fi
		del_dev "del" "$DEV_ID"
	fi
}

measure --iops-read 500 randread 4k 8
measure --iops-write 300 randwrite 4k 49
measure --bps-read 8M read 64k 7
measure --bps-write 4M write 64k 48
measure --iops-total 400 randrw 4k 8
done_testing
GUEST

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m 2G -t $((RUNTIME * 10 + 300)) \
	-s "$tmp/share" "$tmp/guest/throttle.sh" >&2 ||
	echo "vm-throttle.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"
{
	echo "# imgblk throttling (VM, TCG), ${RUNTIME}s per run, fio QD16"
	echo
	echo "| limit | workload | achieved | limit (same unit) | achieved/limit |"
	echo "|---|---|---:|---:|---:|"
	# randrw under --iops-total reports read IOPS only: double it (50/50 mix).
	awk '{
		lim = $2; unit = "IOPS"; got = $4
		if ($1 ~ /bps/) { unit = "KiB/s"; m = lim; sub(/M$/, "", m); lim = m * 1024 }
		if ($3 == "randrw") got = got * 2
		printf "| %s %s | %s | %.0f %s | %.0f | %.2f |\n", $1, $2, $3, got, unit, lim, got / lim
	}' "$RES"
} > "$BUILD_DIR/bench/throttle.md"
cat "$BUILD_DIR/bench/throttle.md"
