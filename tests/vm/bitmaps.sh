#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# bitmaps.sh - persistent dirty bitmaps on a served qcow2 device: fio
# with verify on a device whose image has an enabled bitmap; bitmaps
# added, disabled and flushed live through the control channel; the
# bitmaps in use on disk while the device writes and stored clean by
# `del`; then QEMU's view of each bitmap (qemu-nbd -B, read with qemu-img
# map over x-dirty-bitmap) equals imgblk's `map --bitmap`, and
# qemu-img check is clean.  A server killed with -9 leaves its bitmap in
# use, which QEMU reports and only --remove accepts.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img qemu-nbd

IMG=$T_TMP/disk.qcow2
SOCK=$T_TMP/nbd.sock

# is DESCRIPTION GOT WANT (as in lock.sh)
is() {
	if [ "$2" = "$3" ]; then ok "$1 ($2)"; else
		not_ok "$1"; diag "got '$2', want '$3'"; fi
}

# flags IMG NAME: the flags qemu-img info -U gives bitmap NAME ("auto",
# "in-use auto", "" for none), or "missing".
flags() {
	qemu-img info -U -f qcow2 "$1" | awk -v n="$2" '
		/^    bitmaps:/ { b = 1; next }
		b && /^    [a-z]/ { b = 0 }
		b && /^        \[/ { if (name == n) { print f; found = 1 }; f = ""; name = "" }
		b && /\]: (auto|in-use)$/ { f = f (f == "" ? "" : " ") $2 }
		b && /^            name: / { name = $2 }
		END { if (!found) { if (name == n) print f; else print "missing" } }'
}

# dirty_runs: "start end" lines of the dirty runs of a map on stdin, either
# qemu-img map's (QEMU marks dirty as "data": false) or imgblk's ("dirty").
dirty_runs() {
	sed -n 's/.*"start": *\([0-9]*\), *"length": *\([0-9]*\).*"\(data\|dirty\)": *\(true\|false\).*/\1 \2 \3 \4/p' |
		awk '{ d = ($3 == "data") ? ($4 == "false") : ($4 == "true")
		       if (!d) next
		       if (have && $1 == e) { e = $1 + $2; next }
		       if (have) print s, e
		       s = $1; e = $1 + $2; have = 1 }
		     END { if (have) print s, e }'
}

qemu_runs() {	# qemu_runs IMG NAME
	rm -f "$SOCK"
	qemu-nbd -r -f qcow2 -B "$2" -k "$SOCK" "$1" > /dev/null 2>&1 &
	_p=$!
	_i=0
	while [ ! -S "$SOCK" ] && [ $_i -lt 100 ]; do sleep 0.1; _i=$((_i + 1)); done
	qemu-img map --output=json --image-opts \
		"driver=nbd,server.type=unix,server.path=$SOCK,x-dirty-bitmap=qemu:dirty-bitmap:$2" |
		dirty_runs
	wait $_p
}

# contains RUNS_FILE OFF LEN: is [OFF, OFF+LEN) inside one dirty run?
contains() {
	awk -v a="$2" -v b="$(($2 + $3))" '$1 <= a && b <= $2 { f = 1 } END { exit !f }' "$1"
}

check "image" qemu-img create -q -f qcow2 "$IMG" 256M
check "a bitmap added offline" imgblk bitmap --add "$IMG" b0
add_dev "add a two-queue device" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID
is "not in use before the first write" "$(flags "$IMG" b0)" "auto"
run_fio bitmap --bs=4k
is "in use on disk while the device writes" "$(flags "$IMG" b0)" "in-use auto"

check "live --add b1" imgblk bitmap -n "$ID" --add b1
check "a 1M write at 200M" dd if=/dev/urandom of="$DEV" bs=1M count=1 seek=200 oflag=direct
check "live --disable b1" imgblk bitmap -n "$ID" --disable b1
check "a 1M write at 220M" dd if=/dev/urandom of="$DEV" bs=1M count=1 seek=220 oflag=direct
check "live --add -g 1M b2, --merge b1 into it" \
	imgblk bitmap -n "$ID" --add -g 1M --disable --merge b1 b2
