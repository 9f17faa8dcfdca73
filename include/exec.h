/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The per-thread executor: one io_uring and a set of stackful coroutines.
 *
 * Every request a target serves runs in a coroutine.  A coroutine issues
 * file I/O on the executor's ring and sleeps until its CQE arrives, so a
 * multi-step request (L2 lookup, COW read, data write, metadata update) is
 * written as straight-line code, and many of them interleave on one thread.
 * See docs/executor.md for why coroutines and not state machines.
 *
 * Coroutines never migrate: each belongs to the executor (thread) that
 * spawned it.  A coroutine on another thread may wake it (exec_wake()), which
 * goes through the owner's eventfd.
 */
#ifndef IMGBLK_EXEC_H
#define IMGBLK_EXEC_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct coro;
struct img_exec;

/* One pending executor I/O; lives on the issuing coroutine's stack. */
struct exec_waiter {
	struct coro *co;
	int res;
	bool done;
} __attribute__((aligned(8)));

/*
 * A list of coroutines sleeping until some condition changes (an
 * allocation finishing, a cache slot being loaded).  The caller's lock
 * protects it; the sleepers may belong to any executor.
 */
struct exec_waitq {
	struct coro *head;
	struct coro **tail;
};

/* Called for CQEs that are not executor I/O (ublk io commands). */
typedef void (*exec_cqe_fn)(void *ctx, const struct io_uring_cqe *cqe);

struct img_exec {
	struct io_uring ring;
	struct coro *cur;		/* running coroutine, NULL in the scheduler */
	struct coro *ready_head;
	struct coro **ready_tail;
	unsigned int nr_coros;		/* spawned and not yet finished */
	unsigned int nr_inflight;	/* executor SQEs whose CQE is pending */
	void *sched_sp;
	struct coro *free_coros;	/* finished coroutines kept for reuse */
	/*
	 * CLOCK_MONOTONIC when the scheduler last woke, read once per turn
	 * of exec_run() for every coroutine it then runs (exec_now_ns()).
	 */
	int64_t now_ns;

	/* Wakeups from other threads, drained when wake_fd's read completes. */
	pthread_mutex_t remote_lock;
	struct coro *remote_head;
	struct coro **remote_tail;
	bool remote_kicked;
	int wake_fd;
	uint64_t wake_val;

	exec_cqe_fn cqe_fn;
	void *cqe_ctx;

	/*
	 * Registered buffers (exec_register_bufs()): slot i spans
	 * [fixed_base + (i << fixed_shift), + (1 << fixed_shift)) and its
	 * first fixed_bytes are the ring's fixed buffer i.
	 */
	char *fixed_base;
	unsigned int fixed_shift;
	unsigned int fixed_count;
	size_t fixed_bytes;
};

/*
 * Sets up @e with a ring of @entries SQEs on the calling thread, which
 * must be the only thread to run it.  Returns 0 on success, -errno on failure.
 */
int exec_init(struct img_exec *e, unsigned int entries);
void exec_exit(struct img_exec *e);

/*
 * Registers with @e's ring the first @bytes of each of @count slots of
 * 1 << @shift bytes from @base.  From then on exec_pread(), exec_pwrite()
 * and exec_pwrite_all() on this executor use READ_FIXED/WRITE_FIXED for
 * a buffer that lies inside one slot's registered part: the kernel then
 * does not pin the user pages for every I/O.  The pages stay pinned, so
 * resident, until exec_exit().  Returns 0 on success, -errno on failure
 * (-ENOMEM past the memlock limit), and @e is unchanged then.
 */
int exec_register_bufs(struct img_exec *e, void *base, unsigned int shift, size_t bytes,
		       unsigned int count);

/*
 * Maps @count buffers of 1 << @shift bytes (page-aligned, one mapping,
 * touched only as they are used) and registers the first part of each
 * with @e's ring: the largest power of two, at least a page, that keeps
 * all parts within @budget bytes and within the memlock limit.  Where no
 * part fits, nothing is registered: slower, never wrong.  Returns the
 * mapping, or NULL when it cannot be made.
 */
