// SPDX-License-Identifier: GPL-2.0
/*
 * QED reads and writes.
 *
 * A request is cut at L2 table boundaries and, inside a table, into runs
 * of clusters of one kind: allocated and contiguous in the file (read or
 * written in place), zero clusters, or unallocated.  A write to a run
 * that is not allocated takes the allocating path: register the clusters
 * (alloc.c), reserve file space at the end, write the data with the
 * untouched head and tail of the first and last cluster copied from the
 * backing file (copy-on-write), and only then point the L2 entries at it.
 * The ordering rules are in README.md.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#include "qed.h"
#include "util.h"

/* Zeros for in-place zeroing when the filesystem cannot do it, written in chunks. */
#define QED_ZERO_BUF_BYTES	(1024U * 1024)
static void *qed_zero_buf;
static pthread_once_t qed_zero_once = PTHREAD_ONCE_INIT;

static void qed_zero_buf_init(void)
{
	if (!posix_memalign(&qed_zero_buf, QED_META_BLOCK, QED_ZERO_BUF_BYTES))
		memset(qed_zero_buf, 0, QED_ZERO_BUF_BYTES);
}

static const void *qed_zeros(void)
{
	pthread_once(&qed_zero_once, qed_zero_buf_init);
	return qed_zero_buf;
}

/* Writes @len zero bytes at file offset @off.  Returns 0 or -errno. */
static int qed_write_zero_bytes(struct qed *q, uint64_t off, uint64_t len)
{
	const void *z = qed_zeros();
	ssize_t n;

	if (!z)
		return -ENOMEM;
	while (len) {
		uint32_t chunk = MIN(len, (uint64_t)QED_ZERO_BUF_BYTES);

		n = bfile_pwrite(q->file, z, chunk, off, 0);
		if (n < 0)
			return n;
		off += chunk;
		len -= chunk;
	}
	return 0;
}

/*
 * Makes file range [@off, @off + @len) read as zeros: @fresh ranges were
 * never written (beyond every earlier allocation), so extending the file
 * over them is enough; allocated ones are zeroed in place.
 */
static int qed_zero_file_range(struct qed *q, uint64_t off, uint64_t len, bool fresh)
{
	int ret;

	if (!len)
		return 0;
	/* Fresh space inside the file reads as zeros already. */
	if (fresh) {
		bool inside;

		pthread_mutex_lock(&q->lock);
		inside = off + len <= q->file_bytes;
		pthread_mutex_unlock(&q->lock);
		if (inside)
			return 0;
	}
	if (q->falloc_ok) {
		ret = bfile_fallocate(q->file, fresh ? 0 : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				     off, len);
		if (ret != -EOPNOTSUPP)
			return ret;
		q->falloc_ok = false;
	}
	return qed_write_zero_bytes(q, off, len);
}

/*
 * Fills file range [@host, @host + @len) of a newly allocated cluster with
 * what the guest range at @guest read before: the backing file's data for
 * an unallocated cluster, zeros for a zero cluster or without a backing
 * file.  @tail: the range ends at a cluster end, so the file must reach it.
 */
static int qed_cow(struct qed *q, uint64_t entry, uint64_t guest, uint64_t host,
		   uint64_t len, bool tail)
{
	uint64_t done = 0;
	void *buf;
	int ret = 0;

	if (!len)
		return 0;
	if (entry != QED_UNALLOCATED || !q->t->backing)
		/* Fresh file space reads as zeros; only the tail may lie past EOF. */
		return tail ? qed_zero_file_range(q, host, len, true) : 0;

	if (posix_memalign(&buf, QED_META_BLOCK, MIN(len, (uint64_t)QED_ZERO_BUF_BYTES)))
		return -ENOMEM;
	while (done < len) {
		uint32_t chunk = MIN(len - done, (uint64_t)QED_ZERO_BUF_BYTES);
		ssize_t n;

		ret = tgt_read_backing(q->t->backing, buf, chunk, guest + done);
		if (ret < 0)
			break;
		n = bfile_pwrite(q->file, buf, chunk, host + done, 0);
		if (n < 0) {
			ret = n;
			break;
		}
		ret = 0;
		done += chunk;
	}
	free(buf);
	return ret;
}

