// SPDX-License-Identifier: GPL-2.0
/*
 * The executor (lib/exec.c): stackful coroutines over one io_uring per
 * thread.  Every target request runs on it, so the properties checked
 * here are the ones a format engine leans on: many coroutines interleave
 * without mixing up their I/O, errors come back as -errno, sleepers on a
 * waitq or an exec_mutex are woken across threads, and a deep call chain
 * fits a coroutine's stack.
 *
 * Assertions stay on the main stack and thread: the harness leaves a
 * failed ASSERT with longjmp, which must not cross a coroutine switch or
 * a thread.  Coroutines and threads record what they saw; the test
 * checks it afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "util.h"

#include "kselftest_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A temporary file, unlinked at once: only its descriptor is needed. */
static int temp_fd(void)
{
	char path[] = "/tmp/imgblk-exec-XXXXXX";
	int fd = mkstemp(path);

	if (fd >= 0)
		unlink(path);
	return fd;
}

/* 1000 coroutines, each writing and reading back its own block. */

#define NR_JOBS		1000
#define JOB_BYTES	4096

struct io_jobs {
	int fd;
	atomic_int active;	/* coroutines between submit and completion */
	int max_active;
	int ok[NR_JOBS];
	ssize_t wres[NR_JOBS], rres[NR_JOBS];
};

struct io_job {
	struct io_jobs *all;
	unsigned int idx;
};

static unsigned char job_byte(unsigned int idx, unsigned int i)
{
	return (unsigned char)(idx * 31 + i * 7 + 1);
}

static void io_job_fn(void *arg)
{
	struct io_job *j = arg;
	struct io_jobs *all = j->all;
	unsigned char wbuf[JOB_BYTES], rbuf[JOB_BYTES];
	uint64_t off = (uint64_t)j->idx * JOB_BYTES;
	unsigned int i;
	int a;

	for (i = 0; i < JOB_BYTES; i++)
		wbuf[i] = job_byte(j->idx, i);
	a = atomic_fetch_add(&all->active, 1) + 1;
	if (a > all->max_active)
		all->max_active = a;
	all->wres[j->idx] = exec_pwrite(all->fd, wbuf, JOB_BYTES, off, 0);
	atomic_fetch_sub(&all->active, 1);
	memset(rbuf, 0, sizeof(rbuf));
	all->rres[j->idx] = exec_pread(all->fd, rbuf, JOB_BYTES, off);
	all->ok[j->idx] = !memcmp(wbuf, rbuf, JOB_BYTES);
}

TEST(thousand_coroutines)
{
	struct io_jobs *all = calloc(1, sizeof(*all));
	struct io_job *jobs = calloc(NR_JOBS, sizeof(*jobs));
	unsigned char buf[JOB_BYTES];
	struct img_exec e;
	unsigned int i, k;

	ASSERT_NE(NULL, all);
	ASSERT_NE(NULL, jobs);
	all->fd = temp_fd();
	ASSERT_LE(0, all->fd);
	ASSERT_EQ(0, exec_init(&e, 64));
	ASSERT_EQ(&e, exec_current());
	for (i = 0; i < NR_JOBS; i++) {
		jobs[i].all = all;
		jobs[i].idx = i;
		ASSERT_EQ(0, exec_spawn(&e, io_job_fn, &jobs[i]));
	}
	ASSERT_EQ(0, exec_run(&e));
	ASSERT_EQ(0U, e.nr_coros);
	ASSERT_EQ(0U, e.nr_inflight);
	exec_exit(&e);
	ASSERT_EQ(NULL, exec_current());

	for (i = 0; i < NR_JOBS; i++) {
		ASSERT_EQ(JOB_BYTES, all->wres[i]) TH_LOG("job %u", i);
		ASSERT_EQ(JOB_BYTES, all->rres[i]) TH_LOG("job %u", i);
		ASSERT_TRUE(all->ok[i]) TH_LOG("job %u read back other data", i);
	}
	/* They really ran at once: a ring of 64 with 1000 writes queued. */
	ASSERT_GT(all->max_active, 64);
	/* And the file holds what each wrote, checked without the executor. */
	for (i = 0; i < NR_JOBS; i += 97) {
		ASSERT_EQ(JOB_BYTES, pread(all->fd, buf, JOB_BYTES, (off_t)i * JOB_BYTES));
		for (k = 0; k < JOB_BYTES; k++)
			ASSERT_EQ(job_byte(i, k), buf[k]);
	}
	close(all->fd);
	free(jobs);
	free(all);
}

