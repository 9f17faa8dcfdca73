#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# host-bench.sh - the engines side by side on the host: `imgblk bench`
# vs `qemu-img bench` on the same image files, and both on a raw file of
# the same size, with O_DIRECT (-t none).
#
#   scripts/bench/host-bench.sh [-b BUILD_DIR] [-f FORMATS] [-c COUNT] [-s SIZE]
#                               [-r REPEATS]
#
# Rows: 4k reads and 4k writes on a fully allocated image, spread with a
# 20k step as qemu-img bench walks; 4k writes on an empty image with a 64k
# step (every request allocates a cluster); 64k sequential writes on an
# empty image; each at depth 1 and 32; plus imgblk's --random pattern on
# the allocated image.  Each row runs the three tools in turn REPEATS
# times (default 3) and keeps each tool's median: on a shared machine a
# burst of other work then spoils one run, not the row.  Prints a
# markdown table of IOPS and the ratios imgblk/qemu and imgblk/raw, and
# writes it to BUILD_DIR/bench/host.md.
# A benchmark, not a test: it asserts nothing.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=$REPO/build
FORMATS="qcow2 qed"
COUNT=40000
SIZE=1G
REPEATS=3
while getopts "b:f:c:s:r:h" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	f) FORMATS=$OPTARG ;;
	c) COUNT=$OPTARG ;;
	s) SIZE=$OPTARG ;;
	r) REPEATS=$OPTARG ;;
	h) sed -n '4,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || { echo "host-bench.sh: -r wants a positive count" >&2; exit 2; }
IMGBLK=$BUILD_DIR/imgblk
[ -x "$IMGBLK" ] || { echo "host-bench.sh: build $IMGBLK first (make)" >&2; exit 1; }
mkdir -p "$BUILD_DIR/bench"
# On the build directory's filesystem: /tmp may be tmpfs, which has no O_DIRECT.
tmp=$(mktemp -d "$BUILD_DIR/bench/.host.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# seconds TOOL ARGS...: run a bench and print its "Run completed in" time.
seconds() {
	"$@" 2>&1 | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p'
}

iops() {	# iops COUNT SECONDS
	awk -v c="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", c / s; else print "-" }'
}

median() {	# median X...: the middle value ("-" if none)
	[ $# -gt 0 ] || { echo -; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "-" }'
}

ratio() {	# ratio A B
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "-") printf "%.2f", a / b; else print "-" }'
}

# An image whose every cluster holds data, made by QEMU so both tools
# read the same layout.
# Each setup ends with sync: the converted image's dirty pages must not be
# written back while the next run measures.
allocated() {	# allocated FMT FILE
	qemu-img convert -O "$1" "$tmp/full.raw" "$2"
	sync
}

empty() {	# empty FMT FILE
	rm -f "$2"
	qemu-img create -q -f "$1" "$2" "$SIZE"
	sync
}

echo "# filling a $SIZE raw file" >&2
qemu-img create -q -f raw "$tmp/full.raw" "$SIZE"
qemu-io -f raw -c "write -P 0x5a 0 $SIZE" "$tmp/full.raw" >/dev/null
sync

out=$BUILD_DIR/bench/host.md
{
	echo "| format | workload | depth | imgblk IOPS | qemu-img IOPS | raw IOPS (imgblk) | imgblk/qemu | imgblk/raw |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} > "$out"

row() {	# row FMT NAME DEPTH SETUP ARGS...
	local fmt=$1 name=$2 depth=$3 setup=$4 s i q r count=$COUNT
	shift 4
	# On an empty image every request must allocate: no more requests
	# than clusters (64k) in the image.
	[ "$setup" = empty ] && [ "$count" -gt $(($(numfmt --from=iec "$SIZE") / 65536 - 384)) ] &&
		count=$(($(numfmt --from=iec "$SIZE") / 65536 - 384))
	local is=() qs=() rs=() rep
	# Writes to an allocated image allocate nothing: one copy serves
	# every run of the row.  An empty image is made again for each.
	[ "$setup" = allocated ] && allocated "$fmt" "$tmp/img"
	for ((rep = 0; rep < REPEATS; rep++)); do
		[ "$setup" = empty ] && empty "$fmt" "$tmp/img"
		s=$(seconds "$IMGBLK" bench -f "$fmt" -t none -c "$count" -d "$depth" "$@" "$tmp/img")
		is+=("$(iops "$count" "$s")")
		# qemu-img bench has no random pattern: fio on raw is that row's peer.
		if [[ " $* " != *" --random "* ]]; then
			[ "$setup" = empty ] && empty "$fmt" "$tmp/img"
			s=$(seconds qemu-img bench -f "$fmt" -t none -c "$count" -d "$depth" "$@" "$tmp/img")
			qs+=("$(iops "$count" "$s")")
		fi
		# The raw baseline: the same requests on the raw file, same tool.
		if [ "$setup" = allocated ]; then
			s=$(seconds "$IMGBLK" bench -f raw -t none -c "$count" -d "$depth" "$@" "$tmp/full.raw")
		else
			rm -f "$tmp/empty.raw"
			truncate -s "$SIZE" "$tmp/empty.raw"
			sync
			s=$(seconds "$IMGBLK" bench -f raw -t none -c "$count" -d "$depth" "$@" "$tmp/empty.raw")
		fi
		rs+=("$(iops "$count" "$s")")
	done
	i=$(median "${is[@]}")
	q=$(median "${qs[@]}")
	r=$(median "${rs[@]}")
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$fmt" "$name" "$depth" \
		"$i" "$q" "$r" "$(ratio "$i" "$q")" "$(ratio "$i" "$r")" | tee -a "$out"
}

for fmt in $FORMATS; do
	"$IMGBLK" create -q -f "$fmt" "$tmp/probe" 1M 2>/dev/null ||
		{ echo "# $fmt: not supported by this imgblk, skipped" >&2; continue; }
	for d in 1 32; do
		row "$fmt" "4k read, allocated, step 20k" $d allocated -s 4k -S 20k
		row "$fmt" "4k read, allocated, random" $d allocated -s 4k --random
		row "$fmt" "4k write, allocated, step 20k" $d allocated -s 4k -S 20k -w
		row "$fmt" "4k write, empty, step 64k" $d empty -s 4k -S 64k -w
		row "$fmt" "64k seq write, empty" $d empty -s 64k -w
	done
done
echo "# table written to $out" >&2
