#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# nbd.sh - images and backing files on NBD exports (lib/bfile_nbd.c),
# against QEMU 7.2 as the oracle, with qemu-nbd and nbdkit serving on Unix
# sockets in $T_TMP.
#
# 1. raw, qcow2 and QED files on an export, read-write: what imgblk writes
#    QEMU reads and the other way round, and qemu-img check is clean.
# 2. a read-only export: read, and a write refused in one line.
# 3. a golden base on NBD shared by 8 local qcow2 overlays written at once;
#    each reads its own data over the base's.
# 4. map uses block status: the export's holes are holes.
# 5. names: json: backing names, QEMU's older nbd:unix:PATH and
#    nbd:HOST:PORT (both ways), a wrong URI, a server not there, each one
#    line; --backing=same-dir and --allow-protocol refuse an NBD backing.
# 6. the server killed under load and started again: with --reconnect-delay
#    the writes are held, reissued, and all land; without, they fail; with
#    --open-timeout an open waits for a server that starts late.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
IMGBLK=$(cd "$(dirname "$IMGBLK")" && pwd)/$(basename "$IMGBLK")
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io qemu-nbd

SERVERS=
on_exit 'for p in $SERVERS; do kill $p 2>/dev/null; done; wait'

# serve_qemu SOCK FMT FILE [ARGS...]: qemu-nbd exporting FILE as "exp",
# its messages in SOCK.log.
serve_qemu() {
	local sock=$1 fmt=$2 file=$3 i
	shift 3
	qemu-nbd -f "$fmt" -t -k "$sock" -x exp "$@" "$file" 2>> "$sock.log" &
	SERVERS="$SERVERS $!"
	for i in $(seq 50); do [ -S "$sock" ] && return 0; sleep 0.1; done
	return 1
}

uri() { echo "nbd+unix:///exp?socket=$1"; }

# 1. Formats on a read-write export, both ways.  qcow2 is made on the
# export itself; QED, which only grows at the end of its file, cannot
# be (QEMU cannot either): it is made locally with its clusters allocated
# and exported as it is, and then overwritten in place.
for fmt in raw qcow2 qed; do
	img=$T_TMP/disk-$fmt
	if [ $fmt = qed ]; then
		qemu-img create -q -f qed "$img" 32M
		qemu-io -f qed -c "write -P 7 1M 192k" -c "write -P 7 3M 64k" "$img" > /dev/null
	else
		qemu-img create -q -f raw "$img" 64M
	fi
	sock=$T_TMP/rw-$fmt.sock
	serve_qemu "$sock" raw "$img" || bail "qemu-nbd did not start"
	u=$(uri "$sock")
	[ $fmt = qcow2 ] && qemu-img create -q -f $fmt "$u" 32M
	check "$fmt on qemu-nbd: imgblk writes" \
		"$IMGBLK" io -f $fmt -c "write -P 0x42 1M 192k" -c flush "$u"
	check "$fmt on qemu-nbd: QEMU reads what imgblk wrote" \
		qio $fmt "$u" "read -P 0x42 1M 192k" "read -P 0 0 1M"
	qemu-io -f $fmt -c "write -P 0x24 3M 64k" "$u" > /dev/null
	check "$fmt on qemu-nbd: imgblk reads what QEMU wrote" \
		"$IMGBLK" io -f $fmt -c "read -P 0x24 3M 64k" -c "read -P 0x42 1M 192k" "$u"
	[ $fmt = qcow2 ] && check "qcow2 on qemu-nbd: qemu-img check clean" \
		qemu-img check -q -f qcow2 "$u"
done

# The same for qcow2 on nbdkit's memory plugin, which offers multi-conn.
if command -v nbdkit > /dev/null; then
	ksock=$T_TMP/kit.sock
	nbdkit -f -U "$ksock" memory 64M &
	SERVERS="$SERVERS $!"
	for i in $(seq 50); do [ -S "$ksock" ] && break; sleep 0.1; done
	k="nbd+unix:///?socket=$ksock"
	qemu-img create -q -f qcow2 "$k" 32M
	check "qcow2 on nbdkit: imgblk writes" \
		"$IMGBLK" io -f qcow2 -c "write -P 0x61 5M 1M" "$k"
	check "qcow2 on nbdkit: QEMU reads what imgblk wrote" qio qcow2 "$k" "read -P 0x61 5M 1M"
	check "qcow2 on nbdkit: check clean" qemu-img check -q -f qcow2 "$k"
	check "qcow2 on nbdkit: bench writes (64 in flight)" \
		"$IMGBLK" bench -w -c 4000 -f qcow2 "$k"
else
	skip "qcow2 on nbdkit" "nbdkit not installed"
fi

