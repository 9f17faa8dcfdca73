#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-data-file-write.sh - images with an external data file, created
# and written by imgblk, against qemu-img/qemu-io doing the same on twins:
# create -o data_file=NAME[,data_file_raw=on] gives what qemu-img info
# says for QEMU's own, writes land at the guest offsets in the data file
# (a raw data file equals the guest disk), check is clean both ways, and
# each reads what the other wrote.  QEMU's refusals at create are ours.
set -u
. "$(dirname "$0")/tap.sh"

IMGBLK=${IMGBLK:-build/imgblk}
case $IMGBLK in /*) ;; *) IMGBLK=$PWD/$IMGBLK ;; esac
need qemu-img qemu-io
cd "$T_TMP" || exit 1

spec() {	# qemu-img info's format-specific part, data file name left out
	qemu-img info --output=json "$1" | sed -n '/format-specific/,$p' |
		grep -v '"filename"\|"data-file":'
}

W=(-c 'write -P 0x11 8k 4k' -c 'write -P 0x22 100k 200k' -c 'write -z 1M 1M'
   -c 'write -P 0x33 3M 64k' -c 'write -P 0x44 1M 512')
R=(-c 'read -P 0x11 8k 4k' -c 'read -P 0x22 100k 200k' -c 'read -P 0x44 1M 512' -c 'read -P 0 1050112 1M' -c 'read -P 0x33 3M 64k')

for raw in off on; do
	for cs in 4k 64k; do
		name="raw=$raw cs=$cs"
		rm -f ./*
		check "$name: imgblk create" "$IMGBLK" create -f qcow2 \
			-o data_file=d.raw,data_file_raw=$raw,cluster_size=$cs a.qcow2 4M
		qemu-img create -q -f qcow2 -o data_file=qd.raw,data_file_raw=$raw,cluster_size=$cs \
			q.qcow2 4M
		check "$name: qemu-img info as for qemu-img create's" \
			test "$(spec a.qcow2)" = "$(spec q.qcow2)"
		check "$name: data file made at the guest size" test "$(stat -c %s d.raw)" = 4194304
		check "$name: same map as QEMU's" \
			cmp <(qemu-img map --output=json a.qcow2) <(qemu-img map --output=json q.qcow2)
		check "$name: qemu-img check clean after create" qemu-img check -q a.qcow2

		# imgblk writes, QEMU reads.
		check "$name: imgblk writes" "$IMGBLK" io "${W[@]}" a.qcow2
		qemu-io "${W[@]}" q.qcow2 > /dev/null
		check "$name: qemu-img check clean" qemu-img check -q a.qcow2
		check "$name: imgblk check clean" "$IMGBLK" check a.qcow2
		check "$name: QEMU reads what imgblk wrote" qemu-io -r "${R[@]}" a.qcow2
		check "$name: same data as QEMU's twin" qemu-img compare -q a.qcow2 q.qcow2
		# (raw: write zeroes writes zeros in place; QEMU flags them, same bytes)
		[ $raw = off ] && check "$name: data at the same places as in QEMU's twin" \
			cmp <(qemu-img map --output=json a.qcow2 | grep '"data": true') \
			    <(qemu-img map --output=json q.qcow2 | grep '"data": true')
		check "$name: the image file holds no data clusters" \
			test "$(stat -c %s a.qcow2)" -le "$(stat -c %s q.qcow2)"
		if [ $raw = on ]; then
			check "$name: the raw data file is the guest disk" \
				qemu-img compare -q -f raw -F qcow2 d.raw a.qcow2
			check "$name: ...byte for byte as QEMU's" cmp d.raw qd.raw
			check "$name: autoclear bit kept" grep -q '"data-file-raw": true' \
				<(qemu-img info --output=json a.qcow2)
		fi

		# QEMU writes, imgblk reads and writes on.
		check "$name: QEMU writes the imgblk image" \
			qemu-io -c 'write -P 0x55 2M 128k' -c 'write -P 0x66 0 4k' a.qcow2
		check "$name: imgblk reads QEMU's writes" "$IMGBLK" io \
			-c 'read -P 0x55 2M 128k' -c 'read -P 0x66 0 4k' -c 'read -P 0x11 8k 4k' a.qcow2
		check "$name: imgblk writes over QEMU's" "$IMGBLK" io \
			-c 'write -P 0x77 2M 4k' -c 'write -z 4k 4k' q.qcow2
		check "$name: ...QEMU's image checks clean" qemu-img check -q q.qcow2
		check "$name: ...and reads right" qemu-io -r -c 'read -P 0x77 2M 4k' \
			-c 'read -P 0 4k 4k' -c 'read -P 0x33 3M 64k' q.qcow2
	done
done

# Not on a v2 image, and data_file_raw needs data_file, as QEMU refuses.
check_fails "data_file with compat=0.10 refused" \
	"$IMGBLK" create -f qcow2 -o compat=0.10,data_file=x.raw v2.qcow2 1M
check_fails "data_file_raw without data_file refused" \
	"$IMGBLK" create -f qcow2 -o data_file_raw=on r.qcow2 1M
# Compressed clusters are not possible with a data file.
rm -f ./*
"$IMGBLK" create -f qcow2 -o data_file=d.raw c.qcow2 1M > /dev/null
qemu-img create -q -f raw src.raw 1M
check_fails "convert -c into a data-file image refused" \
	"$IMGBLK" convert -c -n -O qcow2 src.raw c.qcow2
check "...the image checks clean" qemu-img check -q c.qcow2

done_testing
