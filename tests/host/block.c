// SPDX-License-Identifier: GPL-2.0
/*
 * The block layer's request path on a target of the test's own, which
 * keeps its data in memory, fails the requests the test tells it to, and
 * counts the requests inside it: exact statistics, the error actions
 * (report, ignore, stop with its pause, resume and retry, the hold limit,
 * shutdown), drain under load, and the write notifiers.  One thread plays
 * a queue thread; the test's own thread is the control side.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "exec.h"

#include "kselftest_harness.h"

/* The harness compares a literal (int) with enums and unsigned counters. */
#pragma GCC diagnostic ignored "-Wsign-compare"

#define DEV_BYTES	(1U << 20)

/* The test target: memory, injected errors, a count of requests inside. */
struct mem {
	char data[DEV_BYTES];
	int fail_err;		/* -errno for the next failing requests */
	int fail_ops;		/* mask of 1 << BLK_OP_* that fail */
	int fail_count;		/* how many more fail; -1: all */
	unsigned int delay_ms;	/* each request sleeps this long inside */
	int inside;		/* atomic */
	int max_inside;
};

static struct mem *mem_of(struct tgt *t)
{
	return t->priv;
}

/* Returns the injected error for @op, or 0. */
static int mem_fault(struct mem *m, enum blk_op op)
{
	int err = 0;

	if (__atomic_load_n(&m->fail_count, __ATOMIC_SEQ_CST) &&
	    (m->fail_ops & (1 << op))) {
		err = m->fail_err;
		if (m->fail_count > 0)
			__atomic_sub_fetch(&m->fail_count, 1, __ATOMIC_SEQ_CST);
	}
	return err;
}

static int mem_io(struct tgt *t, enum blk_op op, void *rbuf, const void *wbuf,
		  uint32_t len, uint64_t off)
{
	struct mem *m = mem_of(t);
	int err, n = __atomic_add_fetch(&m->inside, 1, __ATOMIC_SEQ_CST);

	if (n > m->max_inside)
		m->max_inside = n;
	if (m->delay_ms)
		exec_sleep_ms(m->delay_ms);
	err = mem_fault(m, op);
	if (!err) {
		if (rbuf)
			memcpy(rbuf, m->data + off, len);
		else if (wbuf)
			memcpy(m->data + off, wbuf, len);
		else if (op == BLK_OP_DISCARD || op == BLK_OP_WRITE_ZEROES)
			memset(m->data + off, 0, len);
	}
	__atomic_sub_fetch(&m->inside, 1, __ATOMIC_SEQ_CST);
	return err ? err : (int)len;
}

static int mem_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	return mem_io(t, BLK_OP_READ, buf, NULL, len, off);
}

static int mem_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		     unsigned int flags)
{
	return mem_io(t, BLK_OP_WRITE, NULL, buf, len, off);
}

static int mem_flush(struct tgt *t)
{
	int ret = mem_io(t, BLK_OP_FLUSH, NULL, NULL, 0, 0);

	return ret < 0 ? ret : 0;
}

static int mem_discard(struct tgt *t, uint64_t off, uint64_t len)
{
	int ret = mem_io(t, BLK_OP_DISCARD, NULL, NULL, len, off);

	return ret < 0 ? ret : 0;
}

static int mem_write_zeroes(struct tgt *t, uint64_t off, uint64_t len, unsigned int flags)
{
	int ret = mem_io(t, BLK_OP_WRITE_ZEROES, NULL, NULL, len, off);

	return ret < 0 ? ret : 0;
}

static const struct tgt_ops mem_ops = {
	.name = "mem",
	.read = mem_read,
	.write = mem_write,
	.flush = mem_flush,
	.discard = mem_discard,
	.write_zeroes = mem_write_zeroes,
};

/* One request a coroutine of the queue thread sends. */
struct req {
	enum blk_op op;
	uint64_t off, len;
	char *buf;
	int ret;
	bool done;		/* atomic */
	struct blk_queue *q;
};

