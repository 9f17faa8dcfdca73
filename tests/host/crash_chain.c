// SPDX-License-Identifier: GPL-2.0
/*
 * Crash-state replay of the steps that change an image chain (external
 * snapshot, intermediate and offline commit) over several files and
 * their directory: the `chain` fixture of crash_replay.c, built as a
 * program of its own so that it has its own time limit in make check.
 * It shares every piece of the single-file replay (the recorder, the
 * crash model, the guest workload and its checks) by including it; the
 * pieces only the single-file fixture uses are then unused here.
 * docs/crash-replay.md, "Chain changes".
 */
#define CRASH_CHAIN_ONLY 1
#pragma GCC diagnostic ignored "-Wunused-function"
#include "crash_replay.c"