# 2. A read-only export.
ro=$T_TMP/ro.raw
qemu-img create -q -f raw "$ro" 16M
qemu-io -f raw -c "write -P 0x5a 0 1M" "$ro" > /dev/null
rsock=$T_TMP/ro.sock
serve_qemu "$rsock" raw "$ro" -r || bail "qemu-nbd -r did not start"
r=$(uri "$rsock")
check "read-only export: reads" "$IMGBLK" io -r -f raw -c "read -P 0x5a 0 1M" "$r"
"$IMGBLK" io -f raw -c "write 0 4k" "$r" > "$T_TMP/ro.err" 2>&1
if [ $? != 0 ] && [ "$(wc -l < "$T_TMP/ro.err")" = 1 ] &&
   grep -q "read-only" "$T_TMP/ro.err"; then
	ok "read-only export: opening for writing refused in one line"
else
	not_ok "read-only export: opening for writing refused in one line"
	diag_file "$T_TMP/ro.err"
fi

# 3. A golden base on NBD, 8 overlays written at once.
gold=$T_TMP/gold.raw
qemu-img create -q -f raw "$gold" 32M
qemu-io -f raw -c "write -P 0x11 0 32M" "$gold" > /dev/null
gsock=$T_TMP/gold.sock
serve_qemu "$gsock" raw "$gold" -r -e 16 || bail "qemu-nbd (gold) did not start"
g=$(uri "$gsock")
pids=
for i in 1 2 3 4 5 6 7 8; do
	"$IMGBLK" create -q -f qcow2 -b "$g" -F raw "$T_TMP/ov$i.qcow2" 2>/dev/null ||
		qemu-img create -q -f qcow2 -b "$g" -F raw "$T_TMP/ov$i.qcow2"
	"$IMGBLK" io -f qcow2 -c "write -P $((0x20 + i)) $((i))M 512k" \
		-c "read -P 0x11 16M 4M" "$T_TMP/ov$i.qcow2" > "$T_TMP/ov$i.out" 2>&1 &
	pids="$pids $!"
done
fails=0
for p in $pids; do wait $p || fails=$((fails + 1)); done
[ $fails = 0 ] && ok "8 overlays on one NBD base written at once" ||
	not_ok "8 overlays on one NBD base written at once ($fails failed)"
bad=0
for i in 1 2 3 4 5 6 7 8; do
	qio qcow2 "$T_TMP/ov$i.qcow2" "read -P $((0x20 + i)) $((i))M 512k" \
		"read -P 0x11 $((i * 1048576 + 524288)) 512k" "read -P 0x11 0 1M" ||
		bad=$((bad + 1))
done
[ $bad = 0 ] && ok "QEMU reads each overlay's data over the NBD base" ||
	not_ok "QEMU reads each overlay's data over the NBD base ($bad wrong)"

# 4. Block status: map shows what qemu-img map shows.
hole=$T_TMP/holes.raw
qemu-img create -q -f raw "$hole" 16M
qemu-io -f raw -c "write -P 1 1M 64k" -c "write -P 2 9M 1M" "$hole" > /dev/null
hsock=$T_TMP/holes.sock
serve_qemu "$hsock" raw "$hole" -r || bail "qemu-nbd (holes) did not start"
h=$(uri "$hsock")
"$IMGBLK" map --output=json -f raw "$h" > "$T_TMP/map.imgblk" 2>&1
qemu-img map --output=json -f raw "$h" > "$T_TMP/map.qemu" 2>&1
if diff -u "$T_TMP/map.qemu" "$T_TMP/map.imgblk" > "$T_TMP/map.diff"; then
	ok "map on NBD matches qemu-img map (holes from block status)"
else
	not_ok "map on NBD matches qemu-img map (holes from block status)"
	diag_file "$T_TMP/map.diff"
fi
"$IMGBLK" convert -O raw -f raw "$h" "$T_TMP/conv.raw"
check "convert from NBD copies the data" qemu-img compare -f raw -F raw "$hole" "$T_TMP/conv.raw"
alloc=$(du -k "$T_TMP/conv.raw" | cut -f1)
[ "$alloc" -lt 4096 ] && ok "convert from NBD leaves the holes ($alloc KiB allocated)" ||
	not_ok "convert from NBD leaves the holes ($alloc KiB allocated)"

# 5. Names and errors.
js="json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$gsock\"},\"export\":\"exp\"}"
qemu-img create -q -f qcow2 -b "$js" -F raw "$T_TMP/json.qcow2" 32M 2>/dev/null ||
	qemu-img create -q -f qcow2 -u -b "$js" -F raw "$T_TMP/json.qcow2" 32M
check "a json: NBD backing name opens" \
	"$IMGBLK" io -f qcow2 -c "read -P 0x11 0 1M" "$T_TMP/json.qcow2"
one_line() {	# one_line DESCRIPTION PATTERN CMD...: fails with one line matching PATTERN
	local d=$1 pat=$2
	shift 2
	"$@" > "$T_TMP/one.out" 2>&1
	if [ $? != 0 ] && [ "$(wc -l < "$T_TMP/one.out")" = 1 ] &&
	   grep -q "$pat" "$T_TMP/one.out"; then
		ok "$d"
	else
		not_ok "$d"
		diag_file "$T_TMP/one.out"
	fi
}
one_line "a server that is not there: one line" "nbd+unix" \
	"$IMGBLK" info "nbd+unix:///exp?socket=$T_TMP/none.sock"
