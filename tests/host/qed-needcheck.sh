#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qed-needcheck.sh - the need-check protocol and check/repair.
#
# - A writer killed with SIGKILL mid-run leaves need-check set; a
#   read-write open repairs the image, clears the bit, and QEMU then finds
#   no corruption.
# - Crafted images: an invalid L2 or L1 entry with need-check set is
#   cleared on open (data lost, and said so); a duplicate reference cannot
#   be repaired: read-write opens are refused, read-only ones work.
# - imgblk check counts corruptions and leaks as qemu-img check does, with
#   its exit codes, before and after -r all.
# - A clean shutdown leaves the bit clear.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"
check_status() {	# check_status DESCRIPTION STATUS... -- CMD...: CMD exits with one of STATUS
	local d=$1 codes=() rc c
	shift
	while [ "$1" != -- ]; do codes+=("$1"); shift; done
	shift
	"$@" > "$T_TMP/out" 2>&1
	rc=$?
	for c in "${codes[@]}"; do
		if [ "$rc" = "$c" ]; then ok "$d"; return 0; fi
	done
	not_ok "$d"
	echo "# status $rc, expected ${codes[*]}: $*"
	diag_file "$T_TMP/out"
	return 1
}

need qemu-img

# set_need_check IMG: set QED_F_NEED_CHECK, as a writer that died would leave it.
set_need_check() { poke "$1" 16 '<Q' $(( $(peek "$1" 16 '<Q') | 2 )); }

# --- kill -9 of a writer ------------------------------------------------
IMG=$T_TMP/kill.qed
"$IMGBLK" create -f qed -o cluster_size=4k,table_size=4 "$IMG" 1G > /dev/null
killed=0
for count in 200000 2000000; do
	"$IMGBLK" bench -w -d 64 -s 4k -S 64k -c $count --pattern=165 "$IMG" > /dev/null 2>&1 &
	pid=$!
	sleep 1
	if kill -9 $pid 2> /dev/null; then
		wait $pid 2> /dev/null
		killed=1
		break
	fi
	wait $pid
done
if [ $killed = 1 ] && qed_needs_check "$IMG"; then
	ok "writer killed mid-run left need-check set"
	qemu-img check "$IMG" > "$T_TMP/before" 2>&1
	echo "# qemu-img check before repair: status $? ($(grep -c . "$T_TMP/before") lines)"
	check_status "read-write open repairs and succeeds" 0 -- "$IMGBLK" io -c 'read 0 4k' "$IMG"
	if qed_needs_check "$IMG"; then not_ok "need-check clear after repair"
	else ok "need-check clear after repair"; fi
	check_status "qemu-img check finds no corruption after repair (leaks allowed)" 0 3 -- \
		qemu-img check "$IMG"
	check_status "imgblk check agrees" 0 3 -- "$IMGBLK" check "$IMG"
	# What survived reads back as the pattern or as zeros, never garbage.
	"$IMGBLK" convert -O raw "$IMG" "$T_TMP/kill.raw" > /dev/null 2>&1
	if [ "$(tr -d '\000\245' < "$T_TMP/kill.raw" | head -c 1 | wc -c)" != 0 ]; then
		not_ok "repaired image holds only the pattern and zeros"
	else
		ok "repaired image holds only the pattern and zeros"
	fi
	rm -f "$T_TMP/kill.raw"
else
	not_ok "writer killed mid-run left need-check set (killed=$killed)"
fi
rm -f "$IMG"

# --- crafted images ---------------------------------------------------
# 64k clusters, table_size 4: L1 at 64k; data at guest 0 and 1M (L2 entry 16).
make_img() {
	rm -f "$1"
	"$IMGBLK" create -f qed "$1" 16M > /dev/null &&
	"$IMGBLK" io -c 'write -P 0x5a 0 64k' -c 'write -P 0x6b 1M 64k' "$1" > /dev/null
}
L1=65536
IMG=$T_TMP/img.qed
make_img "$IMG"
L2=$(peek "$IMG" $L1 '<Q')
if qed_needs_check "$IMG"; then not_ok "clean close leaves need-check clear"
else ok "clean close leaves need-check clear"; fi
check_status "fresh image checks clean in QEMU" 0 -- qemu-img check "$IMG"

# Invalid L2 entry (past EOF) with need-check: repaired on a read-write open.
poke "$IMG" $((L2 + 16 * 8)) '<Q' $((1 << 40))
set_need_check "$IMG"
cp "$IMG" "$T_TMP/copy.qed"
check_status "read-only open of a need-check image works, unrepaired" 0 -- \
	"$IMGBLK" io -r -c 'read -P 0x5a 0 64k' "$IMG"
