// SPDX-License-Identifier: GPL-2.0
/*
 * Ceph RBD images as files, through librbd.  Each request is a librbd aio
 * call; its completion runs on one of librbd's threads, which only records
 * the result and wakes the issuing coroutine with exec_wake(): that goes
 * through the owning executor's eventfd, read by its ring, so the queue
 * thread never blocks on the cluster.  One image handle serves every queue
 * (librbd's handles are thread-safe), so a raw file on RBD is served
 * multi-queue.
 *
 * Names as QEMU's: rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER] (other
 * KEY=VALUE pairs are set as Ceph options), or json:{"driver":"rbd",
 * "pool", "image", "snapshot", "conf", "user"}.  Without conf= the config
 * is Ceph's default search (CEPH_CONF, /etc/ceph/ceph.conf), or --rbd-conf.
 */
#include <dlfcn.h>
#include <errno.h>
#include <json-c/json.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bfile.h"

static struct {
	__typeof__(rbd_aio_create_completion) *rbd_aio_create_completion;
	__typeof__(rbd_aio_flush) *rbd_aio_flush;
	__typeof__(rbd_aio_get_return_value) *rbd_aio_get_return_value;
	__typeof__(rbd_aio_read) *rbd_aio_read;
	__typeof__(rbd_aio_release) *rbd_aio_release;
	__typeof__(rbd_aio_write) *rbd_aio_write;
	__typeof__(rbd_aio_write_zeroes) *rbd_aio_write_zeroes;
	__typeof__(rbd_close) *rbd_close;
	__typeof__(rbd_flush) *rbd_flush;
	__typeof__(rbd_get_size) *rbd_get_size;
	__typeof__(rbd_open) *rbd_open;
	__typeof__(rbd_open_read_only) *rbd_open_read_only;
	__typeof__(rbd_read) *rbd_read;
	__typeof__(rbd_resize) *rbd_resize;
	__typeof__(rbd_write) *rbd_write;
	__typeof__(rbd_write_zeroes) *rbd_write_zeroes;
} rbd_lib;

static struct {
	__typeof__(rados_conf_read_file) *rados_conf_read_file;
	__typeof__(rados_conf_set) *rados_conf_set;
	__typeof__(rados_connect) *rados_connect;
	__typeof__(rados_create) *rados_create;
	__typeof__(rados_ioctx_create) *rados_ioctx_create;
	__typeof__(rados_ioctx_destroy) *rados_ioctx_destroy;
	__typeof__(rados_shutdown) *rados_shutdown;
} rados_lib;

static const char *rbd_default_conf;
static const char *rbd_default_id;

/*
 * The library is loaded on the first open, not linked: its dependencies
 * (Ceph's common library, Boost) would cost every imgblk command, which mostly never opens a
 * remote file, their load time (about 20 ms with librbd) and the VM image
 * their size.  Returns 0, or -ELIBACC after one line naming @name.
 */
static pthread_once_t rbd_lib_once = PTHREAD_ONCE_INIT;
static char rbd_lib_why[256];

/* Fills @tab's member @f with the library's symbol @f. */
#define SYM(tab, f)	((tab).f = (__typeof__(f) *)dlsym(h, #f))

static void rbd_lib_load_once(void)
{
	void *h;

	h = dlopen("librados.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h || !SYM(rados_lib, rados_conf_read_file) || !SYM(rados_lib, rados_conf_set) ||
	    !SYM(rados_lib, rados_connect) || !SYM(rados_lib, rados_create) ||
	    !SYM(rados_lib, rados_ioctx_create) || !SYM(rados_lib, rados_ioctx_destroy) ||
	    !SYM(rados_lib, rados_shutdown))
		goto fail;

	h = dlopen("librbd.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h || !SYM(rbd_lib, rbd_aio_create_completion) || !SYM(rbd_lib, rbd_aio_flush) ||
	    !SYM(rbd_lib, rbd_aio_get_return_value) || !SYM(rbd_lib, rbd_aio_read) ||
	    !SYM(rbd_lib, rbd_aio_release) || !SYM(rbd_lib, rbd_aio_write) ||
	    !SYM(rbd_lib, rbd_aio_write_zeroes) || !SYM(rbd_lib, rbd_close) ||
	    !SYM(rbd_lib, rbd_flush) || !SYM(rbd_lib, rbd_get_size) ||
	    !SYM(rbd_lib, rbd_open) || !SYM(rbd_lib, rbd_open_read_only) ||
	    !SYM(rbd_lib, rbd_read) || !SYM(rbd_lib, rbd_resize) || !SYM(rbd_lib, rbd_write) ||
	    !SYM(rbd_lib, rbd_write_zeroes))
		goto fail;
	return;
fail:
	snprintf(rbd_lib_why, sizeof(rbd_lib_why), "%s", dlerror() ?: "a symbol is missing");
}

