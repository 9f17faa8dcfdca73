// SPDX-License-Identifier: GPL-2.0
/*
 * What every target shares: opening and closing through the executor,
 * format probing, and backing chains (path resolution, loop and depth
 * limits, reads past the end of a shorter backing file).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"
#include "tgt.h"
#include "util.h"

/* ext4's ioctl (include/uapi/linux/ext4.h), missing from older headers. */
#ifndef EXT4_IOC_PRECACHE_EXTENTS
#define EXT4_IOC_PRECACHE_EXTENTS	_IO('f', 18)
#endif

/*
 * Readies the image file for the server's I/O, best effort, at open:
 *
 * With O_DIRECT, pages of the file left in the page cache (by whatever
 * wrote it: qemu-img convert, cp, dd) only cost: each direct write over
 * one must first invalidate it, which io_uring cannot do without blocking
 * and so hands the write to a worker thread.  They are dropped.
 *
 * On ext4, every direct I/O maps its blocks through the inode's extent
 * status tree, which holds only what earlier I/O mapped: random 4k I/O on
 * a cold file walks the on-disk extent tree on each miss and inserts one
 * block at a time, so the tree grows to tens of thousands of entries (30950
 * for a 512 MiB file of 7 extents, after seconds in the VM) and its lookups
 * take 5% of a queue thread.  EXT4_IOC_PRECACHE_EXTENTS loads the extents
 * whole, once, and ext4's shrinker spares them while it can.  Other
 * filesystems and block devices refuse it.
 */
static void tgt_prepare_file(const struct tgt *t)
{
	struct stat st;
	int fd;

	if (!t->cfg.file)
		return;
	fd = open(t->cfg.file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	/* Dirty pages are written back first, or stay. */
	if (!(t->cfg.open_flags & TGT_O_BUFFERED))
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		ioctl(fd, EXT4_IOC_PRECACHE_EXTENTS);
	close(fd);
}

/*
 * Blocks reserved ahead: a direct write into a hole must allocate, which
 * io_uring cannot do without blocking, so each such write goes to a worker
 * thread and allocates its block alone (ext4: a journal transaction each).
 * Into reserved (unwritten) blocks it is issued at once and only marks them
 * written.  QEMU's allocating writes reserve whole clusters the same way
 * (fallocate ZERO_RANGE), so the image takes the same space.  Where the
 * reserve cannot be had (no fallocate, or not that much space left) the
 * hole still lets the writes go on as far as the space allows.
 */
int tgt_grow_file(int fd, uint64_t from, uint64_t to)
{
	if (to <= from)
		return 0;
	if (fallocate(fd, 0, from, to - from) == 0)
		return 0;
	return ftruncate(fd, to) ? -errno : 0;
}

static int tgt_open_fn(void *arg)
{
	struct tgt *t = arg;
	struct stat st;

	if (t->cfg.file && stat(t->cfg.file, &st) == 0) {
		t->st_dev = st.st_dev;
		t->st_ino = st.st_ino;
	}
	if (t->cfg.snapshot && !t->ops->snapshot_list) {
		img_err("%s: the %s format has no internal snapshots", t->cfg.file,
			t->ops->name);
		return -ENOTSUP;
	}
	tgt_prepare_file(t);
	return t->ops->open(t);
}

int tgt_open(struct tgt *t)
{
	return exec_run_sync(tgt_open_fn, t);
}

static int tgt_close_fn(void *arg)
{
	struct tgt *t = arg;
	int ret = 0, r;

	/* Top down: an overlay may write back metadata referring to its backing. */
	while (t) {
		struct tgt *b = t->backing;

		r = t->ops->close(t);
		if (r && !ret)
			ret = r;
		/* The top tgt belongs to the caller; the chain below it is ours. */
		if (t != arg) {
			free((char *)t->cfg.file);
			free(t);
		}
		t = b;
	}
	return ret;
}

int tgt_close(struct tgt *t)
{
	return exec_run_sync(tgt_close_fn, t);
}

const struct tgt_ops *tgt_probe_file(const char *file)
{
	const struct tgt_ops *best = &raw_tgt_ops;
	unsigned char buf[4096];
	int fd, best_score = 0;
	ssize_t n;
	unsigned int i;

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		img_err("%s: %s", file, strerror(errno));
		return NULL;
	}
	n = pread(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0) {
		img_err("%s: %s", file, strerror(errno));
		return NULL;
	}
	for (i = 0; i < tgt_table_len; i++) {
		int score;

		if (!tgt_table[i]->probe)
			continue;
		score = tgt_table[i]->probe(buf, n);
		if (score > best_score) {
			best_score = score;
			best = tgt_table[i];
		}
	}
	return best;
}

