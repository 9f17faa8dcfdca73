// SPDX-License-Identifier: GPL-2.0
/*
 * The qcow2 target: open, close, info, and the ops table.  The engine's
 * parts live beside this file (README.md gives the map).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2.h"
#include "util.h"

/* By default the L2 cache covers the whole image, up to this much. */
#define QCOW2_L2_CACHE_MAX_BYTES	(32U << 20)
#define QCOW2_RB_CACHE_MAX_BYTES	(4U << 20)
#define QCOW2_CACHE_MIN_SLOTS		16U

static int qcow2_probe(const void *buf, size_t len)
{
	return len >= 8 && get_be32(buf) == QCOW2_MAGIC ? 100 : 0;
}

/* The file's direct-I/O alignment (statx STATX_DIOALIGN), or 512. */
static unsigned int qcow2_dio_align(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align)
		return MAX(512U, stx.stx_dio_offset_align);
	return 512;
}

/*
 * Opens @file into *@fp, with BFILE_* @name_flags saying whose name it is;
 * prints one line on failure.  Returns 0 or -errno.
 */
static int qcow2_open_file(const char *file, unsigned int name_flags, bool rdonly,
			   bool buffered, struct bfile **fp)
{
	return bfile_open(file, name_flags | (rdonly ? BFILE_RDONLY : 0) |
			  (buffered ? 0 : BFILE_DIRECT), fp);
}

static void qcow2_free(struct qcow2 *q)
{
	if (q->l2c.s)
		qcow2_cache_destroy(q, &q->l2c);
	if (q->rbc.s)
		qcow2_cache_destroy(q, &q->rbc);
	if (q->dfile != q->file)
		bfile_close(q->dfile);
	bfile_close(q->file);
	qcow2_free_snapshots(q);
	qcow2_bitmaps_free(q);
	qcow2_ovl_free(q);
	qcow2_crypt_close(q);
	qcow2_header_free(q);
	free(q->l1);
	free(q->l1_dirty);
	free(q->rt);
	free(q->rt_dirty);
	free(q->frees);
	free(q->l2_allocating);
	free(q->zero_buf);
	exec_mutex_destroy(&q->alloc_mutex);
	exec_mutex_destroy(&q->hdr_mutex);
	exec_mutex_destroy(&q->comp_mutex);
	exec_mutex_destroy(&q->bm_mutex);
	pthread_mutex_destroy(&q->bm_lock);
	range_lock_destroy(&q->inflight);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

static int qcow2_load_l1(struct qcow2 *q)
{
	uint64_t bytes = ALIGN_UP(MAX((uint64_t)q->l1_size * 8, 1), q->cluster_size), i;

	q->l1_dirty = calloc(bytes / q->dio_align, 1);
	if (!q->l1_dirty || posix_memalign((void **)&q->l1, 4096, bytes))
		return -ENOMEM;
	memset(q->l1, 0, bytes);
	if (q->l1_size) {
		int ret = qcow2_read_at(q->file, q->l1, bytes, q->l1_offset);

		if (ret)
			return ret;
	}
	for (i = 0; i < q->l1_size; i++)
		q->l1[i] = __builtin_bswap64(q->l1[i]);
	return 0;
}

static int qcow2_init_caches(struct qcow2 *q)
{
	uint64_t tables = DIV_ROUND_UP(DIV_ROUND_UP(q->size_bytes, q->cluster_size),
				       qcow2_l2_entries(q));
	uint64_t limit = q->t->cfg.l2_cache_bytes ?: QCOW2_L2_CACHE_MAX_BYTES;
	uint64_t blocks = 0, i;
	unsigned int nr;
	int ret;

	/* By default the whole image's tables, up to the limit. */
	nr = MIN(tables, limit >> q->cluster_bits);
	ret = qcow2_cache_init(&q->l2c, MAX(nr, QCOW2_CACHE_MIN_SLOTS), true,
			       qcow2_flush_l2_cache);
	if (ret)
		return ret;
	for (i = 0; i < q->rt_size; i++)
		blocks += !!q->rt[i];
	nr = MIN(blocks + QCOW2_CACHE_MIN_SLOTS,
		 (uint64_t)QCOW2_RB_CACHE_MAX_BYTES >> q->cluster_bits);
	return qcow2_cache_init(&q->rbc, MAX(nr, QCOW2_CACHE_MIN_SLOTS), false, NULL);
}

static int qcow2_open_data_file(struct qcow2 *q, bool rdonly)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	/*
	 * The name comes from the image, like a backing file's: the same
	 * policy applies, and a FIFO would block the open forever.
	 */
	tgt_resolve_path(q->t->cfg.file, q->data_file_name, path, sizeof(path));
	fd = tgt_file_allowed(q->t, path, "data file");
	if (fd)
		return fd;
	if (stat(path, &st)) {
		fd = -errno;
		img_err("%s: data file %s: %s", q->t->cfg.file, path, strerror(errno));
		return fd;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		img_err("%s: data file %s is not a regular file or block device",
			q->t->cfg.file, path);
		return -EINVAL;
	}
	fd = tgt_lock_data_file(q->t, path);
	if (fd)
		return fd;
	return qcow2_open_file(path, 0, rdonly, q->buffered, &q->dfile);
}

