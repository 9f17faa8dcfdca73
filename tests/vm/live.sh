#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# live.sh - a running device seen and changed through its control
# channel: statistics after a known load are exact (operations and
# bytes, per device and per queue); throttle limits changed with
# `imgblk set` take effect within a second; `imgblk query` shows the
# device, its options and its chain; and pause/resume (a drain each
# time) 100 times under fio with verify loses nothing.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img

BASE=$T_TMP/base.qcow2
IMG=$T_TMP/disk.qcow2
check "base image" qemu-img create -q -f qcow2 "$BASE" 256M
check "overlay" imgblk create -q -f qcow2 -b "$BASE" -F qcow2 "$IMG"
add_dev "add a two-queue qcow2 device" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID

# stat NAME: a counter of query-blockstats for the whole device.
stat() {
	imgblk stats -n "$ID" --json | tr ',{}' '\n\n\n' |
		awk -v k="\"$1\"" -F': *' '$1 ~ k { gsub(/ /, "", $2); print $2; exit }'
}

r0=$(stat rd_operations)
rb0=$(stat rd_bytes)
w0=$(stat wr_operations)
wb0=$(stat wr_bytes)
f0=$(stat flush_operations)
check "100 direct 4k reads" dd if="$DEV" of=/dev/null bs=4k count=100 iflag=direct
check "30 direct 64k writes, then fsync" \
	dd if=/dev/zero of="$DEV" bs=64k count=30 oflag=direct conv=fsync
r1=$(stat rd_operations)
rb1=$(stat rd_bytes)
w1=$(stat wr_operations)
wb1=$(stat wr_bytes)
f1=$(stat flush_operations)
if [ "$((r1 - r0))" = 100 ] && [ "$((rb1 - rb0))" = 409600 ]; then
	ok "rd_operations +100, rd_bytes +409600"
else
	not_ok "rd_operations +100, rd_bytes +409600"
	diag "rd_operations $r0 -> $r1, rd_bytes $rb0 -> $rb1"
fi
if [ "$((w1 - w0))" = 30 ] && [ "$((wb1 - wb0))" = 1966080 ]; then
	ok "wr_operations +30, wr_bytes +1966080"
else
	not_ok "wr_operations +30, wr_bytes +1966080"
	diag "wr_operations $w0 -> $w1, wr_bytes $wb0 -> $wb1"
fi
if [ "$((f1 - f0))" -ge 1 ]; then ok "flush_operations counted"; else
	not_ok "flush_operations counted"; diag "$f0 -> $f1"; fi
check "per-queue rows in the table" sh -c "imgblk stats -n $ID | grep -q '^q1 '"
check "latency histogram in the JSON" sh -c \
	"imgblk stats -n $ID --json | grep -q rd_latency_histogram"
check "stats --interval prints lines" sh -c \
	"imgblk stats -n $ID --interval 1 --count 2 | grep -c . | grep -q '[2-9]'"

check "query names the chain" sh -c \
	"imgblk query -n $ID | grep -q '$BASE'"
check "query --json has the status" sh -c \
	"imgblk query -n $ID --json | grep -q '\"status\": \"running\"'"

# Throttle changed live: 20 reads/s makes 200 reads take 10 s; lifting
# the limit after one second lets them finish at once.
check "set --iops-read 20" imgblk set -n "$ID" --iops-read 20
t0=$(cut -d' ' -f1 /proc/uptime)
dd if="$DEV" of=/dev/null bs=4k count=200 iflag=direct 2>/dev/null &
DD=$!
sleep 1
if kill -0 "$DD" 2>/dev/null; then ok "throttled reads are still going after 1 s"; else
	not_ok "throttled reads are still going after 1 s"; fi
check "set --iops-read 0 lifts the limit" imgblk set -n "$ID" --iops-read 0
wait "$DD"
t1=$(cut -d' ' -f1 /proc/uptime)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
if awk -v s="$secs" 'BEGIN { exit !(s < 6) }'; then
	ok "the reads finished soon after the limit went (${secs}s, 10 s throttled)"
else
	not_ok "the reads finished soon after the limit went (${secs}s)"
fi
check "set --iops-write 50" imgblk set -n "$ID" --iops-write 50
t0=$(cut -d' ' -f1 /proc/uptime)
check "100 writes at 50/s" dd if=/dev/zero of="$DEV" bs=4k count=100 oflag=direct
t1=$(cut -d' ' -f1 /proc/uptime)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
if awk -v s="$secs" 'BEGIN { exit !(s >= 1.5) }'; then
	ok "a limit set live applies (${secs}s for 100 writes at 50/s)"
else
	not_ok "a limit set live applies (${secs}s for 100 writes at 50/s)"
fi
check "set --iops-write 0" imgblk set -n "$ID" --iops-write 0
check_fails "set with nothing to set is refused" imgblk set -n "$ID"

# Drain under load: 100 pauses and resumes while fio writes and verifies.
fio --name=drain --filename="$DEV" --ioengine=io_uring --direct=1 \
	--rw=randwrite --bs=4k --iodepth=16 --size=32M --verify=crc32c \
	--verify_fatal=1 --do_verify=1 > "$T_TMP/fio.out" 2>&1 &
FIO=$!
on_exit "kill -KILL $FIO"
n=0
fails=0
while [ $n -lt 100 ]; do
	imgblk pause -n "$ID" > /dev/null 2>&1 || fails=$((fails + 1))
	imgblk resume -n "$ID" > /dev/null 2>&1 || fails=$((fails + 1))
	n=$((n + 1))
done
if [ $fails = 0 ]; then ok "100 pauses and resumes under fio"; else
	not_ok "100 pauses and resumes under fio ($fails failed)"; fi
if wait "$FIO"; then ok "fio verified every block"; else
	not_ok "fio verified every block"; diag_file "$T_TMP/fio.out" 30; fi
check "a paused device reports it" sh -c \
	"imgblk pause -n $ID && imgblk list -n $ID | grep -q PAUSED && imgblk resume -n $ID"
check_fails "resume of a running device is refused" imgblk resume -n "$ID"
del_dev "del" "$ID"
check "qemu-img check is clean" qemu-img check -q "$IMG"

done_testing
