// SPDX-License-Identifier: GPL-2.0
/*
 * Block jobs on targets of the test's own that keep their data in
 * memory: the granule bitmap, backup's point in time under guest writes
 * that race with the copy (copy-before-write), mirror converging under
 * writes, its complete (the pivot sees a target equal to the device) and
 * its cancel once ready (COMPLETED, a consistent copy, no pivot), and the
 * framework's refusals, pause, resume, cancel and events; an incremental
 * or differential backup's bitmap sync (on success, on cancel) on a
 * target that keeps one bitmap.  One thread plays a queue thread; the
 * test's own thread is the control side.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "exec.h"
#include "job.h"
#include "jobmap.h"

#include "kselftest_harness.h"

#pragma GCC diagnostic ignored "-Wsign-compare"

#define DEV_BYTES	(8U << 20)
#define GRAN		4096U

/* A target in memory: its bytes, and a delay per request to widen races. */
struct mem {
	char *data;
	uint64_t size;
	unsigned int delay_ms;
};

static int mem_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	struct mem *m = t->priv;

	if (m->delay_ms)
		exec_sleep_ms(m->delay_ms);
	memcpy(buf, m->data + off, len);
	return len;
}

static int mem_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		     unsigned int flags)
{
	struct mem *m = t->priv;

	if (m->delay_ms)
		exec_sleep_ms(m->delay_ms);
	memcpy(m->data + off, buf, len);
	return len;
}

static int64_t mem_block_status(struct tgt *t, uint64_t off, uint64_t len,
				struct tgt_extent *ext)
{
	ext->flags = TGT_EXT_ALLOCATED | TGT_EXT_DATA;
	return len;
}

/* The data stays: the test compares it after the job closed the target. */
static int mem_close(struct tgt *t)
{
	free(t->priv);
	return 0;
}

static const struct tgt_ops mem_ops = {
	.name = "mem",
	.read = mem_read,
	.write = mem_write,
	.block_status = mem_block_status,
	.close = mem_close,
};

/*
 * The same with one persistent bitmap "b" of 64 KiB granules that every
 * write marks, and TAKE/RELEASE as a format keeps them (tgt.h).
 */
#define BM_GRAN		(64U << 10)
#define BM_WORDS	((DEV_BYTES / BM_GRAN + 63) / 64)
static pthread_mutex_t bm_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t bm_bits[BM_WORDS], bm_frozen[BM_WORDS];
static bool bm_busy;

static int mem_bm_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
			unsigned int flags)
{
	uint64_t i;

	pthread_mutex_lock(&bm_lock);
	for (i = off / BM_GRAN; i <= (off + len - 1) / BM_GRAN; i++)
		bm_bits[i / 64] |= 1ULL << (i % 64);
	pthread_mutex_unlock(&bm_lock);
	return mem_write(t, buf, len, off, flags);
}

static int mem_bitmap(struct tgt *t, enum tgt_bitmap_op op, const char *name,
		      struct tgt_bitmap_args *a)
{
	unsigned int w;

	if (strcmp(name, "b"))
		return -ENOENT;
	pthread_mutex_lock(&bm_lock);
	if (bm_busy != (op == TGT_BITMAP_RELEASE)) {
		pthread_mutex_unlock(&bm_lock);
		return -EBUSY;
	}
	for (w = 0; w < BM_WORDS; w++) {
		if (op == TGT_BITMAP_TAKE) {
			bm_frozen[w] = bm_bits[w];
			bm_bits[w] = a->clear ? 0 : bm_bits[w];
		} else if (a->restore) {
			bm_bits[w] |= bm_frozen[w];
		}
	}
	bm_busy = op == TGT_BITMAP_TAKE;
	a->bits = bm_frozen;
	a->nr_bits = DEV_BYTES / BM_GRAN;
	a->granularity_bytes = BM_GRAN;
	pthread_mutex_unlock(&bm_lock);
	return 0;
}

static const struct tgt_ops mem_bm_ops = {
	.name = "mem",
	.read = mem_read,
	.write = mem_bm_write,
	.block_status = mem_block_status,
	.close = mem_close,
	.bitmap = mem_bitmap,
};

/* Sets the bitmap to exactly the granules of @list (ends with -1). */
static void bm_set(const int *list)
{
	memset(bm_bits, 0, sizeof(bm_bits));
	for (; *list >= 0; list++)
		bm_bits[*list / 64] |= 1ULL << (*list % 64);
}

