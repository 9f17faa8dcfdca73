#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# setup.sh - install what building and testing imgblk needs.
#
#   scripts/setup.sh deps [--vm] [--fuzz] [--bench]
#                                    apt packages for the build (+ the VM rig,
#                                    + clang and libFuzzer for make fuzz,
#                                    + the profilers and gnuplot for make bench)
#   scripts/setup.sh headers BUILD   kernel headers we vendor at build time
#
# Both commands are idempotent and cheap when there is nothing to do, so the
# Makefile and CI can call them on every run: the machine a session gets may
# be fresh, and nothing installed by hand is guaranteed to survive.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }

usage() {
	cat <<'USAGE'
usage: scripts/setup.sh deps [--vm] [--fuzz] [--bench]
       scripts/setup.sh headers BUILD_DIR
USAGE
}

BUILD_PKGS=(build-essential pkg-config liburing-dev zlib1g-dev libzstd-dev
	    libnl-3-dev libjson-c-dev libsystemd-dev qemu-utils e2fsprogs fio xz-utils)
VM_PKGS=(qemu-system-x86 busybox-static cpio kmod)
# make fuzz: clang, and the libFuzzer and sanitizer runtimes it links.
FUZZ_PKGS=(clang libclang-rt-14-dev)
# make bench: instruction and system call counts, and the report's chart.
BENCH_PKGS=(valgrind strace gnuplot-nox)
KSRC_PKG=linux-source-6.12
KSRC_TAR=/usr/src/linux-source-6.12.tar.xz

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
	SUDO=sudo
fi

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
	echo "setup.sh: installing ${miss[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >/dev/null ||
		die "apt-get update failed (is the Debian mirror reachable?)"
	$SUDO apt-get install -y -qq --no-install-recommends "${miss[@]}" >/dev/null ||
		die "apt-get install ${miss[*]} failed"
}

cmd_deps() {
	local pkgs=("${BUILD_PKGS[@]}") opt
	for opt in "$@"; do
		case $opt in
		--vm) pkgs+=("${VM_PKGS[@]}") ;;
		--fuzz) pkgs+=("${FUZZ_PKGS[@]}") ;;
		--bench) pkgs+=("${BENCH_PKGS[@]}") ;;
		*) usage >&2; die "deps: unknown option '$opt'" ;;
		esac
	done
	apt_install "${pkgs[@]}"
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
	apt_install "$KSRC_PKG" xz-utils
	[ -r "$KSRC_TAR" ] || die "$KSRC_TAR missing although $KSRC_PKG is installed"

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
headers) cmd_headers "$@" ;;
-h|--help|help) usage ;;
*) usage >&2; die "unknown command '$cmd'" ;;
esac
