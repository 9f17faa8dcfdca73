#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# job-mirror.sh - mirror of a running device under fio verify=crc32c:
# with --pivot the device ends up serving the target (query names it,
# the data verifies, the target equals what the device read), and a
# mirror cancelled once ready leaves the target equal to the device and
# the device on its own image; ext4 mounted on the device through a
# mirror to raw with pivot; a server killed during a mirror comes back
# with `recover` on its own image, the job gone with a message.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd fio qemu-img mkfs.ext4 e2fsck

BASE=$T_TMP/base.qcow2
IMG=$T_TMP/disk.qcow2
check "base image with data" sh -c "qemu-img create -q -f qcow2 '$BASE' 128M &&
	qemu-io -c 'write -P 0x5a 0 40M' '$BASE' > /dev/null"
check "overlay" qemu-img create -q -f qcow2 -b "$BASE" -F qcow2 "$IMG"
add_dev "add a two-queue qcow2 device" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID

# start_fio NAME: fio verify=crc32c in the background on $DEV, pid in FIO.
start_fio() {
	fio --name="$1" --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --size=48M --iodepth=16 --verify=crc32c --verify_backlog=512 \
		--verify_fatal=1 --do_verify=1 > "$T_TMP/fio-$1.out" 2>&1 &
	FIO=$!
}

# fio_ok NAME: wait for it; one result.
fio_ok() {
	if wait "$FIO" && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio-$1.out"; then
		ok "fio verify=crc32c during the $1, no errors"
	else
		not_ok "fio verify=crc32c during the $1, no errors"
		grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio-$1.out" | head -n 20 | sed 's/^/#   /'
	fi
}

# 1. Mirror with pivot, fio throughout.
M=$T_TMP/mirror.qcow2
start_fio pivot
sleep 1
check "mirror --sync full --pivot under fio" timeout 250 imgblk mirror -n "$ID" --pivot "$M"
check "the device serves the target" sh -c "imgblk query -n $ID | grep -q '$M'"
fio_ok pivot
check "the device's content, read whole" dd if="$DEV" of="$T_TMP/dev1.raw" bs=1M iflag=direct
check "a second pass of fio verifies on the new image" \
	fio --name=after --filename="$DEV" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --size=16M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--output="$T_TMP/fio-after.out"
check "the content again, after it" dd if="$DEV" of="$T_TMP/dev1.raw" bs=1M iflag=direct
del_dev "del" "$ID"
check "qemu-img check of the target is clean" qemu-img check -q "$M"
check "qemu-img check of the old image is clean" qemu-img check -q "$IMG"
check "the target equals what the device read" qemu-img compare -q -F raw "$M" "$T_TMP/dev1.raw"
rm -f "$M" "$T_TMP/dev1.raw"	# the guest's /tmp is small

# 2. Cancelled once ready: the target is a copy, the device keeps its image.
add_dev "add the device again" -f "$IMG" -q 2 || bail "cannot continue"
ID=$DEV_ID
C=$T_TMP/cancel.qcow2
start_fio cancel
check "mirror --wait returns when ready" timeout 250 imgblk mirror -n "$ID" --wait "$C"
check "job list says ready" sh -c "imgblk job -n $ID | grep -q ready"
check_fails "a backup is refused while the mirror runs" \
	imgblk backup -n "$ID" --sync full "$T_TMP/x.qcow2"
check "an external snapshot is refused while it runs, as QEMU's" sh -c \
	"! imgblk snapshot -n $ID --external '$T_TMP/snap.qcow2' 2> '$T_TMP/snap.err' &&
	 grep -q 'in use by block job: mirror' '$T_TMP/snap.err' && [ ! -e '$T_TMP/snap.qcow2' ]"
check_fails "an internal snapshot too" imgblk snapshot -n "$ID" -c s1
fio_ok cancel
check "job cancel --wait: the ready mirror completes" timeout 60 imgblk job -n "$ID" cancel --wait
check "the device still serves its image" sh -c "imgblk query -n $ID | grep -q '$IMG'"
check "the device's content" dd if="$DEV" of="$T_TMP/dev2.raw" bs=1M iflag=direct
check "qemu-img check of the cancelled target is clean" qemu-img check -q "$C"
check "the target equals the device at the cancel" qemu-img compare -q -F raw "$C" "$T_TMP/dev2.raw"
rm -f "$C" "$T_TMP/dev2.raw"
check_fails "complete without a job is refused" imgblk job -n "$ID" complete

# 3. Kill -9 during a mirror of a recoverable device: recover serves the image.
del_dev "del" "$ID"
add_dev "add --recoverable" -f "$IMG" -q 2 --recoverable || bail "cannot continue"
ID=$DEV_ID
check "device content before" dd if="$DEV" of="$T_TMP/dev3.raw" bs=1M iflag=direct
check "slow mirror starts" imgblk mirror -n "$ID" --speed 2M "$T_TMP/killed.qcow2"
sleep 1
pid=$(sed -n 's/^pid=//p' "/run/imgblk/$ID.state")
kill -KILL "$pid"
i=0
while ! imgblk list -n "$ID" 2>/dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
timeout 60 imgblk recover -n "$ID" > "$T_TMP/recover.out" 2>&1
if [ $? = 0 ] && grep -q "block job ublkb[0-9]* (mirror of .*) ended with its server and is gone: its target is incomplete" "$T_TMP/recover.out"; then
	ok "recover succeeds and says the mirror died"
