# SPDX-License-Identifier: GPL-2.0
#
# tests/lib/image.sh - image helpers shared by the host and VM tests:
# reading and writing on-disk fields (peek, poke and the named header
# bits built on them), the virtual size, a fast cmp, and quiet qemu-io/imgblk io
# wrappers.  POSIX sh with od, dd, stat and printf only (busybox has them; the
# guest has no python3), so the tests that damage images on purpose and
# the guest tests read fields the same way.  Sourced after tap.sh: poke
# stops the test through bail, and the wrappers keep their output in
# $T_TMP.  imgblk is $IMGBLK, "imgblk" (on the PATH) when unset.

# _image_fmt FMT: set _i_len (bytes) and _i_be (1 big-endian, 0 little)
# from a struct-style field format: '>' or '<', then B (u8), H (u16), I
# (u32) or Q (u64).  Unsigned only; a Q field prints as 0..2^64-1.
_image_fmt() {
	case $1 in
	'>'?) _i_be=1 ;;
	'<'?) _i_be=0 ;;
	*) return 1 ;;
	esac
	case $1 in
	?B) _i_len=1 ;;
	?H) _i_len=2 ;;
	?I) _i_len=4 ;;
	?Q) _i_len=8 ;;
	*) return 1 ;;
	esac
}

# peek FILE OFFSET FMT: print the field at OFFSET (decimal or 0x hex) as
# an unsigned decimal number.  Fails on a bad FMT or past the file's end.
peek() {
	_image_fmt "$3" || { echo "peek: bad format '$3'" >&2; return 1; }
	_i_bytes=$(od -A n -t u1 -j $(($2)) -N $_i_len "$1") || return 1
	# shellcheck disable=SC2086 # one word per byte
	set -- $_i_bytes
	[ $# = $_i_len ] || { echo "peek: short read" >&2; return 1; }
	_i_v=0
	_i_sh=0
	for _i_b; do
		if [ $_i_be = 1 ]; then
			_i_v=$(( (_i_v << 8) | _i_b ))
		else
			_i_v=$(( _i_v | (_i_b << _i_sh) ))
			_i_sh=$((_i_sh + 8))
		fi
	done
	# Shell arithmetic is signed 64-bit; %u shows the field's bits.
	printf '%u\n' "$_i_v"
}

# poke FILE OFFSET FMT VALUE: write VALUE (shell arithmetic: decimal, 0x
# hex, or negative for all-ones) into the field at OFFSET, keeping its
# low bits that fit.  A failed edit ends the test: the checks after it
# would test an undamaged image, and some of them would pass.
poke() {
	_image_fmt "$3" || bail "poke $*: bad format"
	_i_v=$(($4))
	_i_esc=
	_i_k=0
	while [ $_i_k -lt $_i_len ]; do
		if [ $_i_be = 1 ]; then
			_i_sh=$(( 8 * (_i_len - 1 - _i_k) ))
		else
			_i_sh=$(( 8 * _i_k ))
		fi
		_i_b=$(( (_i_v >> _i_sh) & 255 ))
		# printf's \NNN: the byte as three octal digits.
		_i_esc=$_i_esc\\$((_i_b >> 6))$(( (_i_b >> 3) & 7 ))$((_i_b & 7))
		_i_k=$((_i_k + 1))
	done
	# shellcheck disable=SC2059 # the escapes are the format
	printf "$_i_esc" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc 2> /dev/null ||
		bail "poke $* failed"
}

# qcow2_incompat IMG: a qcow2 header's incompatible_features (bit 0
# dirty, bit 1 corrupt, bit 2 external data file, ...).
qcow2_incompat() { peek "$1" 72 '>Q'; }

# qed_needs_check IMG: is QED_F_NEED_CHECK (feature bit 1) set?
qed_needs_check() { [ $(( $(peek "$1" 16 '<Q') & 2 )) != 0 ]; }

# vsize IMG [PROG]: the virtual size PROG info --output=json reports
# (qemu-img by default; "$IMGBLK" for images QEMU cannot open).
vsize() {
	"${2:-qemu-img}" info --output=json "$1" |
		sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'
}

# same_bytes A B: files A and B have the same size and the same bytes.
# As cmp, but qemu-img reads in large blocks: busybox cmp, a byte at a
# time, takes about 10 s for 128 MiB in the TCG guest.
same_bytes() {
	[ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] &&
		qemu-img compare -q -f raw -F raw "$1" "$2"
}

# io_args CMD...: "-c" and CMD for each CMD, one per line, for bash's
# mapfile: an argument list for qemu-io or imgblk io.
io_args() {
	for _i_c in "$@"; do
		printf -- '-c\n%s\n' "$_i_c"
	done
}

# qio FMT IMG CMD...: qemu-io -f FMT on IMG, one -c per CMD; output in
# $T_TMP/qio.out, and shown as TAP comments when it fails.  Fails when
# qemu-io does or when it reports a failed command or a pattern mismatch:
# qemu-io 7.2 exits 0 after those.
qio() {
	_i_f=$1
	_i_img=$2
	shift 2
	_i_n=$#
	for _i_c; do
		set -- "$@" -c "$_i_c"
	done
	shift $_i_n
	qemu-io -f "$_i_f" "$@" "$_i_img" > "$T_TMP/qio.out" 2>&1 &&
		! grep -q -e 'Pattern verification failed' -e 'failed:' "$T_TMP/qio.out" ||
		{ diag_file "$T_TMP/qio.out"; return 1; }
}

# iio FMT IMG CMD...: the same through imgblk io; output in
# $T_TMP/iio.out, shown when it fails.
iio() {
	_i_f=$1
	_i_img=$2
	shift 2
	_i_n=$#
	for _i_c; do
		set -- "$@" -c "$_i_c"
	done
	shift $_i_n
	"${IMGBLK:-imgblk}" io -f "$_i_f" "$@" "$_i_img" > "$T_TMP/iio.out" 2>&1 ||
		{ diag_file "$T_TMP/iio.out"; return 1; }
}

# qclean IMG: qemu-img check of a qcow2 image; exit 0 means no
# corruptions and no leaks (3: leaks only, 2: corruptions).
qclean() { qemu-img check -f qcow2 "$1"; }

# no_corruption DESCRIPTION IMAGE: one result, ok when qemu-img check
# exits 0, or 3: leaked clusters only, which a crash may leave
# (targets/qcow2/README.md).
no_corruption() {
	qemu-img check "$2" > "$T_TMP/check.out" 2>&1
	_rc=$?
	if [ $_rc = 0 ] || [ $_rc = 3 ]; then
		ok "$1: no corruption (status $_rc)"
	else
		not_ok "$1: no corruption (status $_rc)"
		diag_file "$T_TMP/check.out"
	fi
}
