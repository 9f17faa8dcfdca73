// SPDX-License-Identifier: GPL-2.0
/*
 * NBD exports as files, through libnbd, driven by the calling thread's
 * executor: every request is a libnbd aio command whose completion wakes
 * the coroutine that issued it, and a pump coroutine per connection polls
 * libnbd's socket in the executor's ring (IORING_OP_POLL_ADD) and hands
 * readiness to libnbd (nbd_aio_notify_read/write).  No request blocks its
 * thread.
 *
 * Connections: one per executor (queue thread) that uses the file, made
 * when it first does, if the server allows multi-conn or the file is
 * read-only (then connections cannot disagree).  Otherwise there is one
 * connection, and an executor that finds it busy on another waits until
 * it is idle: correct, serialised across queues.
 *
 * Reconnection (QEMU's reconnect-delay and open-timeout): a connection
 * found dead is made again, every 50 ms doubling to 1 s; the requests
 * meanwhile are held for up to the reconnect delay and then issued again
 * on the new connection (NBD requests are idempotent), or failed with EIO.
 *
 * TLS (nbds://, nbds+unix://) is libnbd's: a URI's tls-psk-file or
 * tls-certificates makes it read that local file, which only a name the
 * user gave may do (BFILE_USER_NAME); without them libnbd looks in its
 * default certificate directories and then loads the system's CAs (what
 * it then verifies: docs/protocols.md).  A PSK's user is the URI's USER@
 * or ?tls-username=, else the user we run as.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libnbd.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bfile.h"
#include "user_data.h"

/* Connections one file makes at most: one per queue, and spares. */
#define NBD_MAX_CONNS	64

static struct {
	__typeof__(nbd_add_meta_context) *nbd_add_meta_context;
	__typeof__(nbd_aio_block_status) *nbd_aio_block_status;
	__typeof__(nbd_aio_flush) *nbd_aio_flush;
	__typeof__(nbd_aio_get_direction) *nbd_aio_get_direction;
	__typeof__(nbd_aio_get_fd) *nbd_aio_get_fd;
	__typeof__(nbd_aio_is_closed) *nbd_aio_is_closed;
	__typeof__(nbd_aio_is_dead) *nbd_aio_is_dead;
	__typeof__(nbd_aio_notify_read) *nbd_aio_notify_read;
	__typeof__(nbd_aio_notify_write) *nbd_aio_notify_write;
	__typeof__(nbd_aio_pread) *nbd_aio_pread;
	__typeof__(nbd_aio_pwrite) *nbd_aio_pwrite;
	__typeof__(nbd_aio_trim) *nbd_aio_trim;
	__typeof__(nbd_aio_zero) *nbd_aio_zero;
	__typeof__(nbd_can_flush) *nbd_can_flush;
	__typeof__(nbd_can_fua) *nbd_can_fua;
	__typeof__(nbd_can_meta_context) *nbd_can_meta_context;
	__typeof__(nbd_can_multi_conn) *nbd_can_multi_conn;
	__typeof__(nbd_can_trim) *nbd_can_trim;
	__typeof__(nbd_can_zero) *nbd_can_zero;
	__typeof__(nbd_close) *nbd_close;
	__typeof__(nbd_connect_uri) *nbd_connect_uri;
	__typeof__(nbd_create) *nbd_create;
	__typeof__(nbd_get_errno) *nbd_get_errno;
	__typeof__(nbd_get_error) *nbd_get_error;
	__typeof__(nbd_get_size) *nbd_get_size;
	__typeof__(nbd_is_read_only) *nbd_is_read_only;
	__typeof__(nbd_pread) *nbd_pread;
	__typeof__(nbd_set_tls_username) *nbd_set_tls_username;
	__typeof__(nbd_set_uri_allow_local_file) *nbd_set_uri_allow_local_file;
} nbd_lib;

static unsigned int nbd_reconnect_delay_ms;
static unsigned int nbd_open_timeout_ms;

/*
 * The library is loaded on the first open, not linked: its dependencies
 * (GnuTLS, libxml2, ICU) would cost every imgblk command, which mostly never opens a
 * remote file, their load time (about 20 ms with librbd) and the VM image
 * their size.  Returns 0, or -ELIBACC after one line naming @name.
 */
static pthread_once_t nbd_lib_once = PTHREAD_ONCE_INIT;
static char nbd_lib_why[256];
/*
 * The TLS user name (a PSK's) of a URI that names none, by USER@ or
 * ?tls-username=: the user we run as.
 * libnbd's own default, the login name (getlogin_r), is not there for a
 * server, which has no terminal: its connections after the first (one per
 * queue, reconnections) would fail where the command's had worked.
 */
static char nbd_tls_user[256];

/* Fills @tab's member @f with the library's symbol @f. */
#define SYM(tab, f)	((tab).f = (__typeof__(f) *)dlsym(h, #f))

