#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# seed.sh - initial corpora for the fuzz targets, made by qemu-img.
#
#   tests/fuzz/seed.sh DIR      fills DIR/fuzz_qcow2, DIR/fuzz_qed, DIR/fuzz_ops,
#                               DIR/fuzz_cli, DIR/fuzz_control
#
# Small images (512-byte to 16 KiB clusters, 1 MiB) in the states the
# engines meet: empty, with data, compressed, with a snapshot, lazy
# refcounts, extended L2, a backing file (backing.raw, the one file the
# targets provide), each followed by a tail of I/O commands (image.h).
# fuzz_ops makes its own images: its seeds are parameters and operations.
# Nothing binary is committed: this script makes them again.
set -euo pipefail

OUT=${1:?usage: seed.sh DIR}
command -v qemu-img >/dev/null || { echo "seed.sh: qemu-img missing" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-seed.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$OUT/fuzz_qcow2" "$OUT/fuzz_qed" "$OUT/fuzz_ops" "$OUT/fuzz_cli" "$OUT/fuzz_control"

# cmd OP SECTOR LEN_SECTORS FILL: one 8-byte command (image.h).
cmd() {
	local op=$1 s=$2 n=$(($3 - 1)) fill=$4
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x\\x%02x' \
		"$op" $((s & 255)) $((s >> 8 & 255)) $((s >> 16 & 255)) $((s >> 24 & 255)) \
		$((n & 255)) $((n >> 8 & 255)) "$fill")"
}
# Ops: 0 read, 1 write, 2 write zeroes, 3 discard, 4 flush, 5 block status;
# 0x80 asks for FUA.
tail_io() {
	cmd 1 0 8 0x5a; cmd 0 0 16 0; cmd 1 100 130 0xa5; cmd 2 40 64 0
	cmd 3 8 8 0; cmd 5 0 256 0; cmd 0x81 1500 3 0x33; cmd 4 0 1 0
	cmd 0 90 200 0; cmd 5 1000 256 0
	printf '\x00\x0a'		# mode 0 (read-write, check without repair), 10 commands
}
tail_ro() { cmd 0 0 256 0; cmd 5 0 256 0; printf '\x01\x02'; }
tail_fix() { cmd 1 2000 8 0x77; printf '\x0a\x01'; }	# small cache, check -r all

# seed DIR NAME IMAGE: the image with each tail.
seed() {
	local dir=$1 name=$2 img=$3
	{ cat "$img"; tail_io; } > "$OUT/$dir/$name-io"
	{ cat "$img"; tail_ro; } > "$OUT/$dir/$name-ro"
	{ cat "$img"; tail_fix; } > "$OUT/$dir/$name-fix"
}

# qemu-img and qemu-io without their chatter.
q() { qemu-img "$@" > /dev/null; }
qio_quiet() { qemu-io "$@" > /dev/null; }

# qcow2
truncate -s 1M "$T/backing.raw"
q create -f qcow2 -o cluster_size=512 "$T/empty" 1M
seed fuzz_qcow2 empty-512 "$T/empty"
q create -f qcow2 -o cluster_size=512 "$T/data" 1M
qio_quiet -c 'write -P 0x11 0 4k' -c 'write -P 0x22 300k 1k' -c 'write -z 64k 8k' "$T/data"
seed fuzz_qcow2 data-512 "$T/data"
q create -f qcow2 -o cluster_size=4k "$T/data4k" 1M
qio_quiet -c 'write -P 0x11 0 8k' -c 'write -P 0x22 520k 4k' "$T/data4k"
seed fuzz_qcow2 data-4k "$T/data4k"
q create -f qcow2 -o cluster_size=512,refcount_bits=1 "$T/rc1" 1M
qio_quiet -c 'write -P 0x44 2k 2k' "$T/rc1"
seed fuzz_qcow2 refcount1-512 "$T/rc1"
q create -f qcow2 -o cluster_size=512,lazy_refcounts=on "$T/lazy" 1M
qio_quiet -c 'write -P 0x55 0 1k' "$T/lazy"
seed fuzz_qcow2 lazy-512 "$T/lazy"
q create -f qcow2 -o cluster_size=1k "$T/snap" 1M
qio_quiet -c 'write -P 0x66 0 4k' "$T/snap"
q snapshot -c s1 "$T/snap"
qio_quiet -c 'write -P 0x67 2k 4k' "$T/snap"
seed fuzz_qcow2 snapshot-1k "$T/snap"
q create -f raw "$T/raw" 1M
qio_quiet -f raw -c 'write -P 0x78 0 64k' "$T/raw"
q convert -c -O qcow2 -o cluster_size=4k "$T/raw" "$T/comp"
seed fuzz_qcow2 compressed-4k "$T/comp"
q create -f qcow2 -o cluster_size=512 -b backing.raw -F raw "$T/overlay" 1M
qio_quiet -c 'write -P 0x99 1k 1k' "$T/overlay"
seed fuzz_qcow2 backing-512 "$T/overlay"
q create -f qcow2 -o cluster_size=16k,extended_l2=on "$T/extl2" 1M
qio_quiet -c 'write -P 0x12 0 1k' -c 'write -P 0x13 20k 2k' "$T/extl2"
seed fuzz_qcow2 extl2-16k "$T/extl2"
q create -f qcow2 -o compat=0.10,cluster_size=512 "$T/v2" 1M
qio_quiet -c 'write -P 0x21 0 1k' "$T/v2"
seed fuzz_qcow2 v2-512 "$T/v2"

# QED (4 KiB clusters and two-cluster tables: the smallest QEMU opens)
q create -f qed -o cluster_size=4096,table_size=2 "$T/qed-empty" 1M
seed fuzz_qed empty "$T/qed-empty"
q create -f qed -o cluster_size=4096,table_size=2 "$T/qed-data" 1M
qio_quiet -c 'write -P 0x11 0 8k' -c 'write -P 0x22 700k 4k' "$T/qed-data"
seed fuzz_qed data "$T/qed-data"
q create -f qed -o cluster_size=4096,table_size=2 -b backing.raw -F raw "$T/qed-ov" 1M
qio_quiet -c 'write -P 0x33 4k 2k' "$T/qed-ov"
seed fuzz_qed backing "$T/qed-ov"

# fuzz_ops (fuzz_ops.c): three parameter bytes, then 4-byte operations.
# op KIND SECTOR COUNT-1; KIND: 0 read, 1 write, 3 write zeroes,
# 4 discard, 5 flush, 6 block status, 7 resize, 8/9/10 snapshot
# create/apply/delete, 11 reopen, 12 amend, 13 commit, 14 rebase; 0x80 FUA.
op() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' "$1" $(($2 & 255)) $(($2 >> 8)) "$3")"; }
params() { printf "$(printf '\\x%02x\\x%02x\\x%02x' "$1" "$2" "$3")"; }
# qcow2 64 KiB clusters, 1 MiB: writes, a snapshot, overwrite, apply, delete.
{ params 0x0e 0xe4 0x00; op 1 0 255; op 1 300 40; op 0 0 255; op 8 0 0; op 1 100 20
  op 0x81 2000 7; op 4 0 255; op 0 0 255; op 9 0 0; op 0 0 255; op 10 0 0
  op 11 0 0; op 0 280 80; } > "$OUT/fuzz_ops/qcow2-snapshot"
# qcow2 512 B clusters, 1-bit refcounts, lazy, raw backing file: commit.
{ params 0xa0 0x20 0x01; op 1 3 5; op 3 20 30; op 4 0 10; op 6 0 255; op 0 0 63
  op 13 0 0; op 0 0 63; op 1 60 2; op 11 1 0; op 0 50 20; } > "$OUT/fuzz_ops/qcow2-lazy-commit"
# qcow2 v2 4 KiB clusters, qcow2 backing file: resize both ways, safe rebase.
{ params 0x94 0x48 0x12; op 1 10 100; op 7 64 0; op 0 0 255; op 1 700 60; op 7 300 3
  op 0 500 255; op 7 100 0; op 0 400 255; op 14 1 0; op 0 0 255; op 12 3 0
  op 6 0 255; } > "$OUT/fuzz_ops/qcow2-v2-resize-rebase"
# qcow2 extended L2, 16 KiB clusters: partial writes, discard, zeroes, status.
{ params 0x4a 0x64 0x30; op 1 1 0; op 1 33 2; op 4 0 31; op 3 64 70; op 6 0 200
  op 0 0 200; op 12 4 3; op 0 0 100; op 8 0 0; op 4 0 255; op 9 0 0; op 0 0 255
  } > "$OUT/fuzz_ops/qcow2-extl2"
# QED 4 KiB clusters, 1-cluster tables, raw backing: zeroes, grow, unsafe rebase.
{ params 0x81 0x40 0x01; op 1 5 3; op 3 8 16; op 0 0 64; op 7 800 0; op 1 2000 10
  op 0 1900 255; op 11 0 0; op 14 0 0; op 0 0 255; } > "$OUT/fuzz_ops/qed-backing"
# QED 64 KiB clusters, no backing file; a QED backing file with commit.
{ params 0x09 0x80 0x08; op 1 0 255; op 0x83 10 10; op 5 0 0; op 0 0 255; op 7 5 0
  op 11 0 0; op 0 0 255; } > "$OUT/fuzz_ops/qed-64k"
{ params 0x83 0x28 0x00; op 1 7 30; op 13 0 0; op 1 8 1; op 0 0 60; op 6 0 60
  } > "$OUT/fuzz_ops/qed-commit"

# CLI: byte 0 picks add (0), del (1), list (2); NUL-separated arguments.
args() { local w=$1; shift; printf "\\x$w"; printf '%s\0' "$@"; }
args 00 -t qcow2 -f img.qcow2 -q 2 -d 64 --buffered > "$OUT/fuzz_cli/add-qcow2"
args 00 -t null --size 1G -n 3 --recoverable --foreground > "$OUT/fuzz_cli/add-null"
args 00 -t raw -f x --bps-total 10M --iops-read 100 --throttle-burst-ms 500 \
	--backing same-dir --l2-cache-size 1M --discard unmap --copy-on-read > "$OUT/fuzz_cli/add-opts"
args 00 -t qcow2 -f x --snapshot s1 -r > "$OUT/fuzz_cli/add-snap"
args 01 -n 7 > "$OUT/fuzz_cli/del-n"
args 01 --all > "$OUT/fuzz_cli/del-all"
args 02 --json -n 1 > "$OUT/fuzz_cli/list"
args 02 --help > "$OUT/fuzz_cli/list-help"

# Control channel: byte 0 is the read size - 1 (bit 7: start negotiated),
# then what a client sends.
printf '\x0f{"execute": "qmp_capabilities"}\n{"execute": "query-version", "id": 1}\n{"execute": "query-commands"}\n' \
	> "$OUT/fuzz_control/session"
printf '\x83{"execute": "echo", "arguments": {"s": "x", "n": -5, "b": true, "x": 0.5, "o": {"k": [1, null]}, "a": ["z"]}, "id": [1]}\r\n' \
	> "$OUT/fuzz_control/echo"
printf '\x80{"execute": "fail", "arguments": {"why": "\\u00e9"}}\n{"execute": "event", "arguments": {"n": 3, "fail": true}}\n{"execute": "nosuch"}\n' \
	> "$OUT/fuzz_control/errors"
printf '\x00{"execute": }\n[1]\n{"id": 2}\n{"execute": 1}\n\n{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}' \
	> "$OUT/fuzz_control/malformed"
