// SPDX-License-Identifier: GPL-2.0
/*
 * The QED target: open, close, allocation status, info, and the ops table.
 * The engine's parts: header.c, table.c, alloc.c, write.c, check.c,
 * create.c; the crash protocol and concurrency design: README.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qed.h"
#include "util.h"

static void qed_free(struct qed *q)
{
	qed_l2_cache_destroy(q);
	free(q->l1);
	free(q->hdr_block);
	free(q->backing_name);
	bfile_close(q->file);
	qed_alloc_destroy(q);
	free(q);
}

/* The file's direct-I/O alignment (statx STATX_DIOALIGN, Linux 6.1+), or 512. */
static unsigned int qed_dio_align(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align)
		return stx.stx_dio_offset_align;
	return 512;
}

/* Changes a read-write open makes before serving: what the spec asks of a writer. */
static int qed_open_rw_fixups(struct qed *q)
{
	const char *file = q->t->cfg.file;
	uint64_t file_bytes;
	int ret;

	/*
	 * Bytes past the last whole cluster are not part of the image (the
	 * spec allows dropping them); cut them so that the next allocation,
	 * which starts there, begins in fresh space that reads as zeros.
	 */
	if (bfile_resizable(q->file) && bfile_size(q->file, &file_bytes) == 0 &&
	    file_bytes > q->file_end) {
		ret = bfile_truncate(q->file, q->file_end);
		if (ret) {
			img_err("%s: cannot drop the partial cluster at the end: %s", file,
				strerror(-ret));
			return ret;
		}
	}
	/* Unknown autoclear bits: their feature is no longer maintained. */
	if (q->autoclear_features & ~QED_AUTOCLEAR_KNOWN) {
		q->autoclear_features &= QED_AUTOCLEAR_KNOWN;
		ret = qed_header_write_features(q, true);
		if (ret) {
			img_err("%s: cannot clear autoclear feature bits: %s", file,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int qed_open(struct tgt *t)
{
	unsigned int flags = t->cfg.open_flags;
	const char *file = t->cfg.file;
	unsigned int align = 512;
	struct qed *q;
	int ret;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->t = t;
	q->read_only = flags & TGT_O_RDONLY;
	q->direct = !(flags & TGT_O_BUFFERED);
	q->falloc_ok = true;
	ret = qed_alloc_init(q);
	if (ret) {
		free(q);
		return ret;
	}

	/* A remote file has no page cache of ours to bypass. */
	if (bfile_name_remote(file))
		q->direct = false;
	ret = bfile_open(file, tgt_bfile_name_flags(t) | (q->read_only ? BFILE_RDONLY : 0) |
			 (q->direct ? BFILE_DIRECT : 0), &q->file);
	if (ret)
		goto err;
	if (q->direct)
		align = qed_dio_align(q->file->fd);
	if (align > QED_META_BLOCK || !is_pow2(align)) {
		ret = -EINVAL;
		img_err("%s: unsupported direct I/O alignment %u", file, align);
		goto err;
	}

	ret = qed_header_load(q);
	if (ret)
		goto err;
	if (posix_memalign((void **)&q->l1, QED_META_BLOCK, q->table_bytes)) {
		ret = -ENOMEM;
		goto err;
	}
	ret = qed_table_read(q, q->l1_table_offset, q->l1);
	if (ret) {
		img_err("%s: reading the L1 table: %s", file, strerror(-ret));
		goto err;
	}
	ret = qed_l2_cache_init(q);
	if (ret)
		goto err;

	if (!q->read_only) {
		ret = qed_open_rw_fixups(q);
		if (ret)
			goto err;
	}
	q->nc_state = (q->features & QED_F_NEED_CHECK) ? QED_NC_SET : QED_NC_CLEAR;
	/*
	 * An image left with need-check set is repaired before anything
	 * writes to it; read-only it is served as is (which can help recover
	 * data), and for `check` the check verb decides.
	 */
	if (q->nc_state == QED_NC_SET && !q->read_only && !(flags & TGT_O_CHECK)) {
		ret = qed_check_on_open(q);
		if (ret)
			goto err;
	}

	t->priv = q;
	if (q->backing_name) {
		ret = tgt_open_backing(t, q->backing_name,
				       (q->features & QED_F_BACKING_RAW) ? "raw" : NULL);
		/* A check or info must work without the backing file; I/O must not. */
		if (ret && !(flags & TGT_O_CHECK))
			goto err;
	}

	t->caps.size_bytes = q->image_size;
	t->caps.logical_bs_shift = MAX(9u, ilog2_u64(align));
	t->caps.physical_bs_shift = 12;
	t->caps.io_opt_shift = MIN(q->cluster_shift, 20u);
	t->caps.read_only = q->read_only;
	t->caps.can_flush = true;
	t->caps.can_fua = true;
	/*
	 * No discard: QED cannot free a cluster (allocation only appends and
	 * nothing counts references), so a discard could only leak clusters
	 * or write zeros, neither of which is what a guest discards for.
	 * Write-zeroes is the real thing: zero clusters, no data written.
	 */
	t->caps.can_discard = false;
	t->caps.can_write_zeroes = !q->read_only;
	t->caps.discard_granularity_bytes = q->cluster_size;
	return 0;

err:
	t->priv = NULL;
	qed_free(q);
	return ret;
}

static int qed_close(struct tgt *t)
{
	struct qed *q = t->priv;
	int ret = 0;

	if (!q)
		return 0;
	if (!q->read_only) {
		/* Clean shutdown: everything durable, then no check needed on the next open. */
		ret = bfile_flush(q->file);
		if (!ret)
			ret = qed_clear_need_check(q);
		/* Give back what the file grew ahead of its last cluster. */
		if (!ret && q->file_bytes > q->file_end && bfile_resizable(q->file))
			ret = bfile_truncate(q->file, q->file_end);
		if (ret)
			img_err("%s: writing back on close: %s", t->cfg.file, strerror(-ret));
	}
	t->priv = NULL;
	qed_free(q);
	return ret;
}

/* What ->close writes back, without closing: the image serves on, read-only. */
static int qed_set_read_only(struct tgt *t)
{
	struct qed *q = t->priv;
	int ret;

	if (q->read_only)
		return 0;
	ret = bfile_flush(q->file);
	if (!ret)
		ret = qed_clear_need_check(q);
	if (!ret && q->file_bytes > q->file_end && bfile_resizable(q->file)) {
		ret = bfile_truncate(q->file, q->file_end);
		if (!ret)
			q->file_bytes = q->file_end;
	}
	if (ret)
		return ret;
	q->read_only = true;
	t->caps.read_only = true;
	t->caps.can_write_zeroes = false;
	return 0;
}

static int64_t qed_block_status(struct tgt *t, uint64_t off, uint64_t len,
				struct tgt_extent *ext)
{
	struct qed *q = t->priv;
	uint64_t e;
	int64_t run = qed_map(q, off, len, &e);

	if (run < 0)
		return run;
	ext->host_off = 0;
	if (qed_is_data(e)) {
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_DATA | TGT_EXT_OFFSET_VALID;
		ext->host_off = e;
	} else if (e == QED_ZERO_CLUSTER) {
		ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_ZERO;
	} else {
		/* Unallocated: the backing file decides, or zeros without one. */
		ext->flags = 0;
	}
	return run;
}

static void qed_info_add(struct tgt_info *info, const char *key, const char *value)
{
	if (info->n >= TGT_INFO_MAX)
		return;
	info->kv[info->n].key = key;
	info->kv[info->n].is_string = false;
	snprintf(info->kv[info->n].value, sizeof(info->kv[info->n].value), "%s", value);
	info->n++;
}

static void qed_info(struct tgt *t, struct tgt_info *info)
{
	struct qed *q = t->priv;
	char v[24];

	info->cluster_size = q->cluster_size;
	info->backing_file = q->backing_name;
	/* Only a raw backing format is recorded (the no-probe bit); others are probed. */
	if (q->backing_name && (q->features & QED_F_BACKING_RAW))
		info->backing_fmt = "raw";
	snprintf(v, sizeof(v), "%u", q->table_size);
	qed_info_add(info, "table_size", v);
	snprintf(v, sizeof(v), "%u", q->header_size);
	qed_info_add(info, "header_size", v);
	qed_info_add(info, "need_check", (q->features & QED_F_NEED_CHECK) ? "true" : "false");
}

const struct tgt_ops qed_tgt_ops = {
	.name		= "qed",
	.summary	= "a QED image (-f FILE [--buffered])",
	.options	= TGT_OPT_FILE | TGT_OPT_BUFFERED,
	.open		= qed_open,
	.close		= qed_close,
	.read		= qed_read,
	.write		= qed_write,
	.flush		= qed_flush,
	.write_zeroes	= qed_write_zeroes,
	.probe		= qed_probe,
	.create		= qed_create,
	.block_status	= qed_block_status,
	.check		= qed_check,
	.info		= qed_info,
	.tick		= qed_tick,
	.resize		= qed_resize,
	.set_backing	= qed_set_backing,
	.set_read_only	= qed_set_read_only,
};