else
	not_ok "recover succeeds and says the mirror died"
	diag_file "$T_TMP/recover.out"
fi
check "no job after recover" sh -c "imgblk job -n $ID | grep -q 'no block job'"
check "the device serves its image" sh -c "imgblk query -n $ID | grep -q '$IMG'"
dd if="$DEV" of="$T_TMP/dev3b.raw" bs=1M iflag=direct 2>/dev/null
check "the content is the same" same_bytes "$T_TMP/dev3.raw" "$T_TMP/dev3b.raw"
del_dev "del" "$ID"
no_corruption "qemu-img check of the image after the kill" "$IMG"
rm -f "$T_TMP/dev3.raw" "$T_TMP/dev3b.raw" "$T_TMP/killed.qcow2"

# 3b. kill -9 at random moments of a mirror with pivot, three rounds: the
# device comes back on the image or on the target, whichever the state
# file named at the kill, with the same content; every image checks clean.
add_dev "add --recoverable for the pivot rounds" -f "$IMG" -q 2 --recoverable ||
	bail "cannot continue"
ID=$DEV_ID
check "content before the pivot rounds" dd if="$DEV" of="$T_TMP/p0.raw" bs=1M iflag=direct
for r in 1 2 3; do
	P=$T_TMP/p$r.qcow2
	imgblk mirror -n "$ID" --pivot "$P" > /dev/null 2>&1 &
	MP=$!
	usleep $((r * r * 800000)) 2>/dev/null || sleep $((r * r))
	pid=$(sed -n 's/^pid=//p' "/run/imgblk/$ID.state")
	kill -KILL "$pid"
	wait "$MP"
	i=0
	while ! imgblk list -n "$ID" 2>/dev/null | grep -q QUIESCED && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	check "pivot round $r: recover" timeout 60 imgblk recover -n "$ID"
	top=$(imgblk query -n "$ID" | awk '/^chain:/ { getline; print $1 }')
	case $top in
	"$IMG"|"$P") ok "pivot round $r: the device serves $(basename "$top")" ;;
	*) not_ok "pivot round $r: the device serves the image or the target"; diag "top: $top" ;;
	esac
	check "pivot round $r: no job" sh -c "imgblk job -n $ID | grep -q 'no block job'"
	dd if="$DEV" of="$T_TMP/p.raw" bs=1M iflag=direct 2>/dev/null
	check "pivot round $r: same content" same_bytes "$T_TMP/p0.raw" "$T_TMP/p.raw"
	IMG=$top
done
del_dev "del" "$ID"
for i in "$T_TMP/disk.qcow2" "$T_TMP"/p[123].qcow2; do
	[ -e "$i" ] && no_corruption "qemu-img check $(basename "$i") after the kills" "$i"
done
rm -f "$T_TMP/p0.raw" "$T_TMP/p.raw" "$T_TMP"/p[123].qcow2
IMG=$T_TMP/disk.qcow2

# 3c. mirror --sync top: the target gets the top's data over the same backing file.
add_dev "add for sync top" -f "$IMG" || bail "cannot continue"
ID=$DEV_ID
check "mirror --sync top --pivot" timeout 250 imgblk mirror -n "$ID" --sync top --pivot "$T_TMP/st.qcow2"
check "the device's content" dd if="$DEV" of="$T_TMP/st.raw" bs=1M iflag=direct
del_dev "del" "$ID"
check "the sync top target names the base" sh -c "qemu-img info '$T_TMP/st.qcow2' | grep -q 'backing file: $BASE'"
check "the sync top target reads what the device read" \
	qemu-img compare -q -F raw "$T_TMP/st.qcow2" "$T_TMP/st.raw"

# 4. ext4 mounted through a mirror to raw with pivot.
MNT=$T_TMP/mnt
mkdir -p "$MNT"
E=$T_TMP/ext.qcow2
R=$T_TMP/ext.raw
check "ext4 image" qemu-img create -q -f qcow2 "$E" 64M
add_dev "add it" -f "$E" || bail "cannot continue"
ID=$DEV_ID
check "mkfs.ext4 and mount" sh -c "mkfs.ext4 -q $DEV && mount $DEV $MNT"
on_exit "umount $MNT 2>/dev/null"
check "write files" write_files "$MNT"
fio --name=fs --filename="$MNT/fio.dat" --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --size=16M --iodepth=8 --verify=crc32c --verify_fatal=1 --do_verify=1 \
	> "$T_TMP/fio-fs.out" 2>&1 &
FIO=$!
check "mirror to raw --pivot under the mounted fs" \
	timeout 250 imgblk mirror -n "$ID" -f raw --pivot "$R"
fio_ok fs
check "umount" umount "$MNT"
check "e2fsck accepts the device" e2fsck -fn "$DEV"
del_dev "del" "$ID"
check "e2fsck accepts the raw target" e2fsck -fn "$R"
check "qemu-img check of the old image is clean" qemu-img check -q "$E"
done_testing
