// SPDX-License-Identifier: GPL-2.0
/*
 * Compressed writes (TGT_W_COMPRESS, for `convert -c`): each guest
 * cluster is deflated (zlib raw deflate, 4 KiB window) or packed into a
 * zstd frame, and the result is stored at byte granularity right after
 * the previous compressed cluster, as QEMU does: consecutive compressed
 * clusters share host clusters and even sectors.  Every host cluster
 * counts one reference per compressed cluster whose bytes touch it, so
 * freeing one compressed cluster (a later overwrite) drops exactly its
 * share.  Ordering is that of any allocating write (README.md, W1-W4):
 * refcounts in the cache, data written, and the L2 entry only in the
 * cache; a flush writes the entry after the data and refcounts are
 * durable.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "qcow2.h"
#include "util.h"

/*
 * Compresses the cluster @src into @dst (room for cluster_size - 1
 * bytes).  Returns the compressed length, -ENOSPC when that is no
 * smaller than the cluster (store it plain), or -errno.
 */
static int qcow2_compress(struct qcow2 *q, const void *src, void *dst)
{
	size_t room = q->cluster_size - 1;

	if (q->compression_type == QCOW2_COMPRESSION_ZSTD) {
		size_t r = ZSTD_compress(dst, room, src, q->cluster_size, ZSTD_CLEVEL_DEFAULT);

		/* Mostly "destination too small"; a plain cluster is right either way. */
		if (ZSTD_isError(r))
			return -ENOSPC;
		return r;
	} else {
		z_stream zs = { 0 };
		int ret;

		/* Raw deflate (negative window bits: no zlib header), 4 KiB window. */
		if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		zs.next_in = (Bytef *)src;
		zs.avail_in = q->cluster_size;
		zs.next_out = dst;
		zs.avail_out = room;
		ret = deflate(&zs, Z_FINISH);
		deflateEnd(&zs);
		if (ret == Z_STREAM_END)
			return room - zs.avail_out;
		return ret == Z_OK || ret == Z_BUF_ERROR ? -ENOSPC : -EIO;
	}
}

/*
 * Reserves @len bytes for compressed data: after the previous compressed
 * cluster when they fit in its host cluster or the next one happens to
 * be free, else at the start of a new host cluster.  Each host cluster
 * the bytes touch gains one reference.  Caller holds alloc_mutex and
 * comp_mutex.  Returns the host byte offset or -errno.
 */
static int64_t qcow2_alloc_bytes(struct qcow2 *q, uint64_t len)
{
	uint64_t off = q->comp_next, got, rc;
	int64_t nc;
	int ret;

	if (off) {
		/* A host cluster at its maximum refcount takes no more sharers. */
		ret = qcow2_refcount_get(q, off >> q->cluster_bits, &rc);
		if (ret)
			return ret;
		if (rc == 0 || rc >= q->refcount_max)
			off = 0;
	}
	if (off && qcow2_off_in_cluster(q, off) + len > q->cluster_size) {
		/* Spills over: the next host cluster must be the one we get. */
		nc = qcow2_alloc_clusters(q, 1, &got, NULL);
		if (nc < 0)
			return nc;
		if ((uint64_t)nc != ALIGN_UP(off, q->cluster_size))
			off = nc;	/* the old cluster's free tail is left unused */
		else
			ret = qcow2_refcount_update(q, off, 1, 1);
	} else if (off) {
		ret = qcow2_refcount_update(q, off, 1, 1);
	} else {
		nc = qcow2_alloc_clusters(q, 1, &got, NULL);
		if (nc < 0)
			return nc;
		off = nc;
		ret = 0;
	}
	if (ret)
		return ret;
	q->comp_next = off + len;
	if (!qcow2_off_in_cluster(q, q->comp_next))
		q->comp_next = 0;
	return off;
}

/*
 * Stores one guest cluster @gc, whose content is @data (a whole
 * cluster, zero padded past the end of the image), compressed to @clen
 * bytes in @cdata.  Returns 1 when it was stored, 0 when the cluster is
 * allocated in this layer (the caller writes it normally), or -errno.
 */
