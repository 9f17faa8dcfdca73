// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: a qed image and a tail of I/O commands, opened,
 * driven and checked by the qed engine (image.h, docs/fuzzing.md).
 */
#define FUZZ_FORMAT "qed"
#include "image.h"