/*
 * Points L2 entries [@l2i, @l2i + @n) of @l2 at @value (a file offset,
 * advanced per cluster, or the zero marker) and writes them.
 *
 * Group commit: the change goes into the cached table at once, then the
 * request waits for a table write that covers it.  Whoever takes the
 * table's write lock first writes every change made so far, so N
 * allocating writes to one table cost about one table write, not N in a
 * row.  The entries are only visible once their data is written (our
 * caller's order), and each request completes only after a write that
 * carried its entries.  On failure the entries are restored, so cache
 * and file agree; writers batched with us retry on their own.
 */
static int qed_l2_update(struct qed *q, struct qed_l2 *l2, uint32_t l2i, uint32_t n,
			 uint64_t value)
{
	uint64_t *old, gen, my_gen;
	uint32_t lo, hi, i;
	int ret = 0;

	old = malloc(n * sizeof(*old));
	if (!old)
		return -ENOMEM;
	pthread_mutex_lock(&q->lock);
	for (i = 0; i < n; i++) {
		old[i] = l2->entries[l2i + i];
		l2->entries[l2i + i] = qed_is_data(value) ?
				       value + (uint64_t)i * q->cluster_size : value;
	}
	l2->dirty_lo = MIN(l2->dirty_lo, l2i);
	l2->dirty_hi = MAX(l2->dirty_hi, l2i + n);
	my_gen = ++l2->change_gen;
	pthread_mutex_unlock(&q->lock);

	exec_mutex_lock(&l2->wlock);
	pthread_mutex_lock(&q->lock);
	if (l2->written_gen >= my_gen) {
		/* A write that started after our change carried it. */
		pthread_mutex_unlock(&q->lock);
		goto out;
	}
	gen = l2->change_gen;
	/* Our own entries too: an earlier failed batch may have reset the range. */
	lo = MIN(l2->dirty_lo, l2i);
	hi = MAX(l2->dirty_hi, l2i + n);
	l2->dirty_lo = UINT32_MAX;
	l2->dirty_hi = 0;
	pthread_mutex_unlock(&q->lock);

	ret = qed_l2_write(q, l2, lo, hi - lo);
	pthread_mutex_lock(&q->lock);
	if (ret)
		memcpy(&l2->entries[l2i], old, n * sizeof(*old));
	else
		l2->written_gen = gen;
	pthread_mutex_unlock(&q->lock);
out:
	exec_mutex_unlock(&l2->wlock);
	free(old);
	return ret;
}

/*
 * Links the new, already written and flushed L2 table @l2 into L1 slot
 * @l1i.  Until this write lands, a crash leaves only a leaked table.
 */
static int qed_l1_update(struct qed *q, uint32_t l1i, uint64_t l2_off)
{
	uint64_t old;
	int ret;

	exec_mutex_lock(&q->l1_wlock);
	pthread_mutex_lock(&q->lock);
	old = q->l1[l1i];
	q->l1[l1i] = l2_off;
	pthread_mutex_unlock(&q->lock);
	ret = qed_table_write(q, q->l1_table_offset, q->l1, l1i, 1);
	if (ret) {
		pthread_mutex_lock(&q->lock);
		q->l1[l1i] = old;
		pthread_mutex_unlock(&q->lock);
	}
	exec_mutex_unlock(&q->l1_wlock);
	return ret;
}

/*
 * Without a backing file nothing orders the data of new clusters before
 * the L2 entries that point at them (README, step 3: need-check covers a
 * crash between the two).  So when no one else is writing table @l2, the
 * data (@buf, @len bytes at file offset @data_off) and the table block
 * holding entries [@l2i, @l2i + @n), pointed at @host onwards, go out in
 * one submission: at depth 1 an allocating write then costs one round
 * trip instead of two.  Only when ours is the one allocating write in
 * flight: with more, group commit (qed_l2_update()) writes many requests'
 * entries at once, and a request holding the table's lock across its
 * data write would make the others queue behind it one by one.
 * The block is written from a copy, under the table's write lock so no
 * group commit can overwrite it with older entries, and the cache takes
 * the entries only after both writes, so no other request sees a cluster
 * whose data is still in flight.  Every other entry in the copy is
 * already safe to write: the cache only ever holds entries whose data is
 * written.
 * Returns 0, -errno, or -EAGAIN if other allocating writes are in flight,
 * the table is busy or the clusters are not all inside the file (their
 * tail would need zeroing first): then the caller takes the ordered path.
 */
