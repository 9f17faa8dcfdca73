#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-compress.sh - compressed clusters written by imgblk, against QEMU.
#
# Matrix: compression_type zlib/zstd x cluster size 512, 4k, 64k, 2M x
# refcount_bits 16 (and 1, where no host cluster can be shared).
#   imgblk -> QEMU: imgblk convert -c of an image holding compressible
#     patterns and one incompressible (random) megabyte: qemu-img compare
#     equals the source, qemu-img check is clean and counts compressed
#     clusters, qemu-img map shows the random megabyte stored plain (it
#     has a host offset), qemu-img info names the compression type, the
#     file is no larger than QEMU's own convert -c.
#   Guest writes into compressed clusters (imgblk io): partial and whole
#     clusters, then every cluster: qemu-img check clean (no leak: the
#     compressed bytes' references were dropped), content equals a raw
#     shadow.
#   QEMU -> imgblk: QEMU's convert -c read back by imgblk convert.
# Also: a size that is not a multiple of the cluster size, a backing
# chain as input, and -c with an output format that cannot compress.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3 numfmt

SIZE=8M
src=$T_TMP/src.qcow2
head -c 1M /dev/urandom > "$T_TMP/rnd"
truncate -s $SIZE "$T_TMP/src.raw"
qemu-io -f raw -c "write -P 0x5a 0 3M" -c "write -P 0x5b 5M 1M" -c "write -P 0x5c 6147k 3k" \
	"$T_TMP/src.raw" > /dev/null
# The random megabyte at 7M: incompressible, stored plain.
dd if="$T_TMP/rnd" of="$T_TMP/src.raw" bs=1M seek=7 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$T_TMP/src.raw" "$src"

# json_get FILE KEY: a top-level number from qemu-img's JSON.
json_get() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$1" "$2"; }
# map_ok IMG CS: compressed data has no offset, the random megabyte has one.
map_ok() {
	qemu-img map --output=json "$1" > "$T_TMP/map.json" || return 1
	python3 - "$T_TMP/map.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
comp = [e for e in m if e["data"] and "offset" not in e]
plain = [e for e in m if e["data"] and "offset" in e]
# Something compressed at 0, and 7M..8M stored plain.
assert any(e["start"] == 0 for e in comp), "first cluster not compressed"
cover = sum(min(e["start"] + e["length"], 8 << 20) - max(e["start"], 7 << 20)
            for e in plain if e["start"] + e["length"] > 7 << 20)
assert cover == 1 << 20, "random megabyte not stored plain: %d" % cover
EOF
}

# Guest writes over the compressed image: partial clusters, whole ones,
# ranges crossing host clusters that several compressed clusters share.
W=(-c "write -P 0x6a 1k 2k" -c "write -P 0x6b 64k 64k" -c "write -P 0x6c 100k 200k"
   -c "write -z 1M 512k" -c "discard 2M 2M" -c "write -P 0x6d 5M 4k"
   -c "write -P 0x6e 7M 8k")