/* After a crash with lazy refcounts the refcounts are stale: rebuild them first. */
static int qcow2_repair_dirty(struct qcow2 *q)
{
	struct tgt_check_result r = { 0 };
	int ret;

	img_log("%s: qcow2 image was not closed cleanly; repairing refcounts", q->t->cfg.file);
	ret = qcow2_check(q->t, TGT_FIX_LEAKS | TGT_FIX_ERRORS, &r);
	if (ret)
		return ret;
	if (r.corruptions || r.check_errors) {
		img_err("%s: qcow2 image could not be repaired", q->t->cfg.file);
		return -EIO;
	}
	return qcow2_set_dirty_bit(q, false);
}

static int qcow2_open(struct tgt *t)
{
	unsigned int flags = t->cfg.open_flags;
	/* A snapshot is only ever served read-only. */
	bool rdonly = (flags & TGT_O_RDONLY) || t->cfg.snapshot;
	struct qcow2 *q;
	uint64_t file_bytes;
	int ret;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->t = t;
	pthread_mutex_init(&q->lock, NULL);
	exec_mutex_init(&q->alloc_mutex);
	exec_mutex_init(&q->hdr_mutex);
	exec_mutex_init(&q->comp_mutex);
	exec_mutex_init(&q->bm_mutex);
	pthread_mutex_init(&q->bm_lock, NULL);
	q->comp_blk_off = UINT64_MAX;
	range_lock_init(&q->inflight);
	exec_waitq_init(&q->l2_alloc_wq);
	exec_waitq_init(&q->flush_wq);
	exec_waitq_init(&q->rec_wq);
	exec_waitq_init(&q->epoch_wq);
	t->priv = q;

	/* A remote file has no page cache of ours to bypass. */
	q->buffered = (flags & TGT_O_BUFFERED) || bfile_name_remote(t->cfg.file);
	ret = qcow2_open_file(t->cfg.file, tgt_bfile_name_flags(t), rdonly, q->buffered, &q->file);
	if (ret)
		goto err;
	q->dio_align = q->buffered ? 512 : qcow2_dio_align(q->file->fd);
	if (q->dio_align > 4096) {
		/* Our buffers are 4 KiB aligned: more than that needs the page cache. */
		bfile_close(q->file);
		q->file = NULL;
		q->buffered = true;
		q->dio_align = 512;
		ret = qcow2_open_file(t->cfg.file, tgt_bfile_name_flags(t), rdonly, true, &q->file);
		if (ret)
			goto err;
	}
	ret = qcow2_read_header(q, t->cfg.file, flags);
	if (ret)
		goto err;
	if (q->dio_align > q->cluster_size) {
		/* Sub-sector clusters cannot be written alone with O_DIRECT here. */
		bfile_close(q->file);
		q->file = NULL;
		q->buffered = true;
		q->dio_align = 512;
		ret = qcow2_open_file(t->cfg.file, tgt_bfile_name_flags(t), rdonly, true, &q->file);
		if (ret)
			goto err;
	}
	q->hdr_bytes = q->dio_align;
	q->dfile = q->file;
	ret = qcow2_crypt_open(q, flags);
	if (ret)
		goto err;

	q->extl2 = q->incompat & QCOW2_INCOMPAT_EXTL2;
	q->sc_bits = q->cluster_bits - (q->extl2 ? 5 : 0);
	ret = qcow2_load_l1(q);
	if (!ret)
		ret = qcow2_load_refcount_table(q);
	if (!ret)
		ret = qcow2_init_caches(q);
	if (ret)
		goto err;
	ret = bfile_size(q->file, &file_bytes);
	if (ret)
		goto err;
	q->end_cluster = DIV_ROUND_UP(file_bytes, q->cluster_size);
	q->file_bytes = file_bytes;
	if (posix_memalign(&q->zero_buf, 4096, QCOW2_ZERO_BUF_BYTES)) {
		ret = -ENOMEM;
		goto err;
	}
	memset(q->zero_buf, 0, QCOW2_ZERO_BUF_BYTES);

	if (q->incompat & QCOW2_INCOMPAT_DATA_FILE) {
		ret = qcow2_open_data_file(q, rdonly);
		if (ret)
			goto err;
		q->data_file = true;
		q->data_raw = q->autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW;
	}
	ret = qcow2_load_snapshots(q);
	if (ret && !(flags & TGT_O_CHECK))
		goto err;
	/* A directory QEMU cannot open is not checked or listed either: the same verdict. */
	ret = qcow2_bitmaps_load(q);
	if (ret)
		goto err;
	if (t->cfg.snapshot) {
		ret = qcow2_open_snapshot(q, t->cfg.snapshot);
		if (ret)
			goto err;
		q->no_write_reason = "a snapshot is served read-only";
	}
	if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
		q->no_write_reason = "the image is marked corrupt";
	q->read_only = rdonly || q->no_write_reason;
	q->recoverable = !q->read_only && (flags & TGT_O_RECOVERABLE);
	if (!rdonly && q->no_write_reason && !(flags & TGT_O_CHECK))
		img_log("%s: opened read-only: %s", t->cfg.file, q->no_write_reason);

	if (q->backing_name) {
		ret = tgt_open_backing(t, q->backing_name, q->backing_fmt);
		if (ret)
			goto err;
	}

	if (!q->read_only && !(flags & TGT_O_CHECK)) {
		if (q->incompat & QCOW2_INCOMPAT_DIRTY) {
			ret = qcow2_repair_dirty(q);
			if (ret)
				goto err;
		}
		/*
		 * Autoclear bits we do not maintain: the structures they vouch
		 * for go stale.  The bitmaps are maintained (bitmap.c); a raw
		 * data file stays raw: a data cluster's host offset is always
		 * its guest offset here.
		 */
		uint64_t keep = (q->nr_bms ? QCOW2_AUTOCLEAR_BITMAPS : 0) |
				(q->data_file ? QCOW2_AUTOCLEAR_DATA_FILE_RAW : 0);

		if (q->autoclear & ~keep) {
			q->autoclear &= keep;
			ret = qcow2_write_header_fields(q);
			if (ret)
				goto err;
		}
		q->lazy = q->version >= 3 && (q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS);
		/* From here on every write is checked against the metadata. */
		ret = qcow2_ovl_init(q);
		if (ret)
			goto err;
	}

	t->caps.size_bytes = ALIGN_DOWN(q->size_bytes, 512ULL);
	t->caps.logical_bs_shift = 9;
	t->caps.physical_bs_shift = MIN(q->cluster_bits, 12U);
	t->caps.read_only = q->read_only;
	t->caps.can_flush = true;
	t->caps.can_fua = true;
	/* A raw data file must read as the guest disk: nothing is unmapped. */
	t->caps.can_discard = !q->read_only && !q->data_raw;
	t->caps.can_write_zeroes = !q->read_only;
	/*
	 * QEMU refuses compressed clusters with an external data file, and
	 * in encrypted images (they would be stored in the clear).
	 */
	t->caps.can_compress = !q->read_only && !(q->incompat & QCOW2_INCOMPAT_DATA_FILE) &&
			       !qcow2_encrypted(q);
	t->caps.discard_granularity_bytes = 1ULL << q->sc_bits;
	return 0;
err:
	/* tgt_close() is not called after a failed open: the chain is ours. */
	if (t->backing)
		tgt_drop_backing(t);
	qcow2_free(q);
	t->priv = NULL;
	return ret;
}