/* Errors and short transfers come back as the contract says. */

struct io_results {
	int fd, rdonly_fd, bad_fd;
	ssize_t read_bad, write_rdonly, read_eof_short, read_past_eof;
	int sync_bad, falloc_rdonly, falloc_ok, sync_ok;
};

static int io_errors_fn(void *arg)
{
	struct io_results *r = arg;
	char buf[8192];

	r->read_bad = exec_pread(r->bad_fd, buf, 512, 0);
	r->write_rdonly = exec_pwrite(r->rdonly_fd, buf, 512, 0, 0);
	r->sync_bad = exec_fdatasync(r->bad_fd);
	r->falloc_rdonly = exec_fallocate(r->rdonly_fd, 0, 0, 4096);
	/* The file is 12288 bytes: 8192 asked at 8192 gives 4096. */
	r->read_eof_short = exec_pread(r->fd, buf, 8192, 8192);
	r->read_past_eof = exec_pread(r->fd, buf, 512, 1 << 20);
	r->falloc_ok = exec_fallocate(r->fd, 0, 12288, 4096);
	r->sync_ok = exec_fdatasync(r->fd);
	return 0;
}

TEST(io_errors)
{
	char path[] = "/tmp/imgblk-exec-XXXXXX";
	struct io_results r;
	struct stat st;

	r.fd = mkstemp(path);
	ASSERT_LE(0, r.fd);
	ASSERT_EQ(0, ftruncate(r.fd, 12288));
	r.rdonly_fd = open(path, O_RDONLY);
	unlink(path);
	ASSERT_LE(0, r.rdonly_fd);
	/*
	 * Not a closed descriptor: the temporary executor's eventfd would
	 * reuse its number.  One past the descriptor limit is never open.
	 */
	r.bad_fd = (int)sysconf(_SC_OPEN_MAX);
	ASSERT_EQ(-1, fcntl(r.bad_fd, F_GETFD));

	ASSERT_EQ(0, exec_run_sync(io_errors_fn, &r));
	EXPECT_EQ(-EBADF, r.read_bad);
	EXPECT_EQ(-EBADF, r.write_rdonly);
	EXPECT_EQ(-EBADF, r.sync_bad);
	EXPECT_EQ(-EBADF, r.falloc_rdonly);
	EXPECT_EQ(4096, r.read_eof_short);
	EXPECT_EQ(0, r.read_past_eof);
	EXPECT_EQ(0, r.falloc_ok);
	EXPECT_EQ(0, r.sync_ok);
	ASSERT_EQ(0, fstat(r.fd, &st));
	EXPECT_EQ(16384, st.st_size);
	close(r.fd);
	close(r.rdonly_fd);
}

/* exec_pwrite_all: writes issued together, each with its own result. */

struct write_all_call {
	int fd, rdonly_fd;
	char a[4096], b[512];
	struct exec_write ok[2], mixed[3];
	int ok_ret, mixed_ret, too_many_ret;
};

static int write_all_fn(void *arg)
{
	struct write_all_call *c = arg;
	struct exec_write many[EXEC_WRITE_ALL_MAX + 1];

	c->ok[0] = (struct exec_write){ .fd = c->fd, .buf = c->a, .len = sizeof(c->a),
					.off = 8192 };
	c->ok[1] = (struct exec_write){ .fd = c->fd, .buf = c->b, .len = sizeof(c->b),
					.off = 512 };
	c->ok_ret = exec_pwrite_all(c->ok, 2);
	/* The middle one fails; the others still land and report success. */
	c->mixed[0] = (struct exec_write){ .fd = c->fd, .buf = c->b, .len = sizeof(c->b),
					   .off = 0 };
	c->mixed[1] = (struct exec_write){ .fd = c->rdonly_fd, .buf = c->b,
					   .len = sizeof(c->b), .off = 1024 };
	c->mixed[2] = (struct exec_write){ .fd = c->fd, .buf = c->b, .len = sizeof(c->b),
					   .off = 1536 };
	c->mixed_ret = exec_pwrite_all(c->mixed, 3);
	memset(many, 0, sizeof(many));
	c->too_many_ret = exec_pwrite_all(many, EXEC_WRITE_ALL_MAX + 1);
	return 0;
}