run_case() {	# run_case NAME OPTS CS
	local name=$1 opts=$2 cs=$3 img=$T_TMP/c.qcow2 ct
	ct=${opts#*compression_type=}
	ct=${ct%%,*}
	rm -f "$img" "$T_TMP/q.qcow2"
	check "$name: imgblk convert -c" "$IMGBLK" convert -c -O qcow2 -o "$opts" "$src" "$img"
	check "$name: qemu-img compare equals the source" qemu-img compare -q "$src" "$img"
	qemu-img check --output=json "$img" > "$T_TMP/chk.json" 2> "$T_TMP/out"
	if [ $? = 0 ]; then ok "$name: qemu-img check clean"
	else not_ok "$name: qemu-img check clean"; diag_file "$T_TMP/out"; fi
	check "$name: qemu-img counts compressed clusters" \
		test "$(json_get "$T_TMP/chk.json" compressed-clusters)" -gt 0
	# With 2M clusters the random megabyte shares a cluster that does shrink.
	[ "$cs" = 2M ] ||
	check "$name: qemu-img map: compressed, incompressible megabyte plain" map_ok "$img"
	check "$name: qemu-img info names $ct" \
		sh -c "qemu-img info '$img' | grep -q 'compression type: $ct'"
	check "$name: imgblk check clean" "$IMGBLK" check -q "$img"
	qemu-img convert -c -O qcow2 -o "$opts" "$src" "$T_TMP/q.qcow2"
	# QEMU's file ends with the last compressed byte, ours at a cluster end.
	check "$name: no larger than QEMU's convert -c" \
		test "$(stat -c %s "$img")" -le $(( $(stat -c %s "$T_TMP/q.qcow2") + $(numfmt --from=iec "${cs^^}") ))
	check "$name: imgblk reads QEMU's compressed image" \
		sh -c "'$IMGBLK' convert -O raw '$T_TMP/q.qcow2' '$T_TMP/q.raw' && cmp '$T_TMP/q.raw' '$T_TMP/src.raw'"

	cp "$T_TMP/src.raw" "$T_TMP/w.raw"
	check "$name: imgblk writes into compressed clusters" "$IMGBLK" io -f qcow2 "${W[@]}" "$img"
	qemu-io -f raw "${W[@]//discard/write -z}" "$T_TMP/w.raw" > /dev/null
	check "$name: qemu-img check clean after the writes (no leaks)" qemu-img check -q "$img"
	check "$name: content equals the shadow" qemu-img compare -q -F raw "$img" "$T_TMP/w.raw"
	check "$name: overwrite every cluster" "$IMGBLK" io -f qcow2 -c "write -P 0x7f 0 $SIZE" "$img"
	qemu-img check --output=json "$img" > "$T_TMP/chk.json" 2> "$T_TMP/out"
	if [ $? = 0 ] && [ "$(json_get "$T_TMP/chk.json" compressed-clusters)" = 0 ]; then
		ok "$name: clean, nothing compressed left, no leaks"
	else not_ok "$name: clean, nothing compressed left, no leaks"; diag_file "$T_TMP/chk.json"; fi
	check "$name: QEMU reads the overwrite" qemu-io -f qcow2 -c "read -P 0x7f 0 $SIZE" "$img"
}

for ct in zlib zstd; do
	for cs in 512 4k 64k 2M; do
		run_case "$ct cs=$cs" "cluster_size=$cs,compression_type=$ct" $cs
	done
	run_case "$ct cs=4k refcount_bits=1" "cluster_size=4k,compression_type=$ct,refcount_bits=1" 4k
done

# A size that is not a multiple of the cluster size: the last cluster is partial.
qemu-img create -q -f qcow2 "$T_TMP/odd.qcow2" 1000k
qemu-io -f qcow2 -c "write -P 0x31 0 1000k" "$T_TMP/odd.qcow2" > /dev/null
check "partial last cluster: convert -c" \
	"$IMGBLK" convert -c -O qcow2 -o cluster_size=64k "$T_TMP/odd.qcow2" "$T_TMP/odd-c.qcow2"
check "partial last cluster: compare" qemu-img compare -q "$T_TMP/odd.qcow2" "$T_TMP/odd-c.qcow2"
check "partial last cluster: check clean" qemu-img check -q "$T_TMP/odd-c.qcow2"

# A backing chain as input: the whole guest view is compressed.
qemu-img create -q -f qcow2 -b "$src" -F qcow2 "$T_TMP/top.qcow2"
qemu-io -f qcow2 -c "write -P 0x41 2M 1M" "$T_TMP/top.qcow2" > /dev/null
check "backing chain: convert -c" "$IMGBLK" convert -c -O qcow2 "$T_TMP/top.qcow2" "$T_TMP/flat.qcow2"
check "backing chain: compare" qemu-img compare -q "$T_TMP/top.qcow2" "$T_TMP/flat.qcow2"
check "backing chain: no backing file in the output" \
	sh -c "! qemu-img info '$T_TMP/flat.qcow2' | grep -q 'backing file'"

# Formats that cannot hold compressed data say so.
"$IMGBLK" convert -c -O raw "$src" "$T_TMP/x.raw" > "$T_TMP/out" 2>&1
if [ $? != 0 ] && grep -q "compress" "$T_TMP/out"; then ok "convert -c -O raw is refused"
else not_ok "convert -c -O raw is refused"; diag_file "$T_TMP/out"; fi

done_testing