static void nbd_lib_load_once(void)
{
	struct passwd pw, *res;
	char *pw_buf;
	void *h;

	h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h || !SYM(nbd_lib, nbd_add_meta_context) || !SYM(nbd_lib, nbd_aio_block_status) ||
	    !SYM(nbd_lib, nbd_aio_flush) || !SYM(nbd_lib, nbd_aio_get_direction) ||
	    !SYM(nbd_lib, nbd_aio_get_fd) || !SYM(nbd_lib, nbd_aio_is_closed) ||
	    !SYM(nbd_lib, nbd_aio_is_dead) || !SYM(nbd_lib, nbd_aio_notify_read) ||
	    !SYM(nbd_lib, nbd_aio_notify_write) || !SYM(nbd_lib, nbd_aio_pread) ||
	    !SYM(nbd_lib, nbd_aio_pwrite) || !SYM(nbd_lib, nbd_aio_trim) ||
	    !SYM(nbd_lib, nbd_aio_zero) || !SYM(nbd_lib, nbd_can_flush) ||
	    !SYM(nbd_lib, nbd_can_fua) || !SYM(nbd_lib, nbd_can_meta_context) ||
	    !SYM(nbd_lib, nbd_can_multi_conn) || !SYM(nbd_lib, nbd_can_trim) ||
	    !SYM(nbd_lib, nbd_can_zero) || !SYM(nbd_lib, nbd_close) ||
	    !SYM(nbd_lib, nbd_connect_uri) || !SYM(nbd_lib, nbd_create) ||
	    !SYM(nbd_lib, nbd_get_errno) || !SYM(nbd_lib, nbd_get_error) ||
	    !SYM(nbd_lib, nbd_get_size) || !SYM(nbd_lib, nbd_is_read_only) ||
	    !SYM(nbd_lib, nbd_pread) || !SYM(nbd_lib, nbd_set_tls_username) ||
	    !SYM(nbd_lib, nbd_set_uri_allow_local_file))
		goto fail;
	/* Here, on a thread's full stack: NSS may load modules. */
	pw_buf = malloc(16384);
	if (pw_buf && !getpwuid_r(geteuid(), &pw, pw_buf, 16384, &res) && res)
		snprintf(nbd_tls_user, sizeof(nbd_tls_user), "%s", pw.pw_name);
	free(pw_buf);
	return;
fail:
	snprintf(nbd_lib_why, sizeof(nbd_lib_why), "%s", dlerror() ?: "a symbol is missing");
}

static void *nbd_lib_load_thread(void *arg)
{
	(void)arg;
	pthread_once(&nbd_lib_once, nbd_lib_load_once);
	return NULL;
}

static int nbd_lib_load(const char *name)
{
	pthread_t th;

	/*
	 * On a thread of its own: the library's constructors run inside
	 * dlopen(), and they need more stack than a coroutine has.
	 */
	if (pthread_create(&th, NULL, nbd_lib_load_thread, NULL)) {
		img_err("%s: cannot start a thread to load the library", name);
		return -EAGAIN;
	}
	pthread_join(th, NULL);
	if (!nbd_lib_why[0])
		return 0;
	img_err("%s: NBD needs libnbd (apt install libnbd0) (%s)", name, nbd_lib_why);
	return -ELIBACC;
}

void bfile_nbd_set_timeouts(unsigned int reconnect_delay_ms, unsigned int open_timeout_ms)
{
	nbd_reconnect_delay_ms = reconnect_delay_ms;
	nbd_open_timeout_ms = open_timeout_ms;
}

void bfile_nbd_get_timeouts(unsigned int *reconnect_delay_ms, unsigned int *open_timeout_ms)
{
	*reconnect_delay_ms = nbd_reconnect_delay_ms;
	*open_timeout_ms = nbd_open_timeout_ms;
}

struct nbd_req;

struct nbd_conn {
	struct nbd_file *nf;
	struct nbd_handle *h;
	struct img_exec *owner;		/* the executor using it, if any */
	unsigned int users;		/* coroutines of the owner using it */
	unsigned int in_flight;		/* commands issued and not completed */
	struct nbd_req *reqs;		/* those commands */
	bool pumping;			/* a pump coroutine runs for it */
	bool reconnecting;
	struct exec_waiter *pump_w;	/* the pump's pending poll, if any */
	short pump_events;		/* what that poll waits for */
};

struct nbd_file {
	struct bfile f;
	char *uri;
	bool user_name;			/* BFILE_USER_NAME: may name local files */
	char *tls_user;			/* the URI's ?tls-username=, or NULL */
	bool multi_conn;
	bool can_status;		/* base:allocation negotiated */
	pthread_mutex_t lock;		/* conns, nr_conns, owners */
	struct exec_waitq idle_wq;	/* executors waiting for a connection */
	struct nbd_conn *conns[NBD_MAX_CONNS];
	unsigned int nr_conns;
};

/*
 * One command.  Heap-allocated and counted: the issuing coroutine holds
 * one reference, libnbd the other until it calls the closure's free
 * (which it may do after the connection died and the coroutine moved on).
 */
struct nbd_req {
	struct coro *co;
	struct nbd_conn *c;
	struct nbd_req *next, **pprev;	/* on c->reqs while in flight */
	int res;
	bool done;
	bool sleeping;
	int refs;
	/* block status: the first extent */
	uint64_t ext_len;
	uint32_t ext_flags;
};

