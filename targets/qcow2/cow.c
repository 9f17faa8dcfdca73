// SPDX-License-Identifier: GPL-2.0
/*
 * Allocating writes: new host clusters for guest clusters that have none
 * of their own (or share one), with copy-on-write of the head and tail
 * that the guest write does not cover.  The head, the guest data and the
 * tail go out as one write; when the head and tail are zeros and large,
 * the new clusters are zeroed with fallocate instead of copying zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "util.h"

/* Allocating runs larger than this are split: it bounds the COW bounce buffer. */
#define QCOW2_MAX_ALLOC_BYTES	(2U << 20)
/* Zero head+tail above this are zeroed by fallocate rather than written. */
#define QCOW2_ZERO_FALLOC_BYTES	(64U << 10)

static bool qcow2_needs_alloc(const struct qcow2 *q, uint64_t l2e)
{
	return !(qcow2_l2_kind(q, l2e) == QCOW2_NORMAL && (l2e & QCOW2_COPIED));
}

static bool qcow2_cow_is_zero(const struct qcow2 *q, uint64_t l2e)
{
	enum qcow2_kind k = qcow2_l2_kind(q, l2e);

	return k == QCOW2_ZERO_PLAIN || k == QCOW2_ZERO_ALLOC ||
	       (k == QCOW2_UNALLOC && !q->t->backing);
}

/*
 * Fills @dst with @len bytes of what guest offset @goff reads as before
 * the write, given its cluster's old entry @l2e.  Returns 0 or -errno.
 */
static int qcow2_cow_read(struct qcow2 *q, uint64_t l2e, uint64_t goff, void *dst,
			  uint64_t len)
{
	uint64_t in = qcow2_off_in_cluster(q, goff);
	void *cbuf;
	ssize_t n;
	int ret;

	if (!len)
		return 0;
	switch (qcow2_l2_kind(q, l2e)) {
	case QCOW2_UNALLOC:
		if (q->t->backing) {
			ret = tgt_read_backing(q->t->backing, dst, len, goff);
			return ret < 0 ? ret : 0;
		}
		/* fallthrough */
	case QCOW2_ZERO_PLAIN:
	case QCOW2_ZERO_ALLOC:
		memset(dst, 0, len);
		return 0;
	case QCOW2_NORMAL:
		n = exec_pread(q->data_fd, dst, len, qcow2_l2_host(q, l2e) + in);
		if (n < 0)
			return n;
		memset((char *)dst + n, 0, len - n);
		return 0;
	case QCOW2_COMPRESSED:
		if (posix_memalign(&cbuf, 4096, q->cluster_size))
			return -ENOMEM;
		ret = qcow2_read_compressed(q, l2e, cbuf);
		if (!ret)
			memcpy(dst, (char *)cbuf + in, len);
		free(cbuf);
		return ret;
	}
	return -EIO;
}

