#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-profile.sh - what one request costs each engine on the host, in
# CPU instructions and in system calls, rather than in time.
#
#   scripts/bench/host-profile.sh [-b BUILD_DIR] [-f FORMATS]
#
# Rows: `imgblk bench` and `qemu-img bench` (aio=threads, its default)
# on the same files: 4k reads and writes on a fully allocated image
# (step 20k), 4k writes on an empty one (step 64k: each allocates), at
# depth 1 and 32, and `imgblk bench -f raw` on a raw file as the floor.
# Instructions are user space only (valgrind --tool=callgrind); system
# calls are counted by strace -f -c.  Each figure is the difference of a
# run of N2 requests and one of N1, divided by N2 - N1, so opening the
# image and setting up the rings cancel out.  Also the system calls per
# request of qemu-nbd as a server (the NBD path people use today), fed by
# qemu-img bench over a Unix socket, for each of its AIO modes.
# On a shared or virtual machine times swing between runs; these counts
# do not, which is why the QD1 latency rows of host-bench.sh are read
# against them.  Writes BUILD_DIR/bench/profile.md.  Not a test.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
FORMATS="qcow2 qed"
N1=1000
N2=5000
while getopts "b:f:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	f) FORMATS=$OPTARG ;;
	h) sed -n '4,5s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
IMGBLK=$BUILD_DIR/imgblk
[ -x "$IMGBLK" ] || { echo "host-profile.sh: build $IMGBLK first (make)" >&2; exit 1; }
for t in valgrind strace qemu-img qemu-io qemu-nbd; do
	command -v $t > /dev/null ||
		{ echo "host-profile.sh: $t missing (scripts/setup.sh deps --bench installs it)" >&2; exit 1; }
done
mkdir -p "$BUILD_DIR/bench"
# Absolute: qemu-nbd wants an absolute socket path.
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
# O_DIRECT needs a real filesystem: not /tmp, which may be tmpfs.
tmp=$(mktemp -d "$BUILD_DIR/bench/.profile.XXXXXX")
nbd_pid=
cleanup() {
	[ -z "$nbd_pid" ] || kill "$nbd_pid" 2> /dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
SIZE=1G

qemu-img create -q -f raw "$tmp/full.raw" $SIZE
qemu-io -f raw -c "write -P 0x5a 0 $SIZE" "$tmp/full.raw" > /dev/null

# instr TOOL FMT FILE COUNT ARGS...: user-space instructions of one run.
instr() {
	local tool=$1 fmt=$2 file=$3 count=$4
	shift 4
	valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		$tool bench -f "$fmt" -t none -c "$count" "$@" "$file" 2>&1 |
		sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p'
}

# calls TOOL FMT FILE COUNT ARGS...: system calls of one run, all threads.
calls() {
	local tool=$1 fmt=$2 file=$3 count=$4
	shift 4
	strace -f -c -o "$tmp/strace" $tool bench -f "$fmt" -t none -c "$count" "$@" "$file" > /dev/null
	awk '$NF == "total" { print $4 }' "$tmp/strace"
}

per() {	# per A B: (B - A) / (N2 - N1)
	awk -v a="$1" -v b="$2" -v n=$((N2 - N1)) 'BEGIN {
		if (a == "" || b == "") print "-"; else printf "%.1f", (b - a) / n }'
}

# prepare SETUP FMT FILE: the image a run starts from.
prepare() {
	rm -f "$3"
	case $1 in
	allocated)
		if [ "$2" = raw ]; then cp --reflink=auto "$tmp/full.raw" "$3"
		else qemu-img convert -O "$2" "$tmp/full.raw" "$3"; fi ;;
	empty)
		if [ "$2" = raw ]; then truncate -s $SIZE "$3"
		else qemu-img create -q -f "$2" "$3" $SIZE; fi ;;
	esac
	sync
}

# measure KIND TOOL FMT SETUP ARGS...: per-request figure of one cell.
measure() {
	local kind=$1 tool=$2 fmt=$3 setup=$4 a b
	shift 4
	prepare "$setup" "$fmt" "$tmp/img"
	a=$($kind "$tool" "$fmt" "$tmp/img" $N1 "$@")
	# An allocating run must start on an empty image again.
	[ "$setup" = empty ] && prepare "$setup" "$fmt" "$tmp/img"
	b=$($kind "$tool" "$fmt" "$tmp/img" $N2 "$@")
	per "$a" "$b"
}

out=$BUILD_DIR/bench/profile.md
{
	echo "Per request, user-space instructions (callgrind) and system calls (strace -f), difference of a ${N2}- and a ${N1}-request run."
	echo
	echo "| format | workload | depth | imgblk instr | qemu-img instr | imgblk syscalls | qemu-img syscalls |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
} > "$out"

row() {	# row FMT NAME DEPTH SETUP ARGS...
	local fmt=$1 name=$2 depth=$3 setup=$4 ii qi is qs
	shift 4
	ii=$(measure instr "$IMGBLK" "$fmt" "$setup" -d "$depth" "$@")
	is=$(measure calls "$IMGBLK" "$fmt" "$setup" -d "$depth" "$@")
	qi=- qs=-
	if [ "$fmt" != raw ]; then
		qi=$(measure instr qemu-img "$fmt" "$setup" -d "$depth" "$@")
		qs=$(measure calls qemu-img "$fmt" "$setup" -d "$depth" "$@")
	fi
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$fmt" "$name" "$depth" \
		"$ii" "$qi" "$is" "$qs" | tee -a "$out"
}

for fmt in raw $FORMATS; do
	for d in 1 32; do
		row "$fmt" "4k read, allocated, step 20k" $d allocated -s 4k -S 20k
		row "$fmt" "4k write, allocated, step 20k" $d allocated -s 4k -S 20k -w
		row "$fmt" "4k write, empty, step 64k" $d empty -s 4k -S 64k -w
	done
done

# qemu-nbd as a server: its system calls per request, all threads, while
# qemu-img bench (4k reads, QD1, allocated qcow2) drives it over a socket.
{
	echo
	echo "qemu-nbd as a server (qcow2, --cache=none), system calls per 4k read at QD1, all its threads:"
	echo
	echo "| qemu-nbd --aio | syscalls per request |"
	echo "| --- | --- |"
} >> "$out"
prepare allocated qcow2 "$tmp/nbd.qcow2"
sock=$tmp/nbd.sock
for aio in threads native io_uring; do
	rm -f "$sock"
	qemu-nbd -k "$sock" -f qcow2 --cache=none --aio=$aio -t "$tmp/nbd.qcow2" 2> "$tmp/nbd.err" &
	nbd_pid=$!
	for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
	if [ ! -S "$sock" ]; then
		echo "| $aio | (qemu-nbd did not start: $(head -c 200 "$tmp/nbd.err" | tr "\n|" "  ")) |" >> "$out"
		nbd_pid=
		continue
	fi
	res=()
	for n in $N1 $N2; do
		strace -f -c -o "$tmp/strace.$n" -p "$nbd_pid" 2> /dev/null &
		st=$!
		sleep 0.5
		qemu-img bench -f raw -c $n -d 1 -s 4k -S 20k \
			"nbd+unix:///?socket=$sock" > /dev/null
		kill -INT $st
		wait $st || true
		res+=("$(awk '$NF == "total" { print $4 }' "$tmp/strace.$n")")
	done
	kill "$nbd_pid"
	wait "$nbd_pid" 2> /dev/null || true
	nbd_pid=
	printf '| %s | %s |\n' $aio "$(per "${res[0]}" "${res[1]}")" | tee -a "$out"
done
echo "# table written to $out" >&2
