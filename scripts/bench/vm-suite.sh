#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# vm-suite.sh - imgblk against qemu-nbd + nbd.ko and loop.ko, in one VM boot.
#
#   scripts/bench/vm-suite.sh [-b BUILD_DIR] [-r SECONDS] [-w TIME]
#                             [-s MIB] [-m MEM] [-c "CONFIG..."] [-l]
#     -r  fio runtime per run in seconds (default 2)
#     -w  fio ramp per run, fio's syntax (default 500ms)
#     -s  image size in MiB (default 1024)   -m  guest memory (default: fits -s)
#     -c  configs to run (default all; -l lists them)
#
# Every config gets the same 20 fio runs (io_uring, O_DIRECT): 4k randread,
# 4k randwrite, 4k randrw, 128k read, 128k write, each at QD 1 and 32 with
# 1 and 2 jobs.  Around each run the server's utime+stime (/proc/PID/stat)
# and the device's completed requests (/sys/block/DEV/stat) are sampled, so
# CPU per I/O covers the same window on both sides; at the end of a config
# the server's VmRSS and VmHWM are kept.  Images live on ext4 on a brd RAM
# disk so the host's disk and QEMU's virtio emulation are not measured;
# each is read whole before its server starts, so every config meets a
# warm extent cache.
#
# Writes the raw figures to BUILD_DIR/bench/vm-suite.txt; report.sh makes
# the tables and the chart.  A benchmark, not a test: it asserts nothing
# about speed, and under TCG only ratios from one run mean anything.
set -euo pipefail

die() { echo "vm-suite.sh: $*" >&2; exit 1; }

# Order matters: configs on the same image sit next to each other, and the
# allocated images are deleted before the empty ones are made, so the RAM
# disk holds at most three full images at once.
ALL_CONFIGS="loop-raw raw-q1 raw-q2
qcow2-alloc-q1 qcow2-alloc-q2 nbd-qcow2-alloc
qed-alloc-q1 qed-alloc-q2
qcow2-falloc-q1 qcow2-falloc-q2
qcow2-empty-q1 qcow2-empty-q2 nbd-qcow2-empty
qed-empty-q1 qed-empty-q2"
RUNS_PER_CONFIG=20

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
RUNTIME=2
RAMP=500ms
SIZE_MIB=1024
MEM=
CONFIGS=$ALL_CONFIGS
while getopts "b:r:w:s:m:c:lh" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	r) RUNTIME=$OPTARG ;;
	w) RAMP=$OPTARG ;;
	s) SIZE_MIB=$OPTARG ;;
	m) MEM=$OPTARG ;;
	c) CONFIGS=$OPTARG ;;
	l) echo $ALL_CONFIGS; exit 0 ;;
	h) sed -n '4,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[1-9][0-9]*$ ]] || die "-r wants a positive number of seconds"
[[ $RAMP =~ ^[0-9]+(ms|s)?$ ]] || die "-w wants a time like 1, 2s or 500ms"
# Whole seconds of ramp, rounded up, for the time limit.
case $RAMP in
*ms) ramp_s=$(( (${RAMP%ms} + 999) / 1000 )) ;;
*) ramp_s=${RAMP%s} ;;
esac
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] && [ $((SIZE_MIB % 2)) = 0 ] ||
	die "-s wants an even number of MiB (two jobs split the device)"
for c in $CONFIGS; do
	[[ " $(echo $ALL_CONFIGS) " == *" $c "* ]] || die "unknown config $c (-l lists them)"
done
# Run in the suite's order whatever order -c gave: the images are made
# and deleted around it.
sel=
for c in $ALL_CONFIGS; do
	[[ " $(echo $CONFIGS) " == *" $c "* ]] && sel="$sel $c"
