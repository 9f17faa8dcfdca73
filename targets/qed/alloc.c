// SPDX-License-Identifier: GPL-2.0
/*
 * QED allocation bookkeeping: the allocating writes in flight, the
 * need-check protocol, and append-only reservation of file space.
 *
 * An allocating write registers the guest clusters whose L2 entries it
 * will change (and the L1 slot if it creates an L2 table) before it
 * reserves file space; a second write to any of them waits until the
 * first has updated the tables and then looks them up again, so a guest
 * cluster or an L2 table is never allocated twice.  Writes to different
 * clusters proceed in parallel, on any queue's thread.
 */
#include <errno.h>
#include <unistd.h>
#include <time.h>

#include "qed.h"
#include "util.h"

int qed_alloc_init(struct qed *q)
{
	int ret = pthread_mutex_init(&q->lock, NULL);

	if (ret)
		return -ret;
	exec_waitq_init(&q->alloc_wq);
	exec_mutex_init(&q->l1_wlock);
	exec_mutex_init(&q->hdr_wlock);
	clock_gettime(CLOCK_MONOTONIC, &q->last_alloc);
	return 0;
}

void qed_alloc_destroy(struct qed *q)
{
	exec_mutex_destroy(&q->hdr_wlock);
	exec_mutex_destroy(&q->l1_wlock);
	pthread_mutex_destroy(&q->lock);
}

static bool qed_alloc_overlaps(const struct qed_alloc *a, const struct qed_alloc *b)
{
	if (a->new_l2 && b->new_l2 && a->l1_index == b->l1_index)
		return true;
	return a->first_cluster < b->first_cluster + b->nr_clusters &&
	       b->first_cluster < a->first_cluster + a->nr_clusters;
}

/*
 * Sets need-check durably before the first allocating write of an image
 * without a backing file: a crash between a data write and its L2 update
 * may then leave entries pointing at clusters the file does not hold, and
 * the check on the next open clears them.  Called under q->lock, which it
 * drops around the header write.  Returns 0 or -errno.
 */
static int qed_set_need_check_locked(struct qed *q)
{
	int ret;

	q->nc_state = QED_NC_SETTING;
	q->features |= QED_F_NEED_CHECK;
	pthread_mutex_unlock(&q->lock);
	ret = qed_header_write_features(q, true);
	pthread_mutex_lock(&q->lock);
	if (ret) {
		q->features &= ~QED_F_NEED_CHECK;
		q->nc_state = QED_NC_CLEAR;
	} else {
		q->nc_state = QED_NC_SET;
		q->nc_ours = true;
	}
	exec_waitq_wake_all(&q->alloc_wq);
	return ret;
}

int qed_alloc_begin_locked(struct qed *q, struct qed_alloc *a)
{
	struct qed_alloc *o;
	int ret;

	for (o = q->allocs; o; o = o->next) {
		if (qed_alloc_overlaps(a, o)) {
			exec_waitq_sleep(&q->alloc_wq, &q->lock);
			return 1;
		}
	}
	/* With a backing file, the flush before each L2 update keeps the image consistent. */
	if (!q->t->backing) {
		switch (q->nc_state) {
		case QED_NC_SET:
			break;
		case QED_NC_CLEAR:
			ret = qed_set_need_check_locked(q);
			/* The lock was dropped: the caller's lookup is stale. */
			return ret ? ret : 1;
		case QED_NC_SETTING:
		case QED_NC_CLEARING:
			exec_waitq_sleep(&q->alloc_wq, &q->lock);
			return 1;
		}
	}
	a->next = q->allocs;
	q->allocs = a;
	q->nr_allocs++;
	return 0;
}

uint64_t qed_reserve_locked(struct qed *q, uint64_t bytes)
{
	uint64_t off = q->file_end;

	q->file_end += bytes;
	if (q->file_end > q->file_bytes) {
		uint64_t size = ALIGN_UP(q->file_end,
					 (uint64_t)MAX(QED_GROW_BYTES, q->cluster_size));

		/*
		 * A blocking call under q->lock, but one that never sleeps
		 * as a coroutine, once per QED_GROW_BYTES.  If it fails, the
		 * writes extend the file themselves (qed_zero_file_range).
		 */
		if (bfile_grow(q->file, q->file_bytes, size) == 0)
			q->file_bytes = size;
	}
	return off;
}

void qed_alloc_end(struct qed *q, struct qed_alloc *a)
{
	struct qed_alloc **pp;

	pthread_mutex_lock(&q->lock);
	for (pp = &q->allocs; *pp != a; pp = &(*pp)->next)
		;
	*pp = a->next;
	q->nr_allocs--;
	clock_gettime(CLOCK_MONOTONIC, &q->last_alloc);
	exec_waitq_wake_all(&q->alloc_wq);
	pthread_mutex_unlock(&q->lock);
}

static uint64_t qed_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/*
 * Flushes, then clears need-check.  Allocating writes are held off
 * meanwhile (QED_NC_CLEARING), so the flush covers every table update the
 * bit protected.  Returns 0 or -errno; on failure the bit stays set.
 */
static int qed_do_clear_need_check(struct qed *q)
{
	int ret;

	ret = bfile_flush(q->file);
	if (!ret) {
		q->features &= ~QED_F_NEED_CHECK;
		ret = qed_header_write_features(q, true);
	}
	pthread_mutex_lock(&q->lock);
	if (ret) {
		q->features |= QED_F_NEED_CHECK;
		q->nc_state = QED_NC_SET;
	} else {
		q->nc_state = QED_NC_CLEAR;
		q->nc_ours = false;
	}
	exec_waitq_wake_all(&q->alloc_wq);
	pthread_mutex_unlock(&q->lock);
	return ret;
}

void qed_tick(struct tgt *t)
{
	struct qed *q = t->priv;

	pthread_mutex_lock(&q->lock);
	if (q->nc_state != QED_NC_SET || !q->nc_ours || q->nr_allocs ||
	    qed_ms_since(&q->last_alloc) < QED_NEED_CHECK_IDLE_MS) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->nc_state = QED_NC_CLEARING;
	pthread_mutex_unlock(&q->lock);
	if (qed_do_clear_need_check(q))
		img_err("%s: cannot clear need-check; will retry", t->cfg.file);
}

int qed_clear_need_check(struct qed *q)
{
	pthread_mutex_lock(&q->lock);
	/* Only a bit we set ourselves: one found at open stays until a check clears it. */
	if (q->nc_state != QED_NC_SET || !q->nc_ours) {
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
	q->nc_state = QED_NC_CLEARING;
	pthread_mutex_unlock(&q->lock);
	return qed_do_clear_need_check(q);
}
