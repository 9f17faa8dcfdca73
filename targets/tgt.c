// SPDX-License-Identifier: GPL-2.0
/*
 * What every target shares: opening and closing through the executor,
 * format probing, image locks, and backing chains (path resolution, loop
 * and depth limits, reads past the end of a shorter backing file).
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

#include "bfile.h"
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

	if (!t->cfg.file || bfile_name_remote(t->cfg.file))
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

int tgt_create_file(const char *file)
{
	int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644), ret;

	if (fd < 0)
		return -errno;
	ret = img_lock_fd(fd, file, IMG_PERM_WRITE | IMG_PERM_RESIZE, IMG_PERM_RESIZE);
	if (!ret && ftruncate(fd, 0))
		ret = -errno;
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * The permissions @t uses and refuses to share in its role, and those of
 * its external data file (@data), as QEMU 7.2 takes them; read from
 * /proc/locks while qemu-io, qemu-img and qemu-nbd held images.
 *
 * A format with metadata of its own (qcow2, QED) refuses every other
 * writer and resizer, since they would change its metadata under its
 * caches, and its writers also resize (the file grows as clusters are
 * allocated).  Raw holds what its user does (QEMU's raw node passes its
 * parent's permissions down), so two raw writers may share a file.  A
 * data file holds the guest data and no metadata: it may be written by
 * others but not resized.
 */
static void tgt_lock_perms(const struct tgt *t, bool data, unsigned int *use,
			   unsigned int *unshare)
{
	unsigned int f = t->cfg.open_flags;
	bool meta = t->ops != &raw_tgt_ops && !data;
	bool no_io = f & TGT_O_NO_IO;
	unsigned int u = no_io ? 0 : IMG_PERM_CONSISTENT_READ, n = 0;

	switch (t->role) {
	case TGT_ROLE_IMAGE:
		if (!(f & TGT_O_RDONLY) && !t->cfg.snapshot)
			u |= IMG_PERM_WRITE | (meta || data ? IMG_PERM_RESIZE : 0);
		if (f & TGT_O_RESIZE)
			u |= IMG_PERM_RESIZE;
		if (f & TGT_O_FIXED_SIZE)
			n |= IMG_PERM_RESIZE;
		break;
	case TGT_ROLE_BACKING:
		/* info opens backing files only to name them: QEMU opens none. */
		if (no_io) {
			*use = *unshare = 0;
			return;
		}
		break;
	case TGT_ROLE_WRITTEN_BASE:
		*use = u;
		*unshare = 0;
		return;
	}
	if (meta)
		n |= IMG_PERM_WRITE | IMG_PERM_RESIZE;
	/* Without I/O QEMU does not even open the data file. */
	else if (data)
		n = no_io ? 0 : IMG_PERM_RESIZE;
	if (f & TGT_O_FORCE_SHARE)
		n = 0;
	*use = u;
	*unshare = n;
}

/*
 * Opens @l on @file and takes the locks of @t's role.  It is opened even
 * when the role takes none, so that a later role can.  Returns 0 or -errno.
 */
static int tgt_lock_file(struct tgt *t, struct img_lock *l, const char *file,
			 bool data)
{
	unsigned int use, unshare;
	int ret;

	/* A remote file's sharing is its server's business: no local lock. */
	if (bfile_name_remote(file))
		return 0;
	tgt_lock_perms(t, data, &use, &unshare);
	ret = img_lock_open(l, file);
	if (!ret)
		ret = img_lock_set(l, use, unshare);
	if (ret)
		img_lock_close(l);
	return ret;
}

int tgt_lock_data_file(struct tgt *t, const char *path)
{
	return tgt_lock_file(t, &t->data_lock, path, true);
}

