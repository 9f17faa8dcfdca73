// SPDX-License-Identifier: GPL-2.0
/*
 * Metadata write-back in dependency order.  README.md ("Crash-safe write
 * ordering") lists the steps and what each protects against; the step
 * names below (F1..F5) refer to it.  The same order, with only the syncs
 * that order it, puts a recoverable device's metadata into the file
 * before its requests complete ("Recoverable devices" there).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/*
 * Writes the dirty sectors (dio_align bytes each) of a host-order table
 * of u64 entries at @table_off, coalescing neighbours; @kind is the
 * table's (the overlap check lets it cover itself).  No fdatasync.
 * Caller holds alloc_mutex and keeps the table from changing (a flush).
 * Returns 0 or -errno.
 */
int qcow2_write_table_sectors(struct qcow2 *q, enum qcow2_meta kind, uint64_t table_off,
			      const uint64_t *table, uint8_t *dirty, uint64_t nr_sectors)
{
	uint64_t per = q->dio_align / 8, s = 0, e, i;
	uint64_t *bounce = NULL;
	size_t cap = 0;
	int ret = 0;

	while (s < nr_sectors) {
		if (!dirty[s]) {
			s++;
			continue;
		}
		for (e = s; e < nr_sectors && dirty[e]; e++)
			;
		if ((e - s) * q->dio_align > cap) {
			free(bounce);
			cap = (e - s) * q->dio_align;
			if (posix_memalign((void **)&bounce, 4096, cap))
				return -ENOMEM;
		}
		pthread_mutex_lock(&q->lock);
		for (i = 0; i < (e - s) * per; i++)
			bounce[i] = __builtin_bswap64(table[s * per + i]);
		memset(dirty + s, 0, e - s);
		pthread_mutex_unlock(&q->lock);
		ret = qcow2_pwrite_checked(q, QCOW2_OL(kind), bounce, (e - s) * q->dio_align,
					   table_off + s * q->dio_align);
		if (ret < 0) {
			memset(dirty + s, 1, e - s);
			break;
		}
		ret = 0;
		s = e;
	}
	free(bounce);
	return ret;
}

static bool qcow2_any(const uint8_t *dirty, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		if (dirty[i])
			return true;
	return false;
}

static int qcow2_sync(struct qcow2 *q)
{
	int ret = bfile_flush(q->file);

	if (!ret && q->dfile != q->file)
		ret = bfile_flush(q->dfile);
	return ret;
}

/*
 * F1, F2, R1 and Z1: what an L2 table on disk depends on (refcounts, the
 * data it maps, the refcount table entries naming new blocks, the dirty
 * bit of lazy refcounts) made durable.  @l1_dirty and @frees: L1 entries
 * and releases will follow, which Z1 must cover too.  Caller holds
 * alloc_mutex with `flushing` set.  Returns 0 or -errno.
 */
static int qcow2_flush_deps(struct qcow2 *q, bool l1_dirty, bool frees)
{
	uint64_t rt_sectors = q->rt_size * 8 / q->dio_align;
	bool rt_dirty = qcow2_any(q->rt_dirty, rt_sectors);
	int ret;

	/*
	 * F1: new refcounts; F2's sync also makes completed data writes
	 * durable.  Lazy refcounts skip F1 (Z1: the dirty bit covers it),
	 * unless new blocks are about to be named by the refcount table.
	 */
	if (!q->lazy || rt_dirty) {
		ret = qcow2_cache_writeback(q, &q->rbc);
		if (ret)
			return ret;
	}
	ret = qcow2_sync(q);
	if (ret)
		return ret;
	if (rt_dirty) {
		/* R1: blocks first (above), then the table entries that point to them. */
		ret = qcow2_write_table_sectors(q, QCOW2_META_RT, q->rt_offset, q->rt,
						q->rt_dirty, rt_sectors);
		if (!ret)
			ret = bfile_flush(q->file);
		if (ret)
			return ret;
	}
	if (q->lazy && !q->lazy_dirty && (q->l2c.nr_dirty || l1_dirty || frees)) {
		/*
		 * Z1: the dirty bit, synced, before the first table that may
		 * name a cluster whose refcount is not on disk.  A crash from
		 * here on leaves an image that is repaired when next opened.
		 */
		ret = qcow2_set_dirty_bit(q, true);
		if (ret)
			return ret;
		q->lazy_dirty = true;
	}
	return 0;
}