/* Zeroes [off, off + len) of the file: fallocate, else written zeros. */
static int qcow2_zero_host(struct qcow2 *q, uint64_t off, uint64_t len)
{
	int ret = exec_fallocate(q->fd, FALLOC_FL_ZERO_RANGE, off, len);

	if (ret != -EOPNOTSUPP && ret != -EINVAL)
		return ret;
	while (len) {
		uint64_t n = MIN(len, (uint64_t)QCOW2_ZERO_BUF_BYTES);
		ssize_t w = exec_pwrite(q->fd, q->zero_buf, n, off, 0);

		if (w < 0)
			return w;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Writes the guest data of [off, off + len) that starts in clusters
 * needing allocation: the longest such run from @off (one L2 table, at
 * most QCOW2_MAX_ALLOC_BYTES).  Sets *done to the bytes written, 0 when
 * the first cluster turned out writable in place (the caller maps again).
 * Steps W1..W5 of README.md.  Returns 0 or -errno.
 */
int qcow2_write_alloc(struct qcow2 *q, const void *buf, uint64_t off, uint64_t len,
		      uint64_t *done)
{
	uint64_t gc0 = off >> q->cluster_bits, gcl = (off + len - 1) >> q->cluster_bits;
	unsigned int l2i = qcow2_l2_index(q, gc0);
	uint64_t n, got, i, run_off, run_bytes, wend, head, tail;
	uint64_t first_e, last_e, *l2;
	struct qcow2_inflight inf;
	struct qcow2_cslot *slot;
	void *bounce = NULL;
	bool fresh;
	int64_t host;
	int ret;

	*done = 0;
	gcl = MIN(gcl, gc0 + (qcow2_l2_entries(q) - l2i) - 1);
	gcl = MIN(gcl, gc0 + MAX(1ULL, QCOW2_MAX_ALLOC_BYTES >> q->cluster_bits) - 1);

	/* W1: own the guest clusters: overlapping allocations wait for us. */
	qcow2_inflight_add(q, &inf, gc0, gcl);
	ret = qcow2_l2_get_for_write(q, gc0, &slot);
	if (ret)
		goto out_inflight;
	l2 = slot->buf;

	pthread_mutex_lock(&q->lock);
	for (n = 0; gc0 + n <= gcl && qcow2_needs_alloc(q, l2[l2i + n]) &&
		    qcow2_l2_valid(q, l2[l2i + n]); n++)
		;
	first_e = l2[l2i];
	pthread_mutex_unlock(&q->lock);
	if (!n) {
		/* Allocated meanwhile (we waited for its writer), or corrupt. */
		qcow2_cache_put(q, &q->l2c, slot);
		qcow2_inflight_del(q, &inf);
		if (!qcow2_l2_valid(q, first_e))
			return qcow2_mark_corrupt(q, "L2 entry with reserved bits or unaligned offset");
		return 0;
	}

	/* W2: host clusters, refcount 1 each (in the refcount cache). */
	exec_mutex_lock(&q->alloc_mutex);
	host = qcow2_alloc_clusters(q, n, &got, &fresh);
	exec_mutex_unlock(&q->alloc_mutex);
	if (host < 0) {
		ret = host;
		goto out_slot;
	}
	n = got;
	pthread_mutex_lock(&q->lock);
	last_e = l2[l2i + n - 1];
	pthread_mutex_unlock(&q->lock);

	run_off = gc0 << q->cluster_bits;
	run_bytes = n << q->cluster_bits;
	wend = MIN(off + len, run_off + run_bytes);
	head = off - run_off;
	tail = run_off + run_bytes - wend;

	/* W3: data with its COW head and tail, in one write where possible. */
	if (!head && !tail) {
		ret = exec_pwrite(q->fd, buf, run_bytes, host, 0);
	} else if (fresh && qcow2_cow_is_zero(q, first_e) && qcow2_cow_is_zero(q, last_e)) {
		/*
		 * Never-used clusters already read as zeros: the zero head and
		 * tail need no write at all, only the guest's data.
		 */
		ret = exec_pwrite(q->fd, buf, wend - off, host + head, 0);
	} else if (qcow2_cow_is_zero(q, first_e) && qcow2_cow_is_zero(q, last_e) &&
		   head + tail > QCOW2_ZERO_FALLOC_BYTES) {
		ret = qcow2_zero_host(q, host, run_bytes);
		if (!ret)
			ret = exec_pwrite(q->fd, buf, wend - off, host + head, 0);
	} else if (posix_memalign(&bounce, 4096, run_bytes)) {
		ret = -ENOMEM;
	} else {
		ret = qcow2_cow_read(q, first_e, run_off, bounce, head);
		if (!ret)
			ret = qcow2_cow_read(q, last_e, wend, (char *)bounce + run_bytes - tail,
					     tail);
		if (!ret) {
			memcpy((char *)bounce + head, buf, wend - off);
			ret = exec_pwrite(q->fd, bounce, run_bytes, host, 0);
		}
		free(bounce);
	}
	if (ret < 0) {
		/* Nothing points at the new clusters yet: give them back. */
		exec_mutex_lock(&q->alloc_mutex);
		qcow2_refcount_update(q, host, run_bytes, -1);
		exec_mutex_unlock(&q->alloc_mutex);
		goto out_slot;
	}

	/*
	 * W4: the L2 entries, in the cache.  A flush writes them only after
	 * the refcounts and this data are durable.  The old clusters are
	 * released after the new entries are on disk (W5).
	 */
	qcow2_commit_begin(q);
	for (i = 0; i < n; i++) {
		uint64_t old = l2[l2i + i], foff, flen;

		switch (qcow2_l2_kind(q, old)) {
		case QCOW2_NORMAL:
		case QCOW2_ZERO_ALLOC:
			qcow2_free_later(q, qcow2_l2_host(q, old), q->cluster_size);
			break;
		case QCOW2_COMPRESSED:
			qcow2_compressed_range(q, old, &foff, &flen);
			qcow2_free_later(q, foff, flen);
			break;
		default:
			break;
		}
		l2[l2i + i] = ((uint64_t)host + (i << q->cluster_bits)) | QCOW2_COPIED;
	}
	qcow2_cache_mark_dirty(&q->l2c, slot);
	qcow2_commit_end(q);
	*done = wend - off;
	ret = 0;
out_slot:
	qcow2_cache_put(q, &q->l2c, slot);
out_inflight:
	qcow2_inflight_del(q, &inf);
	return ret;
}
