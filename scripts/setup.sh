#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# setup.sh - install what building and testing imgblk needs.
#
#   scripts/setup.sh deps [--vm] [--fuzz] [--bench] [--deb] [--ceph]
#                                    apt packages for the build and the tests
#                                    (+ the VM rig, + clang and libFuzzer for
#                                    make fuzz, + the profilers and gnuplot for
#                                    make bench, + debhelper and lintian for
#                                    make dist-check, + a one-node Ceph for the
#                                    RBD tests)
#   scripts/setup.sh check [--fuzz]  installs nothing: names what the build
#                                    (or make fuzz) lacks, and fails if anything
#   scripts/setup.sh headers BUILD   kernel headers we vendor at build time
#
# deps is idempotent and cheap when there is nothing to do, so CI and the
# README's commands call it on every run: the machine a session gets may be
# fresh, and nothing installed by hand is guaranteed to survive.  make never
# installs anything: it runs check and headers, which only read.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }

usage() {
	cat <<'USAGE'
usage: scripts/setup.sh deps [--vm] [--fuzz] [--bench] [--deb] [--ceph]
       scripts/setup.sh check [--fuzz]
       scripts/setup.sh headers BUILD_DIR
USAGE
}

# What make needs (debian/control's Build-Depends say the same), then what
# the host tests run.
BUILD_PKGS=(build-essential pkg-config liburing-dev zlib1g-dev libzstd-dev
	    libnl-3-dev libjson-c-dev libssl-dev libsystemd-dev libnbd-dev librbd-dev
	    linux-source-6.12 xz-utils)
# nbdkit: the second NBD server of tests/host/nbd.sh (qemu-nbd is the first);
# openssl: the x509 CA and certificate of tests/host/nbd-tls.sh.
TEST_PKGS=(qemu-utils e2fsprogs fio groff-base man-db nbdkit openssl)
VM_PKGS=(qemu-system-x86 busybox-static cpio kmod)
# make fuzz: clang, and the libFuzzer and sanitizer runtimes it links.
FUZZ_PKGS=(clang libclang-rt-14-dev)
# make bench: instruction and system call counts, and the report's chart.
BENCH_PKGS=(valgrind strace gnuplot-nox)
# make dist-check: dpkg-buildpackage and lintian.
DEB_PKGS=(debhelper devscripts lintian fakeroot dpkg-dev)
# The RBD tests: the daemons scripts/ceph-cluster.sh starts, the rbd tool,
# and QEMU's rbd driver (a module in qemu-block-extra) as the oracle.
CEPH_PKGS=(ceph-mon ceph-osd ceph-mgr ceph-common uuid-runtime qemu-block-extra rbd-nbd)
KSRC_PKG=linux-source-6.12
KSRC_TAR=/usr/src/linux-source-6.12.tar.xz

SUDO=
need_sudo() {
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
		SUDO=sudo
	fi
}

# Print the packages among "$@" that are not installed. One dpkg-query call
# for all of them keeps the no-op path well under a second.
missing_pkgs() {
	local p st
	declare -A have=()
	while IFS=' ' read -r p st; do
		[ "$st" = installed ] && have[$p]=1
	done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true)
	for p in "$@"; do
		# dpkg-query prints the bare name, also for arch-qualified packages.
		[ -n "${have[$p]:-}" ] || echo "$p"
	done
}

# Install packages; refresh the lists first only when something is missing,
# because apt-get update is the slow part and needs the network.
apt_install() {
	local miss
	mapfile -t miss < <(missing_pkgs "$@")
	[ "${#miss[@]}" -eq 0 ] && return 0
	need_sudo
	echo "setup.sh: installing ${miss[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >/dev/null ||
		die "apt-get update failed (is the Debian mirror reachable?)"
	$SUDO apt-get install -y -qq --no-install-recommends "${miss[@]}" >/dev/null ||
		die "apt-get install ${miss[*]} failed"
}

cmd_deps() {
	local pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") opt
	for opt in "$@"; do
		case $opt in
		--vm) pkgs+=("${VM_PKGS[@]}") ;;
		--fuzz) pkgs+=("${FUZZ_PKGS[@]}") ;;
		--bench) pkgs+=("${BENCH_PKGS[@]}") ;;
		--deb) pkgs+=("${DEB_PKGS[@]}") ;;
		--ceph) pkgs+=("${CEPH_PKGS[@]}") ;;
		*) usage >&2; die "deps: unknown option '$opt'" ;;
		esac
	done
	apt_install "${pkgs[@]}"
}

# What make runs first: a missing header or library would otherwise show
# as a compiler error far from its cause.
cmd_check() {
	local pkgs=("${BUILD_PKGS[@]}") opt miss what="deps"
	for opt in "$@"; do
		case $opt in
		--fuzz) pkgs+=("${FUZZ_PKGS[@]}"); what="deps --fuzz" ;;
		*) usage >&2; die "check: unknown option '$opt'" ;;
		esac
	done
	command -v dpkg-query > /dev/null || return 0
	mapfile -t miss < <(missing_pkgs "${pkgs[@]}")
	[ "${#miss[@]}" -eq 0 ] ||
		die "missing packages: ${miss[*]}; install them with: scripts/setup.sh $what"
}

cmd_headers() {
	[ $# -eq 1 ] || { usage >&2; die "headers: need BUILD_DIR"; }
	local build=$1
	local out_ublk=$build/include/linux/ublk_cmd.h
	local out_harn=$build/include/kselftest_harness.h
	local out_ksft=$build/include/kselftest.h

	if [ -s "$out_ublk" ] && [ -s "$out_harn" ] && [ -s "$out_ksft" ]; then
		return 0
	fi
	[ -r "$KSRC_TAR" ] ||
		die "$KSRC_TAR missing; install $KSRC_PKG with: scripts/setup.sh deps"

	mkdir -p "$build/include/linux"
	# Extract into a private temp dir inside BUILD_DIR (same filesystem) and
	# rename each file into place, so an interrupted run never leaves a
	# truncated header that the cache check above would accept.
	local tmp
	tmp=$(mktemp -d "$build/.headers.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	local p=linux-source-6.12
	echo "setup.sh: extracting ublk_cmd.h and kselftest headers from $KSRC_TAR" >&2
	tar -xJf "$KSRC_TAR" -C "$tmp" --wildcards \
		"$p/include/uapi/linux/ublk_cmd.h" \
		"$p/tools/testing/selftests/kselftest_harness.h" \
		"$p/tools/testing/selftests/kselftest.h" ||
		die "could not extract headers from $KSRC_TAR"
	mv -f "$tmp/$p/include/uapi/linux/ublk_cmd.h" "$out_ublk"
	mv -f "$tmp/$p/tools/testing/selftests/kselftest_harness.h" "$out_harn"
	mv -f "$tmp/$p/tools/testing/selftests/kselftest.h" "$out_ksft"
	rm -rf "$tmp"
	trap - EXIT
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
cmd=$1; shift
case "$cmd" in
deps) cmd_deps "$@" ;;
check) cmd_check "$@" ;;
headers) cmd_headers "$@" ;;
-h|--help|help) usage ;;
*) usage >&2; die "unknown command '$cmd'" ;;
esac