static void req_main(void *arg)
{
	struct req *r = arg;

	r->ret = blk_submit(r->q, r->op, 0, r->buf, r->off, r->len);
	__atomic_store_n(&r->done, true, __ATOMIC_SEQ_CST);
}

/* The queue thread: runs @nr requests at once, returns when all are done. */
struct qthread {
	pthread_t thread;
	struct req *reqs;
	unsigned int nr;
};

static void *qthread_main(void *arg)
{
	struct qthread *qt = arg;
	struct img_exec e;
	unsigned int i;

	if (exec_init(&e, 64))
		return NULL;
	for (i = 0; i < qt->nr; i++)
		exec_spawn(&e, req_main, &qt->reqs[i]);
	exec_run(&e);
	exec_exit(&e);
	return NULL;
}

static void qthread_start(struct qthread *qt, struct req *reqs, unsigned int nr)
{
	qt->reqs = reqs;
	qt->nr = nr;
	pthread_create(&qt->thread, NULL, qthread_main, qt);
}

static void qthread_join(struct qthread *qt)
{
	pthread_join(qt->thread, NULL);
}

/* Events seen, newest last. */
#define MAX_EVENTS	64
struct events {
	pthread_mutex_t lock;
	struct blk_event ev[MAX_EVENTS];
	unsigned int n;
};

static void record_event(void *ctx, const struct blk_event *ev)
{
	struct events *e = ctx;

	pthread_mutex_lock(&e->lock);
	if (e->n < MAX_EVENTS)
		e->ev[e->n++] = *ev;
	pthread_mutex_unlock(&e->lock);
}

static unsigned int count_events(struct events *e, enum blk_event_type type,
				 enum blk_err_action action)
{
	unsigned int i, n = 0;

	pthread_mutex_lock(&e->lock);
	for (i = 0; i < e->n; i++)
		if (e->ev[i].type == type &&
		    (type != BLK_EV_IO_ERROR || e->ev[i].action == action))
			n++;
	pthread_mutex_unlock(&e->lock);
	return n;
}

/* Waits up to 5 s for @cond; returns whether it came true. */
#define WAIT_FOR(cond) ({						\
	int _i;								\
	for (_i = 0; _i < 5000 && !(cond); _i++)			\
		usleep(1000);						\
	(cond);								\
})

FIXTURE(blk)
{
	struct mem *m;
	struct tgt t;
	struct blk_dev d;
	struct events ev;
	char *buf;
};

FIXTURE_VARIANT(blk)
{
	enum blk_err_action werror;
	enum blk_err_action rerror;
};

FIXTURE_VARIANT_ADD(blk, defaults)
{
	.werror = BLK_ERR_ENOSPC,
	.rerror = BLK_ERR_REPORT,
};

