#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-bitmaps.sh - persistent dirty bitmaps against QEMU 7.2, both ways.
#
# Extents are compared as lists of dirty byte ranges: imgblk's from
# `imgblk map --bitmap NAME --output=json`, QEMU's from qemu-nbd -B NAME
# read with qemu-img map over x-dirty-bitmap (a dirty run shows as
# "data": false there).  Every image imgblk touched must pass qemu-img
# check, and QEMU must list its bitmaps as consistent.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io qemu-nbd python3 timeout

SOCK=$T_TMP/nbd.sock

# dirty_py: prints the dirty ranges ("start-end" lines) of a map in either
# shape on stdin; $1 is "qemu" (data false = dirty) or "imgblk".
dirty_py='
import json, sys
runs = []
for e in json.load(sys.stdin):
    d = (not e["data"]) if sys.argv[1] == "qemu" else e["dirty"]
    if not d:
        continue
    if runs and runs[-1][1] == e["start"]:
        runs[-1][1] = e["start"] + e["length"]
    else:
        runs.append([e["start"], e["start"] + e["length"]])
for a, b in runs:
    print("%d-%d" % (a, b))
'

# qemu_dirty IMG NAME: QEMU's dirty ranges of bitmap NAME.
qemu_dirty() {
	rm -f "$SOCK"
	timeout 30 qemu-nbd -r -f qcow2 -B "$2" -k "$SOCK" "$1" 2> "$T_TMP/nbd.err" &
	local pid=$! i
	for i in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
	timeout 30 qemu-img map --output=json --image-opts \
		"driver=nbd,server.type=unix,server.path=$SOCK,x-dirty-bitmap=qemu:dirty-bitmap:$2" |
		python3 -c "$dirty_py" qemu
	wait $pid 2> /dev/null
}

# imgblk_dirty IMG NAME: imgblk's.
imgblk_dirty() {
	"$IMGBLK" map -f qcow2 --bitmap "$2" --output=json "$1" | python3 -c "$dirty_py" imgblk
}

# same_dirty DESC IMG_A NAME_A IMG_B NAME_B: QEMU's view of A equals QEMU's
# view of B and imgblk's view of A.
same_dirty() {
	qemu_dirty "$2" "$3" > "$T_TMP/qa"
	qemu_dirty "$4" "$5" > "$T_TMP/qb"
	imgblk_dirty "$2" "$3" > "$T_TMP/ia"
	if cmp -s "$T_TMP/qa" "$T_TMP/qb" && cmp -s "$T_TMP/qa" "$T_TMP/ia"; then
		ok "$1"
	else
		not_ok "$1"
		diag "QEMU on $2:" "$(cat "$T_TMP/qa")" "QEMU on $4:" "$(cat "$T_TMP/qb")" \
			"imgblk on $2:" "$(cat "$T_TMP/ia")"
	fi
}

# bitmaps_json IMG: qemu-img info's bitmaps list, compact.
bitmaps_json() {
	qemu-img info -f qcow2 --output=json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)["format-specific"]["data"]
print(json.dumps(d.get("bitmaps", []), sort_keys=True))'
}

A=$T_TMP/a.qcow2
Q=$T_TMP/q.qcow2

# 1. A bitmap QEMU made is tracked by imgblk's writes.
qemu-img create -q -f qcow2 "$A" 32M
qemu-img bitmap --add "$A" b0
qemu-img bitmap --add -g 4K "$A" small
cp "$A" "$Q"
IO=(-c "write -P 1 0 4k" -c "write 1M 100k" -c "write -z 5M 64k" -c "discard 8M 128k"
    -c "write 31M 1M")
check "imgblk io writes an image with QEMU's bitmaps" "$IMGBLK" io -f qcow2 "${IO[@]}" "$A"
check "the same writes through qemu-io" qemu-io -f qcow2 "${IO[@]}" "$Q"
check "qemu-img check: clean" qemu-img check -q -f qcow2 "$A"
check "QEMU lists the bitmaps as consistent" \
	test "$(bitmaps_json "$A")" = "$(bitmaps_json "$Q")"
same_dirty "64K bitmap: the clusters imgblk wrote, as QEMU tracks them" "$A" b0 "$Q" b0
same_dirty "4K bitmap: the same" "$A" small "$Q" small

# 2. Bitmaps imgblk made: QEMU trusts them, tracks into them, merges them.
I=$T_TMP/i.qcow2
J=$T_TMP/j.qcow2
qemu-img create -q -f qcow2 "$I" 16M
cp "$I" "$J"
for f in "$I" "$J"; do
	if [ "$f" = "$I" ]; then BM=("$IMGBLK" bitmap); else BM=(qemu-img bitmap); fi
	"${BM[@]}" --add -g 128K "$f" x
	"${BM[@]}" --add --disable "$f" y
	"${BM[@]}" --add -g 512 "$f" z --disable
