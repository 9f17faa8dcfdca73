#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-malformed.sh - broken qcow2 images: imgblk says why in one line on
# stderr and exits non-zero, within a time limit, without a crash (no
# signal exit).  Refusals that name a feature are checked by name.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io timeout

fresh() {	# fresh NAME [qemu-img create options]: a small image with data
	local f=$T_TMP/$1.qcow2
	shift
	qemu-img create -q -f qcow2 "$@" "$f" 4M &&
	qemu-io -f qcow2 -c "write -P 0x42 0 256k" "$f" > /dev/null
	echo "$f"
}

# refuse DESC REGEX CMD...: CMD fails (not by a signal) within 20 s, and its
# stderr matches REGEX.
refuse() {
	local d=$1 re=$2 rc
	shift 2
	timeout 20 "$@" > "$T_TMP/out" 2> "$T_TMP/err"
	rc=$?
	if [ $rc = 0 ]; then
		not_ok "$d"; echo "# succeeded but should have failed: $*"
	elif [ $rc = 124 ]; then
		not_ok "$d"; echo "# timed out: $*"
	elif [ $rc -ge 128 ]; then
		not_ok "$d"; echo "# killed by signal $((rc - 128)): $*"
	elif ! grep -qiE "$re" "$T_TMP/err"; then
		not_ok "$d"; echo "# stderr does not match /$re/:"; sed 's/^/#   /' "$T_TMP/err" | head -5
	else
		ok "$d"
	fi
}

READ=(io -f qcow2 -c "read 0 256k")
WRITE=(io -f qcow2 -c "write -P 1 0 64k")

f=$(fresh magic); poke "$f" 0 '>I' 0x12345678
refuse "bad magic" "not a qcow2" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh version); poke "$f" 4 '>I' 4
refuse "version 4" "version 4" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh cbits8); poke "$f" 20 '>I' 8
refuse "cluster_bits 8" "cluster size" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh cbits22); poke "$f" 20 '>I' 22
refuse "cluster_bits 22" "cluster size" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh l1eof); poke "$f" 40 '>Q' 0x40000000
refuse "L1 table past end of file" "L1 table" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh l1unaligned); poke "$f" 40 '>Q' 0x30200
refuse "L1 table unaligned" "L1 table" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh rteof); poke "$f" 48 '>Q' 0x40000000
refuse "refcount table past end of file" "refcount table" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh rtzero); poke "$f" 56 '>I' 0
refuse "refcount table of 0 clusters" "refcount table" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh l1small); poke "$f" 24 '>Q' $((1 << 40))
refuse "L1 too small for the size" "L1 table too small" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh rorder); poke "$f" 96 '>I' 7
refuse "refcount_order 7" "refcount order" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh hlen); poke "$f" 100 '>I' 100
refuse "header_length too short" "header" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh incompat); poke "$f" 72 '>Q' $((1 << 20))
refuse "unknown incompatible bit" "incompatible feature bit 20" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh crypt); poke "$f" 32 '>I' 1
refuse "encryption" "encrypt" "$IMGBLK" "${READ[@]}" "$f"
f=$(fresh corrupt); poke "$f" 72 '>Q' 2
refuse "corrupt bit on a read-write open" "corrupt" "$IMGBLK" "${WRITE[@]}" "$f"
if timeout 20 "$IMGBLK" io -r -f qcow2 -c "read -P 0x42 0 256k" "$f" > /dev/null 2>&1; then
	ok "corrupt image still reads read-only"; else not_ok "corrupt image still reads read-only"; fi
f=$(fresh ctype); poke "$f" 104 '>B' 1
refuse "compression type without its feature bit" "compression type" "$IMGBLK" "${READ[@]}" "$f"

# Reserved bits in an L2 entry: the read fails with a message, the image is marked corrupt.
f=$(fresh l2res)
l1=$(peek "$f" 40 '>Q')
l2=$(( $(peek "$f" $l1 '>Q') & 0x00fffffffffffe00 ))
poke "$f" $((l2 + 7)) '>B' $(( $(peek "$f" $((l2 + 7)) '>B') | 0x10 ))
refuse "reserved bits in an L2 entry" "reserved bits" "$IMGBLK" "${READ[@]}" "$f"

