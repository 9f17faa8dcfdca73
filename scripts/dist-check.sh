#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# dist-check.sh - make dist-check: build the Debian package in a temporary
# copy of the tree (the working tree as it is, committed or not, without
# what .gitignore leaves out), then check it: dpkg-buildpackage -us -uc -b
# succeeds, lintian finds no error, and dpkg -c lists the binary, the man
# page, the completion and every udev rule and systemd unit of data/.
# Not part of make check: it rebuilds everything, a few minutes.
#
#   scripts/dist-check.sh [-k]     -k: keep the temporary directory
#
# Needs debhelper, dpkg-dev, lintian (scripts/setup.sh deps --deb).
set -euo pipefail

die() { echo "dist-check: $*" >&2; exit 1; }

keep=0
[ "${1:-}" = -k ] && keep=1
cd "$(dirname "$0")/.."
for t in dpkg-buildpackage dh lintian fakeroot; do
	command -v "$t" > /dev/null ||
		die "$t not found; install it with: scripts/setup.sh deps --deb"
done

version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
tmp=$(mktemp -d /tmp/imgblk-dist.XXXXXX)
[ $keep = 1 ] && echo "dist-check: keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
src=$tmp/imgblk-$version
mkdir "$src"
# The tree as it is: tracked and new files, not the ignored build output.
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar -c --null -T - | tar -x -C "$src"

echo "dist-check: dpkg-buildpackage -us -uc -b in $src"
(cd "$src" && dpkg-buildpackage -us -uc -b) > "$tmp/build.log" 2>&1 || {
	tail -30 "$tmp/build.log" >&2
	die "dpkg-buildpackage failed (log above; -k keeps $tmp/build.log)"
}
deb=$tmp/imgblk_${version}_$arch.deb
[ -f "$deb" ] || die "no $(basename "$deb") built: $(ls "$tmp")"
echo "dist-check: built $(basename "$deb")"

fail=0
if lintian --fail-on error "$tmp"/imgblk_"${version}"_"$arch".changes > "$tmp/lintian.log" 2>&1; then
	echo "dist-check: lintian: no errors ($(grep -c '^[WIP]:' "$tmp/lintian.log" || true) warnings and notes)"
else
	echo "dist-check: lintian found errors:" >&2
	grep '^E:' "$tmp/lintian.log" >&2 || cat "$tmp/lintian.log" >&2
	fail=1
fi

# What the package must hold: the Makefile's install list, Debian's dirs.
want=(./usr/sbin/imgblk ./usr/share/man/man8/imgblk.8.gz
      ./usr/share/bash-completion/completions/imgblk)
for f in data/udev/*.rules; do
	[ -e "$f" ] && want+=("./lib/udev/rules.d/${f##*/}")
done
for f in data/systemd/*.service data/systemd/*.target data/systemd/*.socket \
	 data/systemd/*.timer; do
	[ -e "$f" ] && want+=("./lib/systemd/system/${f##*/}")
done
dpkg -c "$deb" | awk '{ print $6 }' > "$tmp/contents"
for f in "${want[@]}"; do
	if grep -qxF -- "$f" "$tmp/contents"; then
		echo "dist-check: dpkg -c lists $f"
	else
		echo "dist-check: dpkg -c does not list $f" >&2
		fail=1
	fi
done
ls data/udev/*.rules > /dev/null 2>&1 || { echo "dist-check: no udev rule in data/udev" >&2; fail=1; }
ls data/systemd/* > /dev/null 2>&1 ||
	echo "dist-check: note: data/systemd/ has no units yet (the dev branch adds them)"
[ $fail = 0 ] && echo "dist-check: ok" || die "failed"
