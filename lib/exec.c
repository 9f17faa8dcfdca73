// SPDX-License-Identifier: GPL-2.0
/*
 * The per-thread executor: stackful coroutines over one io_uring.
 * Design and rationale: docs/executor.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "user_data.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#define EXEC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EXEC_ASAN 1
#endif
#endif
#ifdef EXEC_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

/*
 * Stack size of one coroutine.  Deep enough for a format engine's request
 * path with a decompression call on it; only touched pages cost memory.
 */
#define CORO_STACK_BYTES	(256 * 1024)
#define CORO_GUARD_BYTES	4096

enum coro_state {
	CORO_RUNNING,
	CORO_READY,
	CORO_SLEEPING,
	CORO_DONE,
};

struct coro {
	void *sp;			/* saved stack pointer while switched out */
	struct img_exec *exec;
	void (*fn)(void *arg);
	void *arg;
	struct coro *next;		/* ready, remote, waitq or free list */
	enum coro_state state;
	void *stack;			/* mmap'ed, guard page at the bottom */
#ifdef EXEC_ASAN
	void *asan_fake;
#endif
};

void coro_switch(void **save_sp, void *load_sp);
void coro_entry(void);
void coro_main(struct coro *co);

static __thread struct img_exec *exec_tls;

struct img_exec *exec_current(void)
{
	return exec_tls;
}

struct coro *exec_self(void)
{
	return exec_tls ? exec_tls->cur : NULL;
}

#ifdef EXEC_ASAN
static __thread const void *asan_sched_bottom;
static __thread size_t asan_sched_size;
#endif