done
CONFIGS=${sel# }
[ -x "$BUILD_DIR/imgblk" ] || die "$BUILD_DIR/imgblk not built; run make first"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
mkdir -p "$BUILD_DIR/bench"

nconf=$(echo $CONFIGS | wc -w)
# Three full images at once, plus ext4's metadata and slack.
BRD_MIB=$((SIZE_MIB * 3 + 512))
# The RAM disk, plus the initramfs, the kernel and the servers.
[ -n "$MEM" ] || MEM=$((BRD_MIB + 1536))M
# Runs, the image setups and per-run restarts of the empty configs, with
# room for a slow TCG host; past this the rig kills the guest.
LIMIT=$((nconf * RUNS_PER_CONFIG * (RUNTIME + ramp_s + 8) + 900))

tmp=$(mktemp -d "$BUILD_DIR/bench/.suite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/guest" "$tmp/share"
cat > "$tmp/share/bench.conf" <<EOF
RUNTIME=$RUNTIME
RAMP=$RAMP
SIZE_MIB=$SIZE_MIB
BRD_MIB=$BRD_MIB
CONFIGS="$(echo $CONFIGS)"
EOF

# The guest half (busybox sh), run by the VM rig like a test.
cat > "$tmp/guest/suite.sh" <<'GUEST'
#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
. "$(dirname "$0")/lib.sh"
. "$SHARE/bench.conf"
need_imgblk
need_cmd fio qemu-img qemu-nbd mkfs.ext4
[ -x /usr/sbin/losetup ] || skip_all "util-linux losetup (--direct-io) not available"

RES=$SHARE/results.txt
: > "$RES"
# qemu-nbd -c puts its socket there; the initramfs has no /var/lock.
mkdir -p /var/lock
MNT=$T_TMP/mnt
mkdir -p "$MNT"
RAW=$MNT/disk.raw
QCOW2=$MNT/alloc.qcow2
QED=$MNT/alloc.qed
FRESH=$MNT/fresh.img
NBD=/dev/nbd0

wants() {	# wants PATTERN: does any selected config match PATTERN?
	for _c in $CONFIGS; do
		case $_c in $1) return 0 ;; esac
	done
	return 1
}

load_module brd rd_nr=1 rd_size=$((BRD_MIB * 1024)) max_part=0 || bail "cannot load brd"
check "mkfs.ext4 on /dev/ram0" mkfs.ext4 -q -F /dev/ram0
check "mount" mount -t ext4 -o noatime /dev/ram0 "$MNT"
on_exit "umount $MNT"
on_exit "qemu-nbd -d $NBD"

# Setup leaves nothing dirty in the page cache to be written back while
# a later run measures.
settle() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
}

# The raw file is written out, not fallocated: reads of unwritten extents
# would not touch the disk.  fio's buffers are random, so qemu-img convert
# sees no zero blocks and the converted images are fully allocated.
if wants '*raw*' || wants '*alloc*'; then
	check "fill the ${SIZE_MIB} MiB raw file" fio --name=fill --filename="$RAW" \
		--rw=write --bs=1M --size=${SIZE_MIB}M --direct=1 \
		--ioengine=io_uring --iodepth=8 --output=/dev/null
fi
if wants 'qcow2-alloc*' || wants 'nbd-qcow2-alloc'; then
	check "convert to a fully allocated qcow2" qemu-img convert -t none -T none \
		-f raw -O qcow2 "$RAW" "$QCOW2"
fi
if wants 'qed-alloc*'; then
	check "convert to a fully allocated QED" qemu-img convert -t none -T none \
		-f raw -O qed "$RAW" "$QED"
fi
settle