if qed_needs_check "$IMG"; then ok "read-only open leaves need-check set"
else not_ok "read-only open leaves need-check set"; fi
"$IMGBLK" io -c 'read -P 0x5a 0 64k' -c 'read -P 0 1M 64k' "$IMG" > "$T_TMP/out" 2>&1
rc=$?
if [ $rc = 0 ] && grep -q 'lost' "$T_TMP/out"; then
	ok "invalid L2 entry repaired on read-write open, data loss reported"
else
	not_ok "invalid L2 entry repaired on read-write open, data loss reported"; diag_file "$T_TMP/out"
fi
if qed_needs_check "$IMG"; then not_ok "need-check clear after the repair"
else ok "need-check clear after the repair"; fi
check_status "qemu-img check: no corruption after the repair (one leak)" 3 -- qemu-img check "$IMG"

# check accounting against qemu-img on the same damage (need-check cleared
# so that QEMU opens it without repairing).
poke "$T_TMP/copy.qed" 16 '<Q' 0
qemu-img check --output=json "$T_TMP/copy.qed" > "$T_TMP/q.json" 2>&1
qrc=$?
"$IMGBLK" check --output=json "$T_TMP/copy.qed" > "$T_TMP/i.json" 2>&1
irc=$?
qc=$(grep -o '"corruptions": [0-9]*' "$T_TMP/q.json")
ic=$(grep -o '"corruptions": [0-9]*' "$T_TMP/i.json")
if [ $qrc = $irc ] && [ -n "$qc" ] && [ "$qc" = "$ic" ]; then
	ok "check of an invalid entry: status $irc and $ic, as qemu-img"
else
	not_ok "check of an invalid entry: status $irc/$qrc, '$ic'/'$qc'"
	diag_file "$T_TMP/i.json"; diag_file "$T_TMP/q.json"
fi
cp "$T_TMP/copy.qed" "$T_TMP/copy2.qed"
qemu-img check -r all "$T_TMP/copy.qed" > "$T_TMP/q.out" 2>&1
qrc=$?
"$IMGBLK" check -r all "$T_TMP/copy2.qed" > "$T_TMP/i.out" 2>&1
irc=$?
if [ $qrc = $irc ]; then ok "check -r all: status $irc, as qemu-img"
else not_ok "check -r all: status $irc, qemu-img $qrc"; diag_file "$T_TMP/i.out"; diag_file "$T_TMP/q.out"; fi
check_status "qemu-img check after imgblk check -r all: leaks only" 3 -- qemu-img check "$T_TMP/copy2.qed"
if cmp -s "$T_TMP/copy.qed" "$T_TMP/copy2.qed"; then ok "imgblk -r all repairs byte for byte as qemu-img"
else not_ok "imgblk -r all repairs byte for byte as qemu-img"; fi

# Invalid L1 entry (misaligned) with need-check.
make_img "$IMG"
poke "$IMG" $((L1 + 8)) '<Q' $((L2 + 512))
set_need_check "$IMG"
check_status "invalid L1 entry repaired on read-write open" 0 -- \
	"$IMGBLK" io -c 'read -P 0x5a 0 64k' -c "write -P 0x7c 8M 4k" -c "read -P 0x7c 8M 4k" "$IMG"
check_status "qemu-img check clean after the L1 repair" 0 -- qemu-img check "$IMG"

# Duplicate reference with need-check: cannot be repaired.
make_img "$IMG"
poke "$IMG" $((L2 + 16 * 8)) '<Q' "$(peek "$IMG" "$L2" '<Q')"
set_need_check "$IMG"
check_status "duplicate reference: read-write open refused" 1 -- \
	"$IMGBLK" io -c 'read 0 4k' "$IMG"
if grep -q 'cannot be repaired' "$T_TMP/out"; then ok "refusal says why"
else not_ok "refusal says why"; diag_file "$T_TMP/out"; fi
if qed_needs_check "$IMG"; then ok "need-check stays set"; else not_ok "need-check stays set"; fi
check_status "duplicate reference: read-only open reads" 0 -- \
	"$IMGBLK" io -r -c 'read -P 0x5a 0 64k' -c 'read -P 0x5a 1M 64k' "$IMG"
check_status "imgblk check reports the corruption" 2 -- "$IMGBLK" check "$IMG"
check_status "imgblk check -r all cannot repair it" 2 -- "$IMGBLK" check -r all "$IMG"
if qed_needs_check "$IMG"; then ok "need-check still set after a check with corruptions left"
else not_ok "need-check still set after a check with corruptions left"; fi
poke "$IMG" 16 '<Q' 0
check_status "qemu-img check agrees (2)" 2 -- qemu-img check "$IMG"

done_testing
