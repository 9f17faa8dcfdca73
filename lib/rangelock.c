// SPDX-License-Identifier: GPL-2.0
/* Byte-range locks for coroutines (see include/rangelock.h). */
#include "rangelock.h"

void range_lock_init(struct range_lock *rl)
{
	pthread_mutex_init(&rl->lock, NULL);
	rl->held = NULL;
	exec_waitq_init(&rl->waiters);
}

void range_lock_destroy(struct range_lock *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

static bool range_busy(const struct range_lock *rl, uint64_t start, uint64_t end)
{
	const struct range_entry *e;

	for (e = rl->held; e; e = e->next)
		if (start < e->end && e->start < end)
			return true;
	return false;
}

void range_lock(struct range_lock *rl, struct range_entry *e, uint64_t off, uint64_t len)
{
	e->start = off;
	e->end = off + len;
	pthread_mutex_lock(&rl->lock);
	while (range_busy(rl, e->start, e->end))
		exec_waitq_sleep(&rl->waiters, &rl->lock);
	e->next = rl->held;
	rl->held = e;
	pthread_mutex_unlock(&rl->lock);
}

void range_unlock(struct range_lock *rl, struct range_entry *e)
{
	struct range_entry **pp;

	pthread_mutex_lock(&rl->lock);
	for (pp = &rl->held; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	/* Any sleeper may fit now; each re-checks its own range. */
	exec_waitq_wake_all(&rl->waiters);
	pthread_mutex_unlock(&rl->lock);
}
