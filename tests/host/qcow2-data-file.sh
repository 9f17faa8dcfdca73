#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-data-file.sh - an external data file is a name from the image,
# like a backing file: --backing=none and same-dir apply to it, and a
# FIFO is refused instead of blocking the open.
set -u

IMGBLK=${IMGBLK:-build/imgblk}
. "$(dirname "$0")/tap.sh"

need qemu-img

IMGBLK=$(realpath "$IMGBLK")
mkdir "$T_TMP/sub"
# qemu-img creates a relative data file relative to its own directory.
( cd "$T_TMP" &&
  qemu-img create -q -f qcow2 -o data_file=data.raw in.qcow2 1M &&
  qemu-img create -q -f qcow2 -o data_file="$T_TMP/sub/out.raw" out.qcow2 1M &&
  qemu-img create -q -f qcow2 -o data_file=fifo.raw fifo.qcow2 1M &&
  rm -f fifo.raw && mkfifo fifo.raw ) ||
	skip_all "qemu-img cannot make data-file images"

# io_case NAME PATTERN ARGS...: a read through imgblk io; PATTERN empty:
# it must succeed, else fail within 10 s with a message matching PATTERN.
io_case() {
	local name=$1 pat=$2 rc
	shift 2
	timeout 10 "$IMGBLK" io "$@" -c 'read 0 512' > "$T_TMP/out" 2>&1
	rc=$?
	if grep -q 'Sanitizer\|runtime error' "$T_TMP/out" || [ $rc -ge 124 ]; then
		not_ok "$name: status $rc"; diag_file "$T_TMP/out"
	elif [ -z "$pat" ] && [ $rc = 0 ]; then
		ok "$name: served"
	elif [ -n "$pat" ] && [ $rc != 0 ] && grep -q -- "$pat" "$T_TMP/out"; then
		ok "$name: refused ($(grep -- "$pat" "$T_TMP/out" | head -n 1))"
	else
		not_ok "$name: status $rc, expected '${pat:-success}'"; diag_file "$T_TMP/out"
	fi
}

io_case "data file beside the image, default policy" "" "$T_TMP/in.qcow2"
io_case "data file beside the image, --backing=same-dir" "" --backing=same-dir "$T_TMP/in.qcow2"
io_case "any data file, --backing=none" "--backing=none forbids" --backing=none "$T_TMP/in.qcow2"
io_case "data file in another directory, --backing=same-dir" "outside the image's directory" \
	--backing=same-dir "$T_TMP/out.qcow2"
io_case "FIFO as data file" "not a regular file" "$T_TMP/fifo.qcow2"
done_testing
