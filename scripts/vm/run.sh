#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# run.sh - boot the test VM once and run guest test scripts in it.
#
#   scripts/vm/run.sh [options] TEST_SCRIPT...
#     -b BUILD_DIR   build dir with imgblk and the VM cache (default: build)
#     -s SHARE_DIR   host directory copied into the guest as /share and
#                    copied back after the run (images in and out)
#     -t SECONDS     time limit per test (default 300)
#     -m MEM         guest memory (default 2G)
#     -v             also show the guest console on stderr
#
# Prints one TAP stream on stdout: each guest test's lines renumbered and
# prefixed with the test's name, one extra line per test for its exit
# status and for the kernel log, a comment `# time NAME: N s` with its
# wall time, and the plan at the end.  Exits non-zero
# if anything failed or the VM did not come back.  The whole console goes
# to BUILD_DIR/vm/console.log.
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 2; }
usage() { sed -n '4,12s/^# \{0,1\}//p' "$0"; }

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$REPO/build
SHARE_DIR=
TIMEOUT=300
MEM=2G
VERBOSE=0
while getopts "b:s:t:m:vh" opt; do
	case $opt in
	b) BUILD_DIR=$OPTARG ;;
	s) SHARE_DIR=$OPTARG ;;
	t) TIMEOUT=$OPTARG ;;
	m) MEM=$OPTARG ;;
	v) VERBOSE=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { usage >&2; die "no test script given"; }
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive number of seconds"
[ -z "$SHARE_DIR" ] || [ -d "$SHARE_DIR" ] || die "share dir $SHARE_DIR does not exist"
mkdir -p "$BUILD_DIR/vm"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)

# A fresh machine has none of the VM packages; this is a no-op otherwise.
"$REPO/scripts/setup.sh" deps --vm || die "cannot install the VM rig's packages"
for t in qemu-system-x86_64 mkfs.ext4 debugfs; do
	PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null ||
		die "$t not found; run scripts/setup.sh deps --vm"
done
export PATH=$PATH:/usr/sbin:/sbin

t_start=$EPOCHREALTIME
KDIR=$("$HERE/kernel.sh" "$BUILD_DIR")
INITRD=$("$HERE/initramfs.sh" "$BUILD_DIR")

tmp=$(mktemp -d "$BUILD_DIR/vm/.run.XXXXXX")
qpid=
ceph_dir=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null
	[ -n "$ceph_dir" ] && "$REPO/scripts/ceph-cluster.sh" stop "$ceph_dir" > /dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The run disk: the tests, their list, the config and the share, on an
