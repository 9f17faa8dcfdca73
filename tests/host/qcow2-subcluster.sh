#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-subcluster.sh - extended L2 entries (subclusters) against QEMU.
#
# - create -o extended_l2=on: incompatible bit 4, QEMU's default cluster
#   size (64k in QEMU 7.2), refused below 16k; qemu-img and imgblk info
#   say "extended l2: true".
# - QEMU writes at subcluster granularity (data, zeros, discards; with
#   and without a backing file): imgblk reads the same bytes and maps the
#   same allocation, subcluster by subcluster, as qemu-img map.
# - imgblk writes random sub-cluster ranges mirrored on a raw shadow:
#   qemu-img check clean, QEMU reads the shadow's bytes, maps agree.
# - A write into a cluster allocates only the subclusters it touches,
#   in the cluster's own host cluster, with COW of the edge subcluster
#   from the backing file only.
# - Writes to a cluster shared with a snapshot, or compressed, copy it.
# - check: a subcluster both allocated and zero, or allocated bits on an
#   unallocated cluster, are corruptions for imgblk as for qemu-img.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3 cmp

SEED=${SEED:-$RANDOM}
RANDOM=$SEED
echo "# SEED=$SEED"
SIZE=$((4 << 20))

# Both views of an image equal: QEMU's and imgblk's raw conversions.
same_content() {
	qemu-img convert -O raw "$1" "$T_TMP/qview.raw" &&
	"$IMGBLK" convert -O raw "$1" "$T_TMP/iview.raw" &&
	cmp "$T_TMP/qview.raw" "$T_TMP/iview.raw"
}
# qemu-img map and imgblk map agree on every 512-byte sector: depth,
# present, zero, data, and the host offset where one is given.
same_map() {
	qemu-img map --output=json "$1" > "$T_TMP/qmap.json" &&
	"$IMGBLK" map --output=json "$1" > "$T_TMP/imap.json" &&
	python3 - "$T_TMP/qmap.json" "$T_TMP/imap.json" <<'EOF'
import json, sys
def expand(path):
    out = {}
    for e in json.load(open(path)):
        for s in range(e["start"], e["start"] + e["length"], 512):
            off = e.get("offset")
            out[s] = (e["depth"], e["present"], e["zero"], e["data"],
                      None if off is None else off + s - e["start"])
    return out
q, i = expand(sys.argv[1]), expand(sys.argv[2])
bad = [s for s in sorted(set(q) | set(i)) if q.get(s) != i.get(s)]
for s in bad[:5]:
    print("sector at %d: qemu %s imgblk %s" % (s, q.get(s), i.get(s)))
sys.exit(1 if bad else 0)
EOF
}

# ---- create ----
img=$T_TMP/c.qcow2
"$IMGBLK" create -q -f qcow2 -o extended_l2=on "$img" 4M
check "create: qemu-img info says extended l2" \
	sh -c "qemu-img info '$img' | grep -q 'extended l2: true'"
check "create: default cluster size 64k, as QEMU 7.2's" \
	sh -c "qemu-img info '$img' | grep -q 'cluster_size: 65536'"
check "create: imgblk info says extended l2" \
	sh -c "'$IMGBLK' info '$img' | grep -q 'extended l2: true'"
check "create: qemu-img check clean" qemu-img check "$img"
if "$IMGBLK" create -q -f qcow2 -o extended_l2=on,cluster_size=8k "$T_TMP/x.qcow2" 4M \
	2> /dev/null; then
	not_ok "create: extended_l2 with 8k clusters refused"
else
	ok "create: extended_l2 with 8k clusters refused"
fi
"$IMGBLK" create -q -f qcow2 -o extended_l2=on,preallocation=metadata "$T_TMP/p.qcow2" 4M
check "create: preallocation=metadata: qemu-img check clean" qemu-img check "$T_TMP/p.qcow2"
check "create: preallocation=metadata: maps agree" same_map "$T_TMP/p.qcow2"

# ---- QEMU writes, imgblk reads ----
qemu-img create -q -f raw "$T_TMP/base.raw" 4M
qio raw "$T_TMP/base.raw" "write -P 0x11 0 4M"
QOPS=("write -P 0xa1 2k 1k" "write -z 8k 4k" "write -P 0xa2 60k 8k" "discard 128k 64k"
      "write -z 256k 2k" "write -P 0xa3 300k 100k" "write -P 0xa4 1M 512"
      "write -z 1M 64k" "write -P 0xa5 1028k 1k" "discard 2M 8k" "write -P 0xa6 3M 1M")
