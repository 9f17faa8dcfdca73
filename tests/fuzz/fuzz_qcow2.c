// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: a qcow2 image and a tail of I/O commands, opened,
 * driven and checked by the qcow2 engine (image.h, docs/fuzzing.md).
 */
#define FUZZ_FORMAT "qcow2"
#include "image.h"