static void nbd_conn_release(struct nbd_conn *c);

static void nbd_req_put(struct nbd_req *r)
{
	if (--r->refs == 0)
		free(r);
}

static void nbd_req_free_cb(void *opaque)
{
	nbd_req_put(opaque);
}

/* Completes @r with @res and wakes its coroutine. */
static void nbd_req_complete(struct nbd_req *r, int res)
{
	if (r->done)
		return;
	r->res = res;
	r->done = true;
	r->c->in_flight--;
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
	if (r->sleeping)
		exec_wake(r->co);
}

/* libnbd's completion callback, on the thread that drives the connection. */
static int nbd_req_done_cb(void *opaque, int *error)
{
	nbd_req_complete(opaque, *error ? -*error : 0);
	return 1;
}

static int nbd_extent_cb(void *opaque, const char *ctx, uint64_t off, uint32_t *ent,
			 size_t n, int *error)
{
	struct nbd_req *r = opaque;

	(void)off;
	(void)error;
	if (strcmp(ctx, LIBNBD_CONTEXT_BASE_ALLOCATION) || n < 2 || r->ext_len)
		return 0;
	r->ext_len = ent[0];
	r->ext_flags = ent[1];
	return 0;
}

static int64_t nbd_ms_now(void)
{
	return exec_now_ns() / 1000000;
}

/*
 * Makes a connection to @nf's URI, blocking.  Returns the handle or NULL
 * (error in libnbd).
 */
static struct nbd_handle *nbd_connect(const struct nbd_file *nf)
{
	struct nbd_handle *h = nbd_lib.nbd_create();
	const char *uri = nf->uri;

	if (!h)
		return NULL;
	/* Block status for map and convert; a server without it still works. */
	nbd_lib.nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	/* The URI's user@, if any, replaces it. */
	if (nf->tls_user || nbd_tls_user[0])
		nbd_lib.nbd_set_tls_username(h, nf->tls_user ?: nbd_tls_user);
	if (nf->user_name)
		nbd_lib.nbd_set_uri_allow_local_file(h, true);
	if (nbd_lib.nbd_connect_uri(h, uri) == -1) {
		/* The error is the thread's: keep it past the close. */
		int err = nbd_lib.nbd_get_errno();
		char *msg = strdup(nbd_lib.nbd_get_error() ?: "");

		nbd_lib.nbd_close(h);
		img_dbg(IMG_DBG_IO, "nbd: %s: %s", uri, msg ?: "");
		free(msg);
		errno = err ?: EIO;
		return NULL;
	}
	return h;
}

/*
 * The pump: polls the connection's socket for what libnbd waits for and
 * tells libnbd, while commands are in flight.  A dead connection fails
 * nothing itself: libnbd completes its commands with an error.
 */
static void nbd_pump(void *arg)
{
	struct nbd_conn *c = arg;

	while (c->in_flight && c->h && !nbd_lib.nbd_aio_is_dead(c->h) && !nbd_lib.nbd_aio_is_closed(c->h)) {
		unsigned int dir = nbd_lib.nbd_aio_get_direction(c->h);
		struct io_uring_sqe *sqe = exec_get_sqe();
		struct exec_waiter w;
		short ev = POLLIN;
		int res;

		if (dir & LIBNBD_AIO_DIRECTION_WRITE)
			ev |= POLLOUT;
		io_uring_prep_poll_add(sqe, nbd_lib.nbd_aio_get_fd(c->h), ev);
		c->pump_w = &w;
		c->pump_events = ev;
		exec_submit(sqe, &w);
		res = exec_wait(&w);
		c->pump_w = NULL;
		if (res == -ECANCELED)
			continue;
		if (res < 0)
			break;
		if (res & (POLLIN | POLLHUP | POLLERR))
			nbd_lib.nbd_aio_notify_read(c->h);
		if ((res & POLLOUT) && c->h)
			nbd_lib.nbd_aio_notify_write(c->h);
	}
	/* A connection that died (or a ring that failed) answers nothing more. */
	while (c->reqs)
		nbd_req_complete(c->reqs, -ENOTCONN);
	c->pumping = false;
	nbd_conn_release(c);
}

/*
 * After issuing a command on @c, or completing one: make sure a pump sends
 * and receives while commands are in flight, and that it polls for what
 * libnbd now waits for (its poll is cancelled to look again), and stops
 * once none are.  Returns 0, or -errno if no pump can run.
 */
static int nbd_kick(struct nbd_conn *c)
{
	if (!c->pumping) {
		if (!c->in_flight)
			return 0;
		c->pumping = true;
		if (exec_spawn(exec_current(), nbd_pump, c)) {
			c->pumping = false;
			return -ENOMEM;
		}
		return 0;
	}
	if (c->pump_w && (!c->in_flight || (!(c->pump_events & POLLOUT) &&
	    (nbd_lib.nbd_aio_get_direction(c->h) & LIBNBD_AIO_DIRECTION_WRITE)))) {
		struct io_uring_sqe *sqe = exec_get_sqe();

		io_uring_prep_poll_remove(sqe, ud_exec(c->pump_w));
		exec_io(sqe);
	}
	return 0;
}

