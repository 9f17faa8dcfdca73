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

command -v clang > /dev/null ||
	skip_all "clang not installed (scripts/setup.sh deps --fuzz)"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$T_TMP/probe.c"
clang -fsanitize=fuzzer,address,undefined -o "$T_TMP/probe" "$T_TMP/probe.c" > "$T_TMP/probe.log" 2>&1 ||
	skip_all "clang cannot link -fsanitize=fuzzer,address,undefined (libclang-rt-14-dev: scripts/setup.sh deps --fuzz)"
command -v qemu-img > /dev/null || skip_all "qemu-img missing: no seed images"

start=$SECONDS
if make --no-print-directory -j"$(nproc)" O="$O" fuzz-build > "$T_TMP/build.log" 2>&1; then
	ok "fuzz targets built in $((SECONDS - start)) s"
else
	not_ok "make fuzz-build"
	diag_file "$T_TMP/build.log" 30
	done_testing
fi

for bin in "$O"/fuzz/tests/fuzz/fuzz_*; do
	case $bin in *.o | *.d) continue ;; esac
	t=$(basename "$bin")
	# A fresh corpus from the seeds: the kept one of make fuzz grows, and
	# libFuzzer loads it all before the clock starts.
	if tests/fuzz/run.sh -b "$O/fuzz" -t "$SECS" -c "$T_TMP/corpus" "$t" > "$T_TMP/$t.log" 2>&1; then
		ok "$(tail -n 1 "$T_TMP/$t.log")"
		grep -q 'replayed' "$T_TMP/$t.log" && echo "# $(grep replayed "$T_TMP/$t.log")"
	else
		not_ok "$t"
		diag_file "$T_TMP/$t.log" 30
	fi
done
done_testing