done
check "imgblk's new bitmaps: qemu-img check clean" qemu-img check -q -f qcow2 "$I"
check "imgblk's new bitmaps: QEMU lists them as its own" \
	test "$(bitmaps_json "$I")" = "$(bitmaps_json "$J")"
check "imgblk info lists them as qemu-img info" \
	test "$("$IMGBLK" info --output=json "$I" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["format-specific"]["data"]["bitmaps"], sort_keys=True))')" = "$(bitmaps_json "$I")"
for f in "$I" "$J"; do
	qemu-io -f qcow2 -c "write 0 64k" -c "write 3M 8k" "$f" > /dev/null
done
same_dirty "QEMU tracks into imgblk's bitmap" "$I" x "$J" x
for f in "$I" "$J"; do
	"$IMGBLK" io -f qcow2 -c "write 6M 4k" -c "write 6100k 1k" "$f" > /dev/null
done
same_dirty "imgblk tracks into the same bitmap" "$I" x "$J" x
check "qemu-img bitmap --merge accepts imgblk's bitmap" qemu-img bitmap --merge x "$I" y
qemu-img bitmap --merge x "$J" y
same_dirty "the merged bitmap equals QEMU's merge" "$I" y "$J" y
check "qemu-img check: clean after QEMU changed them" qemu-img check -q -f qcow2 "$I"

# 3. Every verb against qemu-img bitmap on copies of one image.
B=$T_TMP/b.qcow2
C=$T_TMP/c.qcow2
S=$T_TMP/s.qcow2
qemu-img create -q -f qcow2 "$B" 16M
qemu-img bitmap --add "$B" m
qemu-img bitmap --add -g 32K "$B" n
qemu-io -f qcow2 -c "write 0 256k" -c "write 2M 64k" "$B" > /dev/null
qemu-img create -q -f qcow2 "$S" 16M
qemu-img bitmap --add -g 16K "$S" src
qemu-io -f qcow2 -c "write 7M 20k" -c "write 15M 1M" "$S" > /dev/null
cp "$B" "$C"
ops=(
	"--disable:n"
	"--clear:m"
	"--merge n:m"
	"--enable:n"
	"--merge src -b $S -F qcow2:n"
	"--add -g 1M:big"
	"--merge m --merge n --disable:big"
	"--remove:m"
	"--add --disable --merge n:m2"
)
for o in "${ops[@]}"; do
	args=${o%:*} name=${o##*:}
	"$IMGBLK" bitmap $args -f qcow2 "$B" "$name" > "$T_TMP/i.err" 2>&1
	ri=$?
	qemu-img bitmap $args -f qcow2 "$C" "$name" > "$T_TMP/q.err" 2>&1
	rq=$?
	if [ $ri = $rq ]; then ok "bitmap $args $name: exit $ri as qemu-img"; else
		not_ok "bitmap $args $name: exit $ri, qemu-img $rq"; diag_file "$T_TMP/i.err"; fi
	for f in "$B" "$C"; do qemu-io -f qcow2 -c "write 9M 4k" "$f" > /dev/null; done
	check "after bitmap $args $name: QEMU lists the same bitmaps" \
		test "$(bitmaps_json "$B")" = "$(bitmaps_json "$C")"
done
check "after every verb: qemu-img check clean" qemu-img check -q -f qcow2 "$B"
for name in n big m2; do
	same_dirty "after every verb: bitmap $name has QEMU's extents" "$B" "$name" "$C" "$name"
done
check_fails --status 1 "--add of an existing name fails" "$IMGBLK" bitmap --add "$B" n
check_fails --status 1 "--clear of a missing bitmap fails" "$IMGBLK" bitmap --clear "$B" nope
check_fails --status 1 "-g without --add is a usage error (1, as qemu-img)" "$IMGBLK" bitmap -g 4K --clear "$B" n
check_fails --status 1 "-b without --merge is a usage error (1, as qemu-img)" "$IMGBLK" bitmap -b "$S" --clear "$B" n

# 4. A writer that died leaves in_use: inconsistent, only removable.
D=$T_TMP/d.qcow2
qemu-img create -q -f qcow2 "$D" 16M
"$IMGBLK" bitmap --add "$D" live
"$IMGBLK" io -f qcow2 -c "write 0 4k" -c "sleep 10000" "$D" > /dev/null 2>&1 &
pid=$!
for i in $(seq 100); do
	qemu-img info -U --output=json "$D" 2> /dev/null | grep -q in-use && break
	sleep 0.1
done
{ kill -9 $pid; wait $pid; } 2> /dev/null
check "a killed writer leaves the bitmap in-use (QEMU's view)" \
	test "$(bitmaps_json "$D")" = '[{"flags": ["in-use", "auto"], "granularity": 65536, "name": "live"}]'
check "imgblk info shows it in-use too" \
	test "$("$IMGBLK" info --output=json "$D" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["format-specific"]["data"]["bitmaps"], sort_keys=True))')" = "$(bitmaps_json "$D")"
check_fails --status 1 "--clear of an in-use bitmap is refused" "$IMGBLK" bitmap --clear "$D" live
check_fails --status 1 "map --bitmap of an in-use bitmap is refused" \
	"$IMGBLK" map --bitmap live "$D"
check "writes still work, not tracked into it" "$IMGBLK" io -f qcow2 -c "write 1M 4k" "$D"
check "--remove is accepted" "$IMGBLK" bitmap --remove "$D" live
check "qemu-img check: clean after the remove" qemu-img check -q -f qcow2 "$D"
check "no bitmaps left, as QEMU sees it" test "$(bitmaps_json "$D")" = "[]"

# 5. Resize: the bitmaps follow the size, as QEMU's do.
R=$T_TMP/r.qcow2
R2=$T_TMP/r2.qcow2
qemu-img create -q -f qcow2 "$R" 16M
qemu-img bitmap --add "$R" g
qemu-io -f qcow2 -c "write 15M 1M" "$R" > /dev/null
cp "$R" "$R2"
check "imgblk resize with a bitmap" "$IMGBLK" resize -f qcow2 "$R" 40M
qemu-img resize -q -f qcow2 "$R2" 40M
for f in "$R" "$R2"; do qemu-io -f qcow2 -c "write 39M 4k" "$f" > /dev/null; done
check "qemu-img check: clean after the resize" qemu-img check -q -f qcow2 "$R"
same_dirty "after the resize: QEMU's extents" "$R" g "$R2" g

# 6. convert --bitmaps copies them, as qemu-img convert --bitmaps.
check "convert --bitmaps" "$IMGBLK" convert -O qcow2 --bitmaps "$B" "$T_TMP/cb.qcow2"
qemu-img convert -O qcow2 --bitmaps "$C" "$T_TMP/cq.qcow2"
check "the copy: qemu-img check clean" qemu-img check -q -f qcow2 "$T_TMP/cb.qcow2"
check "the copy: QEMU lists the same bitmaps as in its own copy" \
	test "$(bitmaps_json "$T_TMP/cb.qcow2")" = "$(bitmaps_json "$T_TMP/cq.qcow2")"
for name in n big m2; do
	same_dirty "the copy: bitmap $name as in QEMU's copy" "$T_TMP/cb.qcow2" "$name" \
		"$T_TMP/cq.qcow2" "$name"
done
cp "$B" "$T_TMP/bu.qcow2"
poke_inuse() {	# the first directory entry's flags: in_use | auto
	python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], "r+b")