# A truncated file: the tables are gone.
f=$(fresh trunc); truncate -s 100k "$f"
refuse "truncated file" "past end of file|cannot|corrupt|refcount" "$IMGBLK" "${READ[@]}" "$f"
truncate -s 40 "$f"
refuse "file shorter than a header" "too short" "$IMGBLK" "${READ[@]}" "$f"

# Backing loop A -> B -> A.
qemu-img create -q -f qcow2 "$T_TMP/a.qcow2" 4M
qemu-img create -q -f qcow2 -u -b a.qcow2 -F qcow2 "$T_TMP/b.qcow2" 4M
qemu-img rebase -q -u -f qcow2 -b b.qcow2 -F qcow2 "$T_TMP/a.qcow2"
refuse "backing loop A -> B -> A" "loop" "$IMGBLK" "${READ[@]}" "$T_TMP/a.qcow2"
refuse "backing loop: check exits with an error" "loop" "$IMGBLK" check "$T_TMP/a.qcow2"
refuse "backing file missing" "backing file" "$IMGBLK" "${READ[@]}" \
	"$(qemu-img create -q -f qcow2 -u -b nothere.qcow2 -F qcow2 "$T_TMP/m.qcow2" 4M; echo "$T_TMP/m.qcow2")"

# Refcount overflow: with 1-bit refcounts a cluster referenced twice cannot be counted.
f=$(fresh ovf -o refcount_bits=1,cluster_size=4k)
l1=$(peek "$f" 40 '>Q')
l2=$(( $(peek "$f" $l1 '>Q') & 0x00fffffffffffe00 ))
poke "$f" $((l2 + 8)) '>Q' "$(peek "$f" $l2 '>Q')"
timeout 20 "$IMGBLK" check "$f" > "$T_TMP/out" 2> "$T_TMP/err"
rc=$?
if [ $rc = 2 ] && grep -q "overflow" "$T_TMP/err"; then ok "refcount overflow: check reports a corruption (exit 2)"
else not_ok "refcount overflow: check reports a corruption (exit 2)"; echo "# exit $rc"; head -3 "$T_TMP/err" | sed 's/^/#   /'; fi

# Leaks: imgblk check exits 3 like qemu-img and repairs them with -r leaks.
f=$(fresh leak)
rt=$(peek "$f" 48 '>Q')
rb=$(peek "$f" $rt '>Q')
poke "$f" $((rb + 2 * 3)) '>H' 2
timeout 20 "$IMGBLK" check "$f" > /dev/null 2>&1
rc=$?
[ $rc = 3 ] && ok "leaked cluster: check exits 3" || { not_ok "leaked cluster: check exits 3"; echo "# exit $rc"; }
timeout 20 "$IMGBLK" check -r leaks "$f" > /dev/null 2>&1
if qemu-img check -q "$f"; then ok "check -r leaks leaves the image clean for qemu-img"
else not_ok "check -r leaks leaves the image clean for qemu-img"; fi

# A corruption (refcount too low) repaired by -r all.
f=$(fresh low)
poke "$f" $((rb + 2 * 5)) '>H' 0
timeout 20 "$IMGBLK" check "$f" > /dev/null 2>&1
rc=$?
[ $rc = 2 ] && ok "refcount too low: check exits 2" || { not_ok "refcount too low: check exits 2"; echo "# exit $rc"; }
timeout 20 "$IMGBLK" check -r all "$f" > /dev/null 2>&1
if qemu-img check -q "$f"; then ok "check -r all leaves the image clean for qemu-img"
else not_ok "check -r all leaves the image clean for qemu-img"; qemu-img check "$f" 2>&1 | head -5 | sed 's/^/#   /'; fi

# A missing refcount block: only a rebuild can fix it.
f=$(fresh norb)
poke "$f" "$rt" '>Q' 0
timeout 20 "$IMGBLK" check -r all "$f" > /dev/null 2>&1
if qemu-img check -q "$f" && qemu-io -f qcow2 -c "read -P 0x42 0 256k" "$f" > /dev/null; then
	ok "missing refcount block: check -r all rebuilds the refcounts"
else not_ok "missing refcount block: check -r all rebuilds the refcounts"; fi

done_testing