/*
 * The connection the calling executor uses, claimed for it: its own, an
 * idle one, or a new one if the server allows several (multi-conn, or a
 * read-only file); otherwise waits for the one to be idle.  Returns NULL
 * (errno set) if none can be had.
 */
static struct nbd_conn *nbd_conn_get(struct nbd_file *nf)
{
	struct img_exec *me = exec_current();
	struct nbd_conn *c = NULL;
	unsigned int i;

	pthread_mutex_lock(&nf->lock);
	for (;;) {
		for (i = 0; i < nf->nr_conns; i++)
			if (nf->conns[i]->owner == me)
				goto out;
		for (i = 0; i < nf->nr_conns; i++) {
			if (!nf->conns[i]->owner) {
				nf->conns[i]->owner = me;
				goto out;
			}
		}
		if ((nf->multi_conn || (nf->f.flags & BFILE_RDONLY)) &&
		    nf->nr_conns < NBD_MAX_CONNS)
			break;
		exec_waitq_sleep(&nf->idle_wq, &nf->lock);
	}
	pthread_mutex_unlock(&nf->lock);
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->h = nbd_connect(nf);
	if (!c->h) {
		free(c);
		return NULL;
	}
	c->nf = nf;
	c->owner = me;
	c->users = 1;
	pthread_mutex_lock(&nf->lock);
	nf->conns[nf->nr_conns++] = c;
	pthread_mutex_unlock(&nf->lock);
	return c;
out:
	c = nf->conns[i];
	c->users++;
	pthread_mutex_unlock(&nf->lock);
	return c;
}

/*
 * Lets another executor take @c once nothing of its owner uses it: no
 * coroutine, no pump (which lives on the owner's ring).
 */
static void nbd_conn_release(struct nbd_conn *c)
{
	struct nbd_file *nf = c->nf;

	pthread_mutex_lock(&nf->lock);
	if (!c->users && !c->pumping) {
		c->owner = NULL;
		exec_waitq_wake_all(&nf->idle_wq);
	}
	pthread_mutex_unlock(&nf->lock);
}

static void nbd_conn_put(struct nbd_conn *c)
{
	pthread_mutex_lock(&c->nf->lock);
	c->users--;
	pthread_mutex_unlock(&c->nf->lock);
	nbd_conn_release(c);
}

/*
 * Makes @c's connection again after it died, retrying until @deadline_ms
 * (exec_now_ns() time).  Other coroutines on the same connection wait for
 * the one doing it.  Returns 0 or -EIO.
 */
static int nbd_reconnect(struct nbd_file *nf, struct nbd_conn *c, int64_t deadline_ms)
{
	unsigned int delay = 50;

	while (c->reconnecting) {
		if (nbd_ms_now() >= deadline_ms)
			return -EIO;
		exec_sleep_ms(10);
	}
	if (c->h && !nbd_lib.nbd_aio_is_dead(c->h) && !nbd_lib.nbd_aio_is_closed(c->h))
		return 0;
	c->reconnecting = true;
	/* In-flight commands complete (with an error) as libnbd closes the handle. */
	if (c->h && !c->pumping) {
		nbd_lib.nbd_close(c->h);
		c->h = NULL;
	}
	while (c->pumping)
		exec_sleep_ms(1);
	if (c->h) {
		nbd_lib.nbd_close(c->h);
		c->h = NULL;
	}
	for (;;) {
		c->h = nbd_connect(nf);
		if (c->h) {
			img_log("%s: reconnected", nf->f.name);
			break;
		}
		if (nbd_ms_now() + delay > deadline_ms)
			break;
		exec_sleep_ms(delay);
		delay = MIN(delay * 2, 1000u);
	}
	c->reconnecting = false;
	return c->h ? 0 : -EIO;
}

enum nbd_cmd { NBD_READ, NBD_WRITE, NBD_FLUSH, NBD_TRIM, NBD_ZERO, NBD_STATUS };

/* Issues one command of @r on @c.  Returns libnbd's cookie or -1. */
static int64_t nbd_issue(struct nbd_conn *c, struct nbd_req *r, enum nbd_cmd cmd, void *buf,
			 uint64_t len, uint64_t off, uint32_t flags)
{
	nbd_completion_callback cb = {
		.callback = nbd_req_done_cb, .user_data = r, .free = nbd_req_free_cb,
	};

	switch (cmd) {
	case NBD_READ:
		return nbd_lib.nbd_aio_pread(c->h, buf, len, off, cb, flags);
	case NBD_WRITE:
		return nbd_lib.nbd_aio_pwrite(c->h, buf, len, off, cb, flags);
	case NBD_FLUSH:
		return nbd_lib.nbd_aio_flush(c->h, cb, 0);
	case NBD_TRIM:
		return nbd_lib.nbd_aio_trim(c->h, len, off, cb, flags);
	case NBD_ZERO:
		return nbd_lib.nbd_aio_zero(c->h, len, off, cb, flags);
	case NBD_STATUS:
		/* The extent callback takes no reference: its free does nothing. */
		return nbd_lib.nbd_aio_block_status(c->h, len, off,
			(nbd_extent_callback){ .callback = nbd_extent_cb, .user_data = r },
			cb, 0);
	}
	return -1;
}

