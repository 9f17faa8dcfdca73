#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# demo.sh - the main job on a fresh Debian 12 machine: install what is
# needed, build, make a qcow2 image, serve it as /dev/ublkbN, mkfs, mount,
# write and read a file.  Where the host kernel has no ublk_drv (this
# project's own machines), the same steps run inside the test VM.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh deps --vm
make

if [ -c /dev/ublk-control ] || modprobe ublk_drv 2>/dev/null; then
	echo "demo: ublk_drv is here: running on this host"
	exec sh tests/vm/demo.sh
fi
echo "demo: this kernel has no ublk_drv: running the demo inside the test VM"
exec scripts/vm/run.sh tests/vm/demo.sh