void tgt_resolve_path(const char *base, const char *name, char *out, size_t len)
{
	const char *slash = strrchr(base, '/');

	/* Like QEMU: a relative backing name is relative to the overlay's directory. */
	if (name[0] == '/' || !slash)
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - base), base, name);
}

int tgt_file_allowed(const struct tgt *overlay, const char *path, const char *what)
{
	char *dir_o, *dir_b;
	char *slash;
	int ret = 0;

	switch (overlay->cfg.backing_policy) {
	case TGT_BACKING_ANY:
		return 0;
	case TGT_BACKING_NONE:
		img_err("%s: has a %s (%s), and --backing=none forbids it",
			overlay->cfg.file, what, path);
		return -EPERM;
	case TGT_BACKING_SAME_DIR:
		break;
	}
	/*
	 * Compare real directories, so neither "../" nor a symlink in the
	 * image's directory leads elsewhere.
	 */
	dir_o = realpath(overlay->cfg.file, NULL);
	dir_b = realpath(path, NULL);
	if (!dir_o || !dir_b) {
		ret = -errno;
		img_err("%s: %s %s: %s", overlay->cfg.file, what, path, strerror(errno));
		goto out;
	}
	slash = strrchr(dir_o, '/');
	*slash = '\0';
	slash = strrchr(dir_b, '/');
	*slash = '\0';
	if (strcmp(dir_o, dir_b)) {
		img_err("%s: %s %s is outside the image's directory, and --backing=same-dir forbids it",
			overlay->cfg.file, what, path);
		ret = -EPERM;
	}
out:
	free(dir_o);
	free(dir_b);
	return ret;
}

int tgt_open_backing(struct tgt *overlay, const char *name, const char *fmt)
{
	const struct tgt *up;
	struct tgt *b;
	struct stat st;
	char *path;
	int ret;

	/* rebase -u: the name is being replaced, the file may be gone. */
	if (overlay->cfg.open_flags & TGT_O_NO_BACKING)
		return 0;
	if (overlay->chain_depth + 1 >= TGT_MAX_CHAIN) {
		img_err("%s: backing chain deeper than %d images", overlay->cfg.file,
			TGT_MAX_CHAIN);
		return -ELOOP;
	}
	path = malloc(PATH_MAX);
	b = calloc(1, sizeof(*b));
	if (!path || !b) {
		ret = -ENOMEM;
		goto err;
	}
	tgt_resolve_path(overlay->cfg.file, name, path, PATH_MAX);
	ret = tgt_file_allowed(overlay, path, "backing file");
	if (ret)
		goto err;
	if (stat(path, &st)) {
		ret = -errno;
		img_err("%s: backing file %s: %s", overlay->cfg.file, path, strerror(errno));
		goto err;
	}
	/*
	 * The name comes from the image: opening a FIFO would block forever,
	 * and a directory or character device is never an image.
	 */
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		img_err("%s: backing file %s is not a regular file or block device",
			overlay->cfg.file, path);
		ret = -EINVAL;
		goto err;
	}
	for (up = overlay; up; up = up->overlay) {
		if (up->st_dev == st.st_dev && up->st_ino == st.st_ino) {
			img_err("%s: backing file %s makes a loop in the backing chain",
				overlay->cfg.file, path);
			ret = -ELOOP;
			goto err;
		}
	}

	if (fmt) {
		b->ops = tgt_find(fmt);
		/* Only image formats can back an image. */
		if (!b->ops || !tgt_is_format(b->ops)) {
			img_err("%s: unknown backing format '%s'", overlay->cfg.file, fmt);
			ret = -EINVAL;
			goto err;
		}
	} else {
		b->ops = tgt_probe_file(path);
		if (!b->ops) {
			ret = -EIO;
			goto err;
		}
	}
	b->cfg.file = path;
	b->cfg.format = fmt;
	b->cfg.backing_policy = overlay->cfg.backing_policy;
	b->cfg.l2_cache_bytes = overlay->cfg.l2_cache_bytes;
	/* Backing files are never written; they inherit the caching mode. */
	b->cfg.open_flags = TGT_O_RDONLY | (overlay->cfg.open_flags & TGT_O_BUFFERED);
	b->overlay = overlay;
	b->chain_depth = overlay->chain_depth + 1;
	b->st_dev = st.st_dev;
	b->st_ino = st.st_ino;
	tgt_prepare_file(b);
	ret = b->ops->open(b);
	if (ret)
		goto err;
	overlay->backing = b;
	return 0;