static int qcow2_store_compressed(struct qcow2 *q, uint64_t gc, const void *cdata,
				  uint64_t clen)
{
	unsigned int l2i = qcow2_l2_index(q, gc);
	uint64_t old, blk, start, end, nsec;
	struct range_entry inf;
	struct qcow2_cslot *slot;
	uint8_t *wbuf = NULL;
	int64_t host;
	int ret;

	/* W1: the guest cluster is ours until its entry is set. */
	qcow2_clusters_lock(q, &inf, gc, gc);
	ret = qcow2_l2_get_for_write(q, gc, &slot);
	if (ret)
		goto out_inflight;
	pthread_mutex_lock(&q->lock);
	old = qcow2_l2_get(q, slot->buf, l2i);
	pthread_mutex_unlock(&q->lock);
	if (qcow2_l2_kind(q, old) != QCOW2_UNALLOC && qcow2_l2_kind(q, old) != QCOW2_ZERO_PLAIN) {
		ret = 0;
		goto out_slot;
	}

	/*
	 * W2 + W3 under comp_mutex: the first sector(s) may hold the tail of
	 * the previous compressed cluster, which we rewrite from our copy
	 * (comp_blk), so two of these writes must not interleave.
	 */
	exec_mutex_lock(&q->comp_mutex);
	exec_mutex_lock(&q->alloc_mutex);
	host = qcow2_alloc_bytes(q, clen);
	exec_mutex_unlock(&q->alloc_mutex);
	if (host < 0) {
		exec_mutex_unlock(&q->comp_mutex);
		ret = host;
		goto out_slot;
	}
	blk = q->dio_align;
	start = ALIGN_DOWN((uint64_t)host, blk);
	end = ALIGN_UP(host + clen, blk);
	if (posix_memalign((void **)&wbuf, 4096, end - start)) {
		ret = -ENOMEM;
	} else {
		memset(wbuf, 0, end - start);
		/* Bytes before ours in the first block: the previous cluster's tail. */
		if ((uint64_t)host > start && q->comp_blk_off == start)
			memcpy(wbuf, q->comp_blk, host - start);
		memcpy(wbuf + (host - start), cdata, clen);
		ret = qcow2_pwrite_checked(q, 0, wbuf, end - start, start);
		if (ret >= 0) {
			ret = 0;
			/* The block holding the next free byte, for the next writer. */
			q->comp_blk_off = end - blk;
			memcpy(q->comp_blk, wbuf + (end - blk - start), blk);
		}
	}
	if (ret) {
		/* Nothing points here yet: give the references back. */
		exec_mutex_lock(&q->alloc_mutex);
		q->comp_next = 0;
		qcow2_refcount_update(q, host, clen, -1);
		exec_mutex_unlock(&q->alloc_mutex);
	}
	exec_mutex_unlock(&q->comp_mutex);
	free(wbuf);
	if (ret)
		goto out_slot;

	/*
	 * W4: the descriptor: byte offset, and the sectors after the one
	 * holding it that the data reaches into.
	 */
	nsec = ((host + clen - 1) >> 9) - ((uint64_t)host >> 9);
	qcow2_commit_begin(q);
	qcow2_l2_set(q, slot->buf, l2i, QCOW2_L2_COMPRESSED | ((uint64_t)host & q->coffset_mask) |
		     (nsec << q->csize_shift), 0);
	qcow2_cache_mark_dirty(&q->l2c, slot);
	qcow2_commit_end(q);
	ret = 1;
out_slot:
	qcow2_cache_put(q, &q->l2c, slot);
out_inflight:
	qcow2_clusters_unlock(q, &inf);
	return ret;
}

/*
 * Stores the clusters of [off, off + len) compressed, in order, until one
 * is better written normally: its compressed form is no smaller, or it is
 * allocated in this layer (QEMU refuses to compress over one).  The range
 * is whole clusters (the last may end at the end of the image); the
 * caller (io.c, TGT_W_COMPRESS) writes that cluster and calls again for
 * the rest.  Returns the bytes stored (@len: all of them), or -errno.
 */
int64_t qcow2_write_compressed(struct qcow2 *q, const void *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;
	void *cluster = NULL, *cdata = NULL;
	int64_t ret = 0;

	if (qcow2_off_in_cluster(q, off) ||
	    (qcow2_off_in_cluster(q, len) && off + len != q->size_bytes))
		return -EINVAL;
	if (q->incompat & QCOW2_INCOMPAT_DATA_FILE)
		return -EOPNOTSUPP;
	if (posix_memalign(&cluster, 4096, q->cluster_size) ||
	    posix_memalign(&cdata, 4096, q->cluster_size)) {
		ret = -ENOMEM;
		goto out;
	}
	while (done < len) {
		uint64_t n = MIN((uint64_t)len - done, q->cluster_size);
		int clen;

		memcpy(cluster, (const char *)buf + done, n);
		memset((char *)cluster + n, 0, q->cluster_size - n);
		clen = qcow2_compress(q, cluster, cdata);
		ret = clen;
		if (clen >= 0)
			ret = qcow2_store_compressed(q, (off + done) >> q->cluster_bits, cdata, clen);
		/* No gain, or already allocated here: the caller writes it plainly. */
		if (ret == -ENOSPC || ret == 0)
			break;
		if (ret < 0)
			goto out;
		done += n;
	}
	ret = done;
out:
	free(cluster);
	free(cdata);
	return ret;
}
