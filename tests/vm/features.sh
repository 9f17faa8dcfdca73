#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# features.sh - block-layer features of a device: --copy-on-read fills
# the image from its backing file, --discard=ignore keeps the data, and a
# throttled device still serves correct data (the rate itself is measured
# by scripts/bench/vm-throttle.sh, not here), and --pinned-buffers pins
# what it says, with correct data on both sides of the registered part.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io fio

D=$T_TMP
qemu-img create -q -f raw "$D/base.raw" 64M
qemu-io -f raw -c 'write -P 0x5a 0 4M' -c 'write -P 0x6b 8M 4M' -c 'write -P 0x7c 16M 4M' \
	"$D/base.raw" > /dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw "$D/cor.qcow2"

# Copy-on-read.
if add_dev "add --copy-on-read over a raw backing file" -f "$D/cor.qcow2" --copy-on-read; then
	check "read 2 MiB through the device" dd if="$DEV" of=/dev/null bs=1M count=2 iflag=direct
	# O_DIRECT (-t none): no readahead reading, and so copying, more.
	check "reads give the backing data" \
		qemu-io -f raw -t none -c 'read -P 0x5a 0 2M' -c 'read -P 0x6b 8M 1M' "$DEV"
	del_dev "del" "$DEV_ID"
	qemu-img map --output=json "$D/cor.qcow2" > "$D/map.json"
	if grep -q '"start": 0, "length": [0-9]*, "depth": 0, "present": true, "zero": false, "data": true' "$D/map.json"; then
		ok "the read range is now allocated in the image (depth 0)"
	else
		not_ok "the read range is now allocated in the image (depth 0)"
		diag_file "$D/map.json"
	fi
	# Cut the copy loose from its backing file: what was read must be in it.
	cp "$D/cor.qcow2" "$D/alone.qcow2"
	qemu-img rebase -q -u -b "" "$D/alone.qcow2"
	check "the read ranges are in the image itself" \
		qemu-io -f qcow2 -c 'read -P 0x5a 0 2M' -c 'read -P 0x6b 8M 1M' "$D/alone.qcow2"
	check "backing data never read was not copied" \
		qemu-io -f qcow2 -c 'read -P 0 16M 4M' "$D/alone.qcow2"
	check "qemu-img check clean" qemu-img check "$D/cor.qcow2"
fi

# Discard ignore.
qemu-img create -q -f raw "$D/d.raw" 32M
qemu-io -f raw -c 'write -P 0x77 0 32M' "$D/d.raw" > /dev/null
blocks=$(stat -c %b "$D/d.raw")
if add_dev "add --discard=ignore" -t raw -f "$D/d.raw" --discard=ignore; then
	check "blkdiscard succeeds" blkdiscard "$DEV"
	check "the data is still there" qemu-io -f raw -c 'read -P 0x77 0 32M' "$DEV"
	del_dev "del" "$DEV_ID"
	[ "$(stat -c %b "$D/d.raw")" = "$blocks" ] &&
		ok "no hole was punched in the file" || not_ok "no hole was punched in the file"
fi

# Throttled device: correct, and not stuck.
qemu-img create -q -f qcow2 "$D/t.qcow2" 64M
if add_dev "add with --iops-total 2000 --bps-write 8M" -f "$D/t.qcow2" --iops-total 2000 --bps-write 8M; then
	check "fio verify on the throttled device" timeout 120 fio --name=t --filename="$DEV" \
		--rw=randwrite --bs=4k --size=8M --ioengine=io_uring --direct=1 --iodepth=16 \
		--verify=crc32c --verify_fatal=1 --output="$D/fio.out"
	del_dev "del" "$DEV_ID"
fi

# Registered (pinned) buffers: the server's VmPin is the budget; I/O that
# fits a tag's registered part and I/O that does not both verify.
vm_pin_kb() {	# vm_pin_kb ID: the pinned memory of device ID's server
	awk '$1 == "VmPin:" { print $2 }' \
		"/proc/$(imgblk list -n "$1" | awk 'NR == 2 { print $6 }')/status"
}
qemu-img create -q -f qcow2 "$D/p.qcow2" 64M
for p in default:32768:2 1M:1024:1 0:0:1; do
	opt=${p%%:*}
	want=${p#*:}
	queues=${want#*:}
	want=${want%:*}
	set -- -f "$D/p.qcow2" -q "$queues"
	[ "$opt" = default ] || set -- "$@" --pinned-buffers "$opt"
	add_dev "add -q $queues --pinned-buffers $opt" "$@" || continue
	pin=$(vm_pin_kb "$DEV_ID")
	[ "$pin" = "$want" ] && ok "--pinned-buffers $opt: VmPin $want kB" ||
		not_ok "--pinned-buffers $opt: VmPin $pin kB, want $want kB"
	check "--pinned-buffers $opt: fio verify, 4k to 128k requests" timeout 120 \
		fio --name=p --filename="$DEV" --rw=randwrite --bsrange=4k-128k --size=16M \
		--ioengine=io_uring --direct=1 --iodepth=16 --verify=crc32c --verify_fatal=1 \
		--output="$D/fio.out"
	del_dev "del" "$DEV_ID"
done
check "qemu-img check clean after the pinned-buffer runs" qemu-img check "$D/p.qcow2"
done_testing
