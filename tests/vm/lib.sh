# SPDX-License-Identifier: GPL-2.0
#
# tests/vm/lib.sh - what a guest test (busybox sh, no bash) sources: the
# TAP core and the image helpers of tests/lib/ (scripts/vm/run.sh ships
# them beside the tests), and the device helpers below: the driver check,
# the rig's extra modules, adding, deleting and listing imgblk devices,
# and the host's Ceph cluster (need_ceph).
#
# A test sources this, reports through the core (ok/not_ok/skip,
# check/check_fails, ...) and ends with done_testing.  At exit it runs what
# the test registered with on_exit and then deletes every imgblk device
# the test left behind (with --force: even those still in use).
#
# The rig (scripts/vm/init) gives: $SHARE (the host's share), /tmp as
# tmpfs, imgblk in PATH when it was built, modules loaded except brd and
# null_blk (see load_module).

. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/../lib/image.sh"
# Registered first, so it runs after the test's own on_exit commands.
on_exit "command -v imgblk > /dev/null && timeout 30 imgblk del -a --force"

# busybox sh runs its own applets before searching PATH, so the util-linux
# tools the rig ships (busybox's lack options we need: blkdiscard -z,
# losetup --direct-io) must be called by path.
[ -x /usr/sbin/blkdiscard ] && blkdiscard() { /usr/sbin/blkdiscard "$@"; }
[ -x /usr/sbin/losetup ] && losetup() { /usr/sbin/losetup "$@"; }

need_imgblk() {	# the binary and the driver, or skip the whole test
	need
	[ -c /dev/ublk-control ] || skip_all "/dev/ublk-control missing (ublk_drv not loaded)"
}

load_module() {	# load_module NAME [PARAMS...]: insmod a rig module once
	_m=$1
	shift
	[ -d "/sys/module/$_m" ] && return 0
	[ -f "/lib/imgblk-modules/$_m.ko" ] || return 1
	insmod "/lib/imgblk-modules/$_m.ko" "$@"
}

# add_dev DESCRIPTION ARGS...: imgblk add ARGS; on success sets DEV
# (/dev/ublkbN) and DEV_ID (N) and reports ok, else not ok with stderr.
add_dev() {
	_d=$1
	shift
	DEV=
	DEV_ID=
	timeout 60 imgblk add "$@" > "$T_TMP/add.out" 2> "$T_TMP/add.err"
	_rc=$?
	if [ $_rc -eq 0 ]; then
		DEV=$(head -n 1 "$T_TMP/add.out")
		case $DEV in
		/dev/ublkb[0-9]*)
			DEV_ID=${DEV#/dev/ublkb}
			if [ -b "$DEV" ]; then
				ok "$_d"
				return 0
			fi
			not_ok "$_d"
			diag "imgblk add printed $DEV but it is not a block device"
			return 1 ;;
		esac
		not_ok "$_d"
		diag "imgblk add $* printed no /dev/ublkbN on stdout:"
		diag_file "$T_TMP/add.out"
		diag_file "$T_TMP/add.err"
		return 1
	fi
	not_ok "$_d"
	diag "imgblk add $* failed with status $_rc:"
	diag_file "$T_TMP/add.err"
	return 1
}

# del_dev DESCRIPTION ID: imgblk del -n ID, bounded in time.
del_dev() {
	check "$1" timeout 30 imgblk del -n "$2"
}

# listed ID: is device ID in imgblk list?  Matches a row whose first
# column is ID or that names /dev/ublkbID.
listed() {
	imgblk list > "$T_TMP/list.out" 2>&1 || return 2
	awk -v id="$1" -v dev="/dev/ublkb$1" '
		$1 == id { f = 1 }
		{ for (i = 1; i <= NF; i++) if ($i == dev) f = 1 }
		END { exit !f }' "$T_TMP/list.out"
}

# wait_gone PATH SECONDS: wait for a file or device node to disappear.
wait_gone() {
	_i=0
	while [ -e "$1" ]; do
		[ $_i -ge $(($2 * 10)) ] && return 1
		sleep 0.1
		_i=$((_i + 1))
	done
	return 0
}