FIXTURE_SETUP(blk)
{
	struct blk_config cfg = {
		.werror = variant->werror,
		.rerror = variant->rerror,
	};

	self->m = calloc(1, sizeof(*self->m));
	ASSERT_NE(NULL, self->m);
	memset(&self->t, 0, sizeof(self->t));
	self->t.ops = &mem_ops;
	self->t.priv = self->m;
	self->t.caps.size_bytes = DEV_BYTES;
	self->t.caps.can_flush = true;
	self->t.caps.can_discard = true;
	self->t.caps.can_write_zeroes = true;
	ASSERT_EQ(0, blk_dev_init(&self->d, 7, &self->t, &cfg, 2));
	pthread_mutex_init(&self->ev.lock, NULL);
	self->ev.n = 0;
	blk_set_event_fn(&self->d, record_event, &self->ev);
	self->buf = aligned_alloc(4096, 64 * 4096);
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(blk)
{
	blk_dev_exit(&self->d);
	pthread_mutex_destroy(&self->ev.lock);
	free(self->buf);
	free(self->m);
}

/* A known load gives exact counters, per queue and summed. */
TEST_F(blk, stats_exact)
{
	struct req reqs[20];
	struct qthread qt;
	struct blk_stats st;
	unsigned int i, b;
	uint64_t hist = 0;

	for (i = 0; i < 20; i++) {
		struct req *r = &reqs[i];

		memset(r, 0, sizeof(*r));
		r->q = &self->d.queues[1];
		r->buf = self->buf + (i % 8) * 8192;
		if (i < 10) {
			r->op = BLK_OP_READ;
			r->len = 4096;
		} else if (i < 15) {
			r->op = BLK_OP_WRITE;
			r->len = 8192;
		} else if (i < 17) {
			r->op = BLK_OP_FLUSH;
		} else {
			r->op = BLK_OP_DISCARD;
			r->len = 65536;
		}
		r->off = i * 32768;
	}
	qthread_start(&qt, reqs, 20);
	qthread_join(&qt);
	for (i = 0; i < 20; i++)
		ASSERT_GE(reqs[i].ret, 0);

	blk_stats_read(&self->d, -1, &st);
	EXPECT_EQ(10ULL, st.op[BLK_OP_READ].ops);
	EXPECT_EQ(40960ULL, st.op[BLK_OP_READ].bytes);
	EXPECT_EQ(5ULL, st.op[BLK_OP_WRITE].ops);
	EXPECT_EQ(40960ULL, st.op[BLK_OP_WRITE].bytes);
	EXPECT_EQ(2ULL, st.op[BLK_OP_FLUSH].ops);
	EXPECT_EQ(3ULL, st.op[BLK_OP_DISCARD].ops);
	EXPECT_EQ(3ULL * 65536ULL, st.op[BLK_OP_DISCARD].bytes);
	EXPECT_EQ(0ULL, st.op[BLK_OP_WRITE_ZEROES].ops);
	EXPECT_EQ(0ULL, st.op[BLK_OP_WRITE].failed);
	EXPECT_EQ(0ULL, st.inflight);
	EXPECT_NE(0ULL, st.last_done_ns);
	for (b = 0; b < BLK_HIST_BINS; b++)
		hist += st.op[BLK_OP_READ].hist[b];
	EXPECT_EQ(10ULL, hist);

	/* All of it was queue 1's. */
	blk_stats_read(&self->d, 0, &st);
	EXPECT_EQ(0ULL, st.op[BLK_OP_READ].ops);
	blk_stats_read(&self->d, 1, &st);
	EXPECT_EQ(10ULL, st.op[BLK_OP_READ].ops);
}

/* werror=enospc reports an error that is not about space. */
TEST_F(blk, enospc_policy_reports_eio)
{
	struct req r = { .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 4096,
			 .buf = self->buf };
	struct qthread qt;
	struct blk_stats st;

	self->m->fail_err = -EIO;
	self->m->fail_ops = 1 << BLK_OP_WRITE;
	self->m->fail_count = 1;
	qthread_start(&qt, &r, 1);
	qthread_join(&qt);
	EXPECT_EQ(-EIO, r.ret);
	blk_stats_read(&self->d, -1, &st);
	EXPECT_EQ(1ULL, st.op[BLK_OP_WRITE].failed);
	EXPECT_EQ(0ULL, st.op[BLK_OP_WRITE].ops);
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_IO_ERROR, BLK_ERR_REPORT));
	EXPECT_EQ(0, count_events(&self->ev, BLK_EV_STOP, 0));
}

/*
 * werror=enospc holds a write that found no space, pauses the device so
 * later requests wait too, and retries it on resume: nothing fails.
 */