static int qcow2_close(struct tgt *t)
{
	struct qcow2 *q = t->priv;
	int ret = 0;

	if (!q)
		return 0;
	ret = qcow2_bitmaps_close(q);
	if (!ret && (!q->read_only || qcow2_meta_dirty(q)))
		ret = q->lazy ? qcow2_mark_clean(q) : qcow2_flush_meta(q);
	/* Give back what the file grew ahead of its last cluster. */
	if (!ret && !q->read_only && q->file_bytes > q->end_cluster << q->cluster_bits &&
	    bfile_resizable(q->file))
		ret = bfile_truncate(q->file, q->end_cluster << q->cluster_bits);
	qcow2_free(q);
	t->priv = NULL;
	return ret;
}

/* What ->close writes back, without closing: the image serves on, read-only. */
static int qcow2_set_read_only(struct tgt *t)
{
	struct qcow2 *q = t->priv;
	uint64_t end = q->end_cluster << q->cluster_bits;
	int ret;

	if (q->read_only)
		return 0;
	/*
	 * As ->close: the bitmaps are stored with in_use cleared, since a
	 * backing file's bitmaps track nothing more (QEMU leaves them on the
	 * old node of an external snapshot).
	 */
	ret = qcow2_bitmaps_close(q);
	if (!ret)
		ret = q->lazy ? qcow2_mark_clean(q) : qcow2_flush_meta(q);
	if (!ret && q->file_bytes > end && bfile_resizable(q->file)) {
		ret = bfile_truncate(q->file, end);
		if (!ret)
			q->file_bytes = end;
	}
	if (ret)
		return ret;
	q->read_only = true;
	t->caps.read_only = true;
	t->caps.can_discard = false;
	t->caps.can_write_zeroes = false;
	t->caps.can_compress = false;
	return 0;
}