static void *rbd_lib_load_thread(void *arg)
{
	(void)arg;
	pthread_once(&rbd_lib_once, rbd_lib_load_once);
	return NULL;
}

static int rbd_lib_load(const char *name)
{
	pthread_t th;

	/*
	 * On a thread of its own: the library's constructors run inside
	 * dlopen(), and they need more stack than a coroutine has.
	 */
	if (pthread_create(&th, NULL, rbd_lib_load_thread, NULL)) {
		img_err("%s: cannot start a thread to load the library", name);
		return -EAGAIN;
	}
	pthread_join(th, NULL);
	if (!rbd_lib_why[0])
		return 0;
	img_err("%s: RBD needs librbd (apt install librbd1) (%s)", name, rbd_lib_why);
	return -ELIBACC;
}

void bfile_rbd_set_defaults(const char *conf, const char *id)
{
	if (conf)
		rbd_default_conf = conf;
	if (id)
		rbd_default_id = id;
}

void bfile_rbd_get_defaults(const char **conf, const char **id)
{
	*conf = rbd_default_conf;
	*id = rbd_default_id;
}

struct rbd_file {
	struct bfile f;
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t image;
};

/* One request, on its coroutine's stack until it completes. */
struct rbd_req {
	pthread_mutex_t lock;
	struct coro *co;
	ssize_t res;
	bool done;
	bool sleeping;
};

/* librbd's callback, on a librbd thread. */
static void rbd_req_done_cb(rbd_completion_t c, void *arg)
{
	struct rbd_req *r = arg;

	pthread_mutex_lock(&r->lock);
	r->res = rbd_lib.rbd_aio_get_return_value(c);
	r->done = true;
	/*
	 * The wake goes through the owner's scheduler, which runs only after
	 * the coroutine has gone to sleep: under the lock, a coroutine that
	 * saw done false is sure to be woken once, and one that saw it true
	 * is never woken spuriously.
	 */
	if (r->sleeping)
		exec_wake(r->co);
	pthread_mutex_unlock(&r->lock);
	rbd_lib.rbd_aio_release(c);
}

enum rbd_cmd { RBD_READ, RBD_WRITE, RBD_FLUSH, RBD_ZERO };

/*
 * Runs one aio call and waits for it: as a coroutine on an executor, or
 * blocking without one (probing).  Returns librbd's result (bytes or 0),
 * or -errno.
 */
static ssize_t rbd_run(struct rbd_file *rf, enum rbd_cmd cmd, void *buf, uint64_t len,
		       uint64_t off)
{
	struct rbd_req r = { .co = exec_self() };
	rbd_completion_t c;
	int ret;

	if (!r.co) {
		switch (cmd) {
		case RBD_READ:
			return rbd_lib.rbd_read(rf->image, off, len, buf);
		case RBD_WRITE:
			return rbd_lib.rbd_write(rf->image, off, len, buf);
		case RBD_FLUSH:
			return rbd_lib.rbd_flush(rf->image);
		case RBD_ZERO:
			return rbd_lib.rbd_write_zeroes(rf->image, off, len, 0, 0);
		}
	}
	pthread_mutex_init(&r.lock, NULL);
	ret = rbd_lib.rbd_aio_create_completion(&r, rbd_req_done_cb, &c);
	if (ret)
		goto out;
	switch (cmd) {
	case RBD_READ:
		ret = rbd_lib.rbd_aio_read(rf->image, off, len, buf, c);
		break;
	case RBD_WRITE:
		ret = rbd_lib.rbd_aio_write(rf->image, off, len, buf, c);
		break;
	case RBD_FLUSH:
		ret = rbd_lib.rbd_aio_flush(rf->image, c);
		break;
	case RBD_ZERO:
		ret = rbd_lib.rbd_aio_write_zeroes(rf->image, off, len, c, 0, 0);
		break;
	}
	if (ret) {
		rbd_lib.rbd_aio_release(c);
		goto out;
	}
	pthread_mutex_lock(&r.lock);
	while (!r.done) {
		r.sleeping = true;
		pthread_mutex_unlock(&r.lock);
		exec_sleep();
		pthread_mutex_lock(&r.lock);
		r.sleeping = false;
	}
	pthread_mutex_unlock(&r.lock);
	ret = r.res;
out:
	pthread_mutex_destroy(&r.lock);
	return ret;
}

