#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-luks.sh - a LUKS-encrypted qcow2 served as a device: ext4 on it,
# fio with crc32c verify, then QEMU (with the passphrase) reads exactly
# what the device showed, qemu-img check finds it clean, and the image
# file holds no plaintext of a pattern written through the device.  The
# passphrase never shows in the process list or the state file; a
# --recoverable device's new server reads the key file again.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd mkfs.ext4 e2fsck md5sum qemu-img qemu-io grep

IMG=$T_TMP/enc.qcow2
KEY=$T_TMP/key
MNT=$T_TMP/mnt
mkdir -p "$MNT"
on_exit "umount $MNT"
printf 'vm test passphrase 0451' > "$KEY"
QOPTS="driver=qcow2,file.filename=$IMG,encrypt.key-secret=k"

# Layout: ext4 in the first 96 MiB, fio in the next 32, the pattern at 160M.
check "imgblk creates an encrypted 192 MiB image" \
	imgblk create -q -f qcow2 --object "secret,id=k,file=$KEY" \
	-o encrypt.format=luks,encrypt.key-secret=k,encrypt.iter-time=50 "$IMG" 192M
check_fails "add without the key is refused" imgblk add -t qcow2 -f "$IMG"
add_dev "add the encrypted image" -t qcow2 -f "$IMG" -q 2 --key-file "$KEY" ||
	bail "cannot continue without a device"
ID=$DEV_ID
if ps -ef | grep -v grep | grep -q 'passphrase 0451' ||
   grep -rq 'passphrase 0451' /run/imgblk "${XDG_RUNTIME_DIR:-/nonexistent}" 2> /dev/null; then
	not_ok "the passphrase is in no process list or state file"
else
	ok "the passphrase is in no process list or state file"
fi
check "a pattern through the device" \
	qemu-io -f raw -n -c "write -P 0x5c 160M 4M" -c "read -P 0x5c 160M 4M" "$DEV"
check "mkfs.ext4" mkfs.ext4 -q -F "$DEV" 96M
check "mount" mount -t ext4 "$DEV" "$MNT"
check "write 11 MiB of random data in 52 files" write_files "$MNT"
(cd "$MNT" && find . -type f | sort | xargs md5sum) > "$T_TMP/md5" 2>&1
check "umount" umount "$MNT"
if command -v fio > /dev/null 2>&1; then
	check "fio on the device's last 32 MiB" fio --name=v --filename="$DEV" --direct=1 \
		--rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --offset=96M --size=32M \
		--verify=crc32c --do_verify=1
else
	skip "fio on the encrypted device" "fio not available"
fi
check "dd of the whole device" dd if="$DEV" of="$T_TMP/dev.raw" bs=1M iflag=direct
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"

check "qemu-img check finds the image clean" \
	qemu-img check --object "secret,id=k,file=$KEY" --image-opts "$QOPTS"
check "QEMU reads the pattern" qemu-io --object "secret,id=k,file=$KEY" --image-opts "$QOPTS" \
	-c "read -P 0x5c 160M 4M"
check "qemu-img convert of the image" qemu-img convert --object "secret,id=k,file=$KEY" \
	--image-opts "$QOPTS" -O raw "$T_TMP/qemu.raw"
check "QEMU reads what the device showed" same_bytes "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
rm -f "$T_TMP/dev.raw" "$T_TMP/qemu.raw"
# 4 KiB of 0x5c: the plaintext pattern, had any sector been written clear.
if grep -q "$(printf '\134%.0s' $(seq 256))" "$IMG"; then
	not_ok "no plaintext of the pattern in the image file"
else
	ok "no plaintext of the pattern in the image file"
fi

add_dev "re-add the image" -t qcow2 -f "$IMG" --key-file "$KEY" || bail "cannot re-add"
ID=$DEV_ID
check "e2fsck finds the filesystem clean" e2fsck -fn "$DEV"
check "mount again" mount -t ext4 "$DEV" "$MNT"
check "md5sums intact after re-add" sh -c "cd '$MNT' && md5sum -c '$T_TMP/md5'"
check "umount again" umount "$MNT"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"

# --recoverable: the new server reads the key file again (its path is in
# the state file, the key is not).
add_dev "add --recoverable" -t qcow2 -f "$IMG" --key-file "$KEY" --recoverable ||
	bail "cannot add --recoverable"
ID=$DEV_ID
check "the state file names the key file, for the image" \
	grep -q "^key_files=$IMG=$KEY\$" "/run/imgblk/$ID.state"
pid=$(sed -n 's/^pid=//p' "/run/imgblk/$ID.state")
kill -KILL "$pid"
i=0
while ! imgblk list -n "$ID" 2> /dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "imgblk recover re-reads the key" timeout 60 imgblk recover -n "$ID"
check "the recovered device reads the pattern" \
	qemu-io -f raw -n -c "read -P 0x5c 160M 4M" "$DEV"
del_dev "del device $ID" "$ID"
wait_gone "$DEV" 10 || diag "$DEV still present"
done_testing
