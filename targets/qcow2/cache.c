// SPDX-License-Identifier: GPL-2.0
/*
 * The table caches: L2 tables and refcount blocks, one cluster per slot.
 *
 * All bookkeeping is under qcow2.lock; the lock is dropped for I/O.  A
 * slot being read is marked loading, and whoever wants it sleeps on the
 * cache's wait queue until the load ends.  A pinned slot is never evicted;
 * a dirty one is evicted only after it has been written back in the
 * crash-safe order (for L2 tables, after the refcounts and data they
 * depend on: the cache's ordered_writeback, flush.c's, set at open), so
 * eviction never reorders metadata writes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/*
 * Sets up @c with @nr slots; @is_l2: tables of big-endian u64 entries
 * kept in host order; @ordered_writeback: see struct qcow2_cache.
 * Returns 0 or -ENOMEM.
 */
int qcow2_cache_init(struct qcow2_cache *c, unsigned int nr, bool is_l2,
		     int (*ordered_writeback)(struct qcow2 *q))
{
	unsigned int i, hn = 1;

	while (hn < nr * 2)
		hn <<= 1;
	memset(c, 0, sizeof(*c));
	c->s = calloc(nr, sizeof(*c->s));
	c->hash = malloc(hn * sizeof(*c->hash));
	if (!c->s || !c->hash) {
		free(c->s);
		free(c->hash);
		return -ENOMEM;
	}
	for (i = 0; i < hn; i++)
		c->hash[i] = -1;
	for (i = 0; i < nr; i++)
		c->s[i].hnext = -1;
	c->nr = nr;
	c->hash_mask = hn - 1;
	c->is_l2 = is_l2;
	c->ordered_writeback = ordered_writeback;
	exec_waitq_init(&c->wq);
	return 0;
}

void qcow2_cache_destroy(struct qcow2 *q, struct qcow2_cache *c)
{
	unsigned int i;

	(void)q;
	for (i = 0; i < c->nr; i++)
		free(c->s[i].buf);
	free(c->s);
	free(c->hash);
	c->s = NULL;
	c->hash = NULL;
}

static unsigned int qcow2_cache_hash(const struct qcow2_cache *c, uint64_t off)
{
	return (unsigned int)(((off >> 9) * 0x9e3779b97f4a7c15ULL) >> 32) & c->hash_mask;
}

static int qcow2_cache_find(const struct qcow2_cache *c, uint64_t off)
{
	int i;

	for (i = c->hash[qcow2_cache_hash(c, off)]; i >= 0; i = c->s[i].hnext)
		if (c->s[i].off == off)
			return i;
	return -1;
}

static void qcow2_cache_unlink(struct qcow2_cache *c, int idx)
{
	int *p = &c->hash[qcow2_cache_hash(c, c->s[idx].off)];

	while (*p != idx)
		p = &c->s[*p].hnext;
	*p = c->s[idx].hnext;
	c->s[idx].hnext = -1;
	c->s[idx].off = 0;
}

static void qcow2_cache_link(struct qcow2_cache *c, int idx, uint64_t off)
{
	unsigned int h = qcow2_cache_hash(c, off);

	c->s[idx].off = off;
	c->s[idx].hnext = c->hash[h];
	c->hash[h] = idx;
}

/* The least recently used slot that can be reused now, or -1; under lock. */
static int qcow2_cache_victim(const struct qcow2_cache *c, bool *have_dirty)
{
	uint64_t best_lru = UINT64_MAX;
	int best = -1;
	unsigned int i;

	*have_dirty = false;
	for (i = 0; i < c->nr; i++) {
		const struct qcow2_cslot *s = &c->s[i];

		if (!s->off)
			return i;
		if (s->pin || s->loading)
			continue;
		if (s->dirty) {
			*have_dirty = true;
			continue;
		}
		if (s->lru < best_lru) {
			best_lru = s->lru;
			best = i;
		}
	}
	return best;
}

static void qcow2_table_to_host(void *buf, uint64_t bytes)
{
	uint64_t *p = buf, i;

	for (i = 0; i < bytes / 8; i++)
		p[i] = __builtin_bswap64(p[i]);
}