int tgt_set_role(struct tgt *t, enum tgt_role role)
{
	enum tgt_role old = t->role;
	unsigned int use, unshare, old_use = t->lock.use, old_unshare = t->lock.unshare;
	int ret = 0;

	/* Only a target without a file (null) has no lock descriptor. */
	t->role = role;
	tgt_lock_perms(t, false, &use, &unshare);
	if (t->lock.fd >= 0)
		ret = img_lock_set(&t->lock, use, unshare);
	if (!ret && t->data_lock.fd >= 0) {
		tgt_lock_perms(t, true, &use, &unshare);
		ret = img_lock_set(&t->data_lock, use, unshare);
		/* Both files or neither: the image's own locks go back too. */
		if (ret && t->lock.fd >= 0)
			img_lock_set(&t->lock, old_use, old_unshare);
	}
	if (ret)
		t->role = old;
	return ret;
}

/* Drops the locks of @t, whose target is closed or was never opened. */
static void tgt_unlock(struct tgt *t)
{
	img_lock_close(&t->lock);
	img_lock_close(&t->data_lock);
}

/*
 * The generic part of opening @t, whose role is set: its locks, taken and
 * checked before anything reads the file, then the target's own ->open.
 */
static int tgt_open_locked(struct tgt *t)
{
	unsigned int f = t->cfg.open_flags;
	int ret;

	t->lock = t->data_lock = IMG_LOCK_INIT;
	if (t->cfg.file) {
		/* QEMU's rule: sharing writes with others is for readers only. */
		if ((f & TGT_O_FORCE_SHARE) && !(f & TGT_O_RDONLY)) {
			img_err("%s: -U/--force-share can only be used with read-only images",
				t->cfg.file);
			return -EINVAL;
		}
		ret = tgt_lock_file(t, &t->lock, t->cfg.file, false);
		if (ret)
			return ret;
	}
	tgt_prepare_file(t);
	ret = t->ops->open(t);
	if (ret)
		tgt_unlock(t);
	return ret;
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
	t->role = TGT_ROLE_IMAGE;
	return tgt_open_locked(t);
}

int tgt_open(struct tgt *t)
{
	return exec_run_sync(tgt_open_fn, t);
}

/*
 * Closes @t and the chain below it, top down (an overlay may write back
 * metadata referring to its backing), each image's locks after its last
 * write.  The chain below @t is ours to free; @t itself only if @free_top.
 */
static int tgt_close_chain(struct tgt *t, bool free_top)
{
	struct tgt *top = t;
	int ret = 0, r;

	while (t) {
		struct tgt *b = t->backing;

		r = t->ops->close(t);
		if (r && !ret)
			ret = r;
		tgt_unlock(t);
		if (t != top || free_top) {
			free((char *)t->cfg.file);
			free(t);
		}
		t = b;
	}
	return ret;
}

static int tgt_close_fn(void *arg)
{
	return tgt_close_chain(arg, false);
}

void tgt_drop_backing(struct tgt *t)
{
	struct tgt *b = t->backing;

	t->backing = NULL;
	tgt_close_chain(b, true);
}

int tgt_close(struct tgt *t)
{
	return exec_run_sync(tgt_close_fn, t);
}

static int tgt_free_chain_fn(void *arg)
{
	return tgt_close_chain(arg, true);
}

int tgt_free_chain(struct tgt *t)
{
	return t ? exec_run_sync(tgt_free_chain_fn, t) : 0;
}

int tgt_link_backing(struct tgt *overlay, struct tgt *b)
{
	unsigned int depth = overlay->chain_depth + 1;
	struct tgt *l;

	for (l = b; l; l = l->backing, depth++)
		if (depth >= TGT_MAX_CHAIN)
			return -ELOOP;
	overlay->backing = b;
	if (!b)
		return 0;
	b->overlay = overlay;
	for (l = b, depth = overlay->chain_depth + 1; l; l = l->backing, depth++)
		l->chain_depth = depth;
	return 0;
}