# write_files DIR: 11 MiB of random data in 52 files under DIR: large
# files stress multi-segment I/O, small files stress metadata.
write_files() {
	dd if=/dev/urandom of="$1/big1" bs=1M count=8 2>/dev/null &&
	dd if=/dev/urandom of="$1/big2" bs=64k count=40 2>/dev/null &&
	mkdir -p "$1/small" &&
	for _i in $(seq 1 50); do
		dd if=/dev/urandom of="$1/small/f$_i" bs=1k count=$_i 2>/dev/null || return 1
	done
}

# run_fio NAME BS_OPTION [SIZE]: one result, whether fio's verified random
# read/write on $DEV (two jobs, SIZE each, default 32M) ends without an
# error.  Each job gets its own SIZE (offset_increment): two jobs verifying
# the same blocks would overwrite each other's data and report false errors.
run_fio() {
	fio --name="$1" --filename="$DEV" --ioengine=io_uring --direct=1 \
		--rw=randrw --rwmixread=30 "$2" --iodepth=32 --numjobs=2 \
		--size="${3:-32M}" --offset_increment="${3:-32M}" --verify=crc32c \
		--verify_fatal=1 --do_verify=1 --group_reporting \
		> "$T_TMP/fio-$1.out" 2>&1
	_rc=$?
	if [ $_rc = 0 ] && ! grep -qE 'err= *[1-9]|verify: bad|bad magic' "$T_TMP/fio-$1.out"; then
		ok "fio $1 verify=crc32c, no errors"
	else
		not_ok "fio $1 verify=crc32c, no errors"
		diag "fio exit status $_rc"
		grep -E 'err=|verify|bad|error|fio:' "$T_TMP/fio-$1.out" | head -n 20 | sed 's/^/#   /'
	fi
}

# allow_users: let unprivileged users add devices for the rest of the
# test: /dev/ublk-control open to all, and what the udev rule does (every
# new ublk node handed to its owner by imgblk udev-chown), from busybox
# uevent.  Both are undone at exit.
allow_users() {
	chmod 666 /dev/ublk-control
	on_exit "chmod 600 /dev/ublk-control"
	uevent sh -c 'case "$DEVNAME" in ublk[bc][0-9]*) [ "$ACTION" = add ] &&
		imgblk udev-chown "$DEVNAME";; esac' &
	on_exit "kill $!"
	sleep 0.5
}

# need_ceph: the Ceph cluster that run.sh started on the host for a test
# with the line "# vm-host: ceph", or skip the whole test with the reason
# there is none.  Mounts the client disk (scripts/vm/ceph-disk.sh) at
# /opt/ceph and puts its rbd, rbd-nbd and libraries in PATH and
# LD_LIBRARY_PATH (imgblk dlopen()s librbd from there); sets CEPH_CONF.
# The cluster listens on a loopback address of the host's (run.sh:
# CEPH_ADDR), which QEMU's user-mode network reaches when the guest sends
# it there: a route more specific than the local 127.0.0.0/8 one sends
# that one address out of eth0, and route_localnet lets a loopback
# address cross a real interface.
need_ceph() {
	_c=/mnt/run/ceph
	[ -r $_c/skip ] && skip_all "$(cat $_c/skip)"
	[ -r $_c/ceph.conf ] || skip_all "no Ceph cluster (the test lacks a '# vm-host: ceph' line)"
	if ! grep -q ' /opt/ceph ' /proc/mounts; then
		_d=$(findfs LABEL=imgblk-ceph 2>/dev/null) || bail "the Ceph client disk is missing"
		mkdir -p /opt/ceph
		mount -t ext4 -o ro "$_d" /opt/ceph || bail "cannot mount the Ceph client disk"
	fi
	export PATH=$PATH:/opt/ceph/bin LD_LIBRARY_PATH=/opt/ceph/lib CEPH_CONF=$_c/ceph.conf
	# Where Ceph's daemons (rbd-nbd is one) keep sockets and logs.
	mkdir -p /var/run/ceph /var/log/ceph
	_a=$(cat $_c/addr)
	if ! ip route show table local | grep -q "^$_a "; then
		ip link set lo up
		ip link set eth0 up || bail "no eth0 (virtio_net not loaded?)"
		ip addr add 10.0.2.15/24 dev eth0
		echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet
		echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet
		ip route add "$_a/32" via 10.0.2.2 dev eth0 table local ||
			bail "cannot route $_a to the host"
	fi
	timeout 60 rbd ls > "$T_TMP/rbd-ls.out" 2>&1 ||
		{ diag_file "$T_TMP/rbd-ls.out"; bail "the host's Ceph cluster is unreachable"; }
}
