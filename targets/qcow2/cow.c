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

/*
 * W2: host clusters for @n guest clusters from @gc (*got may be fewer),
 * refcount 1 each in the cache.  With an external data file the place is
 * the guest offset itself, as QEMU puts it (and what data_file_raw
 * needs), and nothing is counted; what the data file held there is not
 * known to be zeros, so *fresh is false.  Returns the host offset or -errno.
 */
static int64_t qcow2_alloc_data(struct qcow2 *q, uint64_t gc, uint64_t n, uint64_t *got,
				bool *fresh)
{
	int64_t host;

	if (q->data_file) {
		*got = n;
		if (fresh)
			*fresh = false;
		return gc << q->cluster_bits;
	}
	exec_mutex_lock(&q->alloc_mutex);
	host = qcow2_alloc_clusters(q, n, got, fresh);
	exec_mutex_unlock(&q->alloc_mutex);
	return host;
}

/* Gives back clusters from qcow2_alloc_data() that nothing points at. */
static void qcow2_unalloc_data(struct qcow2 *q, uint64_t host, uint64_t bytes)
{
	if (q->data_file)
		return;
	exec_mutex_lock(&q->alloc_mutex);
	qcow2_refcount_update(q, host, bytes, -1);
	exec_mutex_unlock(&q->alloc_mutex);
}

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
		if (qcow2_encrypted(q))
			return qcow2_crypt_pread(q, dst, len, qcow2_l2_host(q, l2e) + in, goff);
		n = bfile_pread(q->dfile, dst, len, qcow2_l2_host(q, l2e) + in);
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
	int ret = qcow2_overlap_check_data(q, off, len);

	if (ret)
		return ret;
	ret = bfile_fallocate(q->dfile, FALLOC_FL_ZERO_RANGE, off, len);
	if (ret != -EOPNOTSUPP && ret != -EINVAL)
		return ret;
	while (len) {
		uint64_t n = MIN(len, (uint64_t)QCOW2_ZERO_BUF_BYTES);
		ssize_t w = bfile_pwrite(q->dfile, q->zero_buf, n, off, 0);

		if (w < 0)
			return w;
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * Fills @dst with @len bytes of what guest offset @goff read as before a
 * write, within one subcluster of the extended entry (@e, @bm); @cbuf
 * holds the decompressed cluster when @e is compressed.  Returns 0 or -errno.
 */
static int qcow2_sc_read_old(struct qcow2 *q, uint64_t e, uint64_t bm, const void *cbuf,
			     uint64_t goff, void *dst, uint64_t len)
{
	uint64_t in = qcow2_off_in_cluster(q, goff);
	int ret;

	if (!len)
		return 0;
	switch (qcow2_sc_kind(q, e, bm, in >> q->sc_bits)) {
	case QCOW2_UNALLOC:
		if (q->t->backing) {
			ret = tgt_read_backing(q->t->backing, dst, len, goff);
			return ret < 0 ? ret : 0;
		}
		break;
	case QCOW2_NORMAL:
		if (qcow2_encrypted(q))
			return qcow2_crypt_pread(q, dst, len, qcow2_l2_host(q, e) + in, goff);
		return qcow2_read_at(q->dfile, dst, len, qcow2_l2_host(q, e) + in);
	case QCOW2_COMPRESSED:
		memcpy(dst, (const char *)cbuf + in, len);
		return 0;
	default:
		break;
	}
	memset(dst, 0, len);
	return 0;
}

/*
 * The allocating write of an image with extended L2 entries, within the
 * one guest cluster holding @off: only the subclusters [off, off + len)
 * touches gain data, and only the partly written ones at its edges are
 * completed (COW) from what they read as before.
 *
 * - A host cluster of our own (COPIED): the data goes into it, at the
 *   run of unallocated subclusters from @off; the others are untouched.
 * - Otherwise (no host cluster, shared with a snapshot, compressed): a
 *   new host cluster gets the written subclusters, plus every subcluster
 *   with data in the old one (all of a compressed cluster); the rest keep
 *   their zero or unallocated state.
 *
 * Crash order as W1..W4: nothing points at the new bytes until the L2
 * entry and bitmap, written by a flush after F1/F2.  Sets *done to the
 * bytes written (0: the first subcluster is writable in place now).
 * Returns 0 or -errno.
 */
static int qcow2_write_alloc_sc(struct qcow2 *q, const void *buf, uint64_t off, uint64_t len,
				uint64_t *done)
{
	uint64_t gc = off >> q->cluster_bits, cstart = gc << q->cluster_bits;
	uint64_t scs = 1ULL << q->sc_bits, wend = MIN(off + len, cstart + q->cluster_size);
	unsigned int l2i = qcow2_l2_index(q, gc), s0, s1, i, pf, pl;
	uint64_t e, bm, newbm, put, a, b, got;
	enum qcow2_kind kind;
	struct range_entry inf;
	struct qcow2_cslot *slot;
	uint8_t *bounce = NULL;
	void *cbuf = NULL;
	bool in_place;
	int64_t host;
	uint64_t *l2;
	int ret;

	*done = 0;
	qcow2_clusters_lock(q, &inf, gc, gc);
	ret = qcow2_l2_get_for_write(q, gc, &slot);
	if (ret)
		goto out_inflight;
	l2 = slot->buf;
	pthread_mutex_lock(&q->lock);
	e = qcow2_l2_get(q, l2, l2i);
	bm = qcow2_l2_get_bitmap(q, l2, l2i);
	pthread_mutex_unlock(&q->lock);
	if (!qcow2_l2_valid(q, e) || !qcow2_sc_bitmap_valid(q, e, bm)) {
		ret = qcow2_mark_corrupt(q, "L2 entry with reserved bits, unaligned offset or invalid subcluster bitmap");
		goto out_slot;
	}
	kind = qcow2_l2_kind(q, e);
	s0 = (off - cstart) >> q->sc_bits;
	s1 = (wend - 1 - cstart) >> q->sc_bits;
	in_place = kind == QCOW2_NORMAL && (e & QCOW2_COPIED);
	if (in_place) {
		/* Only the unallocated run from s0: allocated ones are written in place. */
		if (bm & (1ULL << s0))
			goto out_slot;	/* allocated meanwhile: *done 0, map again */
		for (i = s0 + 1; i <= s1 && !(bm & (1ULL << i)); i++)
			;
		s1 = i - 1;
		wend = MIN(wend, cstart + ((uint64_t)(s1 + 1) << q->sc_bits));
		pf = s0;
		pl = s1;
		put = qcow2_sc_mask(s0, s1);
		host = qcow2_l2_host(q, e);
	} else {
		put = qcow2_sc_mask(s0, s1);
		if (kind == QCOW2_COMPRESSED)
			put = QCOW2_SC_ALLOC_ALL;
		else if (kind == QCOW2_NORMAL)
			put |= bm & QCOW2_SC_ALLOC_ALL;	/* the shared cluster's data */
		pf = __builtin_ctzll(put);
		pl = 63 - __builtin_clzll(put);
		host = qcow2_alloc_data(q, gc, 1, &got, NULL);
		if (host < 0) {
			ret = host;
			goto out_slot;
		}
	}
	/*
	 * An entry or refcounts that lie could name metadata.  Then nothing
	 * is written, nor given back: check -r sorts the clusters out.
	 */
	ret = qcow2_overlap_check_data(q, host, q->cluster_size);
	if (ret)
		goto out_slot;

	/* W3: subclusters pf..pl, from what they read as, with the guest data over them. */
	a = (uint64_t)pf << q->sc_bits;
	b = (uint64_t)(pl + 1) << q->sc_bits;
	if (posix_memalign((void **)&bounce, 4096, q->cluster_size)) {
		ret = -ENOMEM;
		goto out_free;
	}
	memset(bounce, 0, q->cluster_size);
	if (kind == QCOW2_COMPRESSED) {
		if (posix_memalign(&cbuf, 4096, q->cluster_size)) {
			ret = -ENOMEM;
			goto out_free;
		}
		ret = qcow2_read_compressed(q, e, cbuf);
		if (ret)
			goto out_free;
	}
	for (i = pf; i <= pl; i++) {
		uint64_t sa = (uint64_t)i << q->sc_bits, sb = sa + scs;
		uint64_t wa = off - cstart, wb = wend - cstart;

		if (!(put & (1ULL << i)))
			continue;
		/* The parts of the subcluster the guest write does not cover. */
		if (wa > sa && wa < sb)
			ret = qcow2_sc_read_old(q, e, bm, cbuf, cstart + sa, bounce + sa, wa - sa);
		else if (wa >= sb || wb <= sa)
			ret = qcow2_sc_read_old(q, e, bm, cbuf, cstart + sa, bounce + sa, scs);
		if (!ret && wb > sa && wb < sb)
			ret = qcow2_sc_read_old(q, e, bm, cbuf, cstart + wb, bounce + wb, sb - wb);
		if (ret)
			goto out_free;
	}
	memcpy(bounce + (off - cstart), buf, wend - off);
	if (qcow2_encrypted(q))
		ret = qcow2_crypt_write(q, host + a, cstart + a, bounce + a, bounce + a, b - a);
	if (!ret)
		ret = bfile_pwrite(q->dfile, bounce + a, b - a, host + a, 0);
	if (ret >= 0)
		ret = 0;
out_free:
	free(bounce);
	free(cbuf);
	if (ret) {
		if (!in_place) {
			/* Nothing points at the new cluster yet: give it back. */
			qcow2_unalloc_data(q, host, q->cluster_size);
		}
		goto out_slot;
	}

	/* W4: descriptor and bitmap in the cache; the old cluster goes after they are on disk. */
	qcow2_commit_begin(q);
	newbm = (bm & QCOW2_SC_ALLOC_ALL) | put;
	if (!in_place) {
		uint64_t foff, flen;

		if (kind == QCOW2_NORMAL) {
			qcow2_free_data_later(q, qcow2_l2_host(q, e), q->cluster_size);
		} else if (kind == QCOW2_COMPRESSED) {
			qcow2_compressed_range(q, e, &foff, &flen);
			qcow2_free_data_later(q, foff, flen);
			newbm = put;
			bm = 0;
		}
		e = (uint64_t)host | QCOW2_COPIED;
	}
	newbm |= (bm & QCOW2_SC_ZERO_ALL) & ~(put << 32);
	qcow2_l2_set(q, l2, l2i, e, newbm);
	qcow2_l2_mark_dirty(q, slot, l2i, 1);
	qcow2_commit_end(q);
	*done = wend - off;
out_slot:
	qcow2_cache_put(q, &q->l2c, slot);
out_inflight:
	qcow2_clusters_unlock(q, &inf);
	return ret;
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
	struct range_entry inf;
	struct qcow2_cslot *slot;
	bool enc = qcow2_encrypted(q);
	void *bounce = NULL;
	bool fresh;
	int64_t host;
	int ret;

	if (q->extl2)
		return qcow2_write_alloc_sc(q, buf, off, len, done);
	*done = 0;
	gcl = MIN(gcl, gc0 + (qcow2_l2_entries(q) - l2i) - 1);
	gcl = MIN(gcl, gc0 + MAX(1ULL, QCOW2_MAX_ALLOC_BYTES >> q->cluster_bits) - 1);

	/* W1: own the guest clusters: overlapping allocations wait for us. */
	qcow2_clusters_lock(q, &inf, gc0, gcl);
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
		qcow2_clusters_unlock(q, &inf);
		if (!qcow2_l2_valid(q, first_e))
			return qcow2_mark_corrupt(q, "L2 entry with reserved bits or unaligned offset");
		return 0;
	}

	/* W2: host clusters, refcount 1 each (in the refcount cache). */
	host = qcow2_alloc_data(q, gc0, n, &got, &fresh);
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

	/*
	 * The new clusters were free by their refcounts; refcounts that lie
	 * could still have handed out metadata.  Then nothing is written,
	 * nor given back (that would punch the metadata): check -r sorts
	 * the clusters out.
	 */
	ret = qcow2_overlap_check_data(q, host, run_bytes);
	if (ret)
		goto out_slot;

	/*
	 * W3: data with its COW head and tail, in one write where possible.
	 * Encrypted: always through the bounce buffer, head and tail too
	 * (zeros on disk would not decrypt to zeros).
	 */
	if (enc && !head && !tail) {
		ret = qcow2_crypt_pwrite(q, buf, run_bytes, host, run_off, 0);
	} else if (!enc && !head && !tail) {
		ret = bfile_pwrite(q->dfile, buf, run_bytes, host, 0);
	} else if (!enc && fresh && qcow2_cow_is_zero(q, first_e) &&
		   qcow2_cow_is_zero(q, last_e)) {
		/*
		 * Never-used clusters already read as zeros: the zero head and
		 * tail need no write at all, only the guest's data.
		 */
		ret = bfile_pwrite(q->dfile, buf, wend - off, host + head, 0);
	} else if (!enc && qcow2_cow_is_zero(q, first_e) && qcow2_cow_is_zero(q, last_e) &&
		   head + tail > QCOW2_ZERO_FALLOC_BYTES) {
		ret = qcow2_zero_host(q, host, run_bytes);
		if (!ret)
			ret = bfile_pwrite(q->dfile, buf, wend - off, host + head, 0);
	} else if (posix_memalign(&bounce, 4096, run_bytes)) {
		ret = -ENOMEM;
	} else {
		ret = qcow2_cow_read(q, first_e, run_off, bounce, head);
		if (!ret)
			ret = qcow2_cow_read(q, last_e, wend, (char *)bounce + run_bytes - tail,
					     tail);
		if (!ret) {
			memcpy((char *)bounce + head, buf, wend - off);
			if (enc)
				ret = qcow2_crypt_write(q, host, run_off, bounce, bounce, run_bytes);
		}
		if (!ret)
			ret = bfile_pwrite(q->dfile, bounce, run_bytes, host, 0);
		free(bounce);
	}
	if (ret < 0) {
		/* Nothing points at the new clusters yet: give them back. */
		qcow2_unalloc_data(q, host, run_bytes);
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
			qcow2_free_data_later(q, qcow2_l2_host(q, old), q->cluster_size);
			break;
		case QCOW2_COMPRESSED:
			qcow2_compressed_range(q, old, &foff, &flen);
			qcow2_free_data_later(q, foff, flen);
			break;
		default:
			break;
		}
		l2[l2i + i] = ((uint64_t)host + (i << q->cluster_bits)) | QCOW2_COPIED;
	}
	qcow2_l2_mark_dirty(q, slot, l2i, n);
	qcow2_commit_end(q);
	*done = wend - off;
	ret = 0;
out_slot:
	qcow2_cache_put(q, &q->l2c, slot);
out_inflight:
	qcow2_clusters_unlock(q, &inf);
	return ret;
}
