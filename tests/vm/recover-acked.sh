#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# recover-acked.sh - a write a --recoverable device acknowledged survives
# the death of its server.  The device outlives the server, so the
# filesystem above it does too, and it takes every completed write as
# done: a new server (`imgblk recover`) must find them all, although the
# guest never flushed.  For a qcow2 (new clusters, new L2 tables and L1
# entries, clusters written in place, a discard and a write zeroes), a
# qcow2 over a backing file (COW of partial clusters) and a QED: direct
# writes without a flush, kill -9 of the server at once, recover, then
# every pattern reads back through the device and, after del, through
# qemu-io from the image, which qemu-img check finds free of corruption.
#
# Before the fix, qcow2 lost the writes since the last once-a-second
# metadata write-back: their L2 entries were only in the dead server's
# cache.  QED writes its tables through before completing, and its case
# is a regression test.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img qemu-io tr

D=$T_TMP
N=48		# patterns into new clusters
M=8		# in place, into clusters written and flushed before

pattern() {	# pattern BYTE LEN: LEN bytes of BYTE (decimal)
	head -c "$2" /dev/zero | tr '\0' "\\$(printf %o "$1")"
}

# put BYTE OFF LEN: a pattern for write_all, recorded for verify too.
put() {
	pattern "$1" "$3" > "$D/p$1.bin"
	echo "$1 $2 $3" >> "$D/todo"
	echo "$1 $2 $3" >> "$D/want"
}

# write_all: the patterns put, dd'd through the device back to back
# (direct, no flush): the window since the last metadata write-back.
write_all() {
	while read -r b off len; do
		dd if="$D/p$b.bin" of="$DEV" bs="$len" seek="$((off / len))" count=1 \
			oflag=direct conv=notrunc 2>/dev/null || diag "dd at $off failed"
	done < "$D/todo"
}

# verify DESC FMT FILE: every recorded pattern reads back from FILE
# (qemu-io, format FMT); reports how many are lost.
verify() {
	_desc=$1 _fmt=$2 _file=$3
	set --
	n=0
	while read -r b off len; do
		set -- "$@" -c "read -P $b $off $len"
		n=$((n + 1))
	done < "$D/want"
	# The device without the page cache; the image is on tmpfs (no O_DIRECT).
	_cache=
	[ "$_fmt" = raw ] && _cache=-n
	qemu-io -f "$_fmt" $_cache "$_file" "$@" > "$D/qio.out" 2>&1
	lost=$(grep -c 'Pattern verification failed' "$D/qio.out")
	errs=$(grep -ciE 'error|fail' "$D/qio.out")
	if [ "$lost" = 0 ] && [ "$errs" = 0 ]; then
		ok "$_desc: all $n patterns read back"
	else
		not_ok "$_desc: $lost of $n patterns lost"
		diag_file "$D/qio.out" 10
	fi
}

kill_recover() {	# kill_recover DESC: kill -9 the server now, then recover
	pid=$(sed -n 's/^pid=//p' "/run/imgblk/$DEV_ID.state")
	kill -KILL "$pid"
	_i=0
	while ! imgblk list -n "$DEV_ID" 2>/dev/null | grep -q QUIESCED && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	check "$1: recover after kill -9" timeout 60 imgblk recover -n "$DEV_ID"
}

# run NAME FMT IMAGE [cow]: the writes, the kill, the checks.
run() {
	name=$1 fmt=$2 img=$3 cow=${4:-}
	add_dev "$name: add --recoverable" -f "$img" --recoverable || return
	: > "$D/want"
	: > "$D/todo"
	# Clusters that exist and are flushed before: written in place later.
	if [ -z "$cow" ]; then
		pattern 17 1048576 > "$D/old.bin"
		dd if="$D/old.bin" of="$DEV" bs=1M seek=100 count=1 oflag=direct conv=notrunc,fsync \
			2>/dev/null
		dd if="$D/old.bin" of="$DEV" bs=1M seek=200 count=1 oflag=direct conv=notrunc,fsync \
			2>/dev/null
	fi
	i=1
	while [ $i -le $N ]; do
		if [ -n "$cow" ]; then
			# 4 KiB inside a cluster the backing file fills: COW.
			put $((i + 100)) $((i * 131072 + 8192)) 4096
		elif [ $((i % 2)) = 0 ]; then
			# Far apart: new L2 tables and L1 entries.
			put $((i + 100)) $((i * 1073741824 / 8 + 1073741824)) 4096
		else
			put $((i + 100)) $((i * 131072)) 65536
		fi
		i=$((i + 1))
	done
	if [ -z "$cow" ]; then
		i=0
		while [ $i -lt $M ]; do
			put $((i + 200)) $((104857600 + i * 65536)) 4096
			i=$((i + 1))
		done
	fi
	write_all
	if [ -z "$cow" ]; then
		blkdiscard -z -o $((200 * 1048576)) -l 524288 "$DEV" || diag "write zeroes failed"
		echo "0 $((200 * 1048576)) 524288" >> "$D/want"
		if [ "$fmt" = qcow2 ]; then
			# qcow2 (v3, no backing file) drops whole discarded clusters.
			blkdiscard -o $((200 * 1048576 + 524288)) -l 524288 "$DEV" ||
				diag "discard failed"
			echo "0 $((200 * 1048576 + 524288)) 524288" >> "$D/want"
		fi
	fi
	kill_recover "$name"
	verify "$name: through the recovered device" raw "$DEV"
	del_dev "$name: del" "$DEV_ID"
	verify "$name: qemu-io from the image" "$fmt" "$img"
	if [ -n "$cow" ]; then
		# The rest of each written cluster is still the backing file's.
		set --
		i=1
		while [ $i -le $N ]; do
			set -- "$@" -c "read -P 0xbb $((i * 131072)) 8192" \
				-c "read -P 0xbb $((i * 131072 + 12288)) 53248"
			i=$((i + 1))
		done
		qemu-io -f qcow2 "$img" "$@" > "$D/qio.out" 2>&1
		if grep -qiE 'fail|error' "$D/qio.out"; then
			not_ok "$name: COW kept the backing data around each write"
			diag_file "$D/qio.out" 10
		else
			ok "$name: COW kept the backing data around each write"
		fi
	fi
	no_corruption "$name: qemu-img check" "$img"
}

qemu-img create -q -f qcow2 "$D/a.qcow2" 8G
run qcow2 qcow2 "$D/a.qcow2"

qemu-img create -q -f qcow2 -o lazy_refcounts=on "$D/l.qcow2" 8G
run "qcow2 lazy refcounts" qcow2 "$D/l.qcow2"

qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=128k "$D/x.qcow2" 8G
run "qcow2 extended L2" qcow2 "$D/x.qcow2"

qemu-img create -q -f qcow2 "$D/base.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0xbb 0 64M" "$D/base.qcow2" > /dev/null
qemu-img create -q -f qcow2 -b "$D/base.qcow2" -F qcow2 "$D/top.qcow2" 64M
run "qcow2 over a backing file" qcow2 "$D/top.qcow2" cow

qemu-img create -q -f qed "$D/a.qed" 8G
run qed qed "$D/a.qed"
done_testing