static bool bm_is(const int *list)
{
	uint64_t want[BM_WORDS] = { 0 };

	for (; *list >= 0; list++)
		want[*list / 64] |= 1ULL << (*list % 64);
	return !memcmp(want, bm_bits, sizeof(want)) && !bm_busy;
}

/* A malloc'ed target, as the jobs take them. */
static struct tgt *mem_new(uint64_t size)
{
	struct tgt *t = calloc(1, sizeof(*t));
	struct mem *m = calloc(1, sizeof(*m));

	m->data = calloc(1, size);
	m->size = size;
	t->ops = &mem_ops;
	t->priv = m;
	t->caps.size_bytes = size;
	t->lock = t->data_lock = IMG_LOCK_INIT;
	return t;
}

static void pattern(char *p, uint64_t off, uint64_t len, unsigned char seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		p[i] = (char)(((off + i) >> 9) * 31 + seed);
}

/* Guest writes of @seed's pattern at @offs (4 KiB each), from a queue thread. */
struct writes {
	struct blk_dev *d;
	const uint64_t *offs;
	unsigned int n;
	unsigned char seed;
	pthread_t thread;
	int failed;
};

struct one_write {
	struct writes *w;
	unsigned int i;
	char *buf;
};

static void write_main(void *arg)
{
	struct one_write *o = arg;
	struct writes *w = o->w;

	pattern(o->buf, w->offs[o->i], GRAN, w->seed);
	if (blk_submit(&w->d->queues[0], BLK_OP_WRITE, 0, o->buf, w->offs[o->i], GRAN) != GRAN)
		w->failed++;
}

static void *writes_thread(void *arg)
{
	struct writes *w = arg;
	struct one_write *o = calloc(w->n, sizeof(*o));
	struct img_exec e;
	unsigned int i;

	if (exec_init(&e, 64))
		return NULL;
	for (i = 0; i < w->n; i++) {
		o[i] = (struct one_write){ .w = w, .i = i, .buf = aligned_alloc(4096, GRAN) };
		exec_spawn(&e, write_main, &o[i]);
	}
	exec_run(&e);
	exec_exit(&e);
	for (i = 0; i < w->n; i++)
		free(o[i].buf);
	free(o);
	return NULL;
}

static void writes_run(struct writes *w)
{
	pthread_create(&w->thread, NULL, writes_thread, w);
	pthread_join(w->thread, NULL);
}

/* Job events seen. */
struct jev {
	pthread_mutex_t lock;
	int type[16];
	char err[16][128];
	unsigned int n;
};

static void record(void *ctx, const struct blk_job_info *job, int type, const char *err)
{
	struct jev *e = ctx;

	pthread_mutex_lock(&e->lock);
	if (e->n < 16) {
		snprintf(e->err[e->n], sizeof(e->err[0]), "%s", err ? err : "");
		e->type[e->n++] = type;
	}
	pthread_mutex_unlock(&e->lock);
}

static bool saw(struct jev *e, int type)
{
	bool r = false;
	unsigned int i;

	pthread_mutex_lock(&e->lock);
	for (i = 0; i < e->n; i++)
		r |= e->type[i] == type;
	pthread_mutex_unlock(&e->lock);
	return r;
}

/* Waits up to 20 s for @cond. */
#define WAIT_FOR(cond) ({						\
	int _i;								\
	for (_i = 0; _i < 20000 && !(cond); _i++)			\
		usleep(1000);						\
	(cond);								\
})

static bool job_gone(struct blk_dev *d)
{
	struct blk_job_info info;

	return blk_job_query(d, &info) == -ENOENT;
}

/* What the pivot saw. */
struct pivot {
	struct blk_dev *d;
	struct tgt *target;
	bool equal;
	int calls;
};

static int pivot_fn(void *ctx, struct tgt *target, struct tgt **old)
{
	*old = NULL;
	struct pivot *p = ctx;
	struct mem *src = p->d->top->priv, *dst = target->priv;

	p->calls++;
	p->target = target;
	p->equal = !memcmp(src->data, dst->data, src->size);
	return 0;
}

FIXTURE(job)
{
	struct tgt *top;
	struct blk_dev d;
	struct jev ev;
	char *orig;
	char why[256];
};