# ext4 filesystem (built into the guest kernel) made from a directory
# with mkfs.ext4 -d, so no loop device or root mount is needed here.
# The test library goes along as in the tree: tests/lib.sh (from
# tests/vm/) sources ../lib/tap.sh and ../lib/image.sh.
stage=$tmp/stage
mkdir -p "$stage/tests" "$stage/lib" "$stage/share"
cp "$REPO/tests/vm/lib.sh" "$stage/tests/lib.sh"
cp "$REPO"/tests/lib/*.sh "$stage/lib/"
: > "$stage/tests.list"
ntests=0
want_ceph=
for t in "$@"; do
	[ -f "$t" ] || die "test script $t not found"
	name=$(basename "$t")
	# So that tests/vm/*.sh works: the helpers are not a test.
	[ "$name" = lib.sh ] && continue
	ntests=$((ntests + 1))
	grep -q '^# vm-host: ceph$' "$t" && want_ceph=1
	cp "$t" "$stage/tests/$name"
	echo "$name" >> "$stage/tests.list"
done
echo "TIMEOUT=$TIMEOUT" > "$stage/config"

# A test with the line "# vm-host: ceph" gets a one-node Ceph cluster on the
# host's loopback for the run (scripts/ceph-cluster.sh; stopped by cleanup
# whatever happens), its client on a disk of its own (ceph-disk.sh) and a
# user-mode NIC.  Ceph hands its clients the daemons' own addresses, so
# the cluster listens on CEPH_ADDR, a loopback address of the host's that
# the guest routes to the NIC (tests/vm/lib.sh: need_ceph), where QEMU's
# user-mode network connects to the same address on the host.  Run-disk
# ceph/ holds the guest's ceph.conf and the address, or ceph/skip with
# the reason there is no cluster.  Other runs boot as before: no cluster,
# no NIC, no disk.
CEPH_ADDR=127.0.2.2
QEMU_CEPH=()
ceph_prestart() {
	local c=$stage/ceph cdisk
	mkdir -p "$c"
	if ! command -v ceph-mon > /dev/null || ! command -v rbd-nbd > /dev/null; then
		echo "Ceph is not installed on the host (scripts/setup.sh deps --ceph)" > "$c/skip"
		return 0
	fi
	cdisk=$("$HERE/ceph-disk.sh" "$BUILD_DIR" 2> "$tmp/ceph-disk.err") || {
		echo "the guest's Ceph client disk: ceph-disk.sh exited $?: $(tail -n 1 "$tmp/ceph-disk.err")" > "$c/skip"
		return 0
	}
	ceph_dir=$tmp/ceph
	if ! "$REPO/scripts/ceph-cluster.sh" start "$ceph_dir" 0 $CEPH_ADDR > "$tmp/ceph.out" 2>&1; then
		echo "the host's Ceph cluster did not start: $(tail -n 1 "$tmp/ceph.out")" > "$c/skip"
		return 0
	fi
	cat > "$c/ceph.conf" <<-EOF
	[global]
	$(grep -E '^(fsid|mon host) = ' "$ceph_dir/ceph.conf")
	auth cluster required = none
	auth service required = none
	auth client required = none
	ms bind ipv6 = false
	EOF
	echo $CEPH_ADDR > "$c/addr"
	QEMU_CEPH=(-drive "file=$cdisk,format=raw,if=none,id=ceph,readonly=on"
		   -device virtio-blk-pci,drive=ceph
		   -netdev user,id=net0 -device virtio-net-pci,netdev=net0)
	echo "# vm: a Ceph cluster on the host's $CEPH_ADDR for the run"
}
if [ -n "$SHARE_DIR" ]; then
	cp -a --sparse=always "$SHARE_DIR/." "$stage/share/"
fi
[ -z "$want_ceph" ] || ceph_prestart
share_kib=$(du -sk --apparent-size "$stage" | cut -f1)
# Room for what the guest writes into the share; the file is sparse.
disk_mib=$(( share_kib / 1024 * 2 + 2048 ))
truncate -s "${disk_mib}M" "$tmp/run.img"
mkfs.ext4 -q -F -L imgblk-run -E lazy_itable_init=1,lazy_journal_init=1 \
	-d "$stage" "$tmp/run.img" || die "mkfs.ext4 of the run disk failed"
rm -rf "$stage"

[ "$ntests" -gt 0 ] || die "no test script given (lib.sh is not one)"
# Boot, each test's limit plus its cleanup, and margin for slow TCG.
vm_limit=$(( 180 + ntests * (TIMEOUT + 60) ))
CONSOLE=$BUILD_DIR/vm/console.log
: > "$CONSOLE"

n=0		# TAP number on the host
nfail=0
cur=		# test being run
cur_n=0		# its ok/not ok lines
cur_fail=0
cur_plan=	# its plan, if it printed one
cur_skip=	# reason, if it skipped as a whole
dmesg_lines=()
booted=
done_seen=

elapsed() {	# elapsed START END: seconds between two $EPOCHREALTIME values
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'
}

tap() {		# tap ok|not-ok DESCRIPTION [DIRECTIVE]
	n=$((n + 1))
	if [ "$1" = ok ]; then
		echo "ok $n - $2${3:+ # $3}"
	else
		nfail=$((nfail + 1))
		echo "not ok $n - $2${3:+ # $3}"
	fi
}

# A guest test's own line: renumber it, keep its directive.
guest_line() {
	local l=$1 st desc
	if [[ $l =~ ^(not\ )?ok([[:space:]]+[0-9]+)?([[:space:]]*-)?[[:space:]]*(.*)$ ]]; then
		st=ok
		[ -n "${BASH_REMATCH[1]}" ] && st=not-ok
		desc=${BASH_REMATCH[4]}
		cur_n=$((cur_n + 1))
		# "not ok ... # TODO" is not a failure in TAP; keep that.
		if [ $st = not-ok ] && [[ ! $desc =~ \#[[:space:]]*[Tt][Oo][Dd][Oo] ]]; then
			cur_fail=$((cur_fail + 1))
		fi
		n=$((n + 1))
		if [ $st = ok ]; then
			echo "ok $n - $cur: $desc"
		else
			[[ $desc =~ \#[[:space:]]*[Tt][Oo][Dd][Oo] ]] || nfail=$((nfail + 1))
			echo "not ok $n - $cur: $desc"
		fi
	elif [[ $l =~ ^1\.\.([0-9]+)(.*)$ ]]; then
		cur_plan=${BASH_REMATCH[1]}
		if [ "$cur_plan" = 0 ]; then
			cur_skip=$(sed -E 's/^[[:space:]]*#[[:space:]]*(SKIP|skip)[[:alpha:]]*[[:space:]]*//' \
				<<< "${BASH_REMATCH[2]}")
			cur_skip=${cur_skip:-no reason given}
		fi
	elif [[ $l =~ ^[[:space:]]*# ]]; then
		echo "$l"
	elif [[ $l =~ ^Bail\ out! ]]; then
		echo "# $cur: $l"
		cur_fail=$((cur_fail + 1))
	else
		echo "# $cur: $l"
	fi
}

# The guest's verdict on a test: exit status, time limit, plan.
end_test() {	# end_test NAME RC TIMEDOUT
	local name=$1 rc=$2 to=$3
	if [ "$to" = 1 ]; then
		tap not-ok "$name: timed out after ${TIMEOUT}s"
	elif [ -n "$cur_skip" ] && [ "$cur_n" = 0 ]; then
		tap ok "$name" "SKIP $cur_skip"
	elif [ "$cur_n" = 0 ]; then
		tap not-ok "$name: ran no test (exit status $rc)"
	elif [ -n "$cur_plan" ] && [ "$cur_plan" != "$cur_n" ]; then
		tap not-ok "$name: planned $cur_plan tests but ran $cur_n"
	elif [ "$rc" != 0 ] && [ "$cur_fail" = 0 ]; then
		tap not-ok "$name: exited with status $rc without a failing test"
	elif [ "$rc" = 0 ] && [ "$cur_fail" != 0 ]; then
		tap not-ok "$name: $cur_fail failures but exit status 0"
	else
		tap ok "$name: exit status $rc"
	fi
}

end_dmesg() {	# end_dmesg NAME COUNT
	local l
	if [ "$2" != 0 ]; then
		tap not-ok "$1: kernel log has $2 WARNING/BUG/Oops/hung-task lines"
		for l in "${dmesg_lines[@]}"; do echo "#   $l"; done
	else
		tap ok "$1: kernel log clean"
	fi
	dmesg_lines=()
}

# TCG only: KVM is not usable on the machines this runs on.  cache=unsafe
# is fine for a throwaway disk the guest unmounts before powering off.
QEMU=(qemu-system-x86_64 -M q35 -accel tcg -cpu max -smp 2 -m "$MEM"
	-nographic -no-reboot -nodefaults -serial stdio
	-kernel "$KDIR/vmlinuz" -initrd "$INITRD"
	-append "console=ttyS0 quiet panic=-1 loglevel=4 rdinit=/init"
	-drive "file=$tmp/run.img,format=raw,if=none,id=run,cache=unsafe"
	-device virtio-blk-pci,drive=run "${QEMU_CEPH[@]}")

echo "# vm: $(cat "$KDIR/version"), $ntests test(s), ${TIMEOUT}s each"
# Boots that die before the guest's init is up are tried again, twice: TCG
# now and then trips over the kernel patching its own code on one vCPU
# while the other runs it (an int3 Oops in early boot), before any of our
# code runs.  A guest that does come up is never booted twice.
for attempt in 1 2 3; do
t_qemu=$EPOCHREALTIME
# exec: the coproc pid is timeout itself, which passes a TERM on to qemu.
coproc QEMU_PROC { exec timeout -k 10 "$vm_limit" "${QEMU[@]}" < /dev/null 2>&1; }
qpid=$QEMU_PROC_PID
while IFS= read -r line <&"${QEMU_PROC[0]}"; do
	line=${line%$'\r'}
	printf '%s\n' "$line" >> "$CONSOLE"
	[ "$VERBOSE" = 1 ] && printf '%s\n' "$line" >&2
	# Firmware and the kernel leave terminal escapes at a line's start.
	case $line in
	?*@@IMGBLK\ *|?*@@T\ *) line=@@${line#*@@} ;;
	esac
	case $line in
	"@@T "*)
		guest_line "${line#@@T }" ;;
	"@@IMGBLK BOOTED")
		booted=$EPOCHREALTIME
		echo "# vm boot: $(elapsed "$t_qemu" "$booted") s" ;;
	"@@IMGBLK BEGIN "*)
		cur=${line#@@IMGBLK BEGIN }
		cur_n=0 cur_fail=0 cur_plan='' cur_skip=''
		t_test=$EPOCHREALTIME
		echo "# --- $cur" ;;
	"@@IMGBLK END "*)
		read -r _ _ name rc to <<< "$line"
		echo "# time $name: $(elapsed "$t_test" "$EPOCHREALTIME") s"
		end_test "$name" "$rc" "$to" ;;
	"@@IMGBLK DMESG "*)
		dmesg_lines+=("${line#@@IMGBLK DMESG }") ;;
	"@@IMGBLK DMESGEND "*)
		read -r _ _ name cnt <<< "$line"
		end_dmesg "$name" "$cnt" ;;
	"@@IMGBLK NOTE "*)
		echo "# guest: ${line#@@IMGBLK NOTE }" ;;
	"@@IMGBLK DONE")
		done_seen=1 ;;
	esac
