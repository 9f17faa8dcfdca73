// SPDX-License-Identifier: GPL-2.0
/*
 * The raw target: a regular file or a block device, byte for byte.
 *
 * O_DIRECT by default so that the device does not double-cache what the
 * guest's page cache already holds, and so that a FLUSH is cheap; the
 * --buffered option goes through the host page cache instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"
#include "bfile.h"
#include "tgt.h"
#include "util.h"

struct raw_priv {
	struct bfile *file;
	bool is_blkdev;
	/* Cleared on the first EOPNOTSUPP so we stop asking the filesystem. */
	bool zero_range_ok;
};

/* The file's direct-I/O alignment (statx STATX_DIOALIGN, Linux 6.1+), or 512. */
static unsigned int raw_dio_align(int fd)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align)
		return stx.stx_dio_offset_align;
	return 512;
}

/* A remote file (NBD): its size, and what its server can do. */
static int raw_open_remote(struct tgt *t, struct raw_priv *rp)
{
	struct bfile *f = rp->file;

	t->caps.size_bytes = f->size_bytes;
	t->caps.logical_bs_shift = 9;
	t->caps.physical_bs_shift = 12;
	t->caps.can_flush = f->can_flush;
	t->caps.can_fua = f->can_fua;
	t->caps.can_discard = f->can_trim;
	t->caps.can_write_zeroes = f->can_zero;
	return 0;
}

/* A local file or block device: its size, block sizes and alignment. */
static int raw_open_local(struct tgt *t, struct raw_priv *rp, bool direct)
{
	int fd = rp->file->fd;
	unsigned int align = 512;
	struct stat st;
	int ret;

	if (fstat(fd, &st))
		goto err_errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;
		int lbs, pbs;

		if (ioctl(fd, BLKGETSIZE64, &bytes) ||
		    ioctl(fd, BLKSSZGET, &lbs) || ioctl(fd, BLKPBSZGET, &pbs))
			goto err_errno;
		rp->is_blkdev = true;
		t->caps.size_bytes = bytes;
		align = lbs;
		t->caps.physical_bs_shift = ilog2_u64(pbs);
	} else if (S_ISREG(st.st_mode)) {
		t->caps.size_bytes = st.st_size;
		if (direct)
			align = raw_dio_align(fd);
		t->caps.physical_bs_shift = ilog2_u64(MAX(st.st_blksize, 512));
	} else {
		img_err("%s: not a regular file or block device", t->cfg.file);
		return -EINVAL;
	}

	if (align > 4096 || !is_pow2(align)) {
		img_err("%s: unsupported direct I/O alignment %u", t->cfg.file, align);
		return -EINVAL;
	}
	t->caps.logical_bs_shift = MAX(9u, ilog2_u64(align));
	t->caps.physical_bs_shift = MIN(MAX(t->caps.physical_bs_shift,
					    t->caps.logical_bs_shift), 12u);
	t->caps.can_flush = true;
	t->caps.can_fua = true;
	t->caps.can_discard = true;
	t->caps.can_write_zeroes = true;
	return 0;

err_errno:
	ret = -errno;
	img_err("%s: %s", t->cfg.file, strerror(-ret));
	return ret;
}

static int raw_open(struct tgt *t)
{
	bool rdonly = t->cfg.open_flags & TGT_O_RDONLY;
	bool remote = bfile_name_remote(t->cfg.file);
	bool direct = !(t->cfg.open_flags & TGT_O_BUFFERED) && !remote;
	struct raw_priv *rp;
	int ret;

	rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	ret = bfile_open(t->cfg.file, tgt_bfile_name_flags(t) | (rdonly ? BFILE_RDONLY : 0) |
			 (direct ? BFILE_DIRECT : 0), &rp->file);
	if (ret)
		goto err_free;
	ret = remote ? raw_open_remote(t, rp) : raw_open_local(t, rp, direct);
	if (ret)
		goto err_close;
	/* The device ends at the last whole logical block of the file. */
	t->caps.size_bytes = ALIGN_DOWN(t->caps.size_bytes,
					1ULL << t->caps.logical_bs_shift);
	if (!t->caps.size_bytes) {
		ret = -EINVAL;
		img_err("%s: file is smaller than one %u-byte block", t->cfg.file,
			1U << t->caps.logical_bs_shift);
		goto err_close;
	}
	t->caps.read_only = rdonly;
	t->caps.discard_granularity_bytes = 1U << t->caps.physical_bs_shift;
	rp->zero_range_ok = true;
	t->priv = rp;
	return 0;

err_close:
	bfile_close(rp->file);
err_free:
	free(rp);
	return ret;
}

static int raw_close(struct tgt *t)
{
	struct raw_priv *rp = t->priv;

	/* A reopen that failed outright (tgt_reopen()) left nothing open. */
	if (!rp)
		return 0;
	bfile_close(rp->file);
	free(rp);
	return 0;
}

static int raw_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	struct raw_priv *rp = t->priv;
	ssize_t ret = bfile_pread(rp->file, buf, len, off);

	if (ret < 0)
		return ret;
	/* The file shrank under us: what is gone reads as zeros. */
	memset((char *)buf + ret, 0, len - ret);
	return len;
}

static int raw_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		     unsigned int flags)
{
	struct raw_priv *rp = t->priv;

	/* RWF_DSYNC makes the write durable in the same request: that is FUA. */
	return bfile_pwrite(rp->file, buf, len, off, (flags & TGT_W_FUA) ? RWF_DSYNC : 0);
}