for cs in 16k 64k; do
	for bk in none raw; do
		img=$T_TMP/q-$cs-$bk.qcow2
		if [ $bk = none ]; then
			qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=$cs "$img" 4M
		else
			qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=$cs \
				-b "$T_TMP/base.raw" -F raw "$img"
		fi
		qio qcow2 "$img" "${QOPS[@]}"
		check "QEMU-written $cs, backing $bk: imgblk reads the same bytes" \
			same_content "$img"
		check "QEMU-written $cs, backing $bk: maps agree per subcluster" same_map "$img"
	done
done

# ---- imgblk writes (random, mirrored on a shadow), QEMU reads ----
# One random op: offsets and lengths in 512-byte sectors, up to 3 clusters.
rand_ops() {	# rand_ops N CLUSTER_BYTES: fills OPS and SHADOW_OPS
	local n=$1 cb=$2 sc=$(($2 / 32)) i off len r a b
	OPS=()
	SHADOW_OPS=()
	for ((i = 0; i < n; i++)); do
		len=$(( (RANDOM % (3 * cb / 512) + 1) * 512 ))
		off=$(( (RANDOM * 32768 + RANDOM) % ((SIZE - len) / 512) * 512 ))
		r=$((RANDOM % 10))
		if [ $r -lt 7 ]; then
			OPS+=("write -P $((RANDOM % 255 + 1)) $off $len")
			SHADOW_OPS+=("${OPS[-1]}")
		elif [ $r -lt 9 ]; then
			OPS+=("write -z $off $len")
			SHADOW_OPS+=("${OPS[-1]}")
		else
			OPS+=("discard $off $len")
			# Whole subclusters read as zeros afterwards, the rest is kept.
			a=$(( (off + sc - 1) / sc * sc ))
			b=$(( (off + len) / sc * sc ))
			[ $b -gt $a ] && SHADOW_OPS+=("write -z $a $((b - a))")
		fi
	done
}
for cs in 16k 64k; do
	cb=$(( ${cs%k} * 1024 ))
	for bk in none raw; do
		img=$T_TMP/i-$cs-$bk.qcow2
		if [ $bk = none ]; then
			"$IMGBLK" create -q -f qcow2 -o extended_l2=on,cluster_size=$cs "$img" 4M
			qemu-img create -q -f raw "$T_TMP/shadow.raw" 4M
		else
			"$IMGBLK" create -q -f qcow2 -o extended_l2=on,cluster_size=$cs \
				-b "$T_TMP/base.raw" -F raw "$img" 4M
			cp "$T_TMP/base.raw" "$T_TMP/shadow.raw"
		fi
		for round in 1 2; do
			rand_ops 40 $cb
			iio qcow2 "$img" "${OPS[@]}" || echo "# imgblk io failed (SEED=$SEED)"
			qio raw "$T_TMP/shadow.raw" "${SHADOW_OPS[@]}"
		done
		check "imgblk-written $cs, backing $bk: qemu-img check clean" qemu-img check "$img"
		check "imgblk-written $cs, backing $bk: QEMU reads the shadow's bytes" \
			qemu-img compare "$img" "$T_TMP/shadow.raw"
		check "imgblk-written $cs, backing $bk: imgblk reads the shadow's bytes" \
			"$IMGBLK" convert -O raw "$img" "$T_TMP/iview.raw"
		check "imgblk-written $cs, backing $bk: ... identical" \
			cmp "$T_TMP/iview.raw" "$T_TMP/shadow.raw"
		check "imgblk-written $cs, backing $bk: maps agree per subcluster" same_map "$img"
	done
done

# ---- only the touched subclusters are allocated ----
img=$T_TMP/t.qcow2
"$IMGBLK" create -q -f qcow2 -o extended_l2=on -b "$T_TMP/base.raw" -F raw "$img" 4M
iio qcow2 "$img" "write -P 0x22 2560 1k" "write -P 0x33 32k 2k" "write -P 0x44 64k 64k"
qemu-img map --output=json "$img" > "$T_TMP/map.json"
check "partial write: one subcluster allocated, COW from the backing file" python3 - \
	"$T_TMP/map.json" <<'EOF'
import json, sys
m = {(e["start"], e["length"]): e for e in json.load(open(sys.argv[1]))}
a = m[(2048, 2048)]; b = m[(32768, 2048)]; c = m[(65536, 65536)]
assert a["depth"] == 0 and a["data"] and b["depth"] == 0 and b["data"]
assert m[(0, 2048)]["depth"] == 1 and m[(4096, 28672)]["depth"] == 1
assert m[(34816, 30720)]["depth"] == 1
# The second write went into the same host cluster, just its subcluster.
assert b["offset"] == a["offset"] - 2048 + 32768
assert c["depth"] == 0 and c["offset"] == a["offset"] - 2048 + 65536
EOF
check "partial write: content right" qio qcow2 "$img" "read -P 0x11 0 2560" \
	"read -P 0x22 2560 1k" "read -P 0x11 3584 29184" "read -P 0x33 32k 2k" \
	"read -P 0x11 34k 30k" "read -P 0x44 64k 64k"