cpu_ticks() {	# cpu_ticks PID: utime + stime, all threads, in USER_HZ ticks
	if [ "$1" = - ]; then echo 0; return; fi
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

dev_ios() {	# dev_ios DEV: reads + writes the block layer completed
	awk '{ print $1 + $5 }' "/sys/block/${1#/dev/}/stat"
}

# Server handling.  start_server sets DEV and PID ("-" when the work is
# done by kernel threads that cannot be told apart, as for loop);
# stop_server keeps the largest VmHWM of the config's servers in HWM_KB
# and the last VmRSS in RSS_KB.
start_server() {
	DEV=
	PID=-
	# Every server starts on a file whose ext4 extent cache is warm and
	# compact: a cold one costs each random request a walk of the
	# on-disk extent tree, loop and qemu-nbd included.  imgblk loads it
	# at open anyway; the others would warm it only as they go.
	dd if="$IMG" of=/dev/null bs=4M iflag=direct 2> /dev/null
	case $KIND in
	ublk)
		add_dev "$CFG: imgblk add -t $FMT -q $QUEUES" -t "$FMT" -f "$IMG" -q "$QUEUES" ||
			return 1
		PID=$(imgblk list -n "$DEV_ID" | awk 'NR == 2 { print $6 }')
		;;
	nbd)
		rm -f "$T_TMP/nbd.pid"
		# -c daemonizes once the device is connected.
		if ! qemu-nbd -f "$FMT" $NBD_OPTS --pid-file="$T_TMP/nbd.pid" \
			-c "$NBD" "$IMG" > "$T_TMP/nbd.err" 2>&1; then
			# A mode this build lacks is no failure while probing.
			if [ "$CFG" = nbd-probe ]; then
				diag "qemu-nbd $NBD_OPTS failed:"
			else
				not_ok "$CFG: qemu-nbd $NBD_OPTS -c $NBD"
			fi
			diag_file "$T_TMP/nbd.err"
			return 1
		fi
		_i=0
		while [ "$(cat /sys/block/${NBD#/dev/}/size)" = 0 ] || [ ! -s "$T_TMP/nbd.pid" ]; do
			[ $_i -ge 100 ] && { not_ok "$CFG: $NBD never came up"; return 1; }
			sleep 0.1
			_i=$((_i + 1))
		done
		PID=$(cat "$T_TMP/nbd.pid")
		DEV=$NBD
		;;
	loop)
		DEV=$(losetup --direct-io=on -f --show "$IMG" 2> "$T_TMP/losetup.err")
		if [ -z "$DEV" ]; then
			not_ok "$CFG: losetup --direct-io=on"
			diag_file "$T_TMP/losetup.err"
			return 1
		fi
		[ "$(cat /sys/block/${DEV#/dev/}/loop/dio 2>/dev/null)" = 1 ] ||
			diag "$CFG: $DEV does not use direct I/O"
		;;
	esac
	return 0
}

stop_server() {
	if [ "$PID" != - ] && [ -r "/proc/$PID/status" ]; then
		_rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status")
		_hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$PID/status")
		RSS_KB=${_rss:-0}
		[ "${_hwm:-0}" -gt "$HWM_KB" ] && HWM_KB=$_hwm
	fi
	case $KIND in
	ublk)	timeout 30 imgblk del -n "$DEV_ID" > /dev/null 2>&1 ||
			not_ok "$CFG: imgblk del -n $DEV_ID" ;;
	nbd)	qemu-nbd -d "$NBD" > /dev/null 2>&1
		# The next connect needs the old server gone.
		_i=0
		while [ -d "/proc/$PID" ] && [ $_i -lt 100 ]; do
			sleep 0.1
			_i=$((_i + 1))
		done ;;
	loop)	losetup -d "$DEV" ;;
	esac
}

# The state a write run starts from on an empty or falloc image: made
# again from scratch, so every config and every run sees the same one.
fresh_image() {
	rm -f "$IMG"
	qemu-img create -q -f "$FMT" $CREATE_OPTS "$IMG" ${SIZE_MIB}M > "$T_TMP/create.err" 2>&1 ||
		{ not_ok "$CFG: qemu-img create $CREATE_OPTS"; diag_file "$T_TMP/create.err"; return 1; }
	settle
}

# Clock reads are slow under TCG: without latency figures, which the
# report does not use, fio costs less per I/O and leaves the vCPUs to the
# servers, the same for every config.
FIO_LIGHT="--gtod_reduce=1 --thread"