static int qed_write_alloc_together(struct qed *q, struct qed_l2 *l2, uint32_t l2i,
				    uint32_t n, const void *buf, uint64_t len,
				    uint64_t data_off, uint64_t host)
{
	const uint32_t per_block = QED_META_BLOCK / sizeof(uint64_t);
	uint32_t start = ALIGN_DOWN(l2i, per_block);
	uint32_t end = ALIGN_UP(l2i + n, per_block);
	struct exec_write w[2];
	uint64_t *blk;
	uint32_t i;
	bool alone, inside;
	int ret;

	pthread_mutex_lock(&q->lock);
	alone = q->nr_allocs == 1;
	pthread_mutex_unlock(&q->lock);
	if (!alone)
		return -EAGAIN;
	if (posix_memalign((void **)&blk, QED_META_BLOCK, (end - start) * sizeof(uint64_t)))
		return -ENOMEM;
	if (!exec_mutex_trylock(&l2->wlock)) {
		free(blk);
		return -EAGAIN;
	}
	pthread_mutex_lock(&q->lock);
	inside = host + ((uint64_t)n << q->cluster_shift) <= q->file_bytes;
	for (i = start; inside && i < end; i++)
		put_le64(&blk[i - start], i >= l2i && i < l2i + n ?
			 host + ((uint64_t)(i - l2i) << q->cluster_shift) : l2->entries[i]);
	pthread_mutex_unlock(&q->lock);
	if (!inside) {
		ret = -EAGAIN;
		goto out;
	}

	w[0] = (struct exec_write){ .buf = buf, .len = len, .off = data_off };
	w[1] = (struct exec_write){ .buf = blk,
				    .len = (end - start) * sizeof(uint64_t),
				    .off = l2->offset + start * sizeof(uint64_t) };
	ret = bfile_pwrite_all(q->file, w, 2);
	/*
	 * Entries on disk go into the cache even if the data write failed:
	 * fresh clusters inside the file read as zeros, as the unallocated or
	 * zero clusters they replace did.
	 */
	if (w[1].res >= 0) {
		pthread_mutex_lock(&q->lock);
		for (i = 0; i < n; i++)
			l2->entries[l2i + i] = host + ((uint64_t)i << q->cluster_shift);
		pthread_mutex_unlock(&q->lock);
	}
out:
	exec_mutex_unlock(&l2->wlock);
	free(blk);
	return ret;
}

/* Writes @buf (NULL: zeros) to allocated file range at @host. */
static int qed_write_inplace(struct qed *q, const void *buf, uint64_t host, uint64_t len,
			     bool whole_zero)
{
	ssize_t n;

	if (buf) {
		n = bfile_pwrite(q->file, buf, len, host, 0);
		return n < 0 ? (int)n : 0;
	}
	if (whole_zero)
		return qed_zero_file_range(q, host, len, false);
	return qed_write_zero_bytes(q, host, len);
}

/*
 * The allocating path for guest range [@off, @off + @len) inside one L2
 * table, whose clusters are all unallocated or zero clusters.
 * @l2: the table, referenced, or NULL when the L1 slot is empty and a new
 * table is created.  @first/@last: entries of the first and last cluster,
 * which decide what their untouched parts are filled with.  @zero with
 * whole clusters: set zero markers, write no data.
 */