/* Scheduler -> coroutine. */
static void coro_resume(struct img_exec *e, struct coro *co)
{
#ifdef EXEC_ASAN
	void *fake = NULL;

	__sanitizer_start_switch_fiber(&fake, (char *)co->stack + CORO_GUARD_BYTES,
				       CORO_STACK_BYTES);
#endif
	e->cur = co;
	co->state = CORO_RUNNING;
	coro_switch(&e->sched_sp, co->sp);
	e->cur = NULL;
#ifdef EXEC_ASAN
	__sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* Coroutine -> scheduler; returns when the coroutine is resumed. */
static void coro_suspend(struct coro *co)
{
#ifdef EXEC_ASAN
	/* A finished coroutine's stack is never used again: pass NULL. */
	__sanitizer_start_switch_fiber(co->state == CORO_DONE ? NULL : &co->asan_fake,
				       asan_sched_bottom, asan_sched_size);
#endif
	coro_switch(&co->sp, co->exec->sched_sp);
#ifdef EXEC_ASAN
	__sanitizer_finish_switch_fiber(co->asan_fake, &asan_sched_bottom,
					&asan_sched_size);
#endif
}

void coro_main(struct coro *co)
{
#ifdef EXEC_ASAN
	__sanitizer_finish_switch_fiber(NULL, &asan_sched_bottom, &asan_sched_size);
#endif
	co->fn(co->arg);
	co->state = CORO_DONE;
	coro_suspend(co);
	abort();	/* a finished coroutine is never resumed */
}

/* Builds the frame coro_switch() pops when @co first runs. */
static void coro_prepare(struct coro *co)
{
	uint64_t *sp = (uint64_t *)((char *)co->stack + CORO_GUARD_BYTES +
				    CORO_STACK_BYTES);

	*--sp = 0;				/* keeps the frame 16-byte aligned */
	*--sp = (uint64_t)(uintptr_t)coro_entry;	/* return address */
	*--sp = 0;				/* rbp */
	*--sp = 0;				/* rbx */
	*--sp = (uint64_t)(uintptr_t)co;	/* r12: coro_entry's argument */
	*--sp = 0;				/* r13 */
	*--sp = 0;				/* r14 */
	*--sp = 0;				/* r15 */
	/* MXCSR default (all exceptions masked), x87 control word default. */
	*--sp = 0x1f80ULL | (0x037fULL << 32);
	co->sp = sp;
	co->state = CORO_READY;
}

static void exec_make_ready(struct img_exec *e, struct coro *co)
{
	co->state = CORO_READY;
	co->next = NULL;
	*e->ready_tail = co;
	e->ready_tail = &co->next;
}

int exec_spawn(struct img_exec *e, void (*fn)(void *arg), void *arg)
{
	struct coro *co = e->free_coros;

	if (co) {
		e->free_coros = co->next;
	} else {
		co = calloc(1, sizeof(*co));
		if (!co)
			return -ENOMEM;
		co->stack = mmap(NULL, CORO_GUARD_BYTES + CORO_STACK_BYTES,
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (co->stack == MAP_FAILED) {
			free(co);
			return -ENOMEM;
		}
		/* A stack overflow faults on the guard page instead of corrupting the heap. */
		if (mprotect(co->stack, CORO_GUARD_BYTES, PROT_NONE)) {
			munmap(co->stack, CORO_GUARD_BYTES + CORO_STACK_BYTES);
			free(co);
			return -errno;
		}
	}
	co->exec = e;
	co->fn = fn;
	co->arg = arg;
	coro_prepare(co);
	exec_make_ready(e, co);
	e->nr_coros++;
	return 0;
}

static void coro_free(struct coro *co)
{
	munmap(co->stack, CORO_GUARD_BYTES + CORO_STACK_BYTES);
	free(co);
}

static void exec_arm_wake(struct img_exec *e)
{
	struct io_uring_sqe *sqe = exec_get_sqe();

	io_uring_prep_read(sqe, e->wake_fd, &e->wake_val, sizeof(e->wake_val), 0);
	io_uring_sqe_set_data64(sqe, UD_EXEC_WAKE);
}

int exec_init(struct img_exec *e, unsigned int entries)
{
	struct io_uring_params p;
	int ret;

	memset(e, 0, sizeof(*e));
	e->ready_tail = &e->ready_head;
	e->remote_tail = &e->remote_head;
	pthread_mutex_init(&e->remote_lock, NULL);

	/*
	 * Only this thread submits and reaps, so completions can wait for our
	 * next io_uring_enter instead of interrupting the thread (DEFER_TASKRUN).
	 * Kernels before 6.1 lack it; fall back to a plain ring there.
	 */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	/*
	 * A request may have several I/Os in flight (COW head, data, tail):
	 * room for four completions per SQE keeps the CQ from overflowing.
	 */
	p.cq_entries = 4 * entries;
	ret = io_uring_queue_init_params(entries, &e->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = 4 * entries;
		ret = io_uring_queue_init_params(entries, &e->ring, &p);
	}
	if (ret < 0)
		return ret;

	e->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (e->wake_fd < 0) {
		ret = -errno;
		io_uring_queue_exit(&e->ring);
		return ret;
	}
	exec_tls = e;
	exec_arm_wake(e);
	return 0;
}

void exec_exit(struct img_exec *e)
{
	struct coro *co;

	/* Coroutines spawned but never run (a setup that failed halfway). */
	while ((co = e->ready_head)) {
		e->ready_head = co->next;
		coro_free(co);
	}
	while ((co = e->free_coros)) {
		e->free_coros = co->next;
		coro_free(co);
	}
	io_uring_queue_exit(&e->ring);
	close(e->wake_fd);
	pthread_mutex_destroy(&e->remote_lock);
	if (exec_tls == e)
		exec_tls = NULL;
}

int exec_register_bufs(struct img_exec *e, void *base, unsigned int shift, size_t bytes,
		       unsigned int count)
{
	struct iovec *iov = calloc(count, sizeof(*iov));
	unsigned int i;
	int ret;

	if (!iov)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		iov[i].iov_base = (char *)base + ((size_t)i << shift);
		iov[i].iov_len = bytes;
	}
	ret = io_uring_register_buffers(&e->ring, iov, count);
	free(iov);
	if (ret)
		return ret;
	e->fixed_base = base;
	e->fixed_shift = shift;
	e->fixed_count = count;
	e->fixed_bytes = bytes;
	return 0;
}

void *exec_map_bufs(struct img_exec *e, unsigned int count, unsigned int shift,
		    size_t budget)
{
	size_t page = sysconf(_SC_PAGESIZE);
	size_t part = (size_t)1 << shift;
	void *bufs;
	int ret;

	bufs = mmap(NULL, (size_t)count << shift, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED)
		return NULL;
	/*
	 * Small pages: a huge page would make a whole 2 MiB resident (and
	 * pinned) for the first page registered or touched in it.
	 */
	madvise(bufs, (size_t)count << shift, MADV_NOHUGEPAGE);
	while (part * count > budget)
		part /= 2;
	/* Registration pins what it covers: past the memlock limit, less. */
	for (ret = -ENOMEM; part >= page && ret == -ENOMEM; part /= 2)
		ret = exec_register_bufs(e, bufs, shift, part, count);
	if (ret && budget)
		img_dbg(IMG_DBG_QUEUE, "buffers not registered: %s", strerror(-ret));
	return bufs;
}

void exec_unmap_bufs(void *bufs, unsigned int count, unsigned int shift)
{
	munmap(bufs, (size_t)count << shift);
}

/* The fixed buffer [buf, buf + len) lies in on the current executor, or -1. */
static int exec_fixed_index(const void *buf, size_t len)
{
	const struct img_exec *e = exec_tls;
	/* Below the base wraps around to a huge value and fails the first test. */
	uintptr_t rel = (uintptr_t)buf - (uintptr_t)e->fixed_base;
	uintptr_t slot = rel >> e->fixed_shift;

	if (slot >= e->fixed_count)
		return -1;
	if ((rel - (slot << e->fixed_shift)) + len > e->fixed_bytes)
		return -1;
	return slot;
}

/* Prepares a read or write of [buf, buf + len), fixed when it can be. */
static void exec_prep_rw(struct io_uring_sqe *sqe, bool write, int fd, const void *buf,
			 size_t len, uint64_t off)
{
	int idx = exec_fixed_index(buf, len);

	if (idx >= 0) {
		io_uring_prep_rw(write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED, sqe, fd,
				 buf, len, off);
		sqe->buf_index = idx;
	} else {
		io_uring_prep_rw(write ? IORING_OP_WRITE : IORING_OP_READ, sqe, fd, buf, len,
				 off);
	}
}

struct io_uring_sqe *exec_get_sqe(void)
{
	struct img_exec *e = exec_tls;
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&e->ring)))
		io_uring_submit(&e->ring);
	return sqe;
}

