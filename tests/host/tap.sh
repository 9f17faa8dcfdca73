# SPDX-License-Identifier: GPL-2.0
#
# tests/host/tap.sh - TAP output for the host test scripts (bash).  Source
# it, report with ok/not_ok/skip, and end with `echo "1..$N"` and an exit
# status from $FAIL.  Also poke/peek, which the scripts that damage
# images on purpose use to edit on-disk fields (they need python3).

N=0
FAIL=0

ok() { N=$((N + 1)); echo "ok $N - $*"; }
not_ok() { N=$((N + 1)); FAIL=$((FAIL + 1)); echo "not ok $N - $*"; }
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }	# skip DESCRIPTION REASON
diag_file() { sed 's/^/#   /' "$1" | head -n "${2:-15}"; }	# diag_file FILE [LINES]

# need [TOOL...]: the whole script is skipped unless $IMGBLK is built and
# every TOOL is on the PATH (scripts/setup.sh deps installs them).
need() {
	local c

	[ -x "$IMGBLK" ] || { echo "1..0 # SKIP $IMGBLK not built"; exit 0; }
	for c in "$@"; do
		command -v "$c" > /dev/null || { echo "1..0 # SKIP $c not available"; exit 0; }
	done
}

# check DESCRIPTION CMD...: one TAP line for whether CMD succeeds; its
# output (kept in $T/out: the script's temporary directory) only on failure.
check() {
	local d=$1 rc
	shift
	"$@" > "$T/out" 2>&1
	rc=$?
	if [ $rc = 0 ]; then ok "$d"; else
		not_ok "$d"; echo "# failed ($rc): $*"; diag_file "$T/out"; fi
}

# check_fails DESCRIPTION CMD...: CMD must fail.
check_fails() {
	local d=$1
	shift
	if "$@" > "$T/out" 2>&1; then not_ok "$d"; echo "# unexpectedly succeeded: $*"
	else ok "$d"; fi
}

# poke FILE OFFSET STRUCTFMT VALUE: write a field ('>Q' big-endian u64, '<I' ...).
# A failed edit ends the script: the checks after it would test an
# undamaged image, and some of them would pass.
poke() {
	python3 - "$@" <<'EOF' || { echo "Bail out! poke $* failed"; exit 1; }
import struct, sys
f, off, fmt, val = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], int(sys.argv[4], 0)
with open(f, "r+b") as fh:
    fh.seek(off)
    fh.write(struct.pack(fmt, val & ((1 << (8 * struct.calcsize(fmt))) - 1)))
EOF
}
# qcow2_incompat IMG: the low byte of a qcow2 header's incompatible_features
# (offset 72, big-endian u64): bit 0 dirty, bit 1 corrupt.  No python3.
qcow2_incompat() { echo $(( $(od -An -tu1 -j 79 -N 1 "$1") )); }
# peek FILE OFFSET STRUCTFMT: print a field.
peek() {
	python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); print(struct.unpack_from(sys.argv[3], d, int(sys.argv[2],0))[0])' "$@"
}