one_line "a wrong export name: one line" "nbd+unix" \
	"$IMGBLK" info "nbd+unix:///nosuch?socket=$gsock"
one_line "a malformed URI: one line" "nbd:" "$IMGBLK" info "nbd://"
one_line "--backing=same-dir refuses an NBD backing" "same-dir" \
	"$IMGBLK" io --backing=same-dir -c "read 0 4k" "$T_TMP/ov1.qcow2"
one_line "--backing=none refuses an NBD backing" "none" \
	"$IMGBLK" io --backing=none -c "read 0 4k" "$T_TMP/ov1.qcow2"
one_line "--allow-protocol=file refuses an NBD backing" "allow-protocol" \
	"$IMGBLK" io --allow-protocol=file -c "read 0 4k" "$T_TMP/ov1.qcow2"
check "--allow-protocol=file,nbd allows it" \
	"$IMGBLK" io --allow-protocol=file,nbd -c "read -P 0x11 0 4k" "$T_TMP/ov1.qcow2"

# QEMU's older names, nbd:unix:PATH and nbd:HOST:PORT with :exportname=,
# as file names and as backing names.
check "nbd:unix:PATH:exportname=NAME opens" \
	"$IMGBLK" io -r -f raw -c "read -P 0x5a 0 1M" "nbd:unix:$rsock:exportname=exp"
qemu-img create -q -f qcow2 -b "nbd:unix:$gsock:exportname=exp" -F raw "$T_TMP/legacy.qcow2"
check "a legacy backing name that QEMU wrote opens" \
	"$IMGBLK" io -c "write -P 0x12 1M 64k" -c "read -P 0x11 0 1M" "$T_TMP/legacy.qcow2"
check "imgblk makes an overlay on a legacy name; QEMU reads it" sh -c \
	"'$IMGBLK' create -q -f qcow2 -b 'nbd:unix:$gsock:exportname=exp' -F raw '$T_TMP/legacy2.qcow2' &&
	 qemu-io -f qcow2 -c 'read -P 0x11 0 1M' '$T_TMP/legacy2.qcow2' | grep -q 'read 1048576'"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
qemu-nbd -f raw -r -t -b 127.0.0.1 -p "$port" -x "my exp" "$ro" 2>> "$T_TMP/tcp.log" &
SERVERS="$SERVERS $!"
for i in $(seq 50); do (: > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
check "nbd:HOST:PORT:exportname=NAME opens (a space in the name)" \
	"$IMGBLK" io -r -f raw -c "read -P 0x5a 0 1M" "nbd:127.0.0.1:$port:exportname=my exp"
one_line "a legacy name without a port: one line" "nbd:HOST:PORT" "$IMGBLK" info "nbd:127.0.0.1"
one_line "a legacy unix name without a path: one line" "nbd:unix:PATH" "$IMGBLK" info "nbd:unix:"

# 6. Reconnection under load.
rc=$T_TMP/rc.raw
qemu-img create -q -f raw "$rc" 128M
csock=$T_TMP/rc.sock
serve_qemu "$csock" raw "$rc" || bail "qemu-nbd (reconnect) did not start"
cpid=${SERVERS##* }
c=$(uri "$csock")
# bench writes 0x5c over the whole export, 32 in flight (it leaves the
# last block alone, on a local file too).
"$IMGBLK" bench -w -f raw --pattern=92 -c 32768 -d 32 --reconnect-delay 30 "$c" \
	> "$T_TMP/rc.out" 2>&1 &
bp=$!
sleep 0.3
kill $cpid
wait $cpid 2> /dev/null
sleep 1
serve_qemu "$csock" raw "$rc" || bail "qemu-nbd (restart) did not start"
cpid=${SERVERS##* }
if wait $bp && grep -q reconnected "$T_TMP/rc.out"; then
	ok "server killed under load: writes held and completed after its restart"
else
	not_ok "server killed under load: writes held and completed after its restart"
	diag_file "$T_TMP/rc.out"
fi
check "server killed under load: nothing lost" qio raw "$c" "read -P 0x5c 0 $((128 * 1048576 - 4096))"
"$IMGBLK" bench -w -f raw -c 32768 -d 32 "$c" > "$T_TMP/rc2.out" 2>&1 &
bp=$!
sleep 0.3
kill $cpid
if wait $bp; then
	not_ok "without --reconnect-delay a lost server fails the writes"
else
	ok "without --reconnect-delay a lost server fails the writes"
fi
(sleep 1; qemu-nbd -f raw -t -k "$csock" -x exp "$rc" & echo $! > "$T_TMP/late.pid"; wait) &
check "--open-timeout waits for a server that starts late" \
	"$IMGBLK" io --open-timeout 10 -f raw -c "read 0 4k" "$c"
SERVERS="$SERVERS $(cat "$T_TMP/late.pid" 2>/dev/null)"

done_testing