static ssize_t rbd_file_pread(struct bfile *f, void *buf, size_t len, uint64_t off)
{
	struct rbd_file *rf = (struct rbd_file *)f;

	/* Like a file: short at the end. */
	if (off >= f->size_bytes)
		return 0;
	return rbd_run(rf, RBD_READ, buf, MIN((uint64_t)len, f->size_bytes - off), off);
}

static ssize_t rbd_file_pwrite(struct bfile *f, const void *buf, size_t len, uint64_t off,
			       int rw_flags)
{
	struct rbd_file *rf = (struct rbd_file *)f;
	ssize_t ret;

	if (f->flags & BFILE_RDONLY)
		return -EROFS;
	if (off + len > f->size_bytes)
		return -ENOSPC;
	ret = rbd_run(rf, RBD_WRITE, (void *)buf, len, off);
	/* No FUA in librbd: the write then a flush is as durable. */
	if (ret >= 0 && (rw_flags & RWF_DSYNC))
		ret = rbd_run(rf, RBD_FLUSH, NULL, 0, 0);
	return ret < 0 ? ret : (ssize_t)len;
}

static int rbd_file_flush(struct bfile *f)
{
	if (f->flags & BFILE_RDONLY)
		return 0;
	return rbd_run((struct rbd_file *)f, RBD_FLUSH, NULL, 0, 0);
}

static int rbd_file_fallocate(struct bfile *f, int mode, uint64_t off, uint64_t len)
{
	ssize_t ret;

	(void)mode;
	if (f->flags & BFILE_RDONLY)
		return -EROFS;
	if (off >= f->size_bytes)
		return 0;
	/*
	 * Every mode leaves zeros.  A discard would not always: librbd skips
	 * the parts of objects it does not cover whole.  Write-zeroes frees
	 * whole objects and zeroes the rest.
	 */
	ret = rbd_run((struct rbd_file *)f, RBD_ZERO, NULL, MIN(len, f->size_bytes - off), off);
	return ret < 0 ? ret : 0;
}

static int rbd_file_truncate(struct bfile *f, uint64_t bytes)
{
	struct rbd_file *rf = (struct rbd_file *)f;
	int ret;

	if (f->flags & BFILE_RDONLY)
		return -EROFS;
	ret = rbd_lib.rbd_resize(rf->image, bytes);
	if (!ret)
		f->size_bytes = bytes;
	return ret;
}

/* RBD files open in this process: librados's threads live while any is. */
static atomic_int rbd_files_open;

bool bfile_rbd_in_use(void)
{
	return atomic_load(&rbd_files_open) > 0;
}

static void rbd_file_close(struct bfile *f)
{
	struct rbd_file *rf = (struct rbd_file *)f;

	rbd_lib.rbd_close(rf->image);
	rados_lib.rados_ioctx_destroy(rf->io);
	rados_lib.rados_shutdown(rf->cluster);
	free(rf);
	atomic_fetch_sub(&rbd_files_open, 1);
}

static const struct bfile_ops rbd_file_ops = {
	.name		= "rbd",
	.pread		= rbd_file_pread,
	.pwrite		= rbd_file_pwrite,
	.flush		= rbd_file_flush,
	.fallocate	= rbd_file_fallocate,
	.truncate	= rbd_file_truncate,
	.close		= rbd_file_close,
};

/* What a name says. */
struct rbd_spec {
	char *pool, *image, *snap, *conf, *id;
	char *opts[16][2];	/* other KEY=VALUE pairs: Ceph options */
	unsigned int nr_opts;
	char *buf;
};

static void rbd_spec_free(struct rbd_spec *s)
{
	free(s->buf);
}

/*
 * Parses rbd:POOL/IMAGE[@SNAP][:KEY=VALUE...] into @s (pointing into a
 * copy).  QEMU escapes ':' and '@' in values with '\'.  Returns 0 or -EINVAL.
 */