/*
 * Issues @r's command on @c and waits for it; the caller keeps its
 * reference to @r.  Returns 0 or -errno.
 */
static int nbd_wait_one(struct nbd_conn *c, struct nbd_req *r, enum nbd_cmd cmd, void *buf,
			uint64_t len, uint64_t off, uint32_t flags)
{
	if (!c->h || nbd_lib.nbd_aio_is_dead(c->h) || nbd_lib.nbd_aio_is_closed(c->h))
		return -ENOTCONN;
	r->refs++;		/* libnbd's, dropped by its free call even on failure */
	c->in_flight++;
	r->next = c->reqs;
	r->pprev = &c->reqs;
	if (r->next)
		r->next->pprev = &r->next;
	c->reqs = r;
	if (nbd_issue(c, r, cmd, buf, len, off, flags) == -1) {
		int err = nbd_lib.nbd_get_errno() ?: EIO;

		nbd_req_complete(r, -err);
		return -err;
	}
	if (nbd_kick(c))
		nbd_req_complete(r, -ENOMEM);
	while (!r->done) {
		r->sleeping = true;
		exec_sleep();
		r->sleeping = false;
	}
	/* The last reply is in: the pump stops polling. */
	nbd_kick(c);
	return r->res;
}

/*
 * Runs one command from a coroutine, reconnecting and reissuing it while
 * the reconnect delay allows.  @out, if set, receives the first extent of
 * a block status.  Returns 0 or -errno.
 */
static int nbd_run(struct nbd_file *nf, enum nbd_cmd cmd, void *buf, uint64_t len,
		   uint64_t off, uint32_t flags, struct nbd_req *out)
{
	int64_t deadline = -1;
	struct nbd_conn *c;
	int ret;

	c = nbd_conn_get(nf);
	if (!c)
		return -(errno ?: EIO);
	for (;;) {
		struct nbd_req *r = calloc(1, sizeof(*r));
		bool lost;

		if (!r) {
			ret = -ENOMEM;
			break;
		}
		r->co = exec_self();
		r->c = c;
		r->refs = 1;
		ret = nbd_wait_one(c, r, cmd, buf, len, off, flags);
		if (out && !ret) {
			out->ext_len = r->ext_len;
			out->ext_flags = r->ext_flags;
		}
		nbd_req_put(r);
		/* Only a lost connection is retried: the server's errors are final. */
		lost = ret == -ENOTCONN || !c->h || nbd_lib.nbd_aio_is_dead(c->h) ||
		       nbd_lib.nbd_aio_is_closed(c->h);
		if (!ret || !lost || !nbd_reconnect_delay_ms)
			break;
		if (deadline < 0)
			deadline = nbd_ms_now() + nbd_reconnect_delay_ms;
		ret = nbd_reconnect(nf, c, deadline);
		if (ret)
			break;
	}
	nbd_conn_put(c);
	return ret;
}

/* A blocking call from a thread without an executor (probing): no connection of a queue. */
static ssize_t nbd_pread_blocking(struct nbd_file *nf, void *buf, size_t len, uint64_t off)
{
	struct nbd_handle *h = nbd_connect(nf);
	int ret;

	if (!h)
		return -errno;
	ret = nbd_lib.nbd_pread(h, buf, len, off, 0);
	if (ret == -1)
		ret = -(nbd_lib.nbd_get_errno() ?: EIO);
	nbd_lib.nbd_close(h);
	return ret ? ret : (ssize_t)len;
}

static ssize_t nbd_file_pread(struct bfile *f, void *buf, size_t len, uint64_t off)
{
	struct nbd_file *nf = (struct nbd_file *)f;
	size_t n;
	int ret;

	/* Like a file: a read past the end is short, not an error. */
	if (off >= f->size_bytes)
		return 0;
	n = MIN((uint64_t)len, f->size_bytes - off);
	if (!exec_self())
		return nbd_pread_blocking(nf, buf, n, off);
	ret = nbd_run(nf, NBD_READ, buf, n, off, 0, NULL);
	return ret ? ret : (ssize_t)n;
}

static ssize_t nbd_file_pwrite(struct bfile *f, const void *buf, size_t len, uint64_t off,
			       int rw_flags)
{
	struct nbd_file *nf = (struct nbd_file *)f;
	uint32_t flags = 0;
	int ret;

	if (f->flags & BFILE_RDONLY)
		return -EROFS;
	if (off + len > f->size_bytes)
		return -ENOSPC;
	if (rw_flags & RWF_DSYNC) {
		/* No FUA: the write, then a flush, is durable the same. */
		if (f->can_fua)
			flags |= LIBNBD_CMD_FLAG_FUA;
	}
	ret = nbd_run(nf, NBD_WRITE, (void *)buf, len, off, flags, NULL);
	if (!ret && (rw_flags & RWF_DSYNC) && !f->can_fua && f->can_flush)
		ret = nbd_run(nf, NBD_FLUSH, NULL, 0, 0, 0, NULL);
	return ret ? ret : (ssize_t)len;
}