void exec_submit(struct io_uring_sqe *sqe, struct exec_waiter *w)
{
	w->co = exec_tls->cur;
	w->done = false;
	w->res = 0;
	io_uring_sqe_set_data64(sqe, ud_exec(w));
	exec_tls->nr_inflight++;
}

void exec_sleep(void)
{
	struct coro *co = exec_tls->cur;

	co->state = CORO_SLEEPING;
	coro_suspend(co);
}

int exec_wait(struct exec_waiter *w)
{
	/* Other waiters of the same coroutine may wake it first: re-check. */
	while (!w->done)
		exec_sleep();
	return w->res;
}

int exec_io(struct io_uring_sqe *sqe)
{
	struct exec_waiter w;

	exec_submit(sqe, &w);
	return exec_wait(&w);
}

void exec_wake(struct coro *co)
{
	struct img_exec *e = co->exec;
	bool kick;

	if (e == exec_tls) {
		if (co->state == CORO_SLEEPING)
			exec_make_ready(e, co);
		return;
	}

	/*
	 * Another thread's coroutine: queue it for its owner, and write the
	 * eventfd only on the empty -> non-empty transition, so a burst of
	 * wakeups costs one syscall.
	 */
	pthread_mutex_lock(&e->remote_lock);
	co->next = NULL;
	*e->remote_tail = co;
	e->remote_tail = &co->next;
	kick = !e->remote_kicked;
	e->remote_kicked = true;
	pthread_mutex_unlock(&e->remote_lock);
	if (kick) {
		uint64_t one = 1;

		if (write(e->wake_fd, &one, sizeof(one)) != sizeof(one))
			abort();	/* an eventfd write can only fail on overflow */
	}
}

void exec_waitq_sleep(struct exec_waitq *q, pthread_mutex_t *lock)
{
	struct coro *co = exec_tls->cur;

	co->next = NULL;
	*q->tail = co;
	q->tail = &co->next;
	/*
	 * Mark ourselves asleep before dropping the lock: a waker on another
	 * thread queues us remotely, and our own scheduler only looks at that
	 * queue after this coroutine has switched out.
	 */
	co->state = CORO_SLEEPING;
	pthread_mutex_unlock(lock);
	coro_suspend(co);
	pthread_mutex_lock(lock);
}