static int rbd_parse_name(const char *name, struct rbd_spec *s)
{
	char *p, *w, *fields[18];
	unsigned int n = 0, i;

	s->buf = strdup(name + 4);
	if (!s->buf)
		return -ENOMEM;
	/* Split at unescaped ':', removing the escapes. */
	fields[n++] = s->buf;
	for (p = w = s->buf; *p; p++) {
		if (*p == '\\' && p[1]) {
			*w++ = *++p;
		} else if (*p == ':') {
			*w++ = '\0';
			if (n == ARRAY_SIZE(fields))
				return -EINVAL;
			fields[n++] = w;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	s->pool = fields[0];
	p = strchr(s->pool, '/');
	if (!p || !p[1] || p == s->pool)
		return -EINVAL;
	*p = '\0';
	s->image = p + 1;
	p = strchr(s->image, '@');
	if (p) {
		*p = '\0';
		s->snap = p + 1;
	}
	for (i = 1; i < n; i++) {
		char *eq = strchr(fields[i], '=');

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		if (!strcmp(fields[i], "conf"))
			s->conf = eq + 1;
		else if (!strcmp(fields[i], "id"))
			s->id = eq + 1;
		else if (s->nr_opts < ARRAY_SIZE(s->opts)) {
			s->opts[s->nr_opts][0] = fields[i];
			s->opts[s->nr_opts++][1] = eq + 1;
		}
	}
	return 0;
}

/* The json: form, as QEMU writes it into a backing name. */
static int rbd_parse_json(const char *name, struct rbd_spec *s)
{
	struct json_object *root = json_tokener_parse(name + 5), *o = root, *v;
	static const char *const keys[] = { "pool", "image", "snapshot", "conf", "user" };
	char **dst[] = { &s->pool, &s->image, &s->snap, &s->conf, &s->id };
	size_t total = 0, i;
	char *w;

	if (!root)
		return -EINVAL;
	if (json_object_object_get_ex(o, "file", &v) && !json_object_object_get_ex(o, "pool", NULL))
		o = v;
	for (i = 0; i < ARRAY_SIZE(keys); i++)
		if (json_object_object_get_ex(o, keys[i], &v))
			total += strlen(json_object_get_string(v)) + 1;
	s->buf = w = malloc(total + 1);
	if (!w) {
		json_object_put(root);
		return -ENOMEM;
	}
	for (i = 0; i < ARRAY_SIZE(keys); i++) {
		if (!json_object_object_get_ex(o, keys[i], &v))
			continue;
		*dst[i] = w;
		w = stpcpy(w, json_object_get_string(v)) + 1;
	}
	json_object_put(root);
	return s->pool && s->image ? 0 : -EINVAL;
}

/*
 * What in @s a name read from an image may not set, or NULL.  Ceph options
 * reach files of the host: conf= and keyring= are read, log_file= and
 * admin_socket= are created, so an image could make the server read or
 * write any file.  Such a name may name the config the user chose (or
 * Ceph's standard one) and set the few options that only say how to
 * reach and authenticate to the cluster, which --allow-protocol governs.
 */
static const char *rbd_spec_local_param(const struct rbd_spec *s)
{
	static const char *const safe[] = {
		"mon_host", "mon host", "auth_supported", "auth_client_required",
	};
	unsigned int i, j;

	if (s->conf && strcmp(s->conf, "/etc/ceph/ceph.conf") &&
	    (!rbd_default_conf || strcmp(s->conf, rbd_default_conf)))
		return "conf";
	for (i = 0; i < s->nr_opts; i++) {
		for (j = 0; j < ARRAY_SIZE(safe); j++)
			if (!strcmp(s->opts[i][0], safe[j]))
				break;
		if (j == ARRAY_SIZE(safe))
			return s->opts[i][0];
	}
	return NULL;
}

static int rbd_parse(const char *name, struct rbd_spec *s)
{
	return strncmp(name, "json:", 5) ? rbd_parse_name(name, s) : rbd_parse_json(name, s);
}

const char *bfile_rbd_local_param(const char *name)
{
	static char param[64];
	struct rbd_spec s = { 0 };
	const char *p = NULL;

	if (bfile_name_proto(name) == BFILE_PROTO_RBD && !rbd_parse(name, &s)) {
		p = rbd_spec_local_param(&s);
		if (p) {
			snprintf(param, sizeof(param), "%s", p);
			p = param;
		}
	}
	rbd_spec_free(&s);
	return p;
}

static int rbd_open_file(const char *name, unsigned int flags, struct bfile **fp)
{
	struct rbd_spec s = { 0 };
	struct rbd_file *rf;
	const char *what;
	uint64_t size;
	unsigned int i;
	int ret;

	ret = rbd_lib_load(name);
	if (ret)
		return ret;
	ret = rbd_parse(name, &s);
	if (ret) {
		img_err("%s: not an RBD name (rbd:POOL/IMAGE[@SNAP][:conf=PATH][:id=USER])", name);
		rbd_spec_free(&s);
		return ret;
	}
	what = rbd_spec_local_param(&s);
	if (what && !(flags & BFILE_USER_NAME)) {
		img_err("%s: %s= reaches local files, which a name read from an image may not set (give it with --rbd-conf)",
			name, what);
		rbd_spec_free(&s);
		return -EPERM;
	}
	rf = calloc(1, sizeof(*rf));
	if (!rf) {
		rbd_spec_free(&s);
		return -ENOMEM;
	}
	what = "connecting to the cluster";
	ret = rados_lib.rados_create(&rf->cluster, s.id ?: rbd_default_id);
	if (ret)
		goto err;
	what = "reading the Ceph config";
	ret = rados_lib.rados_conf_read_file(rf->cluster, s.conf ?: rbd_default_conf);
	for (i = 0; !ret && i < s.nr_opts; i++)
		ret = rados_lib.rados_conf_set(rf->cluster, s.opts[i][0], s.opts[i][1]);
	if (ret)
		goto err_shutdown;
	what = "connecting to the cluster";
	ret = rados_lib.rados_connect(rf->cluster);
	if (ret)
		goto err_shutdown;
	what = "pool";
	ret = rados_lib.rados_ioctx_create(rf->cluster, s.pool, &rf->io);
	if (ret)
		goto err_shutdown;
	what = "image";
	/* Read-only or a snapshot: no exclusive lock taken, as QEMU's. */
	if ((flags & BFILE_RDONLY) || s.snap)
		ret = rbd_lib.rbd_open_read_only(rf->io, s.image, &rf->image, s.snap);
	else
		ret = rbd_lib.rbd_open(rf->io, s.image, &rf->image, NULL);
	if (ret)
		goto err_ioctx;
	ret = rbd_lib.rbd_get_size(rf->image, &size);
	if (ret) {
		rbd_lib.rbd_close(rf->image);
		goto err_ioctx;
	}
	rf->f.fd = -1;
	rf->f.ops = &rbd_file_ops;
	rf->f.proto = BFILE_PROTO_RBD;
	rf->f.flags = flags | (s.snap ? BFILE_RDONLY : 0);
	rf->f.size_bytes = size;
	rf->f.can_flush = true;
	rf->f.can_fua = true;
	rf->f.can_trim = true;
	rf->f.can_zero = true;
	rf->f.name = strdup(name);
	rbd_spec_free(&s);
	atomic_fetch_add(&rbd_files_open, 1);
	*fp = &rf->f;
	return 0;

err_ioctx:
	rados_lib.rados_ioctx_destroy(rf->io);
err_shutdown:
	rados_lib.rados_shutdown(rf->cluster);
err:
	if (!strcmp(what, "pool") || !strcmp(what, "image"))
		img_err("%s: %s '%s': %s", name, what, !strcmp(what, "pool") ? s.pool : s.image,
			strerror(-ret));
	else
		img_err("%s: %s: %s", name, what, strerror(-ret));
	free(rf);
	rbd_spec_free(&s);
	return ret;
}

int bfile_rbd_open(const char *name, unsigned int flags, struct bfile **fp)
{
	sigset_t all, old;
	int ret;

	/*
	 * librados and librbd start their threads here, and a thread takes
	 * the mask of the one that made it.  With every signal blocked none
	 * of theirs can take a SIGTERM meant for the server's signalfd and
	 * kill the process before it closed the image: that left the image's
	 * exclusive lock held, and its next user waited 30 s for the dead
	 * client's watch to time out.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = rbd_open_file(name, flags, fp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}