/*
 * F3: L2 entries, once their clusters' refcounts and data are durable
 * (qcow2_flush_deps()).  Synced when @sync: an L1 entry written later
 * (F4) may point at one of these tables.  Returns 0 or -errno.
 */
static int qcow2_flush_l2_tables(struct qcow2 *q, bool sync)
{
	int ret;

	if (!q->l2c.nr_dirty)
		return 0;
	ret = qcow2_cache_writeback(q, &q->l2c);
	return ret || !sync ? ret : bfile_flush(q->file);
}

/*
 * F1..F5 (@durable: a flush), or F1..F4 with only the syncs that order
 * them (a recoverable device's write-back, README.md "Recoverable
 * devices": what was written stays in the file, and a power cut finds
 * the same order as ever; the last tables written and the releases,
 * which only leak if lost, are made durable by the next flush).
 */
static int qcow2_flush_locked(struct qcow2 *q, bool durable)
{
	uint64_t l1_sectors = ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size) / q->dio_align;
	bool l1_dirty = qcow2_any(q->l1_dirty, l1_sectors);
	bool frees;
	int ret;

	pthread_mutex_lock(&q->lock);
	frees = q->nr_frees;
	pthread_mutex_unlock(&q->lock);

	ret = qcow2_flush_deps(q, l1_dirty, frees);
	if (!ret)
		ret = qcow2_flush_l2_tables(q, durable || l1_dirty);
	if (ret)
		return ret;
	if (l1_dirty) {
		/* F4: L1 entries, after the new L2 tables they point to. */
		ret = qcow2_write_table_sectors(q, QCOW2_META_L1, q->l1_offset, q->l1,
						q->l1_dirty, l1_sectors);
		if (!ret && durable)
			ret = bfile_flush(q->file);
		if (ret)
			return ret;
	}
	if (frees && durable) {
		/* F5: refcount decrements, once no table on disk points there. */
		ret = qcow2_release_frees(q);
		if (!ret && !q->lazy)
			ret = qcow2_cache_writeback(q, &q->rbc);
		if (!ret && !q->lazy)
			ret = bfile_flush(q->file);
	}
	return ret;
}

/*
 * Holds off refcount changes (alloc_mutex) and L1/L2 changes (`flushing`)
 * while the tables are ordered.
 */
static void qcow2_flush_begin(struct qcow2 *q)
{
	exec_mutex_lock(&q->alloc_mutex);
	pthread_mutex_lock(&q->lock);
	q->flushing = true;
	pthread_mutex_unlock(&q->lock);
}

static void qcow2_flush_end(struct qcow2 *q)
{
	pthread_mutex_lock(&q->lock);
	q->flushing = false;
	exec_waitq_wake_all(&q->flush_wq);
	pthread_mutex_unlock(&q->lock);
	exec_mutex_unlock(&q->alloc_mutex);
}

/*
 * Writes back all dirty metadata in dependency order and makes it and
 * every completed data write durable.  L1/L2 changes wait meanwhile;
 * reads and in-place writes go on.  Returns 0 or -errno.
 */
int qcow2_flush_meta(struct qcow2 *q)
{
	int ret;

	/*
	 * A corrupt image gets no more metadata writes: what is still dirty
	 * is lost, and the flush says so.  Completed data writes are made
	 * durable all the same.
	 */
	if (qcow2_is_corrupt(q))
		return qcow2_meta_dirty(q) ? -EIO : qcow2_sync(q);
	qcow2_flush_begin(q);
	ret = qcow2_flush_locked(q, true);
	qcow2_flush_end(q);
	return ret;
}