void exec_waitq_wake_all(struct exec_waitq *q)
{
	struct coro *co = q->head;

	exec_waitq_init(q);
	while (co) {
		struct coro *next = co->next;

		exec_wake(co);
		co = next;
	}
}

void exec_waitq_wake_one(struct exec_waitq *q)
{
	struct coro *co = q->head;

	if (!co)
		return;
	q->head = co->next;
	if (!q->head)
		q->tail = &q->head;
	exec_wake(co);
}

void exec_mutex_init(struct exec_mutex *m)
{
	pthread_mutex_init(&m->lock, NULL);
	m->held = false;
	exec_waitq_init(&m->waiters);
}

void exec_mutex_destroy(struct exec_mutex *m)
{
	pthread_mutex_destroy(&m->lock);
}

void exec_mutex_lock(struct exec_mutex *m)
{
	pthread_mutex_lock(&m->lock);
	while (m->held)
		exec_waitq_sleep(&m->waiters, &m->lock);
	m->held = true;
	pthread_mutex_unlock(&m->lock);
}

bool exec_mutex_trylock(struct exec_mutex *m)
{
	bool got;

	pthread_mutex_lock(&m->lock);
	got = !m->held;
	if (got)
		m->held = true;
	pthread_mutex_unlock(&m->lock);
	return got;
}

void exec_mutex_unlock(struct exec_mutex *m)
{
	pthread_mutex_lock(&m->lock);
	m->held = false;
	/* One waiter at a time: the others would only find it held again. */
	exec_waitq_wake_one(&m->waiters);
	pthread_mutex_unlock(&m->lock);
}

static void exec_drain_remote(struct img_exec *e)
{
	struct coro *co;

	pthread_mutex_lock(&e->remote_lock);
	co = e->remote_head;
	e->remote_head = NULL;
	e->remote_tail = &e->remote_head;
	e->remote_kicked = false;
	pthread_mutex_unlock(&e->remote_lock);

	while (co) {
		struct coro *next = co->next;

		if (co->state == CORO_SLEEPING)
			exec_make_ready(e, co);
		co = next;
	}
}

static void exec_reap(struct img_exec *e, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	struct exec_waiter *w;

	if (!ud_is_exec(ud)) {
		e->cqe_fn(e->cqe_ctx, cqe);
		return;
	}
	if (ud == UD_EXEC_WAKE) {
		exec_drain_remote(e);
		exec_arm_wake(e);
		return;
	}
	w = ud_exec_waiter(ud);
	w->res = cqe->res;
	w->done = true;
	e->nr_inflight--;
	if (w->co && w->co->state == CORO_SLEEPING)
		exec_make_ready(e, w->co);
}

static void exec_run_ready(struct img_exec *e)
{
	struct coro *co;

	while ((co = e->ready_head)) {
		e->ready_head = co->next;
		if (!e->ready_head)
			e->ready_tail = &e->ready_head;
		coro_resume(e, co);
		if (co->state == CORO_DONE) {
			e->nr_coros--;
			co->next = e->free_coros;
			e->free_coros = co;
		}
	}
}

static int64_t exec_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t exec_now_ns(void)
{
	return exec_tls ? exec_tls->now_ns : exec_clock_ns();
}

int exec_run(struct img_exec *e)
{
	struct io_uring_cqe *cqe;
	unsigned int head, n;
	int ret;

	for (;;) {
		e->now_ns = exec_clock_ns();
		exec_run_ready(e);
		if (!e->nr_coros)
			return 0;
		/* One syscall per loop turn: submit everything queued and wait. */
		ret = io_uring_submit_and_wait(&e->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		n = 0;
		io_uring_for_each_cqe(&e->ring, head, cqe) {
			exec_reap(e, cqe);
			n++;
		}
		io_uring_cq_advance(&e->ring, n);
	}
}

ssize_t exec_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		struct io_uring_sqe *sqe = exec_get_sqe();
		int ret;

		exec_prep_rw(sqe, false, fd, (char *)buf + done, len - done, off + done);
		ret = exec_io(sqe);
		if (ret < 0)
			return ret;
		if (ret == 0)
			break;		/* end of file */
		done += ret;
	}
	return done;
}

