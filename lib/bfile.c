// SPDX-License-Identifier: GPL-2.0
/*
 * The protocol layer's common part and its local file: telling a name's
 * protocol, opening, and the calls that are not per-request (size,
 * truncate, grow, block status).  The per-request calls of a local file
 * are inline in bfile.h and go straight to the executor.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bfile.h"

enum bfile_proto bfile_name_proto(const char *name)
{
	if (!strncmp(name, "nbd://", 6) || !strncmp(name, "nbd+unix://", 11) ||
	    !strncmp(name, "nbds://", 7) || !strncmp(name, "nbds+unix://", 12) ||
	    bfile_nbd_name_legacy(name))
		return BFILE_PROTO_NBD;
	if (!strncmp(name, "rbd:", 4))
		return BFILE_PROTO_RBD;
	if (!strncmp(name, "json:", 5)) {
		/* The driver decides; a json: name is never a local path. */
		if (strstr(name, "\"rbd\""))
			return BFILE_PROTO_RBD;
		return BFILE_PROTO_NBD;
	}
	return BFILE_PROTO_FILE;
}

int bfile_parse_protocols(const char *list, unsigned int *set)
{
	static const struct { const char *name; unsigned int bit; } protos[] = {
		{ "file", BFILE_PROTO_FILE },
		{ "nbd", BFILE_PROTO_NBD },
		{ "rbd", BFILE_PROTO_RBD },
	};
	unsigned int s = 0, i;
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");

		for (i = 0; i < ARRAY_SIZE(protos); i++)
			if (strlen(protos[i].name) == n && !strncmp(p, protos[i].name, n))
				break;
		if (i == ARRAY_SIZE(protos))
			return -EINVAL;
		s |= protos[i].bit;
		p += n + (p[n] == ',');
	}
	*set = s;
	return 0;
}

/* --allow-protocol: process-wide, as the policy of the command that runs. */
static unsigned int bfile_allowed = BFILE_PROTO_ALL;

void bfile_set_allowed_protocols(unsigned int set)
{
	bfile_allowed = set;
}

unsigned int bfile_allowed_protocols(void)
{
	return bfile_allowed;
}

bool bfile_protocol_allowed(enum bfile_proto proto)
{
	return bfile_allowed & proto;
}

static int bfile_local_open(const char *name, unsigned int flags, struct bfile **fp)
{
	bool direct = flags & BFILE_DIRECT;
	struct bfile *f;
	int fd, err;

	fd = open(name, ((flags & BFILE_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC |
			(direct ? O_DIRECT : 0));
	if (fd < 0) {
		err = errno;
		/* "No O_DIRECT here" is not "no such file": say what to do. */
		if (err == EINVAL && direct)
			img_err("%s: the filesystem does not support O_DIRECT; use --buffered",
				name);
		else
			img_err("%s: %s", name, strerror(err));
		return -err;
	}
	f = calloc(1, sizeof(*f));
	if (f)
		f->name = strdup(name);
	if (!f || !f->name) {
		free(f);
		close(fd);
		img_err("%s: %s", name, strerror(ENOMEM));
		return -ENOMEM;
	}
	f->fd = fd;
	f->proto = BFILE_PROTO_FILE;
	f->flags = flags;
	*fp = f;
	return 0;
}

int bfile_open(const char *name, unsigned int flags, struct bfile **fp)
{
	switch (bfile_name_proto(name)) {
	case BFILE_PROTO_NBD:
		return bfile_nbd_open(name, flags, fp);
	case BFILE_PROTO_RBD:
		return bfile_rbd_open(name, flags, fp);
	default:
		return bfile_local_open(name, flags, fp);
	}
}

void bfile_close(struct bfile *f)
{
	char *name;

	if (!f)
		return;
	name = f->name;
	if (f->fd >= 0) {
		close(f->fd);
		free(f);
	} else {
		f->ops->close(f);
	}
	free(name);
}

int bfile_pwrite_all(struct bfile *f, struct exec_write *w, unsigned int n)
{
	unsigned int i;
	int ret = 0;

	if (f->fd >= 0) {
		for (i = 0; i < n; i++)
			w[i].fd = f->fd;
		return exec_pwrite_all(w, n);
	}
	for (i = 0; i < n; i++) {
		w[i].res = f->ops->pwrite(f, w[i].buf, w[i].len, w[i].off, w[i].rw_flags);
		if (w[i].res < 0 && !ret)
			ret = w[i].res;
	}
	return ret;
}

int bfile_size(struct bfile *f, uint64_t *bytes)
{
	struct stat st;

	if (f->fd < 0) {
		*bytes = f->size_bytes;
		return 0;
	}
	if (fstat(f->fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(f->fd, BLKGETSIZE64, bytes) ? -errno : 0;
	*bytes = st.st_size;
	return 0;
}

int bfile_truncate(struct bfile *f, uint64_t bytes)
{
	if (f->fd < 0) {
		if (f->ops->truncate)
			return f->ops->truncate(f, bytes);
		return bytes == f->size_bytes ? 0 : -EOPNOTSUPP;
	}
	return ftruncate(f->fd, bytes) ? -errno : 0;
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
int bfile_grow(struct bfile *f, uint64_t from, uint64_t to)
{
	if (to <= from)
		return 0;
	if (f->fd < 0) {
		if (to <= f->size_bytes)
			return 0;
		return f->ops->truncate ? f->ops->truncate(f, to) : -ENOSPC;
	}
	if (fallocate(f->fd, 0, from, to - from) == 0)
		return 0;
	return ftruncate(f->fd, to) ? -errno : 0;
}

int bfile_block_status(struct bfile *f, uint64_t off, uint64_t *len, bool *hole)
{
	off_t data, end;

	if (f->fd < 0)
		return f->ops->block_status ? f->ops->block_status(f, off, len, hole) :
		       -EOPNOTSUPP;
	data = lseek(f->fd, off, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO ? (*hole = true, 0) : -errno;
	if ((uint64_t)data > off) {
		*hole = true;
		*len = MIN(*len, (uint64_t)data - off);
		return 0;
	}
	end = lseek(f->fd, off, SEEK_HOLE);
	if (end < 0)
		return -errno;
	*hole = false;
	*len = MIN(*len, (uint64_t)end - off);
	return 0;
}

struct bfile_read_call {
	const char *name;
	unsigned int flags;
	void *buf;
	size_t len;
	uint64_t off;
};

static int bfile_read_fn(void *arg)
{
	struct bfile_read_call *c = arg;
	struct bfile *f;
	ssize_t n;
	int ret;

	ret = bfile_open(c->name, c->flags | BFILE_RDONLY, &f);
	if (ret)
		return ret;
	n = bfile_pread(f, c->buf, c->len, c->off);
	bfile_close(f);
	if (n < 0) {
		img_err("%s: %s", c->name, strerror(-n));
		return n;
	}
	/* exec_run_sync() returns an int: a probe reads far less than 2 GiB. */
	return n;
}

ssize_t bfile_read_name(const char *name, unsigned int flags, void *buf, size_t len,
			uint64_t off)
{
	struct bfile_read_call c = { name, flags, buf, len, off };

	return exec_run_sync(bfile_read_fn, &c);
}
