#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# initramfs.sh BUILD_DIR - build BUILD_DIR/vm/initramfs.cpio.gz for the VM.
#
# The guest has no disk root: everything the tests run is in the initramfs.
# busybox-static gives the shell and the small tools; the real tools the
# tests use as oracles (mkfs.ext4, e2fsck, debugfs, fio, qemu-img/io/nbd,
# util-linux losetup, blkdiscard and sfdisk, which busybox lacks or whose
# applets lack the options we need) are
# copied from the host with their shared libraries.  BUILD_DIR/imgblk is
# whatever the build produced; without it the image is built anyway and
# the tests that need it skip.
#
# IMGBLK_VM_TOOLS="perf strace ..." adds more host tools (with their
# libraries) for work in the guest, e.g. profiling a queue thread; the
# tests never rely on them.
#
# Rebuilt only when an input changed: the inputs' paths, sizes and mtimes
# are hashed into BUILD_DIR/vm/initramfs.sig.  Prints the image's path.
set -euo pipefail

die() { echo "initramfs.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/vm/initramfs.sh BUILD_DIR"
# Absolute paths: the input signature below must not depend on how we
# were called.
BUILD_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
VM_DIR=$BUILD_DIR/vm
OUT=$VM_DIR/initramfs.cpio.gz
SIG=$VM_DIR/initramfs.sig

KDIR=$("$HERE/kernel.sh" "$BUILD_DIR")

BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing; run scripts/setup.sh deps --vm"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$BUSYBOX" ||
	die "$BUSYBOX is not static; install busybox-static (scripts/setup.sh deps --vm)"

TOOLS=(mkfs.ext4 mke2fs e2fsck debugfs fio qemu-img qemu-io qemu-nbd sfdisk
       losetup blkdiscard)
read -ra extra <<< "${IMGBLK_VM_TOOLS:-}"
TOOLS+=("${extra[@]}")
tool_paths=()
for t in "${TOOLS[@]}"; do
	p=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$t") ||
		die "$t not found; run scripts/setup.sh deps --vm"
	tool_paths+=("$p")
done
IMGBLK=$BUILD_DIR/imgblk
# The tests' own helpers (tests/vm/*.c, built by make).
vm_progs=()
for p in "$BUILD_DIR"/tests/vm/*; do
	[ -f "$p" ] && [ -x "$p" ] && vm_progs+=("$p")
done
bins=("${tool_paths[@]}" "${vm_progs[@]}")
if [ -x "$IMGBLK" ]; then
	bins+=("$IMGBLK")
else
	echo "initramfs.sh: warning: $IMGBLK not built; tests needing it will skip" >&2
fi

# Shared libraries of all binaries, the dynamic loader included (ldd prints
# it as a path without "=>"; with several files ldd also prints
# "FILE:" header lines, which have a single field).
libs() {
	ldd "$@" 2>/dev/null | awk '
		$2 == "=>" && $3 ~ /^\// { print $3 }
		$1 ~ /^\// && NF == 2 { print $1 }' | sort -u
}
mapfile -t lib_paths < <(libs "${bins[@]}")
# imgblk dlopen()s libnbd on its first NBD name (lib/bfile_nbd.c), so ldd
# does not list it: it and its libraries come too, for tests/vm/nbd-base.sh.
# librbd (about 70 MB with Ceph's libraries) stays out: the tests that use
# it get it on a disk of its own (ceph-disk.sh).
nbd_lib=$(ldconfig -p | awk '$1 == "libnbd.so.0" && !p { p = $NF } END { print p }')
if [ -n "$nbd_lib" ]; then
	mapfile -t lib_paths < <({ printf '%s\n' "${lib_paths[@]}" "$nbd_lib"; libs "$nbd_lib"; } |
				 sort -u)
fi

# Everything whose change must rebuild the image.
inputs=("$SELF" "$HERE/init" "$BUSYBOX" "${bins[@]}" "${lib_paths[@]}"
	"$KDIR/version" "$KDIR/modules.load")
sig=$( { stat -L -c '%n %s %Y' "${inputs[@]}"; [ -x "$IMGBLK" ] || echo no-imgblk; } |
	sha256sum | cut -d' ' -f1)
if [ -s "$OUT" ] && [ -s "$SIG" ] && [ "$(cat "$SIG")" = "$sig" ]; then
	echo "$OUT"
	exit 0
fi

tmp=$(mktemp -d "$VM_DIR/.initramfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib64,etc,root} \
	 "$root"/{proc,sys,dev,tmp,run,mnt,lib/imgblk-modules}

# Busybox first, as symlinks: the real tools copied below replace the
# applets of the same name (losetup, blkdiscard, mke2fs...).
cp "$BUSYBOX" "$root/bin/busybox"
while IFS= read -r applet; do
	[ -e "$root/$applet" ] || [ -L "$root/$applet" ] && continue
	mkdir -p "$root/$(dirname "$applet")"
	ln -s /bin/busybox "$root/$applet"
done < <("$BUSYBOX" --list-full)

copy_file() {	# copy_file SRC DEST_IN_ROOT: dereference, keep the path
	mkdir -p "$root/$(dirname "$2")"
	rm -f "$root/$2"
	cp -L "$1" "$root/$2"
}
for p in "${tool_paths[@]}"; do
	copy_file "$p" "$p"
done
[ -x "$IMGBLK" ] && copy_file "$IMGBLK" /usr/local/bin/imgblk
for p in "${vm_progs[@]}"; do
	copy_file "$p" "/usr/local/bin/$(basename "$p")"
done
for l in "${lib_paths[@]}"; do
	copy_file "$l" "$l"
done

cp "$KDIR"/modules/*.ko "$KDIR/modules.load" "$root/lib/imgblk-modules/"
cp "$HERE/init" "$root/init"
chmod 755 "$root/init"

# nobody lets the badinput test run imgblk unprivileged with busybox su;
# other is a second user, whose devices nobody must not control.
cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
other:x:1000:1000:other:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
PW
cat > "$root/etc/group" <<'GR'
root:x:0:
other:x:1000:
nogroup:x:65534:
GR
ln -s /proc/mounts "$root/etc/mtab"

# gzip -1: the image is decompressed by the kernel under TCG at every boot,
# and a smaller level gains little on binaries.
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio -o -0 -H newc -R 0:0 --quiet) | gzip -1 > "$tmp/initramfs.cpio.gz" ||
	die "cpio/gzip failed"
mv -f "$tmp/initramfs.cpio.gz" "$OUT"
echo "$sig" > "$SIG"
rm -rf "$tmp"
trap - EXIT
echo "initramfs.sh: built $OUT ($(du -h "$OUT" | cut -f1))" >&2
echo "$OUT"