FIXTURE_SETUP(job)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT };
	struct mem *m;

	self->top = mem_new(DEV_BYTES);
	m = self->top->priv;
	pattern(m->data, 0, DEV_BYTES, 1);
	self->orig = malloc(DEV_BYTES);
	memcpy(self->orig, m->data, DEV_BYTES);
	ASSERT_EQ(0, blk_dev_init(&self->d, 3, self->top, &cfg, 1));
	pthread_mutex_init(&self->ev.lock, NULL);
	self->ev.n = 0;
	blk_job_set_event_fn(&self->d, record, &self->ev);
}

FIXTURE_TEARDOWN(job)
{
	struct mem *m = self->top->priv;

	blk_job_shutdown(&self->d);
	blk_dev_exit(&self->d);
	free(m->data);
	free(m);
	free(self->top);
	free(self->orig);
}

static struct blk_copy_opts copy_opts(struct tgt *target, uint64_t speed)
{
	return (struct blk_copy_opts){
		.target = target, .speed = speed, .gran_bytes = GRAN, .cluster_bytes = 65536,
	};
}

TEST(jobmap_ops)
{
	struct jobmap m;

	ASSERT_EQ(0, jobmap_init(&m, 1000 * 4096 + 1, 12));
	EXPECT_EQ(1001, m.nbits);
	EXPECT_EQ(1001, jobmap_next_set(&m, 0));
	jobmap_set_range(&m, 4095, 2);		/* granules 0 and 1 */
	jobmap_set_range(&m, 1000 * 4096, 1);
	EXPECT_EQ(3, jobmap_count(&m));
	EXPECT_EQ(0, jobmap_next_set(&m, 0));
	EXPECT_EQ(2, jobmap_next_clear(&m, 0));
	EXPECT_EQ(1000, jobmap_next_set(&m, 2));
	EXPECT_TRUE(jobmap_clear(&m, 1));
	EXPECT_FALSE(jobmap_clear(&m, 1));
	EXPECT_FALSE(jobmap_set(&m, 0));
	EXPECT_EQ(2, jobmap_count(&m));
	EXPECT_EQ(1001, jobmap_next_clear(&m, 1000));
	jobmap_free(&m);
}

/*
 * The target holds the device as it was at the start, although the guest
 * overwrote granules the slow job had not copied yet.
 */