void *exec_map_bufs(struct img_exec *e, unsigned int count, unsigned int shift,
		    size_t budget);

/*
 * Unmaps what exec_map_bufs(@count, @shift) returned.  Safe once no I/O
 * uses it, before exec_exit() too: the ring drops the pinned pages there.
 */
void exec_unmap_bufs(void *bufs, unsigned int count, unsigned int shift);

/* The executor of the calling thread, NULL if it has none. */
struct img_exec *exec_current(void);

/*
 * Creates a coroutine running fn(arg) and makes it runnable; it starts on
 * the next scheduler pass.  Returns 0 on success, -errno on failure.
 */
int exec_spawn(struct img_exec *e, void (*fn)(void *arg), void *arg);

/*
 * Runs coroutines and reaps CQEs until every coroutine has returned.
 * Returns 0, or -errno if the ring failed.
 */
int exec_run(struct img_exec *e);

/*
 * Runs fn(arg) in a coroutine and returns its result: directly when
 * called from a coroutine, otherwise on a temporary executor created for
 * the call (the calling thread must not have one).  Returns fn's result,
 * or -errno if the executor could not be set up.
 */
int exec_run_sync(int (*fn)(void *arg), void *arg);

/*
 * Returns a free SQE of the current executor, submitting queued SQEs to
 * make room when the ring is full.  Never returns NULL.
 */
struct io_uring_sqe *exec_get_sqe(void);

/* Tags @sqe so that its CQE completes @w; does not wait. */
void exec_submit(struct io_uring_sqe *sqe, struct exec_waiter *w);

/* Sleeps until @w completes.  Returns its CQE's res. */
int exec_wait(struct exec_waiter *w);

/* exec_submit() and exec_wait() in one. */
int exec_io(struct io_uring_sqe *sqe);

/*
 * The time, in CLOCK_MONOTONIC ns, at which the calling thread's executor
 * woke to run what is ready now: one clock read per turn of exec_run()
 * serves every coroutine it runs, so timing each request costs no clock
 * read of its own.  Behind the real clock by what the turn has run so far
 * (microseconds).  Without an executor: the clock.
 */
int64_t exec_now_ns(void);

/* The running coroutine, NULL when called from the scheduler. */
struct coro *exec_self(void);

/* Sleeps until exec_wake() is called on the running coroutine. */
void exec_sleep(void);

/* Makes @co runnable; it may belong to any executor. */
void exec_wake(struct coro *co);

