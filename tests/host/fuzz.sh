#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# fuzz.sh - a short libFuzzer run in make check (docs/fuzzing.md): builds
# the fuzz targets with clang into $O/fuzz, replays every saved crash in
# tests/fuzz/regress/ and fuzzes each target for FUZZ_CHECK_SECONDS
# (default 10) from the seed images (tests/fuzz/seed.sh).  Without clang or its libFuzzer runtime it skips
# (scripts/setup.sh deps --fuzz installs them); a build failure, a crash
# or a saved input failing again is a failure.
set -u

O=${O:-build}
SECS=${FUZZ_CHECK_SECONDS:-10}
cd "$(dirname "$0")/../.." || exit 2
. tests/host/tap.sh

T=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-check.XXXXXX")
trap 'rm -rf "$T"' EXIT

if ! command -v clang > /dev/null; then
	echo "1..0 # SKIP clang not installed (scripts/setup.sh deps --fuzz)"
	exit 0
fi
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$T/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined -o "$T/probe" "$T/probe.c" > "$T/probe.log" 2>&1; then
	echo "1..0 # SKIP clang cannot link -fsanitize=fuzzer,address,undefined (libclang-rt-14-dev: scripts/setup.sh deps --fuzz)"
	exit 0
fi
if ! command -v qemu-img > /dev/null; then
	echo "1..0 # SKIP qemu-img missing: no seed images"
	exit 0
fi

start=$SECONDS
if make --no-print-directory -j"$(nproc)" O="$O" fuzz-build > "$T/build.log" 2>&1; then
	ok "fuzz targets built in $((SECONDS - start)) s"
else
	not_ok "make fuzz-build"
	diag_file "$T/build.log" 30
	echo "1..$N"
	exit 1
fi

for bin in "$O"/fuzz/tests/fuzz/fuzz_*; do
	case $bin in *.o | *.d) continue ;; esac
	t=$(basename "$bin")
	# A fresh corpus from the seeds: the kept one of make fuzz grows, and
	# libFuzzer loads it all before the clock starts.
	if tests/fuzz/run.sh -b "$O/fuzz" -t "$SECS" -c "$T/corpus" "$t" > "$T/$t.log" 2>&1; then
		ok "$(tail -n 1 "$T/$t.log")"
		grep -q 'replayed' "$T/$t.log" && echo "# $(grep replayed "$T/$t.log")"
	else
		not_ok "$t"
		diag_file "$T/$t.log" 30
	fi
done
echo "1..$N"
[ "$FAIL" -eq 0 ]