static void qcow2_info_add(struct tgt_info *info, const char *key, bool is_string,
			   const char *value)
{
	if (info->n == TGT_INFO_MAX)
		return;
	info->kv[info->n].key = key;
	info->kv[info->n].is_string = is_string;
	snprintf(info->kv[info->n].value, sizeof(info->kv[info->n].value), "%s", value);
	info->n++;
}

/* Keys as in qemu-img info --output=json's "format-specific" data for qcow2. */
static void qcow2_info(struct tgt *t, struct tgt_info *info)
{
	struct qcow2 *q = t->priv;
	char bits[16];

	info->cluster_size = q->cluster_size;
	info->dirty = q->incompat & QCOW2_INCOMPAT_DIRTY;
	info->backing_file = q->backing_name;
	info->backing_fmt = q->backing_fmt;
	qcow2_info_add(info, "compat", true, q->version >= 3 ? "1.1" : "0.10");
	qcow2_info_add(info, "compression-type", true,
		       q->compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib");
	if (q->version >= 3)
		qcow2_info_add(info, "lazy-refcounts", false,
			       q->compat & QCOW2_COMPAT_LAZY_REFCOUNTS ? "true" : "false");
	if (q->nr_bms) {
		qcow2_info_add(info, "bitmaps", false, "");
		info->kv[info->n - 1].is_list = true;
	}
	snprintf(bits, sizeof(bits), "%u", 1U << q->refcount_order);
	qcow2_info_add(info, "refcount-bits", false, bits);
	if (q->crypt_method && q->crypt) {
		info->encrypted = true;
		if (info->n < TGT_INFO_MAX &&
		    !qcow2_crypt_info(q, &info->kv[info->n].block_text,
				      &info->kv[info->n].block_json))
			info->kv[info->n++].key = "encrypt";
	}
	if (q->data_file_name) {
		qcow2_info_add(info, "data-file", true, q->data_file_name);
		qcow2_info_add(info, "data-file-raw", false, q->data_raw ? "true" : "false");
	}
	if (q->version >= 3) {
		qcow2_info_add(info, "corrupt", false,
			       q->incompat & QCOW2_INCOMPAT_CORRUPT ? "true" : "false");
		qcow2_info_add(info, "extended-l2", false,
			       q->incompat & QCOW2_INCOMPAT_EXTL2 ? "true" : "false");
	}
}

/* Writes back metadata a device left dirty: bounds what a crash can lose. */
static void qcow2_tick(struct tgt *t)
{
	struct qcow2 *q = t->priv;

	if (q->read_only || qcow2_is_corrupt(q))
		return;
	if (qcow2_meta_dirty(q))
		qcow2_flush_meta(q);
	else if (q->lazy && q->lazy_dirty)
		qcow2_mark_clean(q);	/* a second without table changes: clean */
}

const struct tgt_ops qcow2_tgt_ops = {
	.name		= "qcow2",
	.summary	= "a qcow2 image, v2 or v3, with backing files (-f FILE [--buffered])",
	.options	= TGT_OPT_FILE | TGT_OPT_BUFFERED,
	.open		= qcow2_open,
	.close		= qcow2_close,
	.read		= qcow2_read,
	.write		= qcow2_write,
	.flush		= qcow2_flush,
	.discard	= qcow2_discard,
	.write_zeroes	= qcow2_write_zeroes,
	.probe		= qcow2_probe,
	.create		= qcow2_create,
	.block_status	= qcow2_block_status,
	.check		= qcow2_check,
	.info		= qcow2_info,
	.tick		= qcow2_tick,
	.resize		= qcow2_resize,
	.make_empty	= qcow2_make_empty,
	.set_backing	= qcow2_set_backing,
	.amend		= qcow2_amend,
	.snapshot_list	= qcow2_snapshot_list,
	.snapshot	= qcow2_snapshot,
	.bitmap_list	= qcow2_bitmap_list,
	.bitmap		= qcow2_bitmap,
	.bitmap_status	= qcow2_bitmap_status,
	.set_read_only	= qcow2_set_read_only,
};