err:
	free(b);
	free(path);
	return ret;
}

int tgt_read_backing(struct tgt *b, void *buf, uint32_t len, uint64_t off)
{
	uint64_t size = b->caps.size_bytes;
	uint32_t n = 0;
	int ret;

	if (off < size) {
		n = MIN((uint64_t)len, size - off);
		ret = b->ops->read(b, buf, n, off);
		if (ret < 0)
			return ret;
	}
	memset((char *)buf + n, 0, len - n);
	return len;
}

bool tgt_is_format(const struct tgt_ops *ops)
{
	return ops == &raw_tgt_ops || ops->probe;
}

int tgt_open_file(struct tgt *t, const char *file, const char *fmt,
		  unsigned int flags)
{
	if (fmt) {
		t->ops = tgt_find(fmt);
		if (!t->ops || !tgt_is_format(t->ops)) {
			img_err("unknown image format '%s'", fmt);
			return -EINVAL;
		}
	} else {
		t->ops = tgt_probe_file(file);
		if (!t->ops)
			return -EIO;
	}
	t->cfg.file = file;
	t->cfg.format = fmt;
	t->cfg.open_flags = flags;
	return tgt_open(t);
}

int64_t tgt_chain_status(struct tgt *t, uint64_t off, uint64_t len,
			 struct tgt_extent *ext, unsigned int *depth,
			 struct tgt **layer)
{
	unsigned int d = 0;
	uint64_t run = len, host_off = 0;
	bool host_valid = false;

	for (; t; t = t->backing, d++) {
		int64_t n;

		/* Past the end of a shorter backing file everything reads as zeros. */
		if (off >= t->caps.size_bytes)
			break;
		run = MIN(run, t->caps.size_bytes - off);
		n = t->ops->block_status(t, off, run, ext);
		if (n < 0)
			return n;
		run = n;
		if (ext->flags & TGT_EXT_ALLOCATED) {
			*depth = d;
			*layer = t;
			return run;
		}
		/*
		 * Unallocated with a place of its own (a qcow2 subcluster of
		 * an allocated cluster): qemu-img map shows the bottom layer's.
		 */
		host_valid = ext->flags & TGT_EXT_OFFSET_VALID;
		host_off = ext->host_off;
	}
	ext->flags = TGT_EXT_ZERO | (host_valid ? TGT_EXT_OFFSET_VALID : 0);
	ext->host_off = host_valid ? host_off : 0;
	/*
	 * Like qemu-img map: the depth of the last layer asked, the bottom
	 * one or the backing file too short to hold the range.
	 */
	*depth = t ? d : d - 1;
	*layer = NULL;
	return run;
}