/* Are there tables (refcounts unless lazy, L2, L1, refcount table) to write? */
static bool qcow2_tables_dirty(struct qcow2 *q)
{
	bool dirty;

	pthread_mutex_lock(&q->lock);
	dirty = q->flushing || q->l2c.nr_dirty || (q->rbc.nr_dirty && !q->lazy) ||
		qcow2_any(q->l1_dirty, ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size) /
			  q->dio_align) ||
		qcow2_any(q->rt_dirty, q->rt_size * 8 / q->dio_align);
	pthread_mutex_unlock(&q->lock);
	return dirty;
}

/*
 * A recoverable device (TGT_O_RECOVERABLE): called before modifying
 * requests complete (io.c batches them), it returns once every table
 * change made so far is in the file, written in the flush order with the
 * syncs that order it but none after the last tables (F1..F4 of
 * qcow2_flush_locked(false)), so that a new server after this one's
 * death (kill -9) finds what the completed requests wrote, a death
 * half-way leaves at most leaks, and a power cut finds the usual order.
 * A flush already running (`flushing`) may hold the caller's change in a
 * copy being written: alloc_mutex waits for it.  A no-op on other opens.
 * Returns 0 or -errno (-EIO on a corrupt image with tables dirty).
 */
int qcow2_writeback_recoverable(struct qcow2 *q)
{
	int ret;

	if (!q->recoverable || !qcow2_tables_dirty(q))
		return 0;
	if (qcow2_is_corrupt(q))
		return -EIO;
	qcow2_flush_begin(q);
	ret = qcow2_flush_locked(q, false);
	qcow2_flush_end(q);
	return ret;
}

/*
 * The L2 cache's write-back for eviction (set at open, qcow2_cache_init()):
 * the metadata L2 tables depend on first (F1, F2, R1, Z1), then the
 * tables (F3), as a full flush orders them.  L1 entries and releases
 * (F4, F5) wait for the next full flush; the tables are on disk before
 * it writes an L1 entry naming them.  The caller must not hold
 * alloc_mutex.  Returns 0 or -errno (-EIO on a corrupt image).
 */
int qcow2_flush_l2_cache(struct qcow2 *q)
{
	int ret;

	if (qcow2_is_corrupt(q))
		return -EIO;
	qcow2_flush_begin(q);
	ret = qcow2_flush_deps(q, false, false);
	if (!ret)
		ret = qcow2_flush_l2_tables(q, true);
	qcow2_flush_end(q);
	return ret;
}

/*
 * Lazy refcounts: writes back everything, refcounts included, and clears
 * the dirty bit (Z2: refcounts synced before the synced header write).
 * Returns 0 or -errno.
 */
int qcow2_mark_clean(struct qcow2 *q)
{
	int ret = qcow2_flush_meta(q);

	if (ret || !q->lazy)
		return ret;
	exec_mutex_lock(&q->alloc_mutex);
	if (q->lazy_dirty) {
		ret = qcow2_cache_writeback(q, &q->rbc);
		if (!ret)
			ret = qcow2_sync(q);
		if (!ret)
			ret = qcow2_set_dirty_bit(q, false);
		if (!ret)
			q->lazy_dirty = false;
	}
	exec_mutex_unlock(&q->alloc_mutex);
	return ret;
}

/* Is there metadata a flush would write?  Lazy refcounts alone do not count. */
bool qcow2_meta_dirty(struct qcow2 *q)
{
	bool dirty;

	pthread_mutex_lock(&q->lock);
	dirty = q->l2c.nr_dirty || (q->rbc.nr_dirty && !q->lazy) || q->nr_frees ||
		qcow2_any(q->l1_dirty, ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size) /
			  q->dio_align);
	pthread_mutex_unlock(&q->lock);
	return dirty;
}