TEST_F(job, backup_point_in_time)
{
	struct tgt *target = mem_new(DEV_BYTES);
	struct mem *tm = target->priv, *dm = self->top->priv;
	struct blk_copy_opts o = copy_opts(target, 1 << 20);
	static uint64_t offs[64];
	struct writes w = { .d = &self->d, .offs = offs, .n = 64, .seed = 7 };
	char *snap = malloc(DEV_BYTES);
	unsigned int i;

	for (i = 0; i < 64; i++)
		offs[i] = (uint64_t)(i * 977 % 2048) * GRAN;
	/* Keep the target's memory past the job's close, to compare it. */
	char *tdata = tm->data;

	ASSERT_EQ(0, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	writes_run(&w);
	EXPECT_EQ(0, w.failed);
	for (i = 0; i < 64; i++) {
		pattern(snap, offs[i], GRAN, 7);
		EXPECT_EQ(0, memcmp(dm->data + offs[i], snap, GRAN));
	}
	EXPECT_EQ(0, blk_job_set_speed(&self->d, NULL, 0));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	EXPECT_FALSE(saw(&self->ev, BLK_JOB_EV_ERROR));
	EXPECT_EQ(0, memcmp(tdata, self->orig, DEV_BYTES));
	free(tdata);
	free(snap);
}

TEST_F(job, refusals_and_control)
{
	struct tgt *target = mem_new(DEV_BYTES), *t2 = mem_new(DEV_BYTES);
	struct blk_copy_opts o = copy_opts(target, 4096 * 1024);
	struct blk_copy_opts o2 = copy_opts(t2, 0);
	char *d1 = ((struct mem *)target->priv)->data, *d2 = ((struct mem *)t2->priv)->data;
	struct blk_job_info info;

	o.speed = 1000;
	EXPECT_EQ(-EINVAL, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	EXPECT_NE(NULL, strstr(self->why, "below one cluster"));
	o.speed = 65536;
	ASSERT_EQ(0, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	EXPECT_EQ(-EBUSY, blk_mirror_start(&self->d, &o2, self->why, sizeof(self->why)));
	EXPECT_STREQ("the device already runs a job", self->why);
	EXPECT_EQ(-EOPNOTSUPP, blk_job_complete(&self->d, NULL));
	EXPECT_EQ(-ENOENT, blk_job_pause(&self->d, "nosuch"));
	EXPECT_EQ(-EINVAL, blk_job_set_speed(&self->d, NULL, 100));
	EXPECT_EQ(0, blk_job_pause(&self->d, "ublkb3"));
	EXPECT_EQ(-EALREADY, blk_job_pause(&self->d, NULL));
	ASSERT_EQ(0, blk_job_query(&self->d, &info));
	EXPECT_STREQ("backup", info.type);
	EXPECT_STREQ("paused", blk_job_status_name(info.status));
	EXPECT_TRUE(info.paused);
	EXPECT_EQ(DEV_BYTES, info.len);
	EXPECT_EQ(0, blk_job_resume(&self->d, NULL));
	EXPECT_EQ(-EALREADY, blk_job_resume(&self->d, NULL));
	ASSERT_EQ(0, blk_job_query(&self->d, &info));
	EXPECT_STREQ("running", blk_job_status_name(info.status));
	EXPECT_EQ(0, blk_job_cancel(&self->d, NULL, false));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_CANCELLED));
	EXPECT_FALSE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	/* The device is free for the next job, and the hook gone. */
	EXPECT_EQ(NULL, self->d.before_write);
	ASSERT_EQ(0, blk_mirror_start(&self->d, &o2, self->why, sizeof(self->why)));
	EXPECT_EQ(0, blk_job_cancel(&self->d, NULL, true));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	free(d1);
	free(d2);
}

/* Writes while the mirror runs, then complete: the pivot sees an equal target. */
TEST_F(job, mirror_complete)
{
	struct tgt *target = mem_new(DEV_BYTES);
	struct mem *tm = target->priv;
	struct pivot p = { .d = &self->d };
	struct blk_copy_opts o = copy_opts(target, 4 << 20);
	static uint64_t offs[64];
	struct writes w = { .d = &self->d, .offs = offs, .n = 64, .seed = 9 };
	unsigned int i;

	o.pivot = pivot_fn;
	o.pivot_ctx = &p;
	for (i = 0; i < 64; i++)
		offs[i] = (uint64_t)(i * 1237 % 2048) * GRAN;
	ASSERT_EQ(0, blk_mirror_start(&self->d, &o, self->why, sizeof(self->why)));
	EXPECT_EQ(-EBUSY, blk_job_complete(&self->d, NULL));
	writes_run(&w);
	EXPECT_EQ(0, blk_job_set_speed(&self->d, NULL, 0));
	ASSERT_TRUE(WAIT_FOR(saw(&self->ev, BLK_JOB_EV_READY)));
	/* Ready: the job copies later writes in the background, without a complete. */
	w.seed = 11;
	writes_run(&w);
	EXPECT_TRUE(WAIT_FOR(!memcmp(tm->data, ((struct mem *)self->top->priv)->data,
				     DEV_BYTES)));
	w.seed = 13;
	writes_run(&w);
	EXPECT_EQ(0, blk_job_complete(&self->d, NULL));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	EXPECT_EQ(1, p.calls);
	EXPECT_TRUE(p.equal);
	EXPECT_EQ(target, p.target);
	/* The pivot owns the target now. */
	free(tm->data);
	free(tm);
	free(target);
}

/* Cancel once ready: COMPLETED, the target a copy, no pivot. */
TEST_F(job, mirror_cancel_ready)
{
	struct tgt *target = mem_new(DEV_BYTES);
	struct mem *tm = target->priv;
	struct pivot p = { .d = &self->d };
	struct blk_copy_opts o = copy_opts(target, 0);
	static uint64_t offs[32];
	struct writes w = { .d = &self->d, .offs = offs, .n = 32, .seed = 5 };
	char *tdata = tm->data;
	unsigned int i;

	o.pivot = pivot_fn;
	o.pivot_ctx = &p;
	for (i = 0; i < 32; i++)
		offs[i] = (uint64_t)(i * 331 % 2048) * GRAN;
	ASSERT_EQ(0, blk_mirror_start(&self->d, &o, self->why, sizeof(self->why)));
	ASSERT_TRUE(WAIT_FOR(saw(&self->ev, BLK_JOB_EV_READY)));
	writes_run(&w);
	EXPECT_EQ(0, blk_job_cancel(&self->d, NULL, false));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	EXPECT_FALSE(saw(&self->ev, BLK_JOB_EV_CANCELLED));
	EXPECT_EQ(0, p.calls);
	EXPECT_EQ(0, memcmp(tdata, ((struct mem *)self->top->priv)->data, DEV_BYTES));
	EXPECT_EQ(NULL, self->d.notifiers);
	free(tdata);
}

/*
 * An incremental backup: the target (the previous backup, 0xee here)
 * receives exactly the marked granules as of the start, though the guest
 * writes one of them meanwhile; on success the bitmap marks only the
 * writes since the start; on cancel the old marks come back.
 */
TEST_F(job, backup_incremental_bitmap_sync)
{
	static const int marked[] = { 3, 10, 11, 100, -1 }, after[] = { 3, 50, -1 };
	static const int cancelled[] = { 3, 10, 11, 50, 100, -1 };
	static uint64_t offs[] = { 3 * BM_GRAN + 8192, 50 * BM_GRAN };
	struct writes w = { .d = &self->d, .offs = offs, .n = 2, .seed = 7 };
	struct tgt *target = mem_new(DEV_BYTES);
	char *tdata = ((struct mem *)target->priv)->data;
	struct blk_copy_opts o = copy_opts(target, 128 << 10);
	uint64_t g;

	self->top->ops = &mem_bm_ops;
	memset(tdata, 0xee, DEV_BYTES);
	bm_set(marked);
	o.bitmap = "b";
	ASSERT_EQ(0, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	EXPECT_TRUE(bm_busy);
	writes_run(&w);
	EXPECT_EQ(0, blk_job_set_speed(&self->d, NULL, 0));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	for (g = 0; g < DEV_BYTES / BM_GRAN; g++) {
		bool copy = g == 3 || g == 10 || g == 11 || g == 100;
		char *want = copy ? self->orig + g * BM_GRAN : NULL;
		uint64_t i;

		for (i = 0; !want && i < BM_GRAN && tdata[g * BM_GRAN + i] == (char)0xee; i++)
			;
		if (want) {
			EXPECT_EQ(0, memcmp(tdata + g * BM_GRAN, want, BM_GRAN));
		} else {
			EXPECT_EQ(BM_GRAN, i);
		}
	}
	EXPECT_TRUE(bm_is(after));
	free(tdata);

	/* Cancelled: old marks and new writes. */
	target = mem_new(DEV_BYTES);
	tdata = ((struct mem *)target->priv)->data;
	o = copy_opts(target, 65536);
	o.bitmap = "b";
	bm_set(marked);
	ASSERT_EQ(0, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	w.n = 1;
	w.offs = &offs[1];
	writes_run(&w);
	EXPECT_EQ(0, blk_job_cancel(&self->d, NULL, false));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_CANCELLED));
	EXPECT_TRUE(bm_is(cancelled));
	free(tdata);
}

/* A differential backup (bitmap-mode never) keeps the old marks on success. */
TEST_F(job, backup_differential_keeps_marks)
{
	static const int marked[] = { 3, -1 }, after[] = { 3, 50, -1 };
	static uint64_t offs[] = { 50 * BM_GRAN };
	struct writes w = { .d = &self->d, .offs = offs, .n = 1, .seed = 7 };
	struct tgt *target = mem_new(DEV_BYTES);
	char *tdata = ((struct mem *)target->priv)->data;
	struct blk_copy_opts o = copy_opts(target, 65536);

	self->top->ops = &mem_bm_ops;
	bm_set(marked);
	o.bitmap = "b";
	o.bitmap_keep = true;
	ASSERT_EQ(0, blk_backup_start(&self->d, &o, self->why, sizeof(self->why)));
	writes_run(&w);
	EXPECT_EQ(0, blk_job_set_speed(&self->d, NULL, 0));
	ASSERT_TRUE(WAIT_FOR(job_gone(&self->d)));
	EXPECT_TRUE(saw(&self->ev, BLK_JOB_EV_COMPLETED));
	EXPECT_EQ(0, memcmp(tdata + 3 * BM_GRAN, self->orig + 3 * BM_GRAN, BM_GRAN));
	EXPECT_TRUE(bm_is(after));
	free(tdata);
}

TEST_HARNESS_MAIN