TEST(pwrite_all)
{
	char path[] = "/tmp/imgblk-exec-XXXXXX";
	struct write_all_call *c = calloc(1, sizeof(*c));
	char got[12288], want[12288];

	ASSERT_NE(NULL, c);
	c->fd = mkstemp(path);
	ASSERT_LE(0, c->fd);
	c->rdonly_fd = open(path, O_RDONLY);
	unlink(path);
	ASSERT_LE(0, c->rdonly_fd);
	memset(c->a, 0xa5, sizeof(c->a));
	memset(c->b, 0x3c, sizeof(c->b));

	ASSERT_EQ(0, exec_run_sync(write_all_fn, c));
	EXPECT_EQ(0, c->ok_ret);
	EXPECT_EQ(4096, c->ok[0].res);
	EXPECT_EQ(512, c->ok[1].res);
	EXPECT_EQ(-EBADF, c->mixed_ret);
	EXPECT_EQ(512, c->mixed[0].res);
	EXPECT_EQ(-EBADF, c->mixed[1].res);
	EXPECT_EQ(512, c->mixed[2].res);
	EXPECT_EQ(-EINVAL, c->too_many_ret);

	memset(want, 0, sizeof(want));
	memset(want + 8192, 0xa5, 4096);
	memset(want + 512, 0x3c, 512);
	memset(want, 0x3c, 512);
	memset(want + 1536, 0x3c, 512);
	ASSERT_EQ((ssize_t)sizeof(got), pread(c->fd, got, sizeof(got), 0));
	EXPECT_EQ(0, memcmp(got, want, sizeof(got)));
	close(c->fd);
	close(c->rdonly_fd);
	free(c);
}

/*
 * Registered buffers: I/O inside a slot's registered part goes through
 * READ_FIXED/WRITE_FIXED.  The proof is a mapping made read-only after
 * registration: a plain read into it fails with EFAULT, a fixed one lands
 * in the pinned pages, at the right slot and offset.
 */

#define REG_SHIFT	16		/* 64 KiB slots */
#define REG_BYTES	16384		/* of which the first 16 KiB registered */
#define REG_SLOTS	4

struct reg_call {
	int fd;
	char *map;
	int reg_ret;
	ssize_t in_part, straddle, last_slot, past_slots, below;
	ssize_t write_fixed;
	int write_all;
};

static int reg_fn(void *arg)
{
	struct reg_call *c = arg;
	char *slot1 = c->map + (1 << REG_SHIFT);
	struct exec_write w[2] = {
		{ .fd = c->fd, .buf = c->map + (2 << REG_SHIFT), .len = 4096, .off = 65536 },
		{ .fd = c->fd, .buf = c->map + (2 << REG_SHIFT) + REG_BYTES, .len = 4096,
		  .off = 69632 },
	};

	c->reg_ret = exec_register_bufs(exec_current(), c->map, REG_SHIFT, REG_BYTES,
					REG_SLOTS);
	if (c->reg_ret)
		return 0;
	if (mprotect(c->map, REG_SLOTS << REG_SHIFT, PROT_READ))
		return -errno;
	c->in_part = exec_pread(c->fd, slot1 + 4096, 8192, 0);
	c->straddle = exec_pread(c->fd, slot1 + 12288, 8192, 0);
	c->last_slot = exec_pread(c->fd, c->map + (3 << REG_SHIFT), REG_BYTES, 8192);
	c->past_slots = exec_pread(c->fd, c->map + (REG_SLOTS << REG_SHIFT), 4096, 0);
	c->below = exec_pread(c->fd, c->map - 4096, 4096, 0);
	/* Writes read the pinned pages whatever the protection. */
	c->write_fixed = exec_pwrite(c->fd, c->map + (2 << REG_SHIFT) + 4096, 4096, 73728, 0);
	c->write_all = exec_pwrite_all(w, 2);
	return 0;
}