# run RW BS QD NJ: one fio run; appends
#   run CFG RW BS QD NJ IOPS KB/s CPU_TICKS REQUESTS SECONDS
# Two jobs each get half of the device, so sequential jobs do not write
# the same blocks.  fio terse v3: error 5, read KiB/s 7, read IOPS 8,
# write KiB/s 48, write IOPS 49; group_reporting sums the jobs.
run() {
	_half=$((SIZE_MIB / $4))
	# Two jobs run one per CPU, as a multi-queue device is meant to be
	# driven (each CPU's requests go to its own hardware queue); the
	# same for every config, loop and qemu-nbd included.
	_pin=
	[ "$4" = 2 ] && [ "$(nproc)" -ge 2 ] && _pin="--cpus_allowed=0-1 --cpus_allowed_policy=split"
	_rt0=$(date +%s)
	_c0=$(cpu_ticks "$PID")
	_i0=$(dev_ios "$DEV")
	_out=$(fio --name=bench --filename="$DEV" --ioengine=io_uring --direct=1 \
		--rw="$1" --bs="$2" --iodepth="$3" --numjobs="$4" \
		--size=${_half}M --offset_increment=${_half}M \
		--time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
		--norandommap --randrepeat=0 --group_reporting $FIO_LIGHT $_pin \
		--output-format=terse --terse-version=3 2> "$T_TMP/fio.err")
	_c1=$(cpu_ticks "$PID")
	_i1=$(dev_ios "$DEV")
	_rt1=$(date +%s)
	_fig=$(echo "$_out" | awk -F';' 'NR == 1 && $5 == 0 { printf "%.0f %.0f", $8 + $49, $7 + $48 }')
	if [ -n "$_fig" ]; then
		echo "run $CFG $1 $2 $3 $4 $_fig $((_c1 - _c0)) $((_i1 - _i0)) $((_rt1 - _rt0))" >> "$RES"
		ok "$CFG $1 $2 QD$3 x$4: ${_fig% *} IOPS"
	else
		not_ok "$CFG $1 $2 QD$3 x$4"
		diag_file "$T_TMP/fio.err"
	fi
}

# Reads first: on an empty image they see the untouched state; each run
# that writes then gets a fresh image (and so a fresh server).
JOBS="randread:4k read:128k randwrite:4k randrw:4k write:128k"

