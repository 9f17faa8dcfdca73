#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-cache-errors.sh - the table caches after a refusal.  A damaged
# image whose refcounts give the header's cluster away used to have a new
# L2 table allocated at offset 0, which the cache also uses to mark an
# empty slot: the slot was linked twice and a later lookup spun forever
# on a hash chain that had become a cycle.  The allocation must be
# refused (the image marked corrupt, as QEMU does: "Preventing invalid
# allocation of L2 table at offset 0"), every command must return, and
# the header must stay as it was.  Each imgblk run is under a timeout so
# that a hang fails the test instead of stopping the suite.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io timeout cmp python3

REGRESS=$(dirname "$0")/../fuzz/regress/fuzz_qcow2/l2-cache-offset-zero-cycle
LIMIT=20

# run NAME CMD...: CMD under the timeout; exit status in $rc, output in
# $T_TMP/io.out and $T_TMP/err (check uses $T_TMP/check.out).
run() {
	local n=$1
	shift
	timeout "$LIMIT" "$@" > "$T_TMP/io.out" 2> "$T_TMP/err"
	rc=$?
	if [ $rc = 124 ]; then not_ok "$n: returns within ${LIMIT}s"; else ok "$n: returns"; fi
}

# The input fuzz_qcow2 found (its first 2560 bytes are the image, then
# the four commands below).  qemu-io 7.2 fails the write (the image is
# marked corrupt) and the reads after it, and exits 1.
f=$T_TMP/fuzz.qcow2
head -c 2560 "$REGRESS" > "$f"
cp "$f" "$T_TMP/orig.qcow2"
run "fuzz input" "$IMGBLK" io -f qcow2 -c "read 0 512" -c "write -P 0x33 768000 1536" \
	-c "read 46080 102400" -c "read 512000 131072" "$f"
if [ $rc = 1 ]; then ok "fuzz input: exit 1, as qemu-io"
else not_ok "fuzz input: exit 1, as qemu-io"; echo "# exit $rc"; diag_file "$T_TMP/err"; fi
check "fuzz input: the write is refused as an L2 table at offset 0" \
	grep -q "L2 table at offset 0" "$T_TMP/err"
check "fuzz input: the reads after it ran" grep -q "read 131072/131072 bytes at offset 512000" "$T_TMP/io.out"
check "fuzz input: header cluster unchanged" cmp -n 512 "$f" "$T_TMP/orig.qcow2"
cp "$T_TMP/orig.qcow2" "$T_TMP/q.qcow2"
timeout "$LIMIT" qemu-io -f qcow2 -c "read 0 512" -c "write -P 0x33 768000 1536" \
	-c "read 46080 102400" -c "read 512000 131072" "$T_TMP/q.qcow2" > /dev/null 2>&1
qrc=$?
if [ $qrc = $rc ]; then ok "fuzz input: qemu-io exits $qrc too"
else not_ok "fuzz input: qemu-io exits as imgblk"; echo "# qemu-io $qrc, imgblk $rc"; fi
run "fuzz input: check" "$IMGBLK" check "$f"

# The same from a clean image: cluster 0's refcount set to 0, so the
# first allocation (an L2 table for guest offset 0) is handed cluster 0.
# Then more allocations and reads, which all go through the L2 cache,
# and a flush.
f=$T_TMP/hdr.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 "$f" 1M
rb=$(peek "$f" "$(peek "$f" 48 '>Q')" '>Q')
poke "$f" "$rb" '>H' 0
cp "$f" "$T_TMP/orig.qcow2"
run "header refcount 0" "$IMGBLK" io -f qcow2 -c "write -P 0x11 0 4k" -c "read 0 4k" \
	-c "write -P 0x22 64k 4k" -c "read 32k 64k" -c "read 0 1M" -c flush "$f"
check "header refcount 0: the allocation is refused" grep -q "L2 table at offset 0" "$T_TMP/err"
check "header refcount 0: header unchanged up to the feature bits" cmp -n 72 "$f" "$T_TMP/orig.qcow2"
check "header refcount 0: and past them" cmp -n 432 -i 80:80 "$f" "$T_TMP/orig.qcow2"
if [ "$(qcow2_incompat "$f")" = 2 ]; then ok "header refcount 0: corrupt bit set"
else not_ok "header refcount 0: corrupt bit set"; echo "# incompatible $(qcow2_incompat "$f")"; fi
run "header refcount 0: read-only open" "$IMGBLK" io -r -c "read -P 0 0 1M" "$f"
if [ $rc = 0 ]; then ok "header refcount 0: reads zeros"
else not_ok "header refcount 0: reads zeros"; diag_file "$T_TMP/err"; fi
done_testing