static unsigned char reg_byte(size_t off)
{
	return (unsigned char)(off / 512 * 13 + 7);
}

TEST(registered_bufs)
{
	size_t map_len = (REG_SLOTS + 2) << REG_SHIFT;
	struct reg_call c = { 0 };
	unsigned char file[65536], got[4096];
	char *area;
	size_t i;

	for (i = 0; i < sizeof(file); i++)
		file[i] = reg_byte(i);
	c.fd = temp_fd();
	ASSERT_LE(0, c.fd);
	ASSERT_EQ((ssize_t)sizeof(file), pwrite(c.fd, file, sizeof(file), 0));
	/* Unmapped guard slots on both sides: reads there must fail, not land. */
	area = mmap(NULL, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	c.map = area + (1 << REG_SHIFT);
	ASSERT_EQ(0, mprotect(c.map, REG_SLOTS << REG_SHIFT, PROT_READ | PROT_WRITE));
	/* Slot 2's content, for the writes. */
	memset(c.map + (2 << REG_SHIFT), 0x5a, 4096);
	memset(c.map + (2 << REG_SHIFT) + 4096, 0x6b, 4096);
	memset(c.map + (2 << REG_SHIFT) + REG_BYTES, 0x7c, 4096);

	ASSERT_EQ(0, exec_run_sync(reg_fn, &c));
	if (c.reg_ret == -ENOMEM)
		SKIP(return, "memlock limit too small to register 64 KiB");
	ASSERT_EQ(0, c.reg_ret);
	EXPECT_EQ(8192, c.in_part);
	EXPECT_EQ(0, memcmp(c.map + (1 << REG_SHIFT) + 4096, file, 8192));
	/* Untouched around it. */
	EXPECT_EQ(0, c.map[(1 << REG_SHIFT) + 4095]);
	EXPECT_EQ(0, c.map[(1 << REG_SHIFT) + 12288]);
	EXPECT_EQ(-EFAULT, c.straddle);
	EXPECT_EQ(REG_BYTES, c.last_slot);
	EXPECT_EQ(0, memcmp(c.map + (3 << REG_SHIFT), file + 8192, REG_BYTES));
	EXPECT_EQ(-EFAULT, c.past_slots);
	EXPECT_EQ(-EFAULT, c.below);
	EXPECT_EQ(4096, c.write_fixed);
	/* One fixed, one from the unregistered rest: a plain write may read it. */
	EXPECT_EQ(0, c.write_all);
	ASSERT_EQ(4096, pread(c.fd, got, 4096, 65536));
	for (i = 0; i < 4096; i++)
		ASSERT_EQ(0x5a, got[i]);
	ASSERT_EQ(4096, pread(c.fd, got, 4096, 69632));
	for (i = 0; i < 4096; i++)
		ASSERT_EQ(0x7c, got[i]);
	ASSERT_EQ(4096, pread(c.fd, got, 4096, 73728));
	for (i = 0; i < 4096; i++)
		ASSERT_EQ(0x6b, got[i]);
	munmap(area, map_len);
	close(c.fd);
}

/* exec_sleep_ms */

struct sleep_call {
	unsigned int ms;
	int ret;
	int64_t elapsed_ms;
};

static int sleep_fn(void *arg)
{
	struct sleep_call *c = arg;
	int64_t t0 = now_ms();

	c->ret = exec_sleep_ms(c->ms);
	c->elapsed_ms = now_ms() - t0;
	return 0;
}

TEST(sleep_ms)
{
	static const unsigned int ms[] = { 0, 1, 50, 120, 1001 };
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ms); i++) {
		struct sleep_call c = { .ms = ms[i] };

		ASSERT_EQ(0, exec_run_sync(sleep_fn, &c));
		ASSERT_EQ(0, c.ret) TH_LOG("%u ms", ms[i]);
		/* A timer may be late, never early. */
		ASSERT_GE(c.elapsed_ms, (int64_t)ms[i]) TH_LOG("%u ms", ms[i]);
	}
}

/* Sleepers overlap: 20 coroutines sleeping 250 ms take far less than 5 s. */