TEST_F(blk, enospc_pauses_and_resume_retries)
{
	struct req r[2] = {
		{ .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 4096,
		  .off = 8192, .buf = self->buf },
	};
	struct req rd = { .q = &self->d.queues[1], .op = BLK_OP_READ, .len = 4096,
			  .off = 8192, .buf = self->buf + 65536 };
	struct qthread qt, qt2;
	enum blk_op op;
	unsigned int held;
	int err;

	memset(self->buf, 0x5a, 4096);
	self->m->fail_err = -ENOSPC;
	self->m->fail_ops = 1 << BLK_OP_WRITE;
	self->m->fail_count = -1;
	qthread_start(&qt, r, 1);
	ASSERT_TRUE(WAIT_FOR(blk_paused(&self->d, &err, &op, &held) == BLK_PAUSED_ERROR &&
			     held == 1));
	EXPECT_EQ(-ENOSPC, err);
	EXPECT_EQ(BLK_OP_WRITE, op);
	EXPECT_TRUE(WAIT_FOR(count_events(&self->ev, BLK_EV_STOP, 0) == 1));
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_IO_ERROR, BLK_ERR_STOP));

	/* A read arriving while paused waits at the gate. */
	qthread_start(&qt2, &rd, 1);
	usleep(200000);
	EXPECT_FALSE(__atomic_load_n(&r[0].done, __ATOMIC_SEQ_CST));
	EXPECT_FALSE(__atomic_load_n(&rd.done, __ATOMIC_SEQ_CST));
	EXPECT_EQ(0, self->m->inside);

	/* Room again: resume retries the held write first, then the read goes. */
	self->m->fail_count = 0;
	EXPECT_EQ(0, blk_resume(&self->d));
	EXPECT_EQ(-EALREADY, blk_resume(&self->d));
	qthread_join(&qt);
	qthread_join(&qt2);
	EXPECT_EQ(4096, r[0].ret);
	EXPECT_EQ(4096, rd.ret);
	EXPECT_EQ(0, memcmp(self->buf + 65536, self->buf, 4096));
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_RESUME, 0));
	EXPECT_EQ(BLK_RUNNING, blk_paused(&self->d, &err, &op, &held));
}

/* A request held past the hold limit fails with its error; the device runs. */
TEST_F(blk, hold_limit_fails_held)
{
	struct req r = { .q = &self->d.queues[0], .op = BLK_OP_WRITE_ZEROES, .len = 4096 };
	struct qthread qt;
	enum blk_op op;
	unsigned int held;
	int err;

	self->d.cfg.hold_limit_ms = 100;
	self->m->fail_err = -EDQUOT;
	self->m->fail_ops = 1 << BLK_OP_WRITE_ZEROES;
	self->m->fail_count = -1;
	qthread_start(&qt, &r, 1);
	ASSERT_TRUE(WAIT_FOR(blk_paused(&self->d, &err, &op, &held) == BLK_PAUSED_ERROR));
	blk_tick(&self->d);	/* too early: nothing happens */
	EXPECT_EQ(BLK_PAUSED_ERROR, blk_paused(&self->d, &err, &op, &held));
	usleep(150000);
	blk_tick(&self->d);
	qthread_join(&qt);
	EXPECT_EQ(-EDQUOT, r.ret);
	EXPECT_EQ(BLK_RUNNING, blk_paused(&self->d, &err, &op, &held));
	/* A RESUME event ends the STOP, as a resume's would. */
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_RESUME, 0));
}

/*
 * The hold limit counts from a request's arrival, as the kernel's timeout
 * does, not from the pause: the time it spent in the target before it
 * failed counts, and so does a first hold whose retry failed again.
 */
TEST_F(blk, hold_limit_counts_from_arrival)
{
	struct req r = { .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 4096,
			 .buf = self->buf };
	struct qthread qt;
	enum blk_op op;
	unsigned int held;
	int err;

	blk_set_hold_limit(&self->d, 300);
	self->m->fail_err = -ENOSPC;
	self->m->fail_ops = 1 << BLK_OP_WRITE;
	self->m->fail_count = -1;
	self->m->delay_ms = 200;
	qthread_start(&qt, &r, 1);
	ASSERT_TRUE(WAIT_FOR(blk_paused(&self->d, &err, &op, &held) == BLK_PAUSED_ERROR));
	/* Still no room: the retry fails after 200 ms more and is held again. */
	EXPECT_EQ(0, blk_resume(&self->d));
	ASSERT_TRUE(WAIT_FOR(blk_paused(&self->d, &err, &op, &held) == BLK_PAUSED_ERROR &&
			     held == 1));
	/* The new pause is young, the request 400 ms old: it fails now. */
	blk_tick(&self->d);
	qthread_join(&qt);
	EXPECT_EQ(-ENOSPC, r.ret);
	EXPECT_EQ(BLK_RUNNING, blk_paused(&self->d, &err, &op, &held));
}