static int nbd_file_flush(struct bfile *f)
{
	struct nbd_file *nf = (struct nbd_file *)f;

	if (!f->can_flush || (f->flags & BFILE_RDONLY))
		return 0;
	return nbd_run(nf, NBD_FLUSH, NULL, 0, 0, 0, NULL);
}

static int nbd_file_fallocate(struct bfile *f, int mode, uint64_t off, uint64_t len)
{
	struct nbd_file *nf = (struct nbd_file *)f;

	if (f->flags & BFILE_RDONLY)
		return -EROFS;
	if (off >= f->size_bytes)
		return mode & FALLOC_FL_KEEP_SIZE ? 0 : -ENOSPC;
	len = MIN(len, f->size_bytes - off);
	/*
	 * Every mode must leave zeros: a reserve (mode 0) is asked for space
	 * the caller then takes as zeros, and an export's blocks are not new.
	 */
	if (!f->can_zero)
		return -EOPNOTSUPP;
	/* PUNCH_HOLE lets the server unmap; ZERO_RANGE and reserving keep the blocks. */
	return nbd_run(nf, NBD_ZERO, NULL, len, off,
		       (mode & FALLOC_FL_PUNCH_HOLE) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE, NULL);
}

static int nbd_file_block_status(struct bfile *f, uint64_t off, uint64_t *len, bool *hole)
{
	struct nbd_file *nf = (struct nbd_file *)f;
	struct nbd_req r = { 0 };
	uint64_t n;
	int ret;

	if (!nf->can_status)
		return -EOPNOTSUPP;
	if (off >= f->size_bytes) {
		*hole = true;
		return 0;
	}
	/* The protocol's lengths are 32-bit. */
	n = MIN(MIN(*len, f->size_bytes - off), (uint64_t)UINT32_MAX & ~4095ULL);
	ret = nbd_run(nf, NBD_STATUS, NULL, n, off, 0, &r);
	if (ret)
		return ret;
	if (!r.ext_len)
		return -EIO;
	*len = MIN(n, r.ext_len);
	*hole = r.ext_flags & LIBNBD_STATE_ZERO;
	return 0;
}

static void nbd_file_close(struct bfile *f)
{
	struct nbd_file *nf = (struct nbd_file *)f;
	unsigned int i;

	for (i = 0; i < nf->nr_conns; i++) {
		if (nf->conns[i]->h)
			nbd_lib.nbd_close(nf->conns[i]->h);
		free(nf->conns[i]);
	}
	pthread_mutex_destroy(&nf->lock);
	free(nf->tls_user);
	free(nf->uri);
	free(nf);
}

static const struct bfile_ops nbd_file_ops = {
	.name		= "nbd",
	.pread		= nbd_file_pread,
	.pwrite		= nbd_file_pwrite,
	.flush		= nbd_file_flush,
	.fallocate	= nbd_file_fallocate,
	.block_status	= nbd_file_block_status,
	.close		= nbd_file_close,
};

/* A string member @key of @o, or NULL. */
static const char *nbd_json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

/*
 * Appends @s to the string in *@out (malloc'ed, may be NULL), with every
 * byte a URI path or query value cannot hold as is percent-encoded; '/'
 * is kept when @keep_slash.  Returns 0 or -ENOMEM.
 */
static int nbd_uri_append(char **out, const char *s, bool keep_slash)
{
	size_t len = *out ? strlen(*out) : 0;
	char *p = realloc(*out, len + 3 * strlen(s) + 1);

	if (!p)
		return -ENOMEM;
	*out = p;
	p += len;
	for (; *s; s++) {
		unsigned char c = *s;

		if (isalnum(c) || strchr("-._~", c) || (keep_slash && c == '/'))
			*p++ = c;
		else
			p += sprintf(p, "%%%02X", c);
	}
	*p = 0;
	return 0;
}

/*
 * The URI of a json: name with driver nbd (QEMU's "server": {"type":
 * "unix", "path"} or {"type": "inet", "host", "port"}, its older "path",
 * "host", "port", and "export"), maybe nested as "file".  The export and
 * the path are percent-encoded and the host and port checked, so that no
 * value adds a part of its own to the URI (a query parameter that reads
 * a local file).  Returns a new string, or NULL after one line naming what
 * is wrong.
 */
