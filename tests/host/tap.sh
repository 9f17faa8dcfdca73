# SPDX-License-Identifier: GPL-2.0
#
# tests/host/tap.sh - what a host test script (bash) sources: the TAP core
# and the image helpers of tests/lib/, shared with the VM tests.  A script
# starts with
#
#	IMGBLK=${IMGBLK:-build/imgblk}
#	. "$(dirname "$0")/tap.sh"
#	need qemu-img ...
#
# keeps its files in $T_TMP (removed at exit; more cleanup through
# on_exit, not its own EXIT trap) and ends with done_testing.  See
# tests/lib/tap.sh and tests/lib/image.sh for the helpers.

_t_lib=$(dirname "${BASH_SOURCE[0]}")/../lib
. "$_t_lib/tap.sh"
. "$_t_lib/image.sh"
