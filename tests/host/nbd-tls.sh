#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# nbd-tls.sh - NBD over TLS (nbds+unix://, lib/bfile_nbd.c), against a
# qemu-nbd that requires TLS with a pre-shared key, on a Unix socket in
# $T_TMP, and QEMU's own TLS client as the oracle.
#
# 1. a qcow2 on the export through nbds+unix://USER@/...?tls-psk-file=:
#    what imgblk writes QEMU reads over TLS and the other way round
#    (?tls-username= too), qemu-img check is clean, and a convert from the
#    export matches it (qemu-img compare).
# 2. a wrong key, and a plain nbd+unix:// to the TLS-only server, each
#    fail in one line.
# 3. a name read from an image may not name a local file: an overlay whose
#    header names the URI with tls-psk-file (written by create -b, where
#    the user gave it), or tls-certificates, is refused in one line.
# 4. x509 (a CA made with openssl): tls-certificates=DIR over TCP, where
#    libnbd checks the server's certificate: the CA that signed it is
#    taken, another CA's directory is refused in one line.  (Without
#    credentials libnbd 1.14 loads the system's CAs but checks nothing:
#    see docs/protocols.md.)
set -u

IMGBLK=${IMGBLK:-build/imgblk}
IMGBLK=$(cd "$(dirname "$IMGBLK")" && pwd)/$(basename "$IMGBLK")
. "$(dirname "$0")/tap.sh"

need qemu-img qemu-io qemu-nbd od

SERVER=
on_exit 'kill $SERVER 2>/dev/null; wait'

# A PSK file is USER:HEXKEY lines (what psktool writes); qemu-nbd reads
# DIR/keys.psk, the client the file itself.
keys=$T_TMP/keys
mkdir "$keys"
hexkey() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
echo "alice:$(hexkey)" > "$keys/keys.psk"
echo "alice:$(hexkey)" > "$T_TMP/wrong.psk"

# An export cannot grow: the qcow2 file has room to allocate in.
img=$T_TMP/disk.qcow2
qemu-img create -q -f qcow2 "$img" 32M
truncate -s 48M "$img"
sock=$T_TMP/tls.sock
qemu-nbd -f raw -t -k "$sock" -x exp --tls-creds tls0 \
	--object "tls-creds-psk,id=tls0,endpoint=server,dir=$keys" "$img" 2>> "$T_TMP/qemu-nbd.log" &
SERVER="$SERVER $!"
for i in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || skip_all "qemu-nbd does not serve TLS-PSK on a Unix socket: $(head -1 "$T_TMP/qemu-nbd.log")"

u="nbds+unix://alice@/exp?socket=$sock&tls-psk-file=$keys/keys.psk"

# qemu_tls TOOL [SUBCOMMAND] ARGS... IMAGE-OPTS...: a QEMU tool as a TLS
# client of the export.
qemu_tls() {
	local cmd=$1
	shift
	[ "$cmd" = qemu-img ] && { cmd="$cmd $1"; shift; }
	$cmd --object "tls-creds-psk,id=tls0,endpoint=client,dir=$keys,username=alice" \
		--image-opts "$@"
}
opts="driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path=$sock"
opts="$opts,file.export=exp,file.tls-creds=tls0"

# 1. Both ways over TLS.
check "nbds+unix:// with tls-psk-file: imgblk writes a qcow2 on the export" \
	"$IMGBLK" io -f qcow2 -c "write -P 0x42 1M 192k" -c flush "$u"
qemu_tls qemu-io -c "read -P 0x42 1M 192k" -c "read -P 0 0 1M" "$opts" > "$T_TMP/q.out" 2>&1
if [ $? = 0 ] && ! grep -q -e "verification failed" -e "failed:" "$T_TMP/q.out"; then
	ok "QEMU's TLS client reads what imgblk wrote"
else
	not_ok "QEMU's TLS client reads what imgblk wrote"
	diag_file "$T_TMP/q.out"
fi
qemu_tls qemu-io -c "write -P 0x24 3M 64k" "$opts" > /dev/null 2>&1
check "imgblk reads what QEMU wrote over TLS (?tls-username= for the user)" \
	"$IMGBLK" io -f qcow2 -c "read -P 0x24 3M 64k" -c "read -P 0x42 1M 192k" \
	"nbds+unix:///exp?socket=$sock&tls-username=alice&tls-psk-file=$keys/keys.psk"
check "qemu-img check over TLS: clean" qemu_tls qemu-img check -q "$opts"
"$IMGBLK" convert -O raw -f qcow2 "$u" "$T_TMP/copy.raw"
check "convert from nbds+unix:// matches the export (qemu-img compare)" \
	qemu_tls qemu-img compare "$opts" "driver=raw,file.filename=$T_TMP/copy.raw"