/* The recorder, if any (exec_set_recorder()); read on every file change. */
static exec_rec_fn exec_rec_cb;
static void *exec_rec_ctx;
static uint64_t exec_rec_seq;

void exec_set_recorder(exec_rec_fn fn, void *ctx)
{
	exec_rec_ctx = ctx;
	exec_rec_cb = fn;
}

/* The recorder's report of a file change about to be queued. */
static void exec_rec_issue(struct exec_rec *r)
{
	static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&seq_lock);
	r->seq = ++exec_rec_seq;
	pthread_mutex_unlock(&seq_lock);
	r->done = false;
	exec_rec_cb(exec_rec_ctx, r);
}

/* ...and of its completion with @res. */
static void exec_rec_complete(struct exec_rec *r, int res)
{
	r->res = res;
	r->done = true;
	exec_rec_cb(exec_rec_ctx, r);
}

/*
 * exec_io() for a file change, reported to the recorder before it is
 * queued and after it completes.  Out of line: the common path only tests
 * exec_rec_cb.
 */
static int __attribute__((noinline)) exec_io_recorded(struct io_uring_sqe *sqe,
						      struct exec_rec *r)
{
	exec_rec_issue(r);
	exec_rec_complete(r, exec_io(sqe));
	return r->res;
}

ssize_t exec_pwrite(int fd, const void *buf, size_t len, uint64_t off,
		    int rw_flags)
{
	size_t done = 0;

	while (done < len) {
		struct io_uring_sqe *sqe = exec_get_sqe();
		int ret;

		exec_prep_rw(sqe, true, fd, (const char *)buf + done, len - done, off + done);
		sqe->rw_flags = rw_flags;
		if (likely(!exec_rec_cb))
			ret = exec_io(sqe);
		else
			ret = exec_io_recorded(sqe, &(struct exec_rec){
				.kind = EXEC_REC_WRITE, .fd = fd, .flags = rw_flags,
				.off = off + done, .len = len - done,
				.data = (const char *)buf + done });
		if (ret < 0)
			return ret;
		if (ret == 0)
			return -EIO;	/* no progress: the device is full or gone */
		done += ret;
	}
	return len;
}

int exec_pwrite_all(struct exec_write *w, unsigned int n)
{
	struct exec_waiter wt[EXEC_WRITE_ALL_MAX];
	struct exec_rec rec[EXEC_WRITE_ALL_MAX];
	unsigned int i;
	int ret = 0;

	if (n > EXEC_WRITE_ALL_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = exec_get_sqe();

		exec_prep_rw(sqe, true, w[i].fd, w[i].buf, w[i].len, w[i].off);
		sqe->rw_flags = w[i].rw_flags;
		if (unlikely(exec_rec_cb)) {
			rec[i] = (struct exec_rec){
				.kind = EXEC_REC_WRITE, .fd = w[i].fd, .flags = w[i].rw_flags,
				.off = w[i].off, .len = w[i].len, .data = w[i].buf };
			exec_rec_issue(&rec[i]);
		}
		exec_submit(sqe, &wt[i]);
	}
	for (i = 0; i < n; i++) {
		ssize_t r = exec_wait(&wt[i]);

		if (unlikely(exec_rec_cb))
			exec_rec_complete(&rec[i], r);
		/* A short write is finished on its own, as exec_pwrite() would. */
		if (r > 0 && (size_t)r < w[i].len) {
			r = exec_pwrite(w[i].fd, (const char *)w[i].buf + r, w[i].len - r,
					w[i].off + r, w[i].rw_flags);
			if (r >= 0)
				r = w[i].len;
		} else if (r == 0 && w[i].len) {
			r = -EIO;	/* no progress: the device is full or gone */
		}
		w[i].res = r;
		if (r < 0 && !ret)
			ret = r;
	}
	return ret;
}

int exec_fdatasync(int fd)
{
	struct io_uring_sqe *sqe = exec_get_sqe();

	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	if (likely(!exec_rec_cb))
		return exec_io(sqe);
	return exec_io_recorded(sqe, &(struct exec_rec){
		.kind = EXEC_REC_FDATASYNC, .fd = fd });
}