d = f.read(65536)
pos = struct.unpack(">I", d[100:104])[0]
while True:
    t, l = struct.unpack(">II", d[pos:pos + 8])
    if t == 0x23852875:
        doff = struct.unpack(">Q", d[pos + 24:pos + 32])[0]
        break
    pos += 8 + (l + 7) // 8 * 8
f.seek(doff + 12)
f.write(struct.pack(">I", 3))
EOF
}
poke_inuse "$T_TMP/bu.qcow2"
check_fails --status 1 "convert --bitmaps refuses an in-use bitmap" \
	"$IMGBLK" convert -O qcow2 --bitmaps "$T_TMP/bu.qcow2" "$T_TMP/cu.qcow2"
check "--skip-broken-bitmaps leaves it out" \
	"$IMGBLK" convert -O qcow2 --bitmaps --skip-broken-bitmaps "$T_TMP/bu.qcow2" "$T_TMP/cu.qcow2"
qemu-img convert -O qcow2 --bitmaps --skip-broken-bitmaps "$T_TMP/bu.qcow2" "$T_TMP/cv.qcow2" 2> /dev/null
check "... as qemu-img does" \
	test "$(bitmaps_json "$T_TMP/cu.qcow2")" = "$(bitmaps_json "$T_TMP/cv.qcow2")"

# 7. commit writes into the base through the engine: its bitmap marks
#    what was committed, as QEMU's does.
for w in i q; do
	qemu-img create -q -f qcow2 "$T_TMP/base$w.qcow2" 16M
	qemu-img bitmap --add "$T_TMP/base$w.qcow2" cb
	qemu-img create -q -f qcow2 -b "base$w.qcow2" -F qcow2 "$T_TMP/top$w.qcow2"
	qemu-io -f qcow2 -c "write 1M 64k" -c "write 9M 200k" "$T_TMP/top$w.qcow2" > /dev/null
done
check "imgblk commit into a base with a bitmap" "$IMGBLK" commit -f qcow2 "$T_TMP/topi.qcow2"
qemu-img commit -q -f qcow2 "$T_TMP/topq.qcow2"
check "the base: qemu-img check clean" qemu-img check -q -f qcow2 "$T_TMP/basei.qcow2"
same_dirty "the base's bitmap marks the committed clusters, as QEMU's" \
	"$T_TMP/basei.qcow2" cb "$T_TMP/baseq.qcow2" cb

done_testing