static char *nbd_json_uri(const char *name)
{
	struct json_object *root = json_tokener_parse(name + 5), *o = root, *file, *srv;
	const char *drv, *exp, *path, *host, *port, *c;
	char *uri = NULL, *e = NULL, *p = NULL;
	bool v6;

	if (!root) {
		img_err("%s: not valid JSON", name);
		return NULL;
	}
	drv = nbd_json_str(o, "driver");
	if ((!drv || strcmp(drv, "nbd")) && json_object_object_get_ex(o, "file", &file)) {
		o = file;
		drv = nbd_json_str(o, "driver");
	}
	if (!drv || strcmp(drv, "nbd")) {
		img_err("%s: the driver is not nbd", name);
		goto out;
	}
	exp = nbd_json_str(o, "export") ?: "";
	if (json_object_object_get_ex(o, "server", &srv))
		o = srv;
	path = nbd_json_str(o, "path");
	host = nbd_json_str(o, "host");
	port = nbd_json_str(o, "port");
	if (!path && !host) {
		img_err("%s: names no server (path, or host and port)", name);
		goto out;
	}
	if (nbd_uri_append(&e, exp, false) || (path && nbd_uri_append(&p, path, true))) {
		img_err("%s: %s", name, strerror(ENOMEM));
		goto out;
	}
	if (path) {
		if (asprintf(&uri, "nbd+unix:///%s?socket=%s", e, p) < 0)
			uri = NULL;
		goto out;
	}
	for (c = host; *c && (isalnum((unsigned char)*c) || strchr(".-:", *c)); c++)
		;
	if (*c || !*host || (port && (!*port || port[strspn(port, "0123456789")]))) {
		img_err("%s: not a host and port: %s%s%s", name, host, port ? " " : "", port ?: "");
		goto out;
	}
	/* An IPv6 address goes in brackets. */
	v6 = strchr(host, ':');
	if (asprintf(&uri, "nbd://%s%s%s%s%s/%s", v6 ? "[" : "", host, v6 ? "]" : "",
		     port ? ":" : "", port ?: "", e) < 0)
		uri = NULL;
out:
	free(e);
	free(p);
	json_object_put(root);
	return uri;
}

/*
 * The URI of a name in QEMU's older syntax, which it still takes as a file
 * name and in backing names: nbd:HOST:PORT[:exportname=NAME] (HOST may be
 * an IPv6 address in brackets) and nbd:unix:PATH[:exportname=NAME].
 * Returns a new string, or NULL after one line naming what is wrong.
 */
static char *nbd_legacy_uri(const char *name)
{
	const char *spec = name + 4, *exp = strstr(spec, ":exportname=");
	size_t n = exp ? (size_t)(exp - spec) : strlen(spec);
	char *host = strndup(spec, n), *uri = NULL, *port, *p;

	if (!host)
		return NULL;
	exp = exp ? exp + strlen(":exportname=") : "";
	if (!strncmp(host, "unix:", 5)) {
		if (!host[5]) {
			img_err("%s: names no socket (nbd:unix:PATH[:exportname=NAME])", name);
			goto out;
		}
		uri = strdup("nbd+unix:///");
		if (!uri || nbd_uri_append(&uri, exp, false))
			goto nomem;
		p = realloc(uri, strlen(uri) + sizeof("?socket="));
		if (!p)
			goto nomem;
		uri = strcat(p, "?socket=");
		if (nbd_uri_append(&uri, host + 5, true))
			goto nomem;
		goto out;
	}
	/* An IPv6 address is in brackets, and has colons of its own. */
	port = host[0] == '[' ? strstr(host, "]:") : strchr(host, ':');
	if (port && host[0] == '[')
		port++;
	if (!port || port == host || !port[1]) {
		img_err("%s: not an NBD name (nbd:HOST:PORT[:exportname=NAME] or nbd:unix:PATH[:exportname=NAME])",
			name);
		goto out;
	}
	*port++ = 0;
	if (asprintf(&uri, "nbd://%s:%s/", host, port) < 0) {
		uri = NULL;
		goto nomem;
	}
	if (nbd_uri_append(&uri, exp, false))
		goto nomem;
	goto out;
nomem:
	free(uri);
	uri = NULL;
	img_err("%s: %s", name, strerror(ENOMEM));
out:
	free(host);
	return uri;
}

/* Whether @name is an NBD URI (not json: nor QEMU's older syntax). */
static bool nbd_name_is_uri(const char *name)
{
	return !strncmp(name, "nbd://", 6) || !strncmp(name, "nbd+unix://", 11) ||
	       !strncmp(name, "nbds://", 7) || !strncmp(name, "nbds+unix://", 12);
}

/*
 * Percent-decodes the @n bytes at @p into @out (@size bytes, terminated).
 * Returns false if they do not fit.
 */
static bool nbd_unescape(const char *p, size_t n, char *out, size_t size)
{
	size_t o = 0, i;

	for (i = 0; i < n; i++) {
		unsigned int c = (unsigned char)p[i];

		if (c == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) &&
		    isxdigit((unsigned char)p[i + 2])) {
			sscanf(p + i + 1, "%2x", &c);
			i += 2;
		}
		if (o + 1 >= size)
			return false;
		out[o++] = c;
	}
	out[o] = 0;
	return true;
}

/*
 * Finds the query parameter @key of the NBD URI @uri, its name compared
 * decoded as libnbd compares it; sets *@val and *@len to its value, still
 * encoded.  A query is split on '&' and ';' (libnbd splits on either), so
 * whatever libnbd finds is found.  Returns whether @key is there.
 */