struct qcow2_cslot *qcow2_cache_lookup_locked(struct qcow2_cache *c, uint64_t off)
{
	int i = qcow2_cache_find(c, off);

	if (i < 0 || c->s[i].loading)
		return NULL;
	c->s[i].lru = ++c->lru_clock;
	return &c->s[i];
}

/*
 * Returns, pinned, the slot holding the table at host offset @off, read
 * from disk unless @fresh (a newly allocated table: zeros, which the caller
 * fills and marks dirty).  May sleep, and may write dirty tables back to
 * make room (for the L2 cache through its ordered_writeback, which takes
 * alloc_mutex: the caller must not hold it then).
 * Returns 0 or -errno; -EIO, the image marked corrupt, for @off 0.
 */
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off,
		    bool fresh, struct qcow2_cslot **out)
{
	struct qcow2_cslot *s;
	bool have_dirty;
	ssize_t n;
	int i, ret;

	/*
	 * Offset 0 is the header, never a table, and it is also what marks
	 * an empty slot: a slot linked under 0 would be taken for free and
	 * linked a second time, turning its hash chain into a cycle.  Only
	 * an allocation trusting a refcount of 0 for cluster 0 gets here
	 * (QEMU refuses it the same way).
	 */
	if (!off)
		return qcow2_mark_corrupt(q, c->is_l2 ? "L2 table at offset 0 (the header)" :
					  "refcount block at offset 0 (the header)");
	pthread_mutex_lock(&q->lock);
	for (;;) {
		i = qcow2_cache_find(c, off);
		if (i >= 0) {
			s = &c->s[i];
			if (s->loading) {
				exec_waitq_sleep(&c->wq, &q->lock);
				continue;
			}
			s->pin++;
			s->lru = ++c->lru_clock;
			/*
			 * A freed table's stale copy: the cluster was reused
			 * for a new table, which starts empty.
			 */
			if (fresh)
				memset(s->buf, 0, q->cluster_size);
			pthread_mutex_unlock(&q->lock);
			*out = s;
			return 0;
		}
		i = qcow2_cache_victim(c, &have_dirty);
		if (i >= 0)
			break;
		if (have_dirty) {
			pthread_mutex_unlock(&q->lock);
			ret = c->ordered_writeback ? c->ordered_writeback(q) :
						     qcow2_cache_writeback(q, c);
			if (ret)
				return ret;
			pthread_mutex_lock(&q->lock);
		} else {
			/* Every slot is pinned: wait for a request to let one go. */
			exec_waitq_sleep(&c->wq, &q->lock);
		}
	}

	s = &c->s[i];
	if (s->off)
		qcow2_cache_unlink(c, i);
	qcow2_cache_link(c, i, off);
	s->pin = 1;
	s->dirty = false;
	s->lru = ++c->lru_clock;
	if (!s->buf && posix_memalign(&s->buf, 4096, q->cluster_size)) {
		s->buf = NULL;
		qcow2_cache_unlink(c, i);
		s->pin = 0;
		pthread_mutex_unlock(&q->lock);
		return -ENOMEM;
	}
	if (fresh) {
		memset(s->buf, 0, q->cluster_size);
		pthread_mutex_unlock(&q->lock);
		*out = s;
		return 0;
	}
	s->loading = true;
	pthread_mutex_unlock(&q->lock);

	n = bfile_pread(q->file, s->buf, q->cluster_size, off);
	if (n >= 0) {
		/* A table cut short by the end of the file reads as zeros past it. */
		memset((char *)s->buf + n, 0, q->cluster_size - n);
		if (c->is_l2)
			qcow2_table_to_host(s->buf, q->cluster_size);
	}

	pthread_mutex_lock(&q->lock);
	s->loading = false;
	if (n < 0) {
		qcow2_cache_unlink(c, i);
		s->pin = 0;
	}
	exec_waitq_wake_all(&c->wq);
	pthread_mutex_unlock(&q->lock);
	if (n < 0)
		return n;
	*out = s;
	return 0;
}