static int qed_write_alloc(struct qed *q, struct qed_alloc *a, struct qed_l2 *l2,
			   const void *buf, uint64_t off, uint64_t len, uint64_t first,
			   uint64_t last, uint64_t host, uint64_t l2_host, bool markers)
{
	uint64_t start = (uint64_t)a->first_cluster << q->cluster_shift;
	uint64_t end = start + (a->nr_clusters << q->cluster_shift);
	uint32_t l2i = qed_l2_index(q, start);
	struct qed_l2 *nl2 = NULL;
	ssize_t n;
	int ret;

	if (!markers && buf && l2 && !q->t->backing) {
		ret = qed_write_alloc_together(q, l2, l2i, a->nr_clusters, buf, len,
					       host + (off - start), host);
		if (ret != -EAGAIN)
			return ret;
	}
	if (!markers) {
		/* Data with its copy-on-write head and tail, all in fresh space. */
		ret = qed_cow(q, first, start, host, off - start, false);
		if (ret)
			return ret;
		if (buf)
			n = bfile_pwrite(q->file, buf, len, host + (off - start), 0);
		else
			n = qed_zero_file_range(q, host + (off - start), len, true);
		if (n < 0)
			return n;
		ret = qed_cow(q, last, off + len, host + (off + len - start), end - off - len,
			      true);
		if (ret)
			return ret;
		/*
		 * With a backing file there is no need-check: the data (and
		 * the backing data copied around it) must be durable before an
		 * L2 entry points at it, or a crash would expose a cluster that
		 * lost the backing file's contents.
		 */
		if (q->t->backing) {
			ret = bfile_flush(q->file);
			if (ret)
				return ret;
		}
	}

	if (l2)
		return qed_l2_update(q, l2, l2i, a->nr_clusters, markers ? QED_ZERO_CLUSTER : host);

	/* A new L2 table: written whole and flushed before L1 points at it. */
	pthread_mutex_lock(&q->lock);
	nl2 = qed_l2_new_locked(q, l2_host);
	if (nl2) {
		uint32_t i;

		for (i = 0; i < a->nr_clusters; i++)
			nl2->entries[l2i + i] = markers ? QED_ZERO_CLUSTER :
					       host + ((uint64_t)i << q->cluster_shift);
	}
	pthread_mutex_unlock(&q->lock);
	if (!nl2)
		return -ENOMEM;
	ret = qed_table_write(q, l2_host, nl2->entries, 0, q->table_nelems);
	if (!ret)
		ret = bfile_flush(q->file);
	if (!ret)
		ret = qed_l1_update(q, a->l1_index, l2_host);
	qed_l2_put(q, nl2);
	return ret;
}