/*
 * Opens the format of @t again, which ->close released, with @flags and
 * @t's current role, keeping @t's locks and its backing chain: the chain
 * is not reopened from the image's name (TGT_O_NO_BACKING for the
 * format's ->open), and an external data file's lock is taken anew
 * beside the old one, which is then dropped, so that the file is never
 * without a lock.  Runs in a coroutine.
 */
static int tgt_reopen_format(struct tgt *t, unsigned int flags)
{
	struct tgt *backing = t->backing;
	struct img_lock data = t->data_lock;
	int ret;

	t->cfg.open_flags = flags | TGT_O_NO_BACKING;
	t->data_lock = IMG_LOCK_INIT;
	t->backing = NULL;
	t->priv = NULL;
	ret = t->ops->open(t);
	t->backing = backing;
	t->cfg.open_flags = flags;
	if (ret) {
		img_lock_close(&t->data_lock);
		t->data_lock = data;
		return ret;
	}
	img_lock_close(&data);
	return 0;
}

int tgt_reopen(struct tgt *t, enum tgt_role role, bool read_only)
{
	unsigned int flags = t->cfg.open_flags;
	unsigned int nflags = read_only ? flags | TGT_O_RDONLY : flags & ~TGT_O_RDONLY;
	enum tgt_role old_role = t->role;
	int ret, r;

	/*
	 * Permissions gained are locked before the format is touched;
	 * those given up are dropped only after ->close wrote back what the
	 * old role allowed.  tgt_set_role() itself takes the union first.
	 */
	if (!read_only) {
		t->cfg.open_flags = nflags;
		ret = tgt_set_role(t, role);
		t->cfg.open_flags = flags;
		if (ret)
			return ret;
	}
	/* Written to read-only, in place: the format keeps its caches. */
	if (read_only && !(flags & TGT_O_RDONLY) && t->ops->set_read_only) {
		ret = t->ops->set_read_only(t);
		if (ret)
			return ret;
		t->cfg.open_flags = nflags;
		ret = tgt_set_role(t, role);
		if (!ret)
			return 0;
		/* Locks only shrink here; should it fail, the image stays read-only. */
		return ret;
	}
	ret = t->ops->close(t);
	if (!ret && read_only) {
		t->cfg.open_flags = nflags;
		ret = tgt_set_role(t, role);
		t->cfg.open_flags = flags;
	}
	if (!ret) {
		ret = tgt_reopen_format(t, nflags);
		if (!ret)
			return 0;
	}
	/* Back to what it was, so the device can go on as before. */
	tgt_set_role(t, old_role);
	r = tgt_reopen_format(t, flags);
	if (r) {
		img_err("%s: cannot open the image again: %s", t->cfg.file, strerror(-r));
		t->priv = NULL;
		return -EIO;
	}
	return ret;
}

unsigned int tgt_bfile_name_flags(const struct tgt *t)
{
	return (t->cfg.open_flags & TGT_O_FROM_IMAGE) ? 0 : BFILE_USER_NAME;
}

/* tgt_probe_file() for @file opened with BFILE_* @flags (whose name it is). */
static const struct tgt_ops *tgt_probe(const char *file, unsigned int flags)
{
	const struct tgt_ops *best = &raw_tgt_ops;
	unsigned char buf[4096];
	int best_score = 0;
	ssize_t n;
	unsigned int i;

	n = bfile_read_name(file, flags, buf, sizeof(buf), 0);
	if (n < 0)
		return NULL;
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

const struct tgt_ops *tgt_probe_file(const char *file)
{
	return tgt_probe(file, BFILE_USER_NAME);
}

void tgt_resolve_path(const char *base, const char *name, char *out, size_t len)
{
	const char *slash = strrchr(base, '/');

	/*
	 * Like QEMU: a relative backing name is relative to the overlay's
	 * directory; a remote one (nbd://, rbd:) is used as it is.
	 */
	if (name[0] == '/' || !slash || bfile_name_remote(name))
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - base), base, name);
}