void qcow2_cache_put(struct qcow2 *q, struct qcow2_cache *c, struct qcow2_cslot *s)
{
	pthread_mutex_lock(&q->lock);
	if (!--s->pin && c->wq.head)
		exec_waitq_wake_all(&c->wq);
	pthread_mutex_unlock(&q->lock);
}

/* Records a change to bytes [off, off + len) of @s's table; under lock. */
static void qcow2_cache_mark_dirty_bytes(struct qcow2_cache *c, struct qcow2_cslot *s,
					 uint32_t off, uint32_t len)
{
	if (!s->dirty) {
		c->nr_dirty++;
		s->dlo = off;
		s->dhi = off + len;
	} else {
		s->dlo = MIN(s->dlo, off);
		s->dhi = MAX(s->dhi, off + len);
	}
	s->dirty = true;
	s->gen++;
}

/* Records a change anywhere in @s's table (a new table: all of it); under lock. */
void qcow2_cache_mark_dirty(struct qcow2_cache *c, struct qcow2_cslot *s)
{
	qcow2_cache_mark_dirty_bytes(c, s, 0, UINT32_MAX);
}

/*
 * Records a change to entries [i, i + n) of the L2 table in @s: write-back
 * then writes only the sectors around them (recoverable devices write
 * back after every allocating request).  Under lock.
 */
void qcow2_l2_mark_dirty(struct qcow2 *q, struct qcow2_cslot *s, uint64_t i, uint64_t n)
{
	qcow2_cache_mark_dirty_bytes(&q->l2c, s, i << (3 + q->extl2), n << (3 + q->extl2));
}

/* Records a change to entry @i of the refcount block in @s; under lock. */
void qcow2_rb_mark_dirty(struct qcow2 *q, struct qcow2_cslot *s, uint64_t i)
{
	qcow2_cache_mark_dirty_bytes(&q->rbc, s, (i << q->refcount_order) >> 3,
				     MAX(1U, (1U << q->refcount_order) >> 3));
}

/*
 * Writes the changed part of every dirty table of @c (the dio_align
 * sectors around [dlo, dhi); no fdatasync: the caller orders).  A table
 * changed while its copy was being written stays dirty, with the range
 * of the new changes.  Returns 0 or -errno.
 */
int qcow2_cache_writeback(struct qcow2 *q, struct qcow2_cache *c)
{
	void *bounce;
	unsigned int i;
	int ret = 0;

	if (posix_memalign(&bounce, 4096, q->cluster_size))
		return -ENOMEM;
	pthread_mutex_lock(&q->lock);
	for (i = 0; i < c->nr && c->nr_dirty; i++) {
		struct qcow2_cslot *s = &c->s[i];
		uint64_t gen, off, lo, hi;
		uint32_t dlo, dhi;
		ssize_t n;

		if (!s->dirty || s->loading)
			continue;
		dlo = s->dlo;
		dhi = s->dhi;
		lo = ALIGN_DOWN((uint64_t)dlo, q->dio_align);
		hi = MIN(ALIGN_UP((uint64_t)dhi, q->dio_align), (uint64_t)q->cluster_size);
		memcpy(bounce, (char *)s->buf + lo, hi - lo);
		/* What changes from now on is the next write's range. */
		s->dlo = UINT32_MAX;
		s->dhi = 0;
		gen = s->gen;
		off = s->off;
		s->pin++;
		pthread_mutex_unlock(&q->lock);

		if (c->is_l2)
			qcow2_table_to_host(bounce, hi - lo);
		n = qcow2_pwrite_checked(q, QCOW2_OL(c->is_l2 ? QCOW2_META_L2 : QCOW2_META_RB),
					 bounce, hi - lo, off + lo);

		pthread_mutex_lock(&q->lock);
		s->pin--;
		if (n < 0) {
			s->dlo = MIN(s->dlo, dlo);
			s->dhi = MAX(s->dhi, dhi);
			ret = n;
			break;
		}
		if (s->gen == gen) {
			s->dirty = false;
			c->nr_dirty--;
		}
	}
	if (c->wq.head)
		exec_waitq_wake_all(&c->wq);
	pthread_mutex_unlock(&q->lock);
	free(bounce);
	return ret;
}