struct sleepers {
	int rets[20];
	unsigned int n;
};

static void sleeper_fn(void *arg)
{
	int *ret = arg;

	*ret = exec_sleep_ms(250);
}

TEST(sleepers_overlap)
{
	struct sleepers s = { .n = 20 };
	struct img_exec e;
	int64_t t0;
	unsigned int i;

	ASSERT_EQ(0, exec_init(&e, 8));
	for (i = 0; i < s.n; i++)
		ASSERT_EQ(0, exec_spawn(&e, sleeper_fn, &s.rets[i]));
	t0 = now_ms();
	ASSERT_EQ(0, exec_run(&e));
	exec_exit(&e);
	for (i = 0; i < s.n; i++)
		ASSERT_EQ(0, s.rets[i]);
	ASSERT_GE(now_ms() - t0, 250);
	ASSERT_LT(now_ms() - t0, 4000);
}

/* A waitq: a producer on thread A wakes consumers on thread B. */

#define NR_CONSUMERS	8
#define NR_ITEMS	200

struct wq_test {
	pthread_mutex_t lock;
	struct exec_waitq q;
	unsigned int items;		/* produced, not yet consumed */
	unsigned int nr_waiting;	/* consumers that went to sleep at least once */
	bool done;
	unsigned int consumed[NR_CONSUMERS];
	unsigned int total_consumed;
	/* What the threads saw, checked by the test. */
	pthread_t consumer_thread;
	unsigned int wrong_thread;
	int producer_ret;
	int exec_ret[2];
};

struct wq_consumer {
	struct wq_test *t;
	unsigned int idx;
};