static bool nbd_query_find(const char *uri, const char *key, const char **val, size_t *len)
{
	const char *p = strchr(uri, '?');
	char name[64];

	if (!nbd_name_is_uri(uri) || !p)
		return false;
	for (p++; *p && *p != '#'; ) {
		size_t n = strcspn(p, "&;#"), k = strcspn(p, "=&;#");

		if (nbd_unescape(p, MIN(n, k), name, sizeof(name)) && !strcmp(name, key)) {
			*val = p + MIN(n, k + 1);
			*len = n - MIN(n, k + 1);
			return true;
		}
		p += n;
		if (*p == '&' || *p == ';')
			p++;
	}
	return false;
}

const char *bfile_nbd_local_param(const char *name)
{
	static const char *const local[] = { "tls-psk-file", "tls-certificates" };
	const char *val;
	unsigned int i;
	size_t len;

	for (i = 0; i < ARRAY_SIZE(local); i++)
		if (nbd_query_find(name, local[i], &val, &len))
			return local[i];
	return NULL;
}

int bfile_nbd_open(const char *name, unsigned int flags, struct bfile **fp)
{
	int64_t deadline = nbd_ms_now() + nbd_open_timeout_ms;
	struct nbd_file *nf;
	struct nbd_conn *c;
	struct nbd_handle *h;
	const char *param, *val;
	int64_t size;
	size_t len;
	int ret, err;

	ret = nbd_lib_load(name);
	if (ret)
		return ret;
	nf = calloc(1, sizeof(*nf));
	c = calloc(1, sizeof(*c));
	if (!nf || !c) {
		ret = -ENOMEM;
		img_err("%s: %s", name, strerror(-ret));
		goto err;
	}
	if (!strncmp(name, "json:", 5))
		nf->uri = nbd_json_uri(name);
	else if (bfile_nbd_name_legacy(name))
		nf->uri = nbd_legacy_uri(name);
	else
		nf->uri = strdup(name);
	if (!nf->uri) {
		ret = -EINVAL;
		goto err;
	}
	/*
	 * libnbd refuses these too, but in words for its caller; and the
	 * URI checked is the one a json: name turned into.
	 */
	nf->user_name = flags & BFILE_USER_NAME;
	param = bfile_nbd_local_param(nf->uri);
	if (param && !nf->user_name) {
		img_err("%s: %s names a local file, which a name read from an image may not",
			name, param);
		ret = -EPERM;
		goto err;
	}
	/*
	 * The TLS user is the URI's user@ (the NBD URI standard's place, and
	 * libnbd's); ?tls-username=, as nbdkit's nbd plugin names it, which
	 * libnbd would ignore, is taken too.
	 */
	if (nbd_query_find(nf->uri, "tls-username", &val, &len)) {
		nf->tls_user = malloc(len + 1);
		if (!nf->tls_user || !nbd_unescape(val, len, nf->tls_user, len + 1)) {
			ret = -ENOMEM;
			img_err("%s: %s", name, strerror(-ret));
			goto err;
		}
	}
	/* With an open timeout, a server that is not up yet is waited for. */
	while (!(h = nbd_connect(nf))) {
		err = errno;
		if (nbd_ms_now() + 100 > deadline) {
			img_err("%s: %s", name, nbd_lib.nbd_get_error() ?: strerror(err));
			ret = -err;
			goto err;
		}
		if (exec_self())
			exec_sleep_ms(100);
		else
			nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	size = nbd_lib.nbd_get_size(h);
	if (size < 0) {
		img_err("%s: %s", name, nbd_lib.nbd_get_error());
		nbd_lib.nbd_close(h);
		ret = -EIO;
		goto err;
	}
	if (!(flags & BFILE_RDONLY) && nbd_lib.nbd_is_read_only(h) == 1) {
		img_err("%s: the export is read-only", name);
		nbd_lib.nbd_close(h);
		ret = -EROFS;
		goto err;
	}
	c->h = h;
	c->nf = nf;
	nf->conns[nf->nr_conns++] = c;
	nf->can_status = nbd_lib.nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
	nf->multi_conn = nbd_lib.nbd_can_multi_conn(h) == 1;
	nf->f.fd = -1;
	nf->f.ops = &nbd_file_ops;
	nf->f.proto = BFILE_PROTO_NBD;
	nf->f.flags = flags;
	nf->f.size_bytes = size;
	nf->f.can_flush = nbd_lib.nbd_can_flush(h) == 1;
	nf->f.can_fua = nbd_lib.nbd_can_fua(h) == 1;
	nf->f.can_trim = nbd_lib.nbd_can_trim(h) == 1;
	nf->f.can_zero = nbd_lib.nbd_can_zero(h) == 1;
	nf->f.name = strdup(name);
	pthread_mutex_init(&nf->lock, NULL);
	exec_waitq_init(&nf->idle_wq);
	*fp = &nf->f;
	return 0;
err:
	if (nf) {
		free(nf->tls_user);
		free(nf->uri);
	}
	free(nf);
	free(c);
	return ret;
}
