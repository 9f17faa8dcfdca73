// SPDX-License-Identifier: GPL-2.0
/*
 * QED tables: reading and writing them (the one place entries change
 * endianness), the L2 cache, and guest-offset lookup.
 *
 * The cache is write-through: every change to an L2 table is written to
 * the file before the request that made it completes, so an entry is never
 * dirty and eviction never writes.  Tables in use are referenced and never
 * evicted; a table being read is in the cache in the loading state, so two
 * requests never read (and later update) two copies of the same table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"
#include "util.h"

/* Bytes of L2 tables kept cached, split into at least this many tables. */
#define QED_L2_CACHE_BYTES	(32U * 1024 * 1024)
#define QED_L2_CACHE_MIN	8U
#define QED_L2_CACHE_MAX	1024U

int qed_table_read(struct qed *q, uint64_t off, uint64_t *entries)
{
	ssize_t n = bfile_pread(q->file, entries, q->table_bytes, off);
	uint32_t i;

	if (n < 0)
		return n;
	/* A table cut by the end of the file (only after a crash): the rest is unallocated. */
	memset((char *)entries + n, 0, q->table_bytes - n);
	for (i = 0; i < q->table_nelems; i++)
		entries[i] = get_le64(&entries[i]);
	return 0;
}

int qed_table_write(struct qed *q, uint64_t off, const uint64_t *entries,
		    uint32_t first, uint32_t n)
{
	const uint32_t per_block = QED_META_BLOCK / sizeof(uint64_t);
	uint32_t start = ALIGN_DOWN(first, per_block);
	uint32_t end = ALIGN_UP(first + n, per_block);
	uint64_t *buf;
	ssize_t ret;
	uint32_t i;

	if (posix_memalign((void **)&buf, QED_META_BLOCK, (end - start) * sizeof(uint64_t)))
		return -ENOMEM;
	for (i = start; i < end; i++)
		put_le64(&buf[i - start], entries[i]);
	ret = bfile_pwrite(q->file, buf, (end - start) * sizeof(uint64_t),
			  off + start * sizeof(uint64_t), 0);
	free(buf);
	return ret < 0 ? (int)ret : 0;
}

int qed_l2_write(struct qed *q, struct qed_l2 *l2, uint32_t first, uint32_t n)
{
	const uint32_t per_block = QED_META_BLOCK / sizeof(uint64_t);
	uint32_t start = ALIGN_DOWN(first, per_block);
	uint32_t end = ALIGN_UP(first + n, per_block);
	uint64_t *buf;
	ssize_t ret;
	uint32_t i;

	if (posix_memalign((void **)&buf, QED_META_BLOCK, (end - start) * sizeof(uint64_t)))
		return -ENOMEM;
	pthread_mutex_lock(&q->lock);
	for (i = start; i < end; i++)
		put_le64(&buf[i - start], l2->entries[i]);
	pthread_mutex_unlock(&q->lock);
	ret = bfile_pwrite(q->file, buf, (end - start) * sizeof(uint64_t),
			  l2->offset + start * sizeof(uint64_t), 0);
	free(buf);
	return ret < 0 ? (int)ret : 0;
}

int qed_l2_cache_init(struct qed *q)
{
	uint64_t limit = q->t->cfg.l2_cache_bytes ?: QED_L2_CACHE_BYTES;

	q->l2_max = MIN(MAX(limit / q->table_bytes, QED_L2_CACHE_MIN), QED_L2_CACHE_MAX);
	q->l2_hash_size = q->l2_max * 2;
	q->l2_hash = calloc(q->l2_hash_size, sizeof(*q->l2_hash));
	if (!q->l2_hash)
		return -ENOMEM;
	exec_waitq_init(&q->load_wq);
	return 0;
}

static unsigned int qed_l2_bucket(const struct qed *q, uint64_t off)
{
	return (off >> q->cluster_shift) % q->l2_hash_size;
}

static void qed_l2_free(struct qed_l2 *l2)
{
	exec_mutex_destroy(&l2->wlock);
	free(l2->entries);
	free(l2);
}

static void qed_lru_unlink(struct qed *q, struct qed_l2 *l2)
{
	if (l2->lru_prev)
		l2->lru_prev->lru_next = l2->lru_next;
	else
		q->lru_head = l2->lru_next;
	if (l2->lru_next)
		l2->lru_next->lru_prev = l2->lru_prev;
	else
		q->lru_tail = l2->lru_prev;
	l2->lru_prev = l2->lru_next = NULL;
}

static void qed_lru_push(struct qed *q, struct qed_l2 *l2)
{
	l2->lru_prev = NULL;
	l2->lru_next = q->lru_head;
	if (q->lru_head)
		q->lru_head->lru_prev = l2;
	else
		q->lru_tail = l2;
	q->lru_head = l2;
}

static void qed_l2_remove(struct qed *q, struct qed_l2 *l2)
{
	struct qed_l2 **pp = &q->l2_hash[qed_l2_bucket(q, l2->offset)];

	while (*pp != l2)
		pp = &(*pp)->hnext;
	*pp = l2->hnext;
	qed_lru_unlink(q, l2);
	q->l2_count--;
}

/* Evicts unreferenced tables, least recently used first, down to the limit. */
static void qed_l2_shrink(struct qed *q)
{
	struct qed_l2 *l2 = q->lru_tail, *prev;

	while (l2 && q->l2_count > q->l2_max) {
		prev = l2->lru_prev;
		if (!l2->ref && !l2->loading) {
			qed_l2_remove(q, l2);
			qed_l2_free(l2);
		}
		l2 = prev;
	}
}

