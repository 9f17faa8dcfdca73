#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-snapshot-hold.sh - how long a live snapshot holds a device's I/O.
#
#   scripts/bench/vm-snapshot-hold.sh [-b BUILD_DIR] [-n COUNT]
#
# In one VM boot, a qcow2 image on a brd RAM disk served with 2 queues,
# fio 4k random writes at QD32 running; COUNT (default 6) external
# snapshots (blockdev-snapshot-sync) and as many internal ones
# (blockdev-snapshot-internal-sync), one a second.  Each control reply
# reports held_ns, the time from the drain's start to its end, measured
# by the server, and drain_ns, the part spent waiting for the requests
# in flight.  Prints the median and the worst of each and writes the
# table to BUILD_DIR/bench/snapshot-hold.md.  A benchmark, not a test:
# the goal (issue 14) is under 50 ms at QD32 under TCG.
set -euo pipefail

die() { echo "vm-snapshot-hold.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
COUNT=6
while getopts "b:n:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	n) COUNT=$OPTARG ;;
	h) sed -n '4,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $COUNT =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive count"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
mkdir -p "$BUILD_DIR/bench"
tmp=$(mktemp -d "$BUILD_DIR/bench/.hold.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
echo "COUNT=$COUNT" > "$tmp/share/bench.conf"

cat > "$tmp/guest/hold.sh" <<'GUEST'
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
# Random writes over the whole device fill each external snapshot's
# overlay and each internal snapshot's copies (up to 256 MiB apiece): room
# for all of them, as the snapshots are measured while they allocate.
load_module brd rd_nr=1 rd_size=$(( (COUNT * 2 + 2) * 262144 )) max_part=0 ||
	bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 /dev/ram0 "$MNT"
on_exit "umount $MNT"
check "a 256 MiB qcow2 image" qemu-img create -q -f qcow2 "$MNT/disk.qcow2" 256M
add_dev "add" -f "$MNT/disk.qcow2" -q 2 -d 32 || bail "no device"
fio --name=w --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --iodepth=32 --time_based --runtime=3600 > "$T_TMP/fio.out" 2>&1 &
fio_pid=$!
sleep 2
# held KIND COMMAND ARGS: one snapshot; its held_ns into the results.
held() {
	if imgblk qmp -n "$DEV_ID" "$2" "$3" > "$T_TMP/r" 2>&1; then
		h=$(sed -n 's/.*"held_ns": *\([0-9]*\).*/\1/p' "$T_TMP/r")
		d=$(sed -n 's/.*"drain_ns": *\([0-9]*\).*/\1/p' "$T_TMP/r")
		echo "$1 $h $d" >> "$RES"
	else
		diag_file "$T_TMP/r"
	fi
}
for i in $(seq 1 "$COUNT"); do
	held external blockdev-snapshot-sync \
		"{\"snapshot-file\": \"$MNT/s$i.qcow2\", \"format\": \"qcow2\"}"
	sleep 1
	held internal blockdev-snapshot-internal-sync "{\"name\": \"i$i\"}"
	sleep 1
done
kill "$fio_pid"
wait "$fio_pid"
check "fio saw no error" sh -c "! grep -qE 'err= *[1-9]' $T_TMP/fio.out"
is_n=$(grep -c . "$RES")
if [ "$is_n" -eq $((2 * COUNT)) ]; then ok "$is_n snapshots timed"; else
	not_ok "$is_n of $((2 * COUNT)) snapshots timed"; fi
del_dev "del" "$DEV_ID"
done_testing
GUEST

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m $(( (COUNT * 2 + 2) * 256 + 2048 ))M -t $((COUNT * 30 + 300)) \
	-s "$tmp/share" "$tmp/guest/hold.sh" >&2 ||
	echo "vm-snapshot-hold.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"
{
	echo "# I/O held by a live snapshot (VM, TCG), fio 4k randwrite QD32, 2 queues, qcow2 on brd"
	echo
	echo "| snapshot | count | held: median ms | held: worst ms | of which draining: median ms |"
	echo "|---|---:|---:|---:|---:|"
	for kind in external internal; do
		med_drain=$(awk -v k="$kind" '$1 == k { print $3 }' "$RES" | sort -n |
			awk '{ v[NR] = $1 } END { if (NR) printf "%.1f", v[int((NR + 1) / 2)] / 1e6 }')
		awk -v k="$kind" '$1 == k { print $2 }' "$RES" | sort -n |
			awk -v k="$kind" -v dr="$med_drain" '
			{ v[NR] = $1 }
			END { if (NR) printf "| %s | %d | %.1f | %.1f | %s |\n", k, NR,
				v[int((NR + 1) / 2)] / 1e6, v[NR] / 1e6, dr }'
	done
} > "$BUILD_DIR/bench/snapshot-hold.md"
cat "$BUILD_DIR/bench/snapshot-hold.md"