int exec_sleep_ms(unsigned int ms)
{
	struct io_uring_sqe *sqe = exec_get_sqe();
	struct __kernel_timespec ts = {
		.tv_sec = ms / 1000,
		.tv_nsec = (long long)(ms % 1000) * 1000000,
	};
	int ret;

	/* The timespec is read at submission: it must live until then, so wait here. */
	io_uring_prep_timeout(sqe, &ts, 0, 0);
	ret = exec_io(sqe);
	return ret == -ETIME ? 0 : ret;
}

int exec_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
	struct io_uring_sqe *sqe = exec_get_sqe();

	io_uring_prep_fallocate(sqe, fd, mode, off, len);
	if (likely(!exec_rec_cb))
		return exec_io(sqe);
	return exec_io_recorded(sqe, &(struct exec_rec){
		.kind = EXEC_REC_FALLOCATE, .fd = fd, .flags = mode,
		.off = off, .len = len });
}

/* Reports a blocking call to the recorder (if any) before and after it. */
static int exec_rec_blocking(struct exec_rec *r, int (*call)(struct exec_rec *r))
{
	if (likely(!exec_rec_cb))
		return call(r);
	exec_rec_issue(r);
	exec_rec_complete(r, call(r));
	return r->res;
}

/* Returns the bytes written (all of them), as a write's CQE would, or -errno. */
static int exec_file_write_call(struct exec_rec *r)
{
	size_t done = 0;

	while (done < r->len) {
		ssize_t n = pwrite(r->fd, (const char *)r->data + done, r->len - done,
				   r->off + done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += n;
	}
	return done;
}

int exec_file_write(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t n, done;

	/* In pieces whose byte count fits the recorder's result. */
	for (done = 0; done < len; done += n) {
		struct exec_rec r = { .kind = EXEC_REC_WRITE, .fd = fd, .off = off + done,
				      .data = (const char *)buf + done };
		int ret;

		n = MIN(len - done, (size_t)1 << 30);
		r.len = n;
		ret = exec_rec_blocking(&r, exec_file_write_call);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int exec_file_sync_call(struct exec_rec *r)
{
	return fsync(r->fd) ? -errno : 0;
}

int exec_file_sync(int fd)
{
	return exec_rec_blocking(&(struct exec_rec){ .kind = EXEC_REC_FDATASYNC, .fd = fd },
				 exec_file_sync_call);
}

static int exec_link_call(struct exec_rec *r)
{
	return link(r->path, r->path2) ? -errno : 0;
}

int exec_link(const char *from, const char *to)
{
	return exec_rec_blocking(&(struct exec_rec){ .kind = EXEC_REC_LINK, .fd = -1,
						     .path = from, .path2 = to },
				 exec_link_call);
}

static int exec_unlink_call(struct exec_rec *r)
{
	return unlink(r->path) ? -errno : 0;
}

int exec_unlink(const char *path)
{
	return exec_rec_blocking(&(struct exec_rec){ .kind = EXEC_REC_UNLINK, .fd = -1,
						     .path = path },
				 exec_unlink_call);
}

static int exec_sync_dir_call(struct exec_rec *r)
{
	return fsync(r->fd) ? -errno : 0;
}

int exec_sync_dir(const char *file)
{
	char *copy = strdup(file);
	int fd, ret;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -errno;
	ret = exec_rec_blocking(&(struct exec_rec){ .kind = EXEC_REC_DIRSYNC, .fd = fd,
						    .path = file },
				exec_sync_dir_call);
	close(fd);
	return ret;
}

struct exec_sync_call {
	int (*fn)(void *arg);
	void *arg;
	int ret;
};

static void exec_sync_main(void *arg)
{
	struct exec_sync_call *c = arg;

	c->ret = c->fn(c->arg);
}

int exec_run_sync(int (*fn)(void *arg), void *arg)
{
	struct exec_sync_call c = { .fn = fn, .arg = arg };
	struct img_exec e;
	int ret;

	if (exec_self())
		return fn(arg);
	ret = exec_init(&e, 64);
	if (ret)
		return ret;
	ret = exec_spawn(&e, exec_sync_main, &c);
	if (!ret)
		ret = exec_run(&e);
	exec_exit(&e);
	return ret ? ret : c.ret;
}