static struct qed_l2 *qed_l2_alloc(struct qed *q, uint64_t off)
{
	struct qed_l2 *l2 = calloc(1, sizeof(*l2));

	if (!l2)
		return NULL;
	if (posix_memalign((void **)&l2->entries, QED_META_BLOCK, q->table_bytes)) {
		free(l2);
		return NULL;
	}
	l2->offset = off;
	l2->ref = 1;
	l2->dirty_lo = UINT32_MAX;
	exec_mutex_init(&l2->wlock);
	return l2;
}

static void qed_l2_insert(struct qed *q, struct qed_l2 *l2)
{
	unsigned int b = qed_l2_bucket(q, l2->offset);

	l2->hnext = q->l2_hash[b];
	q->l2_hash[b] = l2;
	qed_lru_push(q, l2);
	q->l2_count++;
	qed_l2_shrink(q);
}

static struct qed_l2 *qed_l2_find(struct qed *q, uint64_t off)
{
	struct qed_l2 *l2;

	for (l2 = q->l2_hash[qed_l2_bucket(q, off)]; l2; l2 = l2->hnext)
		if (l2->offset == off)
			return l2;
	return NULL;
}

struct qed_l2 *qed_l2_new_locked(struct qed *q, uint64_t off)
{
	struct qed_l2 *l2 = qed_l2_alloc(q, off);

	if (!l2)
		return NULL;
	memset(l2->entries, 0, q->table_bytes);
	qed_l2_insert(q, l2);
	return l2;
}

struct qed_l2 *qed_l2_get(struct qed *q, uint64_t off, int *err)
{
	struct qed_l2 *l2;
	int ret;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		l2 = qed_l2_find(q, off);
		if (!l2)
			break;
		if (!l2->loading) {
			l2->ref++;
			qed_lru_unlink(q, l2);
			qed_lru_push(q, l2);
			pthread_mutex_unlock(&q->lock);
			return l2;
		}
		/* Someone is reading it: wait, then look again (it may have failed). */
		exec_waitq_sleep(&q->load_wq, &q->lock);
	}
	l2 = qed_l2_alloc(q, off);
	if (!l2) {
		pthread_mutex_unlock(&q->lock);
		*err = -ENOMEM;
		return NULL;
	}
	l2->loading = true;
	qed_l2_insert(q, l2);
	pthread_mutex_unlock(&q->lock);

	ret = qed_table_read(q, off, l2->entries);

	pthread_mutex_lock(&q->lock);
	l2->loading = false;
	exec_waitq_wake_all(&q->load_wq);
	if (ret) {
		/* Out of the cache so that the next reader tries again. */
		qed_l2_remove(q, l2);
		pthread_mutex_unlock(&q->lock);
		qed_l2_free(l2);
		*err = ret;
		return NULL;
	}
	pthread_mutex_unlock(&q->lock);
	return l2;
}

void qed_l2_put_locked(struct qed *q, struct qed_l2 *l2)
{
	l2->ref--;
	if (!l2->ref && q->l2_count > q->l2_max)
		qed_l2_shrink(q);
}

void qed_l2_put(struct qed *q, struct qed_l2 *l2)
{
	pthread_mutex_lock(&q->lock);
	qed_l2_put_locked(q, l2);
	pthread_mutex_unlock(&q->lock);
}

void qed_l2_cache_drop(struct qed *q)
{
	struct qed_l2 *l2;

	while ((l2 = q->lru_head)) {
		qed_l2_remove(q, l2);
		qed_l2_free(l2);
	}
}

void qed_l2_cache_destroy(struct qed *q)
{
	if (!q->l2_hash)
		return;
	qed_l2_cache_drop(q);
	free(q->l2_hash);
	q->l2_hash = NULL;
}

/* Length of the run starting at L2 index @i whose entries continue @e. */
static uint32_t qed_run(const struct qed *q, const uint64_t *entries, uint32_t i,
			uint32_t max)
{
	uint64_t e = entries[i];
	uint32_t n = 1;

	while (n < max) {
		uint64_t next = entries[i + n];

		if (qed_is_data(e)) {
			if (!qed_is_data(next) ||
			    qed_entry_offset(q, next) != qed_entry_offset(q, e) +
						       (uint64_t)n * q->cluster_size)
				break;
		} else if (next != e) {
			break;
		}
		n++;
	}
	return n;
}

int64_t qed_map(struct qed *q, uint64_t off, uint64_t len, uint64_t *entry)
{
	uint32_t l1i = qed_l1_index(q, off), l2i = qed_l2_index(q, off);
	uint64_t in = qed_in_cluster(q, off);
	uint64_t table_end = ((uint64_t)l1i + 1) << q->l1_shift;
	uint64_t l2_off, e, run;
	uint32_t max, n;
	struct qed_l2 *l2;
	int err = 0;

	len = MIN(len, table_end - off);
	pthread_mutex_lock(&q->lock);
	l2_off = q->l1[l1i];
	pthread_mutex_unlock(&q->lock);
	if (!l2_off) {
		*entry = QED_UNALLOCATED;
		return len;
	}
	l2 = qed_l2_get(q, qed_entry_offset(q, l2_off), &err);
	if (!l2)
		return err;
	max = DIV_ROUND_UP(in + len, q->cluster_size);
	pthread_mutex_lock(&q->lock);
	e = l2->entries[l2i];
	n = qed_run(q, l2->entries, l2i, max);
	qed_l2_put_locked(q, l2);
	pthread_mutex_unlock(&q->lock);

	run = MIN((uint64_t)n * q->cluster_size - in, len);
	*entry = qed_is_data(e) ? qed_entry_offset(q, e) + in : e;
	return run;
}