/* Runs blk_tick() on the first write error, inside blk_hold()'s unlocked part. */
struct tick_on_error {
	struct blk_dev *d;
	int ticks;	/* atomic */
};

static void tick_on_error(void *ctx, const struct blk_event *ev)
{
	struct tick_on_error *t = ctx;

	if (ev->type == BLK_EV_IO_ERROR && __atomic_fetch_add(&t->ticks, 1, __ATOMIC_SEQ_CST) == 0)
		blk_tick(t->d);
}

/*
 * A tick that comes between a request's hold and its sleep, the request
 * already past the limit, fails it: it is not retried (which held it
 * again, pausing the device with a request the kernel was about to time
 * out).
 */
TEST_F(blk, hold_limit_tick_before_sleep)
{
	struct req r = { .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 4096,
			 .buf = self->buf };
	struct tick_on_error t = { .d = &self->d };
	struct qthread qt;
	enum blk_op op;
	unsigned int held;
	int err;

	blk_set_hold_limit(&self->d, 50);
	blk_set_event_fn(&self->d, tick_on_error, &t);
	self->m->fail_err = -ENOSPC;
	self->m->fail_ops = 1 << BLK_OP_WRITE;
	self->m->fail_count = -1;
	self->m->delay_ms = 100;
	qthread_start(&qt, &r, 1);
	EXPECT_TRUE(WAIT_FOR(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST)));
	if (!__atomic_load_n(&r.done, __ATOMIC_SEQ_CST))
		blk_shutdown(&self->d);	/* held again: let it go */
	qthread_join(&qt);
	EXPECT_EQ(-ENOSPC, r.ret);
	EXPECT_EQ(BLK_RUNNING, blk_paused(&self->d, &err, &op, &held));
}

/*
 * A request waiting at a user's pause fails with EIO once it waited past
 * the hold limit (the kernel would kill an unprivileged server for it);
 * the pause stays, and a younger request keeps waiting until resume.
 */
TEST_F(blk, hold_limit_fails_gate_waiters)
{
	struct req old = { .q = &self->d.queues[0], .op = BLK_OP_READ, .len = 4096,
			   .buf = self->buf };
	struct req young = { .q = &self->d.queues[1], .op = BLK_OP_READ, .len = 4096,
			     .buf = self->buf + 8192 };
	struct qthread qt, qt2;
	struct blk_stats st;
	enum blk_op op;
	unsigned int held;
	int err;

	blk_set_hold_limit(&self->d, 400);
	EXPECT_EQ(0, blk_pause(&self->d));
	qthread_start(&qt, &old, 1);
	usleep(600000);
	qthread_start(&qt2, &young, 1);
	usleep(100000);
	blk_tick(&self->d);
	qthread_join(&qt);
	EXPECT_EQ(-EIO, old.ret);
	EXPECT_FALSE(__atomic_load_n(&young.done, __ATOMIC_SEQ_CST));
	EXPECT_EQ(BLK_PAUSED_USER, blk_paused(&self->d, &err, &op, &held));
	EXPECT_EQ(0, blk_resume(&self->d));
	qthread_join(&qt2);
	EXPECT_EQ(4096, young.ret);
	blk_stats_read(&self->d, -1, &st);
	EXPECT_EQ(1ULL, st.op[BLK_OP_READ].failed);
	EXPECT_EQ(1ULL, st.op[BLK_OP_READ].ops);
}

