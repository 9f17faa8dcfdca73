#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# qcow2-check-cmp.py IMGBLK.json QEMU.json - do `imgblk check --output=json`
# and `qemu-img check --output=json` report the same numbers?  qemu-img
# leaves out counters that are zero; a missing key means 0.
import json
import sys

KEYS = ("corruptions", "leaks", "check-errors", "total-clusters",
        "allocated-clusters", "fragmented-clusters", "compressed-clusters",
        "image-end-offset")

with open(sys.argv[1]) as f:
    mine = json.load(f)
with open(sys.argv[2]) as f:
    theirs = json.load(f)
bad = [k for k in KEYS if mine.get(k, 0) != theirs.get(k, 0)]
for k in bad:
    print(f"{k}: imgblk {mine.get(k, 0)}, qemu-img {theirs.get(k, 0)}")
sys.exit(1 if bad else 0)