run_config() {
	RSS_KB=0
	HWM_KB=0
	_t0=$(date +%s)
	if [ -n "$CREATE_OPTS$FRESH_IMG" ]; then fresh_image || return; fi
	start_server || return
	# A server that polls would burn CPU with no I/O: see that apart.
	_c0=$(cpu_ticks "$PID")
	sleep 2
	echo "idle $CFG $(($(cpu_ticks "$PID") - _c0)) 2" >> "$RES"
	for _j in $JOBS; do
		_rw=${_j%:*}
		_bs=${_j#*:}
		for _qd in 1 32; do
			for _nj in 1 2; do
				if [ -n "$FRESH_IMG" ] && [ "$_rw" != randread ] && [ "$_rw" != read ]; then
					stop_server
					fresh_image || return
					start_server || return
				fi
				run "$_rw" "$_bs" "$_qd" "$_nj"
			done
		done
	done
	stop_server
	echo "rss $CFG $RSS_KB $HWM_KB $(($(date +%s) - _t0))" >> "$RES"
}

# qemu-nbd's best options on this guest: O_DIRECT like imgblk (cache=none;
# a host page cache would turn reads into memory copies) and the fastest
# AIO engine this build has, chosen on 4k randrw QD32 (the target's
# workload).  It serves one connection: -c uses the ioctl interface, and
# nbd.ko's multi-connection setup needs nbd-client's netlink, which the
# guest lacks.
NBD_OPTS=
pick_nbd_opts() {
	[ -n "$NBD_OPTS" ] && return 0
	_best=0
	_cfg=$CFG
	KIND=nbd FMT=qcow2 IMG=$1 CFG=nbd-probe HWM_KB=0
	for _aio in io_uring native threads; do
		NBD_OPTS="--cache=none --aio=$_aio --discard=unmap"
		start_server || continue
		_out=$(fio --name=probe --filename="$DEV" --ioengine=io_uring --direct=1 \
			--rw=randrw --bs=4k --iodepth=32 --time_based --runtime="$RUNTIME" \
			--ramp_time="$RAMP" --norandommap --randrepeat=0 $FIO_LIGHT \
			--output-format=terse --terse-version=3 2> "$T_TMP/fio.err")
		stop_server
		_iops=$(echo "$_out" | awk -F';' 'NR == 1 && $5 == 0 { printf "%.0f", $8 + $49 }')
		echo "probe nbd aio=$_aio ${_iops:-0}" >> "$RES"
		ok "qemu-nbd --aio=$_aio: ${_iops:-failed} IOPS (4k randrw QD32)"
		if [ "${_iops:-0}" -gt "$_best" ]; then
			_best=$_iops
			_best_aio=$_aio
		fi
	done
	CFG=$_cfg
	[ "$_best" -gt 0 ] || { NBD_OPTS=; not_ok "no qemu-nbd AIO mode works"; return 1; }
	NBD_OPTS="--cache=none --aio=$_best_aio --discard=unmap"
	echo "nbdopts $NBD_OPTS" >> "$RES"
	settle
}

for CFG in $CONFIGS; do
	# The full images are done with once the empty configs start: give
	# their RAM back before the empty images grow.
	case $CFG in
	*falloc*|*empty*) rm -f "$RAW" "$QCOW2" "$QED" ;;
	esac
	case $CFG in
	nbd-qcow2-alloc) pick_nbd_opts "$QCOW2" || continue ;;
	nbd-qcow2-empty)
		if [ -z "$NBD_OPTS" ]; then
			KIND=nbd FMT=qcow2 IMG=$FRESH CREATE_OPTS=
			fresh_image && pick_nbd_opts "$FRESH" || continue
		fi ;;
	esac
	KIND=ublk CREATE_OPTS= FRESH_IMG= QUEUES=1
	case $CFG in
	*-q2) QUEUES=2 ;;
	esac
	case $CFG in
	loop-raw)		KIND=loop FMT=raw IMG=$RAW ;;
	raw-q*)			FMT=raw IMG=$RAW ;;
	qcow2-alloc-q*)		FMT=qcow2 IMG=$QCOW2 ;;
	qed-alloc-q*)		FMT=qed IMG=$QED ;;
	nbd-qcow2-alloc)	KIND=nbd FMT=qcow2 IMG=$QCOW2 ;;
	qcow2-falloc-q*)	FMT=qcow2 IMG=$FRESH FRESH_IMG=1
				CREATE_OPTS="-o preallocation=falloc" ;;
	qcow2-empty-q*)		FMT=qcow2 IMG=$FRESH FRESH_IMG=1 ;;
	qed-empty-q*)		FMT=qed IMG=$FRESH FRESH_IMG=1 ;;
	nbd-qcow2-empty)	KIND=nbd FMT=qcow2 IMG=$FRESH FRESH_IMG=1 ;;
	esac
	run_config
done
done_testing
GUEST

est=$(( (nconf * RUNS_PER_CONFIG * (RUNTIME + ramp_s + 2) + 300) / 60 ))
echo "# vm-suite: $nconf configs x $RUNS_PER_CONFIG runs of ${RUNTIME}s (+$RAMP ramp)," \
	"${SIZE_MIB} MiB images, guest $MEM; about $est min" >&2
t0=$(date +%s)
# The binary the initramfs takes now: others may commit during the run.
commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')
"$REPO/scripts/vm/run.sh" -b "$BUILD_DIR" -m "$MEM" -t "$LIMIT" \
	-s "$tmp/share" "$tmp/guest/suite.sh" >&2 ||
	echo "vm-suite.sh: warning: the VM run reported failures (above)" >&2

RES=$tmp/share/results.txt
[ -s "$RES" ] || die "no results came back from the VM"
OUT=$BUILD_DIR/bench/vm-suite.txt
# The context report.sh prints beside the figures.
{
	echo "meta date $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "meta commit $commit"
	echo "meta kernel $(cat "$BUILD_DIR/vm/kernel/version" 2>/dev/null || echo unknown)"
	echo "meta runtime $RUNTIME"
	echo "meta ramp $RAMP"
	echo "meta size_mib $SIZE_MIB"
	echo "meta mem $MEM"
	echo "meta host_cpus $(nproc)"
	echo "meta host_load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "meta wall_s $(($(date +%s) - t0))"
	cat "$RES"
} > "$OUT"
echo "# vm-suite: $(grep -c '^run ' "$OUT") runs in $(($(date +%s) - t0)) s; figures in $OUT" >&2