check "partial write: qemu-img check clean, two data clusters" \
	sh -c "qemu-img check '$img' | grep -q '^2/64 = '"

# ---- shared with a snapshot, compressed ----
img=$T_TMP/s.qcow2
"$IMGBLK" create -q -f qcow2 -o extended_l2=on,cluster_size=16k "$img" 4M
iio qcow2 "$img" "write -P 0x55 0 64k" "write -z 4k 2k"
"$IMGBLK" snapshot -q -c s1 "$img"
iio qcow2 "$img" "write -P 0x66 1k 1k" "write -P 0x67 20k 512" "write -P 0x68 40k 10k"
check "snapshot: qemu-img check clean after COW of shared clusters" qemu-img check "$img"
check "snapshot: the active layer reads right (QEMU)" qio qcow2 "$img" \
	"read -P 0x55 0 1k" "read -P 0x66 1k 1k" "read -P 0x55 2k 2k" "read -P 0 4k 2k" \
	"read -P 0x55 6k 14k" "read -P 0x67 20k 512" "read -P 0x68 40k 10k" \
	"read -P 0x55 50k 14k"
qemu-img convert -l snapshot.name=s1 -O raw "$img" "$T_TMP/s1.raw"
check "snapshot: the snapshot kept its bytes" qio raw "$T_TMP/s1.raw" \
	"read -P 0x55 0 4k" "read -P 0 4k 2k" "read -P 0x55 6k 58k"
python3 -c "import os; open('$T_TMP/rnd.raw','wb').write(bytes(range(256)) * 4096 + os.urandom(1 << 20))"
"$IMGBLK" convert -q -c -O qcow2 -o extended_l2=on,cluster_size=16k "$T_TMP/rnd.raw" "$img" 2>/dev/null ||
	"$IMGBLK" convert -c -O qcow2 -o extended_l2=on,cluster_size=16k "$T_TMP/rnd.raw" "$img" > /dev/null
cp "$T_TMP/rnd.raw" "$T_TMP/shadow.raw"
OPS=("write -P 0x77 5k 1k" "write -z 16k 4k" "discard 40k 8k" "write -P 0x78 100k 30k")
iio qcow2 "$img" "${OPS[@]}"
qio raw "$T_TMP/shadow.raw" "write -P 0x77 5k 1k" "write -z 16k 4k" "write -P 0x78 100k 30k"
check "compressed: qemu-img check clean after sub-cluster writes" qemu-img check "$img"
check "compressed: QEMU reads the shadow's bytes" qemu-img compare "$img" "$T_TMP/shadow.raw"

# ---- check: invalid bitmaps are corruptions ----
# set_bitmap IMG GUEST_CLUSTER BITMAP: sets the bitmap of the cluster's entry.
set_bitmap() {
	python3 - "$@" <<'EOF'
import struct, sys
path, gc, bm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
f = open(path, "r+b")
h = f.read(72)
cb = struct.unpack(">I", h[20:24])[0]
l1 = struct.unpack(">Q", h[40:48])[0]
f.seek(l1)
l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + gc * 16 + 8)
f.write(struct.pack(">Q", bm))
EOF
}
for what in both-bits unallocated; do
	img=$T_TMP/k-$what.qcow2
	qemu-img create -q -f qcow2 -o extended_l2=on "$img" 4M
	qio qcow2 "$img" "write -P 0x11 0 4k"
	if [ $what = both-bits ]; then set_bitmap "$img" 0 0x100000001; else set_bitmap "$img" 1 0x4; fi
	"$IMGBLK" check "$img" > /dev/null 2>&1
	rc=$?
	qemu-img check "$img" > /dev/null 2>&1
	qrc=$?
	check "check: $what bitmap is a corruption (imgblk $rc, qemu-img $qrc)" \
		test "$rc" = 2 -a "$qrc" = 2
	off=$([ $what = both-bits ] && echo 0 || echo 64k)
	if "$IMGBLK" io -r -f qcow2 -c "read $off 4k" "$img" > /dev/null 2>&1; then
		not_ok "check: $what bitmap: a read there fails"
	else
		ok "check: $what bitmap: a read there fails"
	fi
done

done_testing
