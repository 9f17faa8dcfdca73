#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-rbd.sh - the rbd target against rbd-nbd + nbd.ko on the same image.
#
#   scripts/bench/vm-rbd.sh [-b BUILD_DIR] [-r SECONDS] [-n ROUNDS]
#
# In one VM boot, with the one-node Ceph cluster that scripts/vm/run.sh
# starts on the host for it (the guest reaches it through QEMU's user-mode
# network, see docs/protocols.md): a 128 MiB RBD image written whole, then
# served in turn by `imgblk add -f rbd:rbd/bench -q 2` and by `rbd-nbd map`
# (what Ceph users run without krbd: librbd in a daemon, nbd.ko in the
# kernel), one at a time so that neither holds the image's exclusive lock
# while the other runs.  fio 4k random reads and writes at QD32, O_DIRECT,
# SECONDS (default 10) each, ROUNDS (default 2) rounds, the two taking
# turns first.  Both use librbd with the same ceph.conf (Ceph's defaults,
# the writeback cache on).  Prints the mean IOPS and the imgblk/rbd-nbd
# ratios (issue 16's goal: >= 2x) and writes BUILD_DIR/bench/rbd.md.
# Under TCG every request also crosses QEMU's slirp; compare the ratio.
# A benchmark, not a test.
set -euo pipefail

die() { echo "vm-rbd.sh: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
RUNTIME=10
ROUNDS=2
while getopts "b:r:n:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	n) ROUNDS=$OPTARG ;;
	h) sed -n '4,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "-r wants a positive number of seconds"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive count"
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
mkdir -p "$BUILD_DIR/bench"
tmp=$(mktemp -d "$BUILD_DIR/bench/.rbd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
printf 'RUNTIME=%s\nROUNDS=%s\n' "$RUNTIME" "$ROUNDS" > "$tmp/share/bench.conf"

# The guest half; the line below makes run.sh start the cluster.
cat > "$tmp/guest/rbd-bench.sh" <<'GUEST'
#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vm-host: ceph
. "$(dirname "$0")/lib.sh"
. "$SHARE/bench.conf"
need_imgblk
need_cmd fio
need_ceph
need_cmd rbd-nbd

RES=$SHARE/results.txt
: > "$RES"
IMG=rbd/bench
check "rbd create a 128 MiB image" rbd create --size 128M $IMG
add_dev "imgblk add to fill the image" -f rbd:$IMG -q 2 -d 64 || bail "no device"
check "write the image whole" fio --name=fill --filename="$DEV" --ioengine=io_uring \
	--direct=1 --rw=write --bs=1M --iodepth=4 --size=128M --output=/dev/null
del_dev "del the filling device" "$DEV_ID"

# iops DEV NAME RW: 4k IOPS at QD32 for RUNTIME s (terse field 8 reads, 49 writes).
iops() {
	f=8
	[ "$3" = randwrite ] && f=49
	v=$(fio --name=r --filename="$1" --ioengine=io_uring --direct=1 --rw="$3" \
		--bs=4k --iodepth=32 --time_based --runtime="$RUNTIME" --ramp_time=2 \
		--norandommap --randrepeat=0 \
		--output-format=terse --terse-version=3 2> "$T_TMP/fio.err" |
		awk -F';' -v f=$f 'NR == 1 && $5 == 0 { print $f }')
	if [ -n "$v" ]; then
		echo "iops $2 $3 $v" >> "$RES"
		ok "$2 $3: $v IOPS"
	else
		not_ok "$2 $3"
		diag_file "$T_TMP/fio.err"
	fi
}

run_imgblk() {
	add_dev "imgblk add -f rbd:$IMG -q 2" -f rbd:$IMG -q 2 -d 64 || return 0
	for rw in randread randwrite; do iops "$DEV" imgblk $rw; done
	del_dev "del $DEV" "$DEV_ID"
}

run_rbd_nbd() {
	NBD=$(timeout 60 rbd-nbd map $IMG 2> "$T_TMP/map.err")
	case $NBD in
	/dev/nbd*) ok "rbd-nbd map $IMG: $NBD" ;;
	*) not_ok "rbd-nbd map $IMG"; diag_file "$T_TMP/map.err"; return 0 ;;
	esac
	for rw in randread randwrite; do iops "$NBD" rbd-nbd $rw; done
	check "rbd-nbd unmap $NBD" timeout 60 rbd-nbd unmap "$NBD"
}

r=1
while [ $r -le "$ROUNDS" ]; do
	# Alternate which goes first, so neither always runs warmer.
	if [ $((r % 2)) = 1 ]; then
		run_imgblk
		run_rbd_nbd
	else
		run_rbd_nbd
		run_imgblk
	fi
	r=$((r + 1))
done
done_testing
GUEST

"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m 2G -t $((RUNTIME * ROUNDS * 4 * 2 + 400)) \
	-s "$tmp/share" "$tmp/guest/rbd-bench.sh" >&2 ||
	echo "vm-rbd.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM (is Ceph installed? scripts/setup.sh deps --ceph)"
{
	echo "# The rbd target against rbd-nbd + nbd.ko (VM, TCG), 128 MiB RBD image"
	echo
	awk -v rt="$RUNTIME" -v rounds="$ROUNDS" '
		$1 == "iops" { sum[$2, $3] += $4; n[$2, $3]++ }
		function mean(k) { return n[k] ? sum[k] / n[k] : 0 }
		END {
			printf "fio 4k, QD32, O_DIRECT, io_uring, one job, %s s per run, mean of %s rounds (the two taking turns); " \
				"imgblk with 2 queues, rbd-nbd with its one connection; the cluster on the host through QEMU user-mode networking.\n\n", rt, rounds
			printf "| workload | imgblk rbd IOPS | rbd-nbd IOPS | imgblk/rbd-nbd |\n|---|---:|---:|---:|\n"
			split("randread randwrite", W, " ")
			for (i = 1; i <= 2; i++) {
				a = mean("imgblk" SUBSEP W[i]); b = mean("rbd-nbd" SUBSEP W[i])
				printf "| %s | %.0f | %.0f | %s |\n", W[i], a, b, b ? sprintf("%.2f", a / b) : "n/a"
			}
		}' "$RES"
} > "$BUILD_DIR/bench/rbd.md"
cat "$BUILD_DIR/bench/rbd.md"