/* The name --allow-protocol knows @proto by. */
static const char *tgt_proto_name(enum bfile_proto proto)
{
	return proto == BFILE_PROTO_NBD ? "nbd" : proto == BFILE_PROTO_RBD ? "rbd" : "file";
}

int tgt_file_allowed(const struct tgt *overlay, const char *path, const char *what)
{
	enum bfile_proto proto = bfile_name_proto(path);
	const char *param;
	char *dir_o, *dir_b;
	char *slash;
	int ret = 0;

	if (!bfile_protocol_allowed(proto)) {
		img_err("%s: has a %s (%s), and --allow-protocol does not include %s",
			overlay->cfg.file, what, path, tgt_proto_name(proto));
		return -EPERM;
	}
	/*
	 * The server would read (or write) that file for the image's author
	 * (an NBD TLS key file: any file, sent in the handshake's errors or
	 * not; a Ceph config, keyring or log file).
	 */
	param = bfile_nbd_local_param(path) ?: bfile_rbd_local_param(path);
	if (param) {
		img_err("%s: has a %s (%s) whose %s names a local file, which a name read from an image may not",
			overlay->cfg.file, what, path, param);
		return -EPERM;
	}
	switch (overlay->cfg.backing_policy) {
	case TGT_BACKING_ANY:
		return 0;
	case TGT_BACKING_NONE:
		img_err("%s: has a %s (%s), and --backing=none forbids it",
			overlay->cfg.file, what, path);
		return -EPERM;
	case TGT_BACKING_SAME_DIR:
		if (proto != BFILE_PROTO_FILE) {
			img_err("%s: has a remote %s (%s), and --backing=same-dir forbids it",
				overlay->cfg.file, what, path);
			return -EPERM;
		}
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
	if (bfile_name_remote(path)) {
		/* No inode to compare: a remote loop is the same name twice. */
		for (up = overlay; up; up = up->overlay) {
			if (!strcmp(up->cfg.file, path)) {
				img_err("%s: backing file %s makes a loop in the backing chain",
					overlay->cfg.file, path);
				ret = -ELOOP;
				goto err;
			}
		}
		memset(&st, 0, sizeof(st));
	} else if (stat(path, &st)) {
		ret = -errno;
		img_err("%s: backing file %s: %s", overlay->cfg.file, path, strerror(errno));
		goto err;
	}
	/*
	 * The name comes from the image: opening a FIFO would block forever,
	 * and a directory or character device is never an image.
	 */
	if (!bfile_name_remote(path) && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		img_err("%s: backing file %s is not a regular file or block device",
			overlay->cfg.file, path);
		ret = -EINVAL;
		goto err;
	}
	for (up = overlay; up && st.st_ino; up = up->overlay) {
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
		b->ops = tgt_probe(path, 0);
		if (!b->ops) {
			ret = -EIO;
			goto err;
		}
	}
	b->cfg.file = path;
	b->cfg.format = fmt;
	b->cfg.backing_policy = overlay->cfg.backing_policy;
	b->cfg.l2_cache_bytes = overlay->cfg.l2_cache_bytes;
	/*
	 * Backing files are never written; they inherit the caching mode
	 * and what the caller does with the chain.
	 */
	b->cfg.open_flags = TGT_O_RDONLY | TGT_O_FROM_IMAGE | (overlay->cfg.open_flags &
		(TGT_O_BUFFERED | TGT_O_FORCE_SHARE | TGT_O_NO_IO));
	b->overlay = overlay;
	b->chain_depth = overlay->chain_depth + 1;
	b->st_dev = st.st_dev;
	b->st_ino = st.st_ino;
	b->role = TGT_ROLE_BACKING;
	ret = tgt_open_locked(b);
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
		t->ops = tgt_probe(file, (flags & TGT_O_FROM_IMAGE) ? 0 : BFILE_USER_NAME);
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