static int raw_flush(struct tgt *t)
{
	struct raw_priv *rp = t->priv;

	return bfile_flush(rp->file);
}

static int raw_discard(struct tgt *t, uint64_t off, uint64_t len)
{
	struct raw_priv *rp = t->priv;
	int mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

	/*
	 * On a block device PUNCH_HOLE means "zero it"; NO_HIDE_STALE asks for
	 * a plain discard, which is what the guest requested.
	 */
	if (rp->is_blkdev)
		mode |= FALLOC_FL_NO_HIDE_STALE;
	return bfile_fallocate(rp->file, mode, off, len);
}

static int raw_write_zeroes(struct tgt *t, uint64_t off, uint64_t len,
			    unsigned int flags)
{
	struct raw_priv *rp = t->priv;
	int ret;

	(void)flags;
	if (rp->zero_range_ok) {
		ret = bfile_fallocate(rp->file, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				     off, len);
		if (ret != -EOPNOTSUPP)
			return ret;
		rp->zero_range_ok = false;
	}
	/*
	 * No ZERO_RANGE (tmpfs, some network filesystems): a punched hole in a
	 * regular file reads back as zeros too.
	 */
	return bfile_fallocate(rp->file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      off, len);
}

static int64_t raw_block_status(struct tgt *t, uint64_t off, uint64_t len,
				struct tgt_extent *ext)
{
	struct raw_priv *rp = t->priv;
	off_t data, hole;

	ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_OFFSET_VALID;
	ext->host_off = off;
	if (rp->is_blkdev) {
		ext->flags |= TGT_EXT_DATA;
		return len;
	}
	if (!bfile_is_local(rp->file)) {
		uint64_t n = len;
		bool hole;

		/* A server that cannot tell has everything as data. */
		if (bfile_block_status(rp->file, off, &n, &hole))
			n = len, hole = false;
		ext->flags |= hole ? TGT_EXT_ZERO : TGT_EXT_DATA;
		return n;
	}
	/* Holes read as zeros: that is what SEEK_DATA/SEEK_HOLE tell apart. */
	data = lseek(rp->file->fd, off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		ext->flags |= TGT_EXT_ZERO;
		return len;
	}
	if (data < 0) {
		ext->flags |= TGT_EXT_DATA;
		return len;
	}
	if ((uint64_t)data > off) {
		ext->flags |= TGT_EXT_ZERO;
		return MIN((uint64_t)data - off, len);
	}
	hole = lseek(rp->file->fd, off, SEEK_HOLE);
	ext->flags |= TGT_EXT_DATA;
	if (hole < 0 || (uint64_t)hole <= off)
		return len;
	return MIN((uint64_t)hole - off, len);
}

static int raw_create(const struct tgt_create_opts *o)
{
	const char *prealloc = "off";
	unsigned int i;
	int fd, ret = 0;

	for (i = 0; i < o->nr_options; i++) {
		if (!strncmp(o->options[i], "preallocation=", 14)) {
			prealloc = o->options[i] + 14;
		} else {
			img_err("raw: unknown option '%s'", o->options[i]);
			return -EINVAL;
		}
	}
	if (strcmp(prealloc, "off") && strcmp(prealloc, "falloc") &&
	    strcmp(prealloc, "full")) {
		img_err("raw: preallocation must be off, falloc or full, not '%s'", prealloc);
		return -EINVAL;
	}
	if (o->backing_file) {
		img_err("raw: a raw image cannot have a backing file");
		return -EINVAL;
	}
	fd = tgt_create_file(o->file);
	if (fd < 0) {
		if (fd != -EBUSY)
			img_err("%s: %s", o->file, strerror(-fd));
		return fd;
	}
	if (ftruncate(fd, o->size_bytes))
		ret = -errno;
	else if (!strcmp(prealloc, "falloc") && o->size_bytes &&
		 fallocate(fd, 0, 0, o->size_bytes))
		ret = -errno;
	else if (!strcmp(prealloc, "full"))
		ret = img_write_zeros_fd(fd, o->size_bytes);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret)
		img_err("%s: %s", o->file, strerror(-ret));
	close(fd);
	return ret;
}

static int raw_resize(struct tgt *t, uint64_t size_bytes, unsigned int flags)
{
	struct raw_priv *rp = t->priv;
	int ret;

	if (rp->is_blkdev) {
		img_err("%s: a block device cannot be resized", t->cfg.file);
		return -EINVAL;
	}
	if (size_bytes < t->caps.size_bytes && !(flags & TGT_RESIZE_SHRINK)) {
		img_err("%s: shrinking cuts off data: give --shrink to do it anyway",
			t->cfg.file);
		return -EINVAL;
	}
	ret = bfile_truncate(rp->file, size_bytes);
	if (ret) {
		img_err("%s: %s", t->cfg.file, ret == -EOPNOTSUPP ?
			"the server sets the export's size; it cannot be resized" : strerror(-ret));
		return ret;
	}
	t->caps.size_bytes = size_bytes;
	return 0;
}

const struct tgt_ops raw_tgt_ops = {
	.name		= "raw",
	.summary	= "a regular file or block device as is (-f FILE [--buffered])",
	.options	= TGT_OPT_FILE | TGT_OPT_BUFFERED,
	.open		= raw_open,
	.close		= raw_close,
	.read		= raw_read,
	.write		= raw_write,
	.flush		= raw_flush,
	.discard	= raw_discard,
	.write_zeroes	= raw_write_zeroes,
	.create		= raw_create,
	.block_status	= raw_block_status,
	.resize		= raw_resize,
};