/* Shutting down fails what is held, and what comes later, at once. */
TEST_F(blk, shutdown_fails_held_and_new)
{
	struct req r = { .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 4096,
			 .buf = self->buf };
	struct req later = { .q = &self->d.queues[0], .op = BLK_OP_READ, .len = 4096,
			     .buf = self->buf };
	struct qthread qt;
	enum blk_op op;
	unsigned int held;
	int err;

	self->m->fail_err = -ENOSPC;
	self->m->fail_ops = 1 << BLK_OP_WRITE;
	self->m->fail_count = -1;
	qthread_start(&qt, &r, 1);
	ASSERT_TRUE(WAIT_FOR(blk_paused(&self->d, &err, &op, &held) == BLK_PAUSED_ERROR));
	blk_shutdown(&self->d);
	qthread_join(&qt);
	EXPECT_EQ(-ENOSPC, r.ret);
	EXPECT_EQ(0, blk_pause(&self->d));
	qthread_start(&qt, &later, 1);
	qthread_join(&qt);
	EXPECT_EQ(-EIO, later.ret);
}

/* A user's pause drains, holds new requests, and resume lets them through. */
TEST_F(blk, user_pause_resume)
{
	struct req r = { .q = &self->d.queues[1], .op = BLK_OP_FLUSH };
	struct qthread qt;

	EXPECT_EQ(0, blk_pause(&self->d));
	EXPECT_EQ(-EALREADY, blk_pause(&self->d));
	qthread_start(&qt, &r, 1);
	usleep(100000);
	EXPECT_FALSE(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST));
	EXPECT_EQ(0, blk_resume(&self->d));
	qthread_join(&qt);
	EXPECT_EQ(0, r.ret);
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_STOP, 0));
	EXPECT_EQ(1, count_events(&self->ev, BLK_EV_RESUME, 0));
}

/* Drain under load: after blk_drain_begin() nothing is inside the target. */
TEST_F(blk, drain_under_load)
{
	enum { NR = 32 };
	struct req reqs[NR];
	struct qthread qt[2];
	unsigned int i, round;

	self->m->delay_ms = 2;
	for (i = 0; i < NR; i++) {
		memset(&reqs[i], 0, sizeof(reqs[i]));
		reqs[i].q = &self->d.queues[i % 2];
		reqs[i].op = i % 3 ? BLK_OP_WRITE : BLK_OP_READ;
		reqs[i].len = 4096;
		reqs[i].off = i * 4096;
		reqs[i].buf = self->buf + (i % 16) * 4096;
	}
	/* Each coroutine sends its request again and again, in rounds. */
	for (round = 0; round < 20; round++) {
		qthread_start(&qt[0], reqs, NR / 2);
		qthread_start(&qt[1], reqs + NR / 2, NR / 2);
		for (i = 0; i < 5; i++) {
			blk_drain_begin(&self->d);
			ASSERT_EQ(0, __atomic_load_n(&self->m->inside, __ATOMIC_SEQ_CST));
			usleep(3000);
			ASSERT_EQ(0, __atomic_load_n(&self->m->inside, __ATOMIC_SEQ_CST));
			blk_drain_end(&self->d);
		}
		qthread_join(&qt[0]);
		qthread_join(&qt[1]);
		for (i = 0; i < NR; i++) {
			ASSERT_EQ(4096, reqs[i].ret);
			reqs[i].done = false;
		}
	}
	/* The requests did overlap, so the drains had something to wait for. */
	EXPECT_GT(self->m->max_inside, 1);
}

struct counting_notifier {
	struct blk_write_notifier n;
	unsigned int calls[BLK_OP_NR];
	uint64_t bytes;
};

static void count_notify(struct blk_write_notifier *n, enum blk_op op, uint64_t off,
			 uint64_t len, int ret)
{
	struct counting_notifier *c = (struct counting_notifier *)n;

	c->calls[op]++;
	if (ret >= 0)
		c->bytes += len;
}