done
wait "$qpid" && qrc=0 || qrc=$?
qpid=
[ -n "$booted" ] || [ "$attempt" = 3 ] && break
echo "# vm: the guest died before its init was up (attempt $attempt," \
	"console in $CONSOLE.$attempt); booting again:"
grep -m 3 -E 'Oops|BUG|panic' "$CONSOLE" | sed 's/^/#   /'
mv -f "$CONSOLE" "$CONSOLE.$attempt"
: > "$CONSOLE"
done

if [ -z "$done_seen" ]; then
	if [ -z "$booted" ]; then
		tap not-ok "vm: guest never reached the tests (qemu status $qrc)"
	elif [ -n "$cur" ]; then
		tap not-ok "vm: guest stopped during $cur (qemu status $qrc)"
	else
		tap not-ok "vm: guest did not finish (qemu status $qrc)"
	fi
	echo "# last console lines ($CONSOLE):"
	tail -n 30 "$CONSOLE" | sed 's/^/#   /'
fi

# Copy the share back: debugfs reads the image without mounting it.
if [ -n "$SHARE_DIR" ] && [ -n "$booted" ]; then
	mkdir -p "$tmp/out"
	if debugfs -R "rdump /share $tmp/out" "$tmp/run.img" >/dev/null 2>&1 &&
	   [ -d "$tmp/out/share" ]; then
		cp -a --sparse=always "$tmp/out/share/." "$SHARE_DIR/"
	else
		tap not-ok "vm: could not copy the share back from the run disk"
	fi
fi

echo "1..$n"
echo "# total: $(elapsed "$t_start" "$EPOCHREALTIME") s"
[ "$nfail" = 0 ] && [ -n "$done_seen" ]
