/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Exclusive locks on byte ranges of a device, for coroutines on any
 * thread: copy-on-read must not write stale backing data over a guest
 * write that raced with it, so both lock the range they change.
 */
#ifndef IMGBLK_RANGELOCK_H
#define IMGBLK_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

#include "exec.h"

struct range_entry {
	uint64_t start, end;
	struct range_entry *next;
};

struct range_lock {
	pthread_mutex_t lock;
	struct range_entry *held;
	struct exec_waitq waiters;
};

void range_lock_init(struct range_lock *rl);
void range_lock_destroy(struct range_lock *rl);

/* Sleeps until [off, off + len) overlaps no held range, then holds it in @e. */
void range_lock(struct range_lock *rl, struct range_entry *e, uint64_t off, uint64_t len);
void range_unlock(struct range_lock *rl, struct range_entry *e);

#endif
