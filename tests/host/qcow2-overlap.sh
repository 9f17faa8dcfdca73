#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-overlap.sh - metadata overlap checks.  An image whose L2 entry
# (COPIED kept) names its own metadata, or whose refcounts hand out a
# metadata cluster, must not get that metadata overwritten: the write
# fails, the metadata bytes stay as they were, the image is marked
# corrupt (qemu-img info says so), later read-write opens are refused,
# read-only opens still read, and check -r all repairs it and clears the
# bit where qemu-img check -r all does.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io python3 cmp

# meta FILE WHAT [GUEST_CLUSTER]: "offset length" of a structure: header,
# l1, rt, rb (the first refcount block), l2 (the table mapping
# GUEST_CLUSTER), snap (the snapshot table), snapl1 (the first snapshot's L1).
meta() {
	python3 - "$@" <<'EOF'
import struct, sys
f, what = sys.argv[1], sys.argv[2]
gc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
d = open(f, "rb").read()
cs = 1 << struct.unpack_from(">I", d, 20)[0]
l1_size, l1 = struct.unpack_from(">IQ", d, 36)
rt, rtc, nsnap, snap = struct.unpack_from(">QIIQ", d, 48)
mask = 0x00fffffffffffe00
r = {
    "header": (0, cs),
    "l1": (l1, (l1_size * 8 + cs - 1) // cs * cs),
    "rt": (rt, rtc * cs),
    "rb": (struct.unpack_from(">Q", d, rt)[0], cs),
    "l2": (struct.unpack_from(">Q", d, l1 + 8 * (gc // (cs // 8)))[0] & mask, cs),
    "snap": (snap, cs),
    "snapl1": (struct.unpack_from(">Q", d, snap)[0] if nsnap else 0, cs),
}[what]
print(r[0], r[1])
EOF
}

# l2_point FILE GUEST_CLUSTER HOST: the guest cluster's L2 entry := HOST | COPIED.
l2_point() {
	local l2
	read -r l2 _ < <(meta "$1" l2 "$2")
	poke "$1" $((l2 + 8 * ($2 % 8192))) '>Q' $(($3 | (1 << 63)))
}

# same_bytes A B OFFSET LENGTH: the range is identical in both files.
same_bytes() { cmp -n "$4" -i "$3:$3" "$1" "$2"; }

qemu_corrupt() { qemu-img info "$1" | grep -q "corrupt: true"; }
not_qemu_corrupt() { qemu-img info "$1" | grep -q "corrupt: false"; }
io_err() { "$IMGBLK" io "$@" 2> "$T_TMP/err" > /dev/null; }

# An image with data in guest clusters 0 and 16 (1 MiB, pattern 0x22),
# 64 KiB clusters.  With "snap": a snapshot, then data in guest cluster 32.
base() {
	local f=$T_TMP/$1.qcow2
	qemu-img create -q -f qcow2 "$f" 64M &&
	qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -P 0x22 1M 64k" "$f" > /dev/null
	if [ "${2:-}" = snap ]; then
		qemu-img snapshot -c s1 "$f" &&
		qemu-io -f qcow2 -c "write -P 0x33 2M 64k" "$f" > /dev/null
	fi
	echo "$f"
}

# after_refusal NAME FILE ORIG OFF LEN: what every refused image must show.
after_refusal() {
	local n=$1 f=$2 o=$3 off=$4 len=$5 rc
	check "$n: $(printf '%#x+%#x' "$off" "$len") unchanged" same_bytes "$f" "$o" "$off" "$len"
	if [ "$(qcow2_incompat "$f")" = 2 ]; then ok "$n: corrupt bit (and only it) set on disk"
	else not_ok "$n: corrupt bit set on disk"; echo "# incompatible features $(qcow2_incompat "$f")"; fi
	check "$n: qemu-img info says corrupt: true" qemu_corrupt "$f"
	check "$n: imgblk info says corrupt: true" \
		bash -c "'$IMGBLK' info --output=json '$f' | grep -q '\"corrupt\": true'"
	qemu-img check "$f" > /dev/null 2>&1
	rc=$?
	if [ $rc = 2 ]; then ok "$n: qemu-img check: exit 2 (corruptions)"
	else not_ok "$n: qemu-img check: exit 2"; echo "# exit $rc"; fi
	if io_err -c "write -P 0xab 1M 4k" "$f"; then not_ok "$n: second read-write open refused"
	elif grep -q "marked corrupt" "$T_TMP/err"; then ok "$n: second read-write open refused"
	else not_ok "$n: second read-write open refused"; diag_file "$T_TMP/err"; fi
	check "$n: read-only open reads other clusters" \
		"$IMGBLK" io -r -c "read -P 0x22 1M 64k" "$f"
	# The repair, side by side with qemu-img's on a copy.
	cp "$f" "$T_TMP/q.qcow2"
	qemu-img check -r all "$T_TMP/q.qcow2" > /dev/null 2>&1
	rc=$?
	"$IMGBLK" check -r all "$f" > /dev/null 2>&1
	if [ $? = $rc ]; then ok "$n: check -r all exits $rc as qemu-img's"
	else not_ok "$n: check -r all exits $rc as qemu-img's"; fi
	if not_qemu_corrupt "$T_TMP/q.qcow2"; then
		check "$n: check -r all cleared the corrupt bit (as qemu-img)" not_qemu_corrupt "$f"
		check "$n: repaired image reads as qemu-img's repair" qemu-img compare "$f" "$T_TMP/q.qcow2"
		check "$n: repaired image takes the write" io_err -c "write -P 0xab 0 4k" \
			-c "read -P 0xab 0 4k" -c "read -P 0x22 1M 64k" "$f"
		# l2: the repair leaves the table at refcount 2 (it mapped
		# itself) over data at refcount 1; our copy of a shared table
		# clears every COPIED, QEMU's keeps them, and qemu-img check
		# then counts the cleared flag of the 1 MiB cluster.
		[ "$n" = l2 ] || check "$n: and checks clean" qemu-img check "$f"
	else
		check "$n: check -r all kept the corrupt bit (as qemu-img)" qemu_corrupt "$f"
	fi
}

# L2 entry of guest cluster 0 (or 32 with a snapshot) onto each structure.
for w in l1 rt rb l2 snap snapl1; do
	case $w in snap*) f=$(base "$w" snap); gc=32 ;; *) f=$(base "$w"); gc=0 ;; esac
	read -r off len < <(meta "$f" "$w" $gc)
	l2_point "$f" $gc "$off"
	cp "$f" "$T_TMP/orig.qcow2"
	if io_err -c "write -P 0xab $((gc * 65536)) 4k" "$f"; then
		not_ok "$w: guest write onto the metadata fails"
	elif grep -qE "corrupt: .*over .*at $(printf '%#x' "$off")" "$T_TMP/err"; then
		ok "$w: guest write onto the metadata fails, naming it ($(sed 's/.*over //; s/;.*//' "$T_TMP/err" | head -1))"
	else
		not_ok "$w: guest write fails naming the structure"; diag_file "$T_TMP/err"
	fi
	after_refusal "$w" "$f" "$T_TMP/orig.qcow2" "$off" "$len"
done

# A lying refcount: cluster 0 (the header) at refcount 0 is handed out to
# an allocating write.  Everything but the corrupt bit's byte stays.
f=$(base header)
read -r rb _ < <(meta "$f" rb)
poke "$f" "$rb" '>H' 0
cp "$f" "$T_TMP/orig.qcow2"
if io_err -c "write -P 0xab 4M 64k" "$f"; then not_ok "header: allocating write onto the header fails"
elif grep -q "over the header" "$T_TMP/err"; then ok "header: allocating write onto the header fails"
else not_ok "header: allocating write fails naming the header"; diag_file "$T_TMP/err"; fi
check "header: bytes 0-71 unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" 0 72
check "header: bytes 80-64K unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" 80 $((65536 - 80))
check "header: qemu-img info says corrupt: true" qemu_corrupt "$f"
check "header: read-only open reads" "$IMGBLK" io -r -c "read -P 0x22 1M 64k" "$f"

# Discarding a data entry that names an L2 table would drop the table's
# refcount to 0 and punch it out of the file: refused the same way.
f=$(base discard)
read -r off len < <(meta "$f" l2 0)
l2_point "$f" 16 "$off"
cp "$f" "$T_TMP/orig.qcow2"
if io_err -c "discard 1M 64k" -c flush "$f"; then not_ok "discard: releasing an L2 table fails"
elif grep -q "over an active L2 table" "$T_TMP/err"; then ok "discard: releasing an L2 table fails"
else not_ok "discard: releasing an L2 table fails naming it"; diag_file "$T_TMP/err"; fi
# Entry 16 itself is cleared in that table, as the discard asks; the rest stays.
check "discard: the L2 table's other entries unchanged" bash -c "cmp -n 128 -i $off:$off '$f' '$T_TMP/orig.qcow2' &&
	cmp -n $((len - 136)) -i $((off + 136)):$((off + 136)) '$f' '$T_TMP/orig.qcow2'"
check "discard: the L2 table's cluster still allocated" \
	bash -c "qemu-img map --output=json '$f' | grep -q '\"start\": 0, .*\"data\": true'"
check "discard: qemu-img info says corrupt: true" qemu_corrupt "$f"

# Metadata writes are checked too: an L1 entry naming the refcount table
# makes the L2 write-back land there.  The flush fails, nothing is written.
f=$T_TMP/l1rt.qcow2
qemu-img create -q -f qcow2 "$f" 1G
qemu-io -f qcow2 -c "write -P 0x22 1M 64k" -c "write -P 0x44 512M 64k" "$f" > /dev/null
read -r off len < <(meta "$f" rt)
read -r l1 _ < <(meta "$f" l1)
poke "$f" $((l1 + 8)) '>Q' $((off | (1 << 63)))
cp "$f" "$T_TMP/orig.qcow2"
if io_err -c "write -P 0xab 512M 4k" -c flush "$f"; then not_ok "L2 write-back onto the refcount table fails"
elif grep -q "over the refcount table" "$T_TMP/err"; then ok "L2 write-back onto the refcount table fails"
else not_ok "L2 write-back fails naming the refcount table"; diag_file "$T_TMP/err"; fi
check "L2 write-back: refcount table unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" "$off" "$len"
check "L2 write-back: qemu-img info says corrupt: true" qemu_corrupt "$f"

# v2 has no corrupt bit: the write is refused, the open image refuses
# more, and the next open is read-write again (as QEMU: nothing to record).
f=$T_TMP/v2.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 "$f" 64M
qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -P 0x22 1M 64k" "$f" > /dev/null
read -r off len < <(meta "$f" l1)
l2_point "$f" 0 "$off"
cp "$f" "$T_TMP/orig.qcow2"
check_fails "v2: guest write onto the L1 fails" "$IMGBLK" io -c "write -P 0xab 0 4k" "$f"
check "v2: L1 unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" "$off" "$len"
check_fails "v2: later writes of that open fail" "$IMGBLK" io -c "write -P 0xab 0 4k" \
	-c "write -P 0xab 1M 4k" "$f"
check "v2: header unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" 0 65536

# With an external data file guest data cannot meet metadata: the same
# entry sends it to the data file, and the write succeeds.
f=$T_TMP/df.qcow2
qemu-img create -q -f qcow2 -o data_file="$T_TMP/df.raw" "$f" 64M
qemu-io -f qcow2 -c "write -P 0x11 0 64k" "$f" > /dev/null
read -r off len < <(meta "$f" l1)
l2_point "$f" 0 "$off"
cp "$f" "$T_TMP/orig.qcow2"
check "data file: the write goes to the data file" "$IMGBLK" io -c "write -P 0xab 0 4k" \
	-c "read -P 0xab 0 4k" "$f"
check "data file: image metadata unchanged" same_bytes "$f" "$T_TMP/orig.qcow2" 0 "$(stat -c %s "$T_TMP/orig.qcow2")"
check "data file: not marked corrupt" not_qemu_corrupt "$f"

# Normal images never trip it: refcount table growth (512-byte
# clusters), discard, snapshots, shared tables, resize, compression.
f=$T_TMP/small.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 "$f" 64M
check "normal: many allocations with small clusters" "$IMGBLK" io \
	-c "write -P 1 0 4M" -c "write -P 2 8M 1M" -c "discard 1M 1M" -c flush "$f"
check "normal: small clusters check clean" qemu-img check "$f"
f=$T_TMP/normal.qcow2
qemu-img create -q -f qcow2 "$f" 64M
check "normal: writes and discards" "$IMGBLK" io \
	-c "write -P 1 0 4M" -c "write -P 2 8M 1M" -c "discard 1M 1M" -c flush "$f"
check "normal: snapshot, then writes to shared tables" bash -c \
	"qemu-img snapshot -c s1 '$f' && '$IMGBLK' io -c 'write -P 3 0 2M' -c 'write -P 4 32M 64k' -c flush '$f'"
check "normal: resize, then writes past the old end" bash -c \
	"'$IMGBLK' resize '$f' 1G && '$IMGBLK' io -c 'write -P 5 900M 1M' -c flush '$f'"
check "normal: qemu-img check clean" qemu-img check "$f"
check "normal: not marked corrupt" not_qemu_corrupt "$f"
check "normal: compressed convert" bash -c \
	"'$IMGBLK' convert -c -O qcow2 '$f' '$T_TMP/c.qcow2' && qemu-img check '$T_TMP/c.qcow2' && qemu-img compare '$f' '$T_TMP/c.qcow2'"

done_testing
