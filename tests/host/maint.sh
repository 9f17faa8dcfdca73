#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# maint.sh - resize and rebase -u, judged by qemu-img: QED grows within
# its tables and never shrinks, raw grows and shrinks only with --shrink,
# and rebase -u renames the backing file (even a missing one) so that
# QEMU reads the same data through the new one.
set -uo pipefail
IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io
cd "$T_TMP" || exit 1
I=$IMGBLK
case $I in /*) ;; *) I=$OLDPWD/$I ;; esac

# QED resize.  table_size=1 images: QEMU 7.2 cannot open them, so their
# size is what imgblk info says.
qemu-img create -q -f qed -o cluster_size=4k,table_size=1 q.qed 1M
check "qed: grow to 64M" "$I" resize -q q.qed 64M
[ "$(vsize q.qed "$I")" = $((64 << 20)) ] && ok "qed: reopened, it is 64 MiB" || not_ok "qed: reopened, it is 64 MiB"
check "qed: grow by +1M" "$I" resize -q q.qed +1M
[ "$(vsize q.qed "$I")" = $((65 << 20)) ] && ok "qed: reopened, it is 65 MiB" || not_ok "qed: reopened, it is 65 MiB"
# 4k clusters, one-cluster tables: 512 * 512 * 4k = 1 GiB at most.
check_fails "qed: beyond what the tables map is refused" "$I" resize -q q.qed 2G
check_fails "qed: shrinking is refused" "$I" resize -q --shrink q.qed 1M
check "qed: still checks clean" "$I" check q.qed
qemu-img create -q -f qed q2.qed 16M
qemu-io -f qed -c 'write -P 0x33 15M 1M' q2.qed >/dev/null
check "qed (QEMU's): grow" "$I" resize -q q2.qed 32M
[ "$(vsize q2.qed)" = $((32 << 20)) ] &&
	ok "qed (QEMU's): qemu-img sees 32 MiB" || not_ok "qed (QEMU's): qemu-img sees 32 MiB"
check "qed (QEMU's): data kept, the new end reads zeros" \
	qemu-io -f qed -c 'read -P 0x33 15M 1M' -c 'read -P 0 16M 16M' q2.qed
check "qed (QEMU's): qemu-img check clean" qemu-img check q2.qed

# raw resize.
qemu-img create -q -f raw r.raw 8M
check "raw: grow" "$I" resize -q r.raw 16M
[ "$(stat -c %s r.raw)" = $((16 << 20)) ] && ok "raw: file is 16 MiB" || not_ok "raw: file is 16 MiB"
check_fails "raw: shrink without --shrink is refused" "$I" resize -q r.raw 4M
check "raw: shrink with --shrink" "$I" resize -q --shrink r.raw -12M
[ "$(stat -c %s r.raw)" = $((4 << 20)) ] && ok "raw: file is 4 MiB" || not_ok "raw: file is 4 MiB"
check_fails "raw: a size that is not whole sectors is refused" "$I" resize -q r.raw 1000

# rebase -u.
qemu-img create -q -f raw base1.raw 32M
qemu-io -f raw -c 'write -P 0x11 0 2M' base1.raw >/dev/null
cp base1.raw base2.raw
qemu-img create -q -f qed -b base1.raw -F raw o.qed
qemu-io -f qed -c 'write -P 0x22 1M 64k' o.qed >/dev/null
mv base1.raw moved.raw
check "rebase -u onto a copy while the old one is missing" "$I" rebase -u -b base2.raw o.qed
qemu-img info o.qed > info.txt
grep -q '^backing file: base2.raw' info.txt && ok "qemu-img sees the new name" || not_ok "qemu-img sees the new name"
grep -q '^backing file format: raw' info.txt && ok "the probed format raw is recorded" || not_ok "the probed format raw is recorded"
check "QEMU reads the backing data and the overlay's own" \
	qemu-io -f qed -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 64k' -c 'read -P 0x11 1088k 960k' o.qed
check "qemu-img check clean after rebase" qemu-img check o.qed
long=dir/$(printf 'n%.0s' $(seq 300)).qcow2
check "a 300-byte name fits" "$I" rebase -u -b "$long" -F qcow2 o.qed
qemu-img info o.qed | grep -q "^backing file: $long" && ok "qemu-img sees the long name" || not_ok "qemu-img sees the long name"
check "rebase -u back to a short name" "$I" rebase -u -b base2.raw -F raw o.qed
check "QEMU reads through it again" qemu-io -f qed -c 'read -P 0x11 0 1M' o.qed
check "rebase -u -b '' drops the backing file" "$I" rebase -u -b "" o.qed
qemu-img info o.qed | grep -q '^backing file' && not_ok "no backing file left" || ok "no backing file left"
check "unallocated ranges now read zeros" qemu-io -f qed -c 'read -P 0 0 1M' -c 'read -P 0x22 1M 64k' o.qed
check_fails "safe rebase onto a missing file is refused" "$I" rebase -b missing.raw o.qed
check_fails "rebase of a raw image is refused" "$I" rebase -u -b base2.raw -f raw base2.raw

done_testing