static inline void exec_waitq_init(struct exec_waitq *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

/*
 * Sleeps on @q: appends the running coroutine, drops @lock while asleep and
 * takes it again before returning.  Callers re-check their condition.  The
 * coroutine must have no executor I/O in flight: only exec_waitq_wake_all()
 * may wake it.
 */
void exec_waitq_sleep(struct exec_waitq *q, pthread_mutex_t *lock);

/* Wakes every sleeper on @q; the caller holds the lock protecting @q. */
void exec_waitq_wake_all(struct exec_waitq *q);

/* Wakes the first sleeper on @q, if any; the caller holds @q's lock. */
void exec_waitq_wake_one(struct exec_waitq *q);

/*
 * A mutex for coroutines, usable across threads.  A pthread mutex must
 * never be held across an executor call that may sleep (exec_io and
 * friends): another coroutine of the same thread would block the whole
 * thread on it.  Sections that do I/O take an exec_mutex instead; its
 * waiters sleep as coroutines.
 */
struct exec_mutex {
	pthread_mutex_t lock;
	bool held;
	struct exec_waitq waiters;
};

void exec_mutex_init(struct exec_mutex *m);
void exec_mutex_destroy(struct exec_mutex *m);
void exec_mutex_lock(struct exec_mutex *m);
/* Takes @m if it is free, without sleeping.  Returns whether it did. */
bool exec_mutex_trylock(struct exec_mutex *m);
void exec_mutex_unlock(struct exec_mutex *m);

/*
 * File I/O from a coroutine.  exec_pread() returns the bytes read (fewer
 * than @len only at end of file) or -errno; exec_pwrite() returns @len or
 * -errno, and takes RWF_* flags (RWF_DSYNC for FUA); the others return 0
 * or -errno.
 */
ssize_t exec_pread(int fd, void *buf, size_t len, uint64_t off);
ssize_t exec_pwrite(int fd, const void *buf, size_t len, uint64_t off,
		    int rw_flags);
int exec_fdatasync(int fd);

/* One write of exec_pwrite_all(). */
struct exec_write {
	int fd;
	int rw_flags;
	const void *buf;
	size_t len;
	uint64_t off;
	ssize_t res;		/* out: what exec_pwrite() would return */
};

#define EXEC_WRITE_ALL_MAX	4

/*
 * Issues the @n (at most EXEC_WRITE_ALL_MAX) writes of @w together, in one
 * submission, and waits for all of them: two writes that need no order
 * between them cost one round trip instead of two.  Sets each res.
 * Returns 0 if every write succeeded, else the first failure's -errno.
 */
int exec_pwrite_all(struct exec_write *w, unsigned int n);
/* Sleeps for @ms milliseconds (an io_uring timeout).  Returns 0 or -errno. */
int exec_sleep_ms(unsigned int ms);
int exec_fallocate(int fd, int mode, uint64_t off, uint64_t len);

/*
 * Crash-replay recorder (docs/crash-replay.md).  When one is set, the
 * file-changing helpers above (exec_pwrite, exec_fallocate, exec_fdatasync)
 * report each I/O they issue twice: when it is queued (done false) and when
 * its CQE arrives (done true, res set).  A test replays the log as the
 * states a crash could leave.  Off by default; when off it costs one
 * predictable branch per I/O.
 */
enum exec_rec_kind {
	EXEC_REC_WRITE,		/* fd, off, len, data, flags = RWF_* */
	EXEC_REC_FALLOCATE,	/* fd, off, len, flags = FALLOC_FL_* mode */
	EXEC_REC_FDATASYNC,	/* fd (an fsync() reports as one too) */
	/* The directory changes (exec_link() ...), durable once EXEC_REC_DIRSYNC says so. */
	EXEC_REC_LINK,		/* path (existing), path2 (new name) */
	EXEC_REC_UNLINK,	/* path */
	EXEC_REC_DIRSYNC,	/* fd: the directory synced; path: a file in it */
};

struct exec_rec {
	enum exec_rec_kind kind;
	bool done;		/* false: issued; true: completed with @res */
	int fd;
	int flags;
	int res;
	uint64_t off;
	uint64_t len;
	const void *data;	/* valid for the duration of the call */
	const char *path, *path2;	/* the directory changes' names */
	uint64_t seq;		/* pairs an issue with its completion */
};

typedef void (*exec_rec_fn)(void *ctx, const struct exec_rec *r);

/*
 * Sets the process-wide recorder (NULL: none).  Call it only while no
 * executor I/O is in flight; @fn is called from every executor thread
 * and must do its own locking if several run.
 */
void exec_set_recorder(exec_rec_fn fn, void *ctx);

/*
 * Blocking file-system calls, on any thread, that the recorder sees:
 * what makes a new image file and puts its name in place (an image's
 * ->create, an external snapshot's overlay), so that a crash-state replay
 * can tell which names and contents a power cut keeps.
 *
 * exec_file_write(): all @len bytes of pwrite(2) (retried on EINTR and
 * short writes); exec_file_sync(): fsync(2); exec_link(): link(2);
 * exec_unlink(): unlink(2); exec_sync_dir(): fsync(2) of the directory
 * holding @file, which makes the links and unlinks done in it durable.
 * Each returns 0 or -errno.
 */
int exec_file_write(int fd, const void *buf, size_t len, uint64_t off);
int exec_file_sync(int fd);
int exec_link(const char *from, const char *to);
int exec_unlink(const char *path);
int exec_sync_dir(const char *file);

#endif
