#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# backing-policy.sh - add --backing=any|same-dir|none decides which
# backing files an image can make the server open.
. "$(dirname "$0")/lib.sh"

need_imgblk
need_cmd qemu-img

A=$T_TMP/a
B=$T_TMP/b
mkdir -p "$A" "$B"
qemu-img create -q -f raw "$B/base.raw" 16M
qemu-img create -q -f raw "$A/base.raw" 16M
qemu-img create -q -f qed -b ../b/base.raw -F raw "$A/outside.qed"
qemu-img create -q -f qed -b base.raw -F raw "$A/inside.qed"
ln -s "$B" "$A/link"
qemu-img create -q -f qed -b link/base.raw -F raw "$A/via-link.qed"

refused() {	# refused DESCRIPTION ARGS...: add must fail with one line
	_d=$1
	shift
	if imgblk add "$@" > "$T_TMP/out" 2> "$T_TMP/err"; then
		not_ok "$_d"
		imgblk del -a
	elif [ "$(wc -l < "$T_TMP/err")" -eq 1 ]; then
		ok "$_d"
	else
		not_ok "$_d"
		diag_file "$T_TMP/err"
	fi
}

refused "same-dir refuses ../b/base.raw" -f "$A/outside.qed" --backing=same-dir
refused "same-dir refuses a symlinked directory" -f "$A/via-link.qed" --backing=same-dir
refused "none refuses any backing file" -f "$A/inside.qed" --backing=none
refused "a bad policy name is refused" -f "$A/inside.qed" --backing=sometimes
if add_dev "same-dir accepts base.raw beside the image" -f "$A/inside.qed" --backing=same-dir; then
	del_dev "del" "$DEV_ID"
fi
if add_dev "any (the default) accepts ../b/base.raw" -f "$A/outside.qed"; then
	del_dev "del" "$DEV_ID"
fi
if [ -z "$(ls /run/imgblk 2>/dev/null)" ]; then
	ok "refusals left no state behind"
else
	not_ok "refusals left no state behind"
fi
done_testing
