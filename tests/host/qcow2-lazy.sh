#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-lazy.sh - lazy refcounts against QEMU.
#
# - create -o lazy_refcounts=on sets compatible bit 0 (qemu-img info);
#   imgblk's writes leave a clean image (dirty bit clear, qemu-img check
#   clean, content equal to a raw shadow).
# - A lazy image left dirty by `qemu-io -c abort` is repaired by imgblk's
#   read-write open: dirty bit cleared, qemu-img check clean.
# - imgblk killed with SIGKILL while writing a lazy image: the dirty bit
#   is on disk while it runs, the next read-write open repairs, QEMU then
#   finds the image clean and the data of an earlier run intact.
#   Without lazy refcounts the bit is never set and the killed image has
#   at most leaks (qemu-img check exit 0 or 3).
# - Snapshots on a lazy image: clean afterwards.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"
PID=
on_exit '[ -n "$PID" ] && kill -KILL $PID'

need qemu-img qemu-io od

dirty_bit() { echo $(( $(qcow2_incompat "$1") & 1 )); }
compat_bits() { peek "$1" 87 '>B'; }	# the low byte of compatible_features

OPS=("write -P 0x11 0 1M" "flush" "write -P 0x22 3M 64k" "write -z 512k 64k"
     "discard 2M 1M" "write -P 0x33 5M 3k" "flush" "write -P 0x44 7M 1M")

# ---- create and clean use ----
img=$T_TMP/a.qcow2
"$IMGBLK" create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k "$img" 8M
check "create: qemu-img info says lazy refcounts" \
	sh -c "qemu-img info '$img' | grep -q 'lazy refcounts: true'"
check "create: compatible bit 0 set" test "$(compat_bits "$img")" = 1
check "imgblk writes the lazy image" iio qcow2 "$img" "${OPS[@]}"
check "dirty bit clear after a clean close" test "$(dirty_bit "$img")" = 0
check "qemu-img check clean" qclean "$img"
truncate -s 8M "$T_TMP/a.raw"
args=()
for c in "${OPS[@]}"; do args+=(-c "${c//discard/write -z}"); done
qemu-io -f raw "${args[@]}" "$T_TMP/a.raw" > /dev/null
check "content equals the shadow" qemu-img compare -f qcow2 -F raw "$img" "$T_TMP/a.raw"

# ---- dirty images left by QEMU ----
for who in qemu imgblk; do
	img=$T_TMP/q-$who.qcow2
	if [ $who = qemu ]; then
		qemu-img create -q -f qcow2 -o lazy_refcounts=on "$img" 8M
	else
		"$IMGBLK" create -q -f qcow2 -o lazy_refcounts=on "$img" 8M
	fi
	( qemu-io -c 'write -P 0x55 0 2M' -c flush -c 'write -P 0x66 4M 1M' -c abort "$img" \
		> /dev/null 2>&1 ) 2> /dev/null
	check "$who-made image: qemu-io abort leaves it dirty" test "$(dirty_bit "$img")" = 1
	check "$who-made image: imgblk's read-write open repairs it" \
		iio qcow2 "$img" "read -P 0x55 0 2M" "write -P 0x67 6M 64k"
	check "$who-made image: dirty bit cleared" test "$(dirty_bit "$img")" = 0
	check "$who-made image: qemu-img check clean after repair" qclean "$img"
	check "$who-made image: QEMU reads the flushed and new data" \
		qemu-io -c 'read -P 0x55 0 2M' -c 'read -P 0x67 6M 64k' "$img"
done

# ---- imgblk killed mid-write ----
# Flush after every write: the run lasts long enough to watch the header.
# The data checked afterwards is written by an earlier, complete run: the
# kill may come in the middle of the killed run's first flush.
KILL_OPS=()
for i in $(seq 1 120); do
	KILL_OPS+=("write -P $((i % 200 + 1)) $(( (i * 37 % 900 + 20) * 65536 )) 64k" "flush")
done
kill_run() {	# kill_run IMG: runs KILL_OPS, SIGKILL once the dirty bit shows (or at 50%)
	local img=$1 seen=0 n=0 c
	local -a a=()
	for c in "${KILL_OPS[@]}"; do a+=(-c "$c"); done
	# imgblk itself in the background, not a subshell: SIGKILL must reach it.
	"$IMGBLK" io -f qcow2 "${a[@]}" "$img" > /dev/null 2>&1 &
	PID=$!
	while kill -0 $PID 2>/dev/null; do
		n=$((n + 1))
		if [ "$(dirty_bit "$img")" = 1 ]; then seen=1; fi
		if [ $seen = 1 ] || [ $n -ge ${2:-100000} ]; then
			kill -KILL $PID 2>/dev/null
			break
		fi
	done
	wait $PID 2>/dev/null
	PID=
	echo $seen
}

img=$T_TMP/k.qcow2
"$IMGBLK" create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k "$img" 64M
iio qcow2 "$img" "write -P 0x77 0 1M"
seen=$(kill_run "$img")
if [ "$seen" = 1 ]; then
	ok "lazy: dirty bit on disk while imgblk writes"
	check "lazy: still dirty after SIGKILL" test "$(dirty_bit "$img")" = 1
	check "lazy: read-write open repairs, earlier data intact" \
		iio qcow2 "$img" "read -P 0x77 0 1M"
	check "lazy: dirty bit cleared" test "$(dirty_bit "$img")" = 0
	check "lazy: qemu-img check clean after repair" qclean "$img"
	check "lazy: QEMU reads the earlier data" qemu-io -c 'read -P 0x77 0 1M' "$img"
else
	skip "lazy: dirty bit on disk while imgblk writes" \
		"imgblk finished before the dirty bit was seen"
fi

img=$T_TMP/n.qcow2
"$IMGBLK" create -q -f qcow2 -o cluster_size=4k "$img" 64M
iio qcow2 "$img" "write -P 0x77 0 1M"
seen=$(kill_run "$img" 40)
check "no lazy refcounts: dirty bit never set" test "$seen" = 0
qemu-img check -f qcow2 "$img" > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 0 ] || [ $rc = 3 ]; then ok "no lazy refcounts: killed image has no corruption (exit $rc)"
else not_ok "no lazy refcounts: killed image has no corruption"; diag_file "$T_TMP/out"; fi
check "no lazy refcounts: earlier data intact" qemu-io -c 'read -P 0x77 0 1M' "$img"

# ---- snapshots on a lazy image ----
img=$T_TMP/s.qcow2
"$IMGBLK" create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k "$img" 8M
iio qcow2 "$img" "write -P 0x81 0 1M"
check "lazy: snapshot -c" "$IMGBLK" snapshot -c s1 "$img"
iio qcow2 "$img" "write -P 0x82 512k 1M"
check "lazy: clean after writes over a snapshot" qclean "$img"
check "lazy: snapshot -a" "$IMGBLK" snapshot -a s1 "$img"
check "lazy: snapshot content back" qemu-io -c 'read -P 0x81 0 1M' "$img"
check "lazy: snapshot -d" "$IMGBLK" snapshot -d s1 "$img"
check "lazy: clean at the end" qclean "$img"
check "lazy: not dirty at the end" test "$(dirty_bit "$img")" = 0

done_testing