static void wq_consumer_fn(void *arg)
{
	struct wq_consumer *c = arg;
	struct wq_test *t = c->t;
	bool counted = false;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!t->items && !t->done) {
			if (!counted) {
				t->nr_waiting++;
				counted = true;
			}
			exec_waitq_sleep(&t->q, &t->lock);
			/* Woken by the other thread, run here. */
			if (!pthread_equal(pthread_self(), t->consumer_thread))
				t->wrong_thread++;
		}
		if (!t->items)
			break;
		t->items--;
		t->consumed[c->idx]++;
		t->total_consumed++;
		/* Give up the thread now and then so others consume too. */
		if (t->total_consumed % 7 == 0) {
			pthread_mutex_unlock(&t->lock);
			exec_sleep_ms(0);
			pthread_mutex_lock(&t->lock);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

static void wq_producer_fn(void *arg)
{
	struct wq_test *t = arg;
	unsigned int i, waiting;

	/* Wait until every consumer sleeps, so the wakeups must cross threads. */
	for (i = 0; i < 5000; i++) {
		pthread_mutex_lock(&t->lock);
		waiting = t->nr_waiting;
		pthread_mutex_unlock(&t->lock);
		if (waiting == NR_CONSUMERS)
			break;
		exec_sleep_ms(1);
	}
	if (waiting != NR_CONSUMERS) {
		t->producer_ret = -ETIMEDOUT;
	}
	for (i = 0; i < NR_ITEMS; i++) {
		pthread_mutex_lock(&t->lock);
		t->items++;
		exec_waitq_wake_one(&t->q);
		pthread_mutex_unlock(&t->lock);
		if (i % 16 == 0)
			exec_sleep_ms(1);
	}
	pthread_mutex_lock(&t->lock);
	t->done = true;
	exec_waitq_wake_all(&t->q);
	pthread_mutex_unlock(&t->lock);
}

static void *wq_consumer_thread(void *arg)
{
	struct wq_test *t = arg;
	struct wq_consumer c[NR_CONSUMERS];
	struct img_exec e;
	unsigned int i;

	t->exec_ret[1] = exec_init(&e, 16);
	if (t->exec_ret[1])
		return NULL;
	for (i = 0; i < NR_CONSUMERS; i++) {
		c[i].t = t;
		c[i].idx = i;
		exec_spawn(&e, wq_consumer_fn, &c[i]);
	}
	t->exec_ret[1] = exec_run(&e);
	exec_exit(&e);
	return NULL;
}

static void *wq_producer_thread(void *arg)
{
	struct wq_test *t = arg;
	struct img_exec e;

	t->exec_ret[0] = exec_init(&e, 16);
	if (t->exec_ret[0])
		return NULL;
	exec_spawn(&e, wq_producer_fn, t);
	t->exec_ret[0] = exec_run(&e);
	exec_exit(&e);
	return NULL;
}

TEST(waitq_across_threads)
{
	struct wq_test t;
	pthread_t a;
	unsigned int i, sum = 0, busy = 0;

	memset(&t, 0, sizeof(t));
	pthread_mutex_init(&t.lock, NULL);
	exec_waitq_init(&t.q);
	/* Set before the thread runs: its consumers compare against it. */
	pthread_mutex_lock(&t.lock);
	ASSERT_EQ(0, pthread_create(&t.consumer_thread, NULL, wq_consumer_thread, &t));
	pthread_mutex_unlock(&t.lock);
	ASSERT_EQ(0, pthread_create(&a, NULL, wq_producer_thread, &t));
	pthread_join(a, NULL);
	pthread_join(t.consumer_thread, NULL);

	ASSERT_EQ(0, t.exec_ret[0]);
	ASSERT_EQ(0, t.exec_ret[1]);
	ASSERT_EQ(0, t.producer_ret);
	ASSERT_EQ(0U, t.wrong_thread);
	ASSERT_EQ(0U, t.items);
	ASSERT_EQ((unsigned int)NR_ITEMS, t.total_consumed);
	for (i = 0; i < NR_CONSUMERS; i++) {
		sum += t.consumed[i];
		busy += t.consumed[i] > 0;
	}
	ASSERT_EQ((unsigned int)NR_ITEMS, sum);
	/* More than one consumer was woken over the run. */
	ASSERT_GT(busy, 1U);
	ASSERT_EQ(NULL, t.q.head);
	pthread_mutex_destroy(&t.lock);
}

/* exec_mutex: coroutines on two threads never share the section. */

#define MUTEX_COROS	4
#define MUTEX_ROUNDS	20

struct mutex_test {
	struct exec_mutex m;
	atomic_int inside;
	atomic_int overlaps;
	atomic_int max_waiters_seen;
	unsigned int counter;	/* protected by m */
	int sleep_errs;
	int exec_ret[2];
};

static void mutex_coro_fn(void *arg)
{
	struct mutex_test *t = arg;
	unsigned int i;

	for (i = 0; i < MUTEX_ROUNDS; i++) {
		unsigned int before;

		exec_mutex_lock(&t->m);
		if (atomic_fetch_add(&t->inside, 1) != 0)
			atomic_fetch_add(&t->overlaps, 1);
		before = t->counter;
		/* Sleep on I/O inside the section: the point of exec_mutex. */
		if (exec_sleep_ms(1))
			t->sleep_errs++;
		t->counter = before + 1;
		atomic_fetch_sub(&t->inside, 1);
		exec_mutex_unlock(&t->m);
	}
}

struct mutex_thread {
	struct mutex_test *t;
	int *ret;
};

static void *mutex_thread(void *arg)
{
	struct mutex_thread *mt = arg;
	struct img_exec e;
	unsigned int i;

	*mt->ret = exec_init(&e, 16);
	if (*mt->ret)
		return NULL;
	for (i = 0; i < MUTEX_COROS; i++)
		exec_spawn(&e, mutex_coro_fn, mt->t);
	*mt->ret = exec_run(&e);
	exec_exit(&e);
	return NULL;
}

TEST(mutex_across_threads)
{
	struct mutex_test t;
	struct mutex_thread mt[2];
	pthread_t th[2];
	unsigned int i;

	memset(&t, 0, sizeof(t));
	exec_mutex_init(&t.m);
	for (i = 0; i < 2; i++) {
		mt[i].t = &t;
		mt[i].ret = &t.exec_ret[i];
		ASSERT_EQ(0, pthread_create(&th[i], NULL, mutex_thread, &mt[i]));
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ASSERT_EQ(0, t.exec_ret[0]);
	ASSERT_EQ(0, t.exec_ret[1]);
	ASSERT_EQ(0, t.sleep_errs);
	ASSERT_EQ(0, atomic_load(&t.overlaps));
	/* No increment lost: each section read, slept, then wrote. */
	ASSERT_EQ(2U * MUTEX_COROS * MUTEX_ROUNDS, t.counter);
	ASSERT_FALSE(t.m.held);
	ASSERT_EQ(NULL, t.m.waiters.head);
	exec_mutex_destroy(&t.m);
}

/* exec_run_sync */

struct sync_call {
	int ret;
	bool in_coro;
	bool nested_same_coro;
	struct coro *self;
};

static int sync_value_fn(void *arg)
{
	struct sync_call *c = arg;

	c->in_coro = exec_self() != NULL;
	return c->ret;
}

static int sync_nested_inner(void *arg)
{
	struct sync_call *c = arg;

	c->nested_same_coro = exec_self() == c->self;
	return 7;
}

static int sync_nested_outer(void *arg)
{
	struct sync_call *c = arg;

	c->self = exec_self();
	/* From a coroutine: runs directly, on no new executor. */
	return exec_run_sync(sync_nested_inner, c) + 1;
}

TEST(run_sync)
{
	static const int values[] = { 0, 42, -ENOSPC, -EIO, 1 << 30 };
	struct sync_call c;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(values); i++) {
		memset(&c, 0, sizeof(c));
		c.ret = values[i];
		ASSERT_EQ(values[i], exec_run_sync(sync_value_fn, &c));
		ASSERT_TRUE(c.in_coro);
		/* The temporary executor is gone again. */
		ASSERT_EQ(NULL, exec_current());
	}
	memset(&c, 0, sizeof(c));
	ASSERT_EQ(8, exec_run_sync(sync_nested_outer, &c));
	ASSERT_NE(NULL, c.self);
	ASSERT_TRUE(c.nested_same_coro);
}

/* Stack depth: ~128 KiB of frames, with I/O at the bottom. */

#define FRAME_BYTES	1024

static unsigned int deep_sum(unsigned int depth, int fd, int *io_ret)
{
	volatile unsigned char frame[FRAME_BYTES];
	unsigned int i, sum = 0;

	for (i = 0; i < FRAME_BYTES; i++)
		frame[i] = (unsigned char)(depth + i);
	if (depth == 0) {
		char b[512];

		/* Switch away and back with the stack this deep. */
		*io_ret = exec_sleep_ms(1);
		if (!*io_ret)
			*io_ret = exec_pread(fd, b, sizeof(b), 0) == sizeof(b) ? 0 : -EIO;
	} else {
		sum = deep_sum(depth - 1, fd, io_ret);
	}
	/* The frame survived the switches below it. */
	for (i = 0; i < FRAME_BYTES; i++)
		sum += frame[i] == (unsigned char)(depth + i);
	return sum;
}

struct deep_call {
	unsigned int depth;
	int fd;
	int io_ret;
};

static int deep_fn(void *arg)
{
	struct deep_call *c = arg;

	return (int)deep_sum(c->depth, c->fd, &c->io_ret);
}

TEST(deep_stack)
{
	struct deep_call c = { .depth = 127 };

	c.fd = temp_fd();
	ASSERT_LE(0, c.fd);
	ASSERT_EQ(0, ftruncate(c.fd, 4096));
	/* 128 frames of 1 KiB each, every byte intact. */
	ASSERT_EQ(128 * FRAME_BYTES, exec_run_sync(deep_fn, &c));
	ASSERT_EQ(0, c.io_ret);
	close(c.fd);
}

#ifndef TEST_ASAN
/*
 * Past the stack: the guard page faults instead of overwriting the
 * neighbouring mapping.  (ASan catches the fault itself and exits
 * instead of dying of the signal.)
 */
TEST_SIGNAL(stack_overflow_faults, SIGSEGV)
{
	struct deep_call c = { .depth = 1024 };	/* 1 MiB of frames */

	c.fd = temp_fd();
	ASSERT_LE(0, c.fd);
	exec_run_sync(deep_fn, &c);
	ASSERT_TRUE(false) TH_LOG("a 1 MiB call chain did not fault");
}
#endif

TEST_HARNESS_MAIN