int64_t qed_write_range(struct qed *q, const void *buf, uint64_t off, uint64_t len,
			bool zero)
{
	uint32_t l1i = qed_l1_index(q, off), l2i = qed_l2_index(q, off);
	uint64_t table_end = ((uint64_t)l1i + 1) << q->l1_shift;
	uint64_t in = qed_in_cluster(q, off);
	uint64_t l2_off, e, host = 0, l2_host = 0, first, last, run_start;
	struct qed_alloc a = { 0 };
	struct qed_l2 *l2;
	uint32_t n, max, i;
	bool whole, markers;
	int64_t ret;
	int err = 0;

	len = MIN(len, table_end - off);
	/*
	 * Zeroing: whole clusters become zero markers, a partial cluster is
	 * written with zeros; the two are handled in separate passes.
	 */
	if (zero) {
		if (in || len < q->cluster_size)
			len = MIN(len, q->cluster_size - in);
		else
			len = ALIGN_DOWN(len, (uint64_t)q->cluster_size);
	}
	whole = zero && !in && !qed_in_cluster(q, len);
	max = DIV_ROUND_UP(in + len, q->cluster_size);

again:
	l2 = NULL;
	pthread_mutex_lock(&q->lock);
	l2_off = qed_entry_offset(q, q->l1[l1i]);
	pthread_mutex_unlock(&q->lock);
	if (l2_off) {
		l2 = qed_l2_get(q, l2_off, &err);
		if (!l2)
			return err;
	}

	pthread_mutex_lock(&q->lock);
	if (qed_entry_offset(q, q->l1[l1i]) != l2_off) {
		/* An L2 table was linked meanwhile. */
		if (l2)
			qed_l2_put_locked(q, l2);
		pthread_mutex_unlock(&q->lock);
		goto again;
	}
	e = l2 ? l2->entries[l2i] : QED_UNALLOCATED;

	if (qed_is_data(e)) {
		/* In place: the run of allocated clusters contiguous in the file. */
		for (n = 1; n < max; n++) {
			uint64_t next = l2->entries[l2i + n];

			if (!qed_is_data(next) || qed_entry_offset(q, next) !=
			    qed_entry_offset(q, e) + ((uint64_t)n << q->cluster_shift))
				break;
		}
		qed_l2_put_locked(q, l2);
		pthread_mutex_unlock(&q->lock);
		len = MIN(len, ((uint64_t)n << q->cluster_shift) - in);
		ret = qed_write_inplace(q, buf, qed_entry_offset(q, e) + in, len, whole);
		return ret < 0 ? ret : (int64_t)len;
	}

	/* Not allocated: the run of clusters that are not allocated either. */
	for (n = 1; n < max; n++)
		if (l2 && qed_is_data(l2->entries[l2i + n]))
			break;
	len = MIN(len, ((uint64_t)n << q->cluster_shift) - in);
	first = e;
	last = l2 ? l2->entries[l2i + n - 1] : QED_UNALLOCATED;
	markers = whole;
	if (zero) {
		bool all_zero = true;

		for (i = 0; l2 && i < n; i++)
			all_zero &= l2->entries[l2i + i] == QED_ZERO_CLUSTER;
		/*
		 * Already reads as zeros: zero clusters, or a partial zeroing
		 * of an unallocated cluster with nothing beneath it.
		 */
		if ((l2 && all_zero) || (!whole && e == QED_UNALLOCATED && !q->t->backing)) {
			if (l2)
				qed_l2_put_locked(q, l2);
			pthread_mutex_unlock(&q->lock);
			return len;
		}
		/* Zero markers on clusters that already are zero clusters are harmless. */
	}

	run_start = off - in;
	a.first_cluster = qed_cluster_of(q, run_start);
	a.nr_clusters = n;
	a.l1_index = l1i;
	a.new_l2 = !l2;
	ret = qed_alloc_begin_locked(q, &a);
	if (ret) {
		if (l2)
			qed_l2_put_locked(q, l2);
		pthread_mutex_unlock(&q->lock);
		if (ret > 0)
			goto again;
		return ret;
	}
	if (!markers)
		host = qed_reserve_locked(q, (uint64_t)n << q->cluster_shift);
	if (!l2)
		l2_host = qed_reserve_locked(q, q->table_bytes);
	pthread_mutex_unlock(&q->lock);

	ret = qed_write_alloc(q, &a, l2, zero ? NULL : buf, off, len, first, last, host,
			      l2_host, markers);
	qed_alloc_end(q, &a);
	if (l2)
		qed_l2_put(q, l2);
	return ret < 0 ? ret : (int64_t)len;
}

int qed_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	struct qed *q = t->priv;
	uint32_t done = 0;

	while (done < len) {
		char *p = (char *)buf + done;
		uint64_t e;
		int64_t run = qed_map(q, off + done, len - done, &e);
		ssize_t n;

		if (run < 0)
			return run;
		if (qed_is_data(e)) {
			n = bfile_pread(q->file, p, run, e);
			if (n < 0)
				return n;
			/* Past the end of the file (only in a damaged image opened read-only). */
			memset(p + n, 0, run - n);
		} else if (e == QED_UNALLOCATED && t->backing) {
			n = tgt_read_backing(t->backing, p, run, off + done);
			if (n < 0)
				return n;
		} else {
			memset(p, 0, run);
		}
		done += run;
	}
	return len;
}

int qed_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
	      unsigned int flags)
{
	struct qed *q = t->priv;
	uint32_t done = 0;
	int ret;

	while (done < len) {
		int64_t n = qed_write_range(q, (const char *)buf + done, off + done,
					    len - done, false);

		if (n < 0)
			return n;
		done += n;
	}
	/* FUA: the data and every table update it caused. */
	if (flags & TGT_W_FUA) {
		ret = bfile_flush(q->file);
		if (ret)
			return ret;
	}
	return len;
}

int qed_write_zeroes(struct tgt *t, uint64_t off, uint64_t len, unsigned int flags)
{
	struct qed *q = t->priv;
	uint64_t done = 0;

	while (done < len) {
		int64_t n = qed_write_range(q, NULL, off + done, len - done, true);

		if (n < 0)
			return n;
		done += n;
	}
	if (flags & TGT_W_FUA)
		return bfile_flush(q->file);
	return 0;
}

int qed_flush(struct tgt *t)
{
	struct qed *q = t->priv;

	/* Tables are written through before a write completes: a data sync covers them. */
	return bfile_flush(q->file);
}
