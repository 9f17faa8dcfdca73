#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# livesnap-load.sh - snapshots of a device under load.  External: three
# snapshots taken while fio writes with verify=crc32c; fio's verify pass
# then reads through the new chain, every image checks clean and the
# device's content equals the chain's (qemu-img compare).  Internal: 20
# snapshots with --freeze of a device carrying a mounted ext4 that fio
# writes; each snapshot, converted to a raw image, passes e2fsck.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img mkfs.ext4 e2fsck

D=$T_TMP

# --- external snapshots under fio verify ---
qemu-img create -q -f qcow2 "$D/base.qcow2" 160M
add_dev "add base.qcow2" -f "$D/base.qcow2" -q 2 -d 32 || bail "no device"
E=$DEV_ID
fio --name=ext --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --iodepth=32 --numjobs=2 --size=64M --offset_increment=64M \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
	> "$D/fio-ext.out" 2>&1 &
fio_pid=$!
n=0
for i in 1 2 3; do
	sleep 1
	if imgblk snapshot -n "$E" --external "$D/ext$i.qcow2" 2> "$D/snap.err"; then
		n=$((n + 1))
	else
		diag_file "$D/snap.err"
	fi
done
if [ $n -eq 3 ]; then ok "three external snapshots while fio writes"; else
	not_ok "three external snapshots while fio writes ($n done)"; fi
if kill -0 "$fio_pid" 2>/dev/null; then ok "fio was still running at the last one"; else
	not_ok "fio was still running at the last one"; fi
if wait "$fio_pid" && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$D/fio-ext.out"; then
	ok "fio verify=crc32c across the switches, no errors"
else
	not_ok "fio verify=crc32c across the switches, no errors"
	diag_file "$D/fio-ext.out" 20
fi
imgblk qmp -n "$E" query-block > "$D/qb" 2>&1
check "query-block shows ext3 over ext2 over ext1 over base" \
	grep -q "ext3.qcow2.*ext2.qcow2.*ext1.qcow2.*base.qcow2" "$D/qb"
check "the device's content copied out" \
	dd if="$DEV" of="$D/dev.raw" bs=1M iflag=direct status=none
del_dev "del" "$E"
for f in base ext1 ext2 ext3; do
	check "qemu-img check $f.qcow2 clean" qemu-img check -q "$D/$f.qcow2"
done
check "qemu-img compare: the device's content is the chain's" \
	qemu-img compare -q -f raw -F qcow2 "$D/dev.raw" "$D/ext3.qcow2"
rm -f "$D/dev.raw" "$D"/ext*.qcow2 "$D/base.qcow2"

# --- 20 internal snapshots with --freeze, ext4 mounted, under fio ---
MNT=$D/mnt
mkdir -p "$MNT"
qemu-img create -q -f qcow2 "$D/fs.qcow2" 128M
add_dev "add fs.qcow2" -f "$D/fs.qcow2" -q 2 -d 32 || bail "no device"
F=$DEV_ID
check "mkfs.ext4" mkfs.ext4 -q "$DEV"
check "mount" mount "$DEV" "$MNT"
on_exit "umount $MNT 2>/dev/null"
fio --name=fs --directory="$MNT" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --iodepth=16 --numjobs=2 --size=16M --time_based --runtime=600 \
	--fsync=32 > "$D/fio-fs.out" 2>&1 &
fio_pid=$!
sleep 2
n=0
for i in $(seq 1 20); do
	# Silent: --freeze found the filesystem (it says so when it finds none).
	if imgblk snapshot -n "$F" --freeze -c "s$i" 2> "$D/snap.err" && ! [ -s "$D/snap.err" ]; then
		n=$((n + 1))
	else
		diag_file "$D/snap.err"
	fi
	sleep 0.3
done

if [ "$n" -eq 20 ]; then ok "20 internal snapshots with --freeze under fio"; else
	not_ok "20 internal snapshots with --freeze under fio ($n done)"; fi
check "the filesystem is thawed: writes go on" \
	dd if=/dev/zero of="$MNT/after" bs=4k count=16 conv=fsync status=none
kill "$fio_pid" 2>/dev/null
wait "$fio_pid"
if grep -qE 'err= *[1-9]' "$D/fio-fs.out"; then
	not_ok "fio on ext4 saw no error"; diag_file "$D/fio-fs.out" 20
else
	ok "fio on ext4 saw no error"
fi
check "umount" umount "$MNT"
check "e2fsck of the device clean" e2fsck -fn "$DEV"
del_dev "del" "$F"
check "qemu-img check fs.qcow2 clean" qemu-img check -q "$D/fs.qcow2"
bad=0
for i in $(seq 1 20); do
	rm -f "$D/s.raw"
	if ! imgblk convert -l "snapshot.name=s$i" -O raw "$D/fs.qcow2" "$D/s.raw" \
		> "$D/conv.out" 2>&1; then
		bad=$((bad + 1)); diag "convert s$i failed"; diag_file "$D/conv.out"
	elif ! e2fsck -fn "$D/s.raw" > "$D/fsck.out" 2>&1; then
		bad=$((bad + 1)); diag "e2fsck of s$i failed"; diag_file "$D/fsck.out" 20
	fi
done
if [ $bad -eq 0 ]; then ok "all 20 snapshots convert to filesystems e2fsck accepts"; else
	not_ok "all 20 snapshots convert to filesystems e2fsck accepts ($bad bad)"; fi
done_testing