check_fails "live --add of an existing name fails" imgblk bitmap -n "$ID" --add b0
check_fails "live --clear of a missing bitmap fails" imgblk bitmap -n "$ID" --clear nope
check "live --flush" imgblk bitmap -n "$ID" --flush
is "after --flush, b0 is stored consistent" "$(flags "$IMG" b0)" "auto"
check "another write" dd if=/dev/urandom of="$DEV" bs=4k count=1 seek=1000 oflag=direct
is "... and is in use again" "$(flags "$IMG" b0)" "in-use auto"
del_dev "del" "$ID"

is "after del: b0 consistent" "$(flags "$IMG" b0)" "auto"
is "after del: b1 consistent, disabled" "$(flags "$IMG" b1)" ""
check "qemu-img check clean" qemu-img check -q -f qcow2 "$IMG"
for b in b0 b1 b2; do
	qemu_runs "$IMG" $b > "$T_TMP/q.$b"
	imgblk map -f qcow2 --bitmap $b --output=json "$IMG" | dirty_runs > "$T_TMP/i.$b"
	check "bitmap $b: QEMU's view equals imgblk's map --bitmap" cmp "$T_TMP/q.$b" "$T_TMP/i.$b"
done
check "b0 marks fio's area" test -s "$T_TMP/i.b0"
check "b0 marks the write at 200M" contains "$T_TMP/q.b0" $((200 << 20)) $((1 << 20))
check "b0 marks the write at 220M" contains "$T_TMP/q.b0" $((220 << 20)) $((1 << 20))
check "b1 marks the write at 200M" contains "$T_TMP/q.b1" $((200 << 20)) $((1 << 20))
check_fails "b1 does not mark the write at 220M (disabled)" \
	contains "$T_TMP/q.b1" $((220 << 20)) 4096
check "b2 (merged from b1) marks the write at 200M" \
	contains "$T_TMP/q.b2" $((200 << 20)) $((1 << 20))

# A server that dies leaves the bitmap in use: inconsistent, only removable.
add_dev "add again" -f "$IMG" || bail "cannot continue"
ID=$DEV_ID
check "a write" dd if=/dev/urandom of="$DEV" bs=4k count=1 oflag=direct
PID=$(imgblk list | awk -v id="$ID" '$1 == id { print $6 }')
check "kill -9 the server" kill -9 "$PID"
timeout 30 imgblk del -n "$ID" > /dev/null 2>&1
wait_gone "$DEV" 30
is "QEMU sees b0 in use" "$(flags "$IMG" b0)" "in-use auto"
check_fails "--clear of the in-use bitmap is refused" imgblk bitmap --clear "$IMG" b0
check "--remove is accepted" imgblk bitmap --remove "$IMG" b0
check "qemu-img check clean after the remove" qemu-img check -q -f qcow2 "$IMG"

# An external snapshot turns the old top into a backing file: its bitmaps
# are stored consistent there (QEMU leaves them on the old node) and the
# overlay has none.
OVL=$T_TMP/overlay.qcow2
check "add a bitmap for the snapshot" imgblk bitmap --add "$IMG" s0
add_dev "add for the snapshot" -f "$IMG" || bail "cannot continue"
ID=$DEV_ID
check "a write before the snapshot" dd if=/dev/urandom of="$DEV" bs=4k count=1 seek=300 oflag=direct
is "s0 in use while served" "$(flags "$IMG" s0)" "in-use auto"
check "external snapshot" imgblk snapshot -n "$ID" --external "$OVL"
is "after the snapshot, s0 is stored consistent in the old top" "$(flags "$IMG" s0)" "auto"
check "a write after the snapshot" dd if=/dev/urandom of="$DEV" bs=4k count=1 seek=600 oflag=direct
del_dev "del after the snapshot" "$ID"
is "after del: s0 still consistent" "$(flags "$IMG" s0)" "auto"
is "the overlay has no s0" "$(flags "$OVL" s0)" "missing"
check "qemu-img check clean on the old top" qemu-img check -q -f qcow2 "$IMG"
check "qemu-img check clean on the overlay" qemu-img check -q -f qcow2 "$OVL"
qemu_runs "$IMG" s0 > "$T_TMP/q.s0"
check "s0 marks the write before the snapshot" contains "$T_TMP/q.s0" $((300 << 12)) 4096
check_fails "s0 does not mark the write after it" contains "$T_TMP/q.s0" $((600 << 12)) 4096

done_testing