/* Write notifiers see writes, discards and write-zeroes, not reads or flushes. */
TEST_F(blk, write_notifiers)
{
	struct counting_notifier c = { .n.notify = count_notify };
	struct req reqs[4] = {
		{ .q = &self->d.queues[0], .op = BLK_OP_READ, .len = 512, .buf = self->buf },
		{ .q = &self->d.queues[0], .op = BLK_OP_WRITE, .len = 1024, .buf = self->buf },
		{ .q = &self->d.queues[0], .op = BLK_OP_DISCARD, .len = 4096, .off = 4096 },
		{ .q = &self->d.queues[0], .op = BLK_OP_FLUSH },
	};
	struct qthread qt;

	blk_drain_begin(&self->d);
	blk_add_write_notifier(&self->d, &c.n);
	blk_drain_end(&self->d);
	qthread_start(&qt, reqs, 4);
	qthread_join(&qt);
	EXPECT_EQ(0ULL, c.calls[BLK_OP_READ]);
	EXPECT_EQ(1ULL, c.calls[BLK_OP_WRITE]);
	EXPECT_EQ(1ULL, c.calls[BLK_OP_DISCARD]);
	EXPECT_EQ(0ULL, c.calls[BLK_OP_FLUSH]);
	EXPECT_EQ(1024ULL + 4096, c.bytes);
	blk_drain_begin(&self->d);
	blk_remove_write_notifier(&self->d, &c.n);
	blk_drain_end(&self->d);
	EXPECT_EQ(NULL, self->d.notifiers);
}

/* werror=ignore completes a failed write as done; rerror=stop pauses on reads. */
TEST(ignore_and_rerror_stop)
{
	struct blk_config cfg = { .werror = BLK_ERR_IGNORE, .rerror = BLK_ERR_STOP };
	struct mem *m = calloc(1, sizeof(*m));
	struct tgt t = { .ops = &mem_ops, .priv = m };
	struct blk_dev d;
	struct blk_stats st;
	struct qthread qt;
	char *buf = aligned_alloc(4096, 4096);
	struct req w = { .op = BLK_OP_WRITE, .len = 4096, .buf = buf };
	struct req r = { .op = BLK_OP_READ, .len = 4096, .buf = buf };
	enum blk_op op;
	unsigned int held;
	int err;

	ASSERT_EQ(0, blk_dev_init(&d, 1, &t, &cfg, 1));
	w.q = r.q = &d.queues[0];
	m->fail_err = -EIO;
	m->fail_ops = (1 << BLK_OP_WRITE) | (1 << BLK_OP_READ);
	m->fail_count = -1;
	qthread_start(&qt, &w, 1);
	qthread_join(&qt);
	EXPECT_EQ(4096, w.ret);
	blk_stats_read(&d, -1, &st);
	EXPECT_EQ(1ULL, st.op[BLK_OP_WRITE].ops);
	EXPECT_EQ(0ULL, st.op[BLK_OP_WRITE].failed);

	qthread_start(&qt, &r, 1);
	ASSERT_TRUE(WAIT_FOR(blk_paused(&d, &err, &op, &held) == BLK_PAUSED_ERROR));
	EXPECT_EQ(BLK_OP_READ, op);
	EXPECT_EQ(-EIO, err);
	m->fail_count = 0;
	blk_resume(&d);
	qthread_join(&qt);
	EXPECT_EQ(4096, r.ret);
	blk_dev_exit(&d);
	free(buf);
	free(m);
}

TEST(policy_names)
{
	enum blk_err_action a;

	ASSERT_EQ(0, blk_err_action_parse("enospc", &a));
	EXPECT_EQ(BLK_ERR_ENOSPC, a);
	ASSERT_EQ(0, blk_err_action_parse("ignore", &a));
	EXPECT_EQ(BLK_ERR_IGNORE, a);
	EXPECT_EQ(-EINVAL, blk_err_action_parse("pause", &a));
	EXPECT_STREQ("stop", blk_err_action_name(BLK_ERR_STOP));
	EXPECT_STREQ("write-zeroes", blk_op_name(BLK_OP_WRITE_ZEROES));
}

TEST_HARNESS_MAIN