# one_line DESCRIPTION PATTERN CMD...: CMD fails with one line matching PATTERN.
one_line() {
	local d=$1 pat=$2
	shift 2
	"$@" > "$T_TMP/one.out" 2>&1
	if [ $? != 0 ] && [ "$(wc -l < "$T_TMP/one.out")" = 1 ] &&
	   grep -q -e "$pat" "$T_TMP/one.out"; then
		ok "$d"
	else
		not_ok "$d"
		diag_file "$T_TMP/one.out"
	fi
}

# 2. Refused by the server.
one_line "a wrong key: one line" "gnutls\|TLS" \
	"$IMGBLK" io -f qcow2 -c "read 0 4k" \
	"nbds+unix://alice@/exp?socket=$sock&tls-psk-file=$T_TMP/wrong.psk"
one_line "plain nbd+unix:// to a TLS-only server: one line" "TLS" \
	"$IMGBLK" io -f qcow2 -c "read 0 4k" "nbd+unix:///exp?socket=$sock"

# 3. Names read from images.
check "create -b takes the user's URI with tls-psk-file (reads its size)" \
	"$IMGBLK" create -q -f qcow2 -b "$u" -F qcow2 "$T_TMP/ov.qcow2"
one_line "an overlay whose header names tls-psk-file is refused in one line" \
	"ov.qcow2.*tls-psk-file names a local file" \
	"$IMGBLK" io -c "read 0 4k" "$T_TMP/ov.qcow2"
qemu-img create -q -f qcow2 -u -F qcow2 \
	-b "nbds+unix:///exp?socket=$sock&tls-certificates=$keys" "$T_TMP/ov2.qcow2" 32M
one_line "an overlay whose header names tls-certificates is refused in one line" \
	"tls-certificates names a local file" \
	"$IMGBLK" info "$T_TMP/ov2.qcow2"
qemu-img create -q -f qcow2 -u -F qcow2 \
	-b "nbds+unix:///exp?socket=$sock&tls%2Dpsk-file=$keys/keys.psk" "$T_TMP/ov3.qcow2" 32M
one_line "... and with the parameter's name percent-encoded" \
	"tls-psk-file names a local file" \
	"$IMGBLK" io -c "read 0 4k" "$T_TMP/ov3.qcow2"

# 4. x509 over TCP on loopback.
if ! command -v openssl > /dev/null; then
	skip "x509 with tls-certificates" "openssl not installed"
	done_testing
fi
pki=$T_TMP/pki
mkdir -p "$pki/srv" "$pki/cli" "$pki/other"
(
	cd "$pki" &&
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out srv/ca-cert.pem \
		-days 2 -subj "/CN=imgblk test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" &&
	openssl req -newkey rsa:2048 -nodes -keyout srv/server-key.pem -out srv.csr \
		-subj "/CN=localhost" &&
	printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		"extendedKeyUsage=serverAuth" > ext.cnf &&
	openssl x509 -req -in srv.csr -CA srv/ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
		-out srv/server-cert.pem -days 2 -extfile ext.cnf &&
	cp srv/ca-cert.pem cli/ &&
	openssl req -x509 -newkey rsa:2048 -nodes -keyout other-key.pem \
		-out other/ca-cert.pem -days 2 -subj "/CN=another CA"
) > "$T_TMP/openssl.log" 2>&1 || bail "openssl could not make the certificates"
raw=$T_TMP/x509.raw
qemu-img create -q -f raw "$raw" 8M
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
qemu-nbd -f raw -t -b 127.0.0.1 -p "$port" -x exp --tls-creds tls1 \
	--object "tls-creds-x509,id=tls1,endpoint=server,dir=$pki/srv,verify-peer=off" \
	"$raw" 2>> "$T_TMP/qemu-nbd.log" &
SERVER="$SERVER $!"
for i in $(seq 50); do (: > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
x="nbds://localhost:$port/exp"
check "x509: tls-certificates=DIR, the server's certificate checked" \
	"$IMGBLK" io -f raw -c "write -P 0x77 0 64k" -c "read -P 0x77 0 64k" \
	"$x?tls-certificates=$pki/cli"
check "x509: what imgblk wrote is in the file" qio raw "$raw" "read -P 0x77 0 64k"
one_line "x509: a server certificate from another CA is refused in one line" \
	"gnutls\|certificate\|TLS" "$IMGBLK" io -f raw -c "read 0 4k" "$x?tls-certificates=$pki/other"

done_testing
