// SPDX-License-Identifier: GPL-2.0
/*
 * Changing a device's chain (block/chain.c) on real qcow2 images in a
 * temporary directory, with two threads playing queue threads that send
 * writes and verified reads through blk_submit() all along: an overlay
 * pushed on top (external snapshot), the top replaced by an independent
 * chain (a pivot), an image dropped from the middle (stream), and a
 * change the plane refuses to record.  After each, the data read through
 * the device matches what was written, each node has the role and locks
 * its new place gives it, and qemu-img check (when installed) finds every
 * image clean.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "exec.h"
#include "tgt.h"

#include "kselftest_harness.h"

#pragma GCC diagnostic ignored "-Wsign-compare"

#define DEV_BYTES	(4U << 20)
#define BLK		4096U
#define NR_BLKS		(DEV_BYTES / BLK)
#define NR_QUEUES	2
#define PER_QUEUE	8

/*
 * The model: the stamp last written to each block (0: never written
 * through the device, the base pattern then).  Each coroutine owns the
 * blocks whose index is its own modulo the writers, so no two requests
 * race on a block and a read must return the last stamp exactly.
 */
struct load {
	struct blk_dev *d;
	uint32_t stamp[NR_BLKS];
	bool stop;		/* atomic */
	int errors;		/* atomic: wrong data or failed requests */
	unsigned long ops;	/* atomic */
};

struct worker {
	struct load *l;
	struct blk_queue *q;
	unsigned int id, nr;	/* owns blocks i with i % nr == id */
	unsigned int seed;
};

/* Block @blk holding @stamp (0: the base image's own pattern). */
static void fill(char *buf, uint32_t blk, uint32_t stamp)
{
	uint32_t *w = (uint32_t *)buf;
	unsigned int i;

	for (i = 0; i < BLK / 4; i++)
		w[i] = blk * 2654435761U ^ stamp ^ i;
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	struct load *l = w->l;
	char *buf = aligned_alloc(4096, BLK), *want = aligned_alloc(4096, BLK);
	uint32_t serial = 0;

	while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
		uint32_t blk = (rand_r(&w->seed) % (NR_BLKS / w->nr)) * w->nr + w->id;
		int ret;

		if (rand_r(&w->seed) % 2) {
			uint32_t stamp = (w->id + 1) << 20 | ++serial;

			fill(buf, blk, stamp);
			ret = blk_submit(w->q, BLK_OP_WRITE, 0, buf, (uint64_t)blk * BLK, BLK);
			if (ret == BLK)
				l->stamp[blk] = stamp;
		} else {
			ret = blk_submit(w->q, BLK_OP_READ, 0, buf, (uint64_t)blk * BLK, BLK);
			fill(want, blk, l->stamp[blk]);
			if (ret == BLK && memcmp(buf, want, BLK))
				ret = -EILSEQ;
		}
		if (ret != BLK)
			__atomic_add_fetch(&l->errors, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&l->ops, 1, __ATOMIC_SEQ_CST);
	}
	free(buf);
	free(want);
}

struct qthread {
	pthread_t thread;
	struct worker w[PER_QUEUE];
};

static void *qthread_main(void *arg)
{
	struct qthread *qt = arg;
	struct img_exec e;
	unsigned int i;

	if (exec_init(&e, 64))
		return NULL;
	for (i = 0; i < PER_QUEUE; i++)
		exec_spawn(&e, worker_main, &qt->w[i]);
	exec_run(&e);
	exec_exit(&e);
	return NULL;
}

static void load_start(struct load *l, struct qthread *qt)
{
	unsigned int q, i;

	l->stop = false;
	for (q = 0; q < NR_QUEUES; q++) {
		for (i = 0; i < PER_QUEUE; i++) {
			struct worker *w = &qt[q].w[i];

			w->l = l;
			w->q = &l->d->queues[q];
			w->id = q * PER_QUEUE + i;
			w->nr = NR_QUEUES * PER_QUEUE;
			w->seed = w->id + 1;
		}
		pthread_create(&qt[q].thread, NULL, qthread_main, &qt[q]);
	}
}

/* Lets the load run until it did @more requests beyond what it did. */
static void load_run(struct load *l, unsigned long more)
{
	unsigned long until = __atomic_load_n(&l->ops, __ATOMIC_SEQ_CST) + more;

	while (__atomic_load_n(&l->ops, __ATOMIC_SEQ_CST) < until)
		usleep(1000);
}

static void load_stop(struct load *l, struct qthread *qt)
{
	unsigned int q;

	__atomic_store_n(&l->stop, true, __ATOMIC_SEQ_CST);
	for (q = 0; q < NR_QUEUES; q++)
		pthread_join(qt[q].thread, NULL);
}

/* Reads the whole device through the layer and compares with the model. */
struct verify {
	struct blk_dev *d;
	struct load *l;
	int bad;
};

static int verify_fn(void *arg)
{
	struct verify *v = arg;
	char *buf = aligned_alloc(4096, BLK), *want = aligned_alloc(4096, BLK);
	uint32_t blk;

	for (blk = 0; blk < NR_BLKS; blk++) {
		int ret = blk_submit(&v->d->queues[0], BLK_OP_READ, 0, buf,
				     (uint64_t)blk * BLK, BLK);

		fill(want, blk, v->l->stamp[blk]);
		if (ret != BLK || memcmp(buf, want, BLK))
			v->bad++;
	}
	free(buf);
	free(want);
	return 0;
}

static int verify_device(struct blk_dev *d, struct load *l)
{
	struct verify v = { .d = d, .l = l };

	exec_run_sync(verify_fn, &v);
	return v.bad;
}

/* Creates a qcow2 image @file over @backing (NULL: none). */
static int make_qcow2(const char *file, const char *backing)
{
	struct tgt_create_opts o = {
		.file = file,
		.size_bytes = DEV_BYTES,
		.backing_file = backing,
		.backing_fmt = backing ? "qcow2" : NULL,
	};

	return qcow2_tgt_ops.create(&o);
}

/* Writes the base pattern (stamp 0) into every block of @file. */
struct fill_call {
	struct tgt *t;
	int ret;
};

static int fill_fn(void *arg)
{
	struct fill_call *c = arg;
	char *buf = aligned_alloc(4096, BLK);
	uint32_t blk;

	c->ret = 0;
	for (blk = 0; blk < NR_BLKS && !c->ret; blk++) {
		fill(buf, blk, 0);
		if (c->t->ops->write(c->t, buf, BLK, (uint64_t)blk * BLK, 0) != BLK)
			c->ret = -EIO;
	}
	free(buf);
	return c->ret;
}

static int make_base(const char *file)
{
	struct tgt t = { 0 };
	struct fill_call c = { .t = &t };
	int ret = make_qcow2(file, NULL);

	if (ret)
		return ret;
	ret = tgt_open_file(&t, file, "qcow2", 0);
	if (ret)
		return ret;
	exec_run_sync(fill_fn, &c);
	tgt_close(&t);
	return c.ret;
}

/* Opens @file as a device's top is opened: heap-allocated, read-write. */
static struct tgt *open_node(const char *file, unsigned int flags)
{
	struct tgt *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	if (tgt_open_file(t, strdup(file), "qcow2", flags)) {
		free(t);
		return NULL;
	}
	return t;
}

/* qemu-img check exits 0 on a clean image; -1 when it is not installed. */
static int qemu_check(const char *file)
{
	char cmd[PATH_MAX + 64];

	if (system("command -v qemu-img >/dev/null 2>&1"))
		return -1;
	snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", file);
	return WEXITSTATUS(system(cmd));
}

static int fail_record(void *ctx, const struct tgt *top)
{
	int *calls = ctx;

	(*calls)++;
	return -EIO;
}

struct record {
	const struct tgt *tops[4];
	unsigned int n;
};

static int note_record(void *ctx, const struct tgt *top)
{
	struct record *r = ctx;

	if (r->n < 4)
		r->tops[r->n++] = top;
	return 0;
}

FIXTURE(chain)
{
	char dir[64];
	char base[PATH_MAX], snap[PATH_MAX], other[PATH_MAX];
	struct tgt *top;
	struct blk_dev d;
	struct load *l;
	struct qthread qt[NR_QUEUES];
};

FIXTURE_SETUP(chain)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT };

	strcpy(self->dir, "/tmp/imgblk-chain.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->base, sizeof(self->base), "%s/base.qcow2", self->dir);
	snprintf(self->snap, sizeof(self->snap), "%s/snap.qcow2", self->dir);
	snprintf(self->other, sizeof(self->other), "%s/other.qcow2", self->dir);
	ASSERT_EQ(0, make_base(self->base));
	self->top = open_node(self->base, TGT_O_FIXED_SIZE);
	ASSERT_NE(NULL, self->top);
	ASSERT_EQ(0, blk_dev_init(&self->d, 3, self->top, &cfg, NR_QUEUES));
	self->l = calloc(1, sizeof(*self->l));
	ASSERT_NE(NULL, self->l);
	self->l->d = &self->d;
}

FIXTURE_TEARDOWN(chain)
{
	char cmd[128];

	if (self->d.top) {
		tgt_free_chain(self->d.top);
		blk_dev_exit(&self->d);
	}
	free(self->l);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", self->dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", self->dir);
}

/*
 * External snapshot under load: the overlay takes every write from the
 * switch on, the old top becomes a read-only backing file with a backing
 * file's locks, no request fails or reads wrong data, and both images
 * check clean.
 */
TEST_F(chain, push_overlay_under_load)
{
	struct record rec = { 0 };
	struct blk_chain_change c = { .record = note_record, .ctx = &rec };
	struct tgt *old = self->top, *ov;

	load_start(self->l, self->qt);
	load_run(self->l, 2000);
	ASSERT_EQ(0, make_qcow2(self->snap, self->base));
	ov = open_node(self->snap, TGT_O_FIXED_SIZE | TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, ov, &c));
	load_run(self->l, 2000);
	load_stop(self->l, self->qt);

	EXPECT_EQ(0, self->l->errors);
	EXPECT_EQ(ov, self->d.top);
	EXPECT_EQ(old, ov->backing);
	EXPECT_EQ(ov, old->overlay);
	EXPECT_EQ(1, old->chain_depth);
	EXPECT_TRUE(old->caps.read_only);
	EXPECT_EQ(TGT_ROLE_BACKING, old->role);
	/* A backing file's locks: read; refuse writers and resizers. */
	EXPECT_EQ(IMG_PERM_CONSISTENT_READ, old->lock.use);
	EXPECT_EQ(IMG_PERM_WRITE | IMG_PERM_RESIZE, old->lock.unshare);
	EXPECT_EQ(1, rec.n);
	EXPECT_EQ(ov, rec.tops[0]);
	EXPECT_GT(c.held_ns, 0);
	EXPECT_EQ(0, verify_device(&self->d, self->l));

	/* Closed as the server closes its chain; then QEMU's view. */
	tgt_free_chain(self->d.top);
	self->d.top = NULL;
	blk_dev_exit(&self->d);
	if (qemu_check(self->base) < 0)
		SKIP(return, "qemu-img is not installed: images not checked");
	EXPECT_EQ(0, qemu_check(self->base));
	EXPECT_EQ(0, qemu_check(self->snap));
}

/* The files as a process crash at the record hook (E4) would leave them. */
static const char *const crash_files[] = { "base", "mid", "snap" };

struct crash_copy {
	const char *dir;
	char file[3][PATH_MAX];
	int ret;
};

static int copy_files(struct crash_copy *cc, const char *tag)
{
	char cmd[3 * PATH_MAX];
	unsigned int i;

	for (i = 0; i < 3; i++) {
		snprintf(cc->file[i], sizeof(cc->file[i]), "%s/%s-%s.qcow2", cc->dir, tag,
			 crash_files[i]);
		snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s/%s.qcow2' '%s'", cc->dir,
			 crash_files[i], cc->file[i]);
		if (system(cmd))
			return -EIO;
	}
	return 0;
}

static int crash_record(void *ctx, const struct tgt *top)
{
	struct crash_copy *cc = ctx;

	cc->ret = copy_files(cc, "e4");
	return 0;
}

/*
 * Reads the copies as `recover` would open them: snap over mid over base
 * (linked to the copies, since the headers name the originals).  Returns
 * the number of blocks that differ from the model, or -errno.
 */
static int crash_verify(struct crash_copy *cc, struct load *l)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT };
	struct tgt *t[3];
	struct blk_dev d;
	unsigned int i;
	int bad;

	for (i = 0; i < 3; i++) {
		t[i] = open_node(cc->file[i], TGT_O_RDONLY | TGT_O_NO_BACKING);
		if (!t[i])
			return -EIO;
	}
	tgt_link_backing(t[1], t[0]);
	tgt_link_backing(t[2], t[1]);
	if (blk_dev_init(&d, 9, t[2], &cfg, 1))
		return -ENOMEM;
	bad = verify_device(&d, l);
	blk_dev_exit(&d);
	tgt_free_chain(t[2]);
	return bad;
}

/*
 * The crash order of an external snapshot at its record point (E4: the
 * state file would name the new overlay from there) and after the switch
 * (E5).  The device serves mid over base, and the load allocated
 * clusters in mid, whose mappings are in its caches until a flush; then
 * snap is pushed over mid.  A process killed at E4 or E5 leaves files on
 * which snap over mid over base shows every write the device acknowledged
 * before the snapshot, and each file checks clean.
 */
TEST_F(chain, push_overlay_crash_points)
{
	struct crash_copy cc = { .dir = self->dir, .ret = -1 }, e5 = { .dir = self->dir };
	struct blk_chain_change c = { .record = crash_record, .ctx = &cc };
	char mid[PATH_MAX];
	struct tgt *ov;
	unsigned int i;

	snprintf(mid, sizeof(mid), "%s/mid.qcow2", self->dir);
	ASSERT_EQ(0, make_qcow2(mid, self->base));
	ov = open_node(mid, TGT_O_FIXED_SIZE | TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, ov, NULL));
	load_start(self->l, self->qt);
	load_run(self->l, 3000);
	load_stop(self->l, self->qt);
	ASSERT_EQ(0, self->l->errors);
	ASSERT_EQ(0, make_qcow2(self->snap, mid));
	ov = open_node(self->snap, TGT_O_FIXED_SIZE | TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, ov, &c));
	ASSERT_EQ(0, cc.ret);
	ASSERT_EQ(0, copy_files(&e5, "e5"));
	EXPECT_EQ(0, crash_verify(&cc, self->l));
	EXPECT_EQ(0, crash_verify(&e5, self->l));
	if (qemu_check(cc.file[0]) < 0)
		SKIP(return, "qemu-img is not installed: images not checked");
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(0, qemu_check(cc.file[i]));
		EXPECT_EQ(0, qemu_check(e5.file[i]));
	}
}

/* A change the plane cannot record changes nothing. */
TEST_F(chain, refused_record_changes_nothing)
{
	int calls = 0;
	struct blk_chain_change c = { .record = fail_record, .ctx = &calls };
	struct tgt *ov;

	ASSERT_EQ(0, make_qcow2(self->snap, self->base));
	ov = open_node(self->snap, TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	EXPECT_EQ(-EIO, blk_chain_push_overlay(&self->d, ov, &c));
	EXPECT_EQ(1, calls);
	EXPECT_EQ(self->top, self->d.top);
	EXPECT_EQ(NULL, self->top->backing);
	EXPECT_FALSE(self->top->caps.read_only);
	EXPECT_EQ(TGT_ROLE_IMAGE, self->top->role);
	EXPECT_TRUE(self->top->lock.use & IMG_PERM_WRITE);
	tgt_free_chain(ov);
	/* Still written as before. */
	load_start(self->l, self->qt);
	load_run(self->l, 1000);
	load_stop(self->l, self->qt);
	EXPECT_EQ(0, self->l->errors);
	EXPECT_EQ(0, verify_device(&self->d, self->l));
}

/* A pivot to an independent chain hands the old one back whole. */
TEST_F(chain, replace_top_with_copy)
{
	struct blk_chain_change c = { 0 };
	struct tgt *old = NULL, *copy;
	char cmd[2 * PATH_MAX + 64];

	load_start(self->l, self->qt);
	load_run(self->l, 2000);
	load_stop(self->l, self->qt);
	/* What a mirror would have made: the same data, elsewhere. */
	tgt_close(self->top);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", self->base, self->other);
	ASSERT_EQ(0, system(cmd));
	ASSERT_EQ(0, tgt_open(self->top));
	copy = open_node(self->other, TGT_O_FIXED_SIZE);
	ASSERT_NE(NULL, copy);
	ASSERT_EQ(0, blk_chain_replace_top(&self->d, copy, &old, &c));
	EXPECT_EQ(self->top, old);
	EXPECT_EQ(copy, self->d.top);
	load_start(self->l, self->qt);
	load_run(self->l, 2000);
	load_stop(self->l, self->qt);
	EXPECT_EQ(0, self->l->errors);
	EXPECT_EQ(0, verify_device(&self->d, self->l));
	EXPECT_EQ(0, tgt_free_chain(old));
}

/*
 * A pivot to a node of the chain (active commit's end, once the overlay
 * holds nothing the base lacks): the base is reopened read-write with an
 * image's locks, the overlay handed back.
 */
TEST_F(chain, replace_top_with_base)
{
	struct blk_chain_change c = { 0 };
	struct tgt *old = NULL, *ov;

	ASSERT_EQ(0, make_qcow2(self->snap, self->base));
	ov = open_node(self->snap, TGT_O_FIXED_SIZE | TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, ov, &c));
	EXPECT_FALSE(ov->cfg.open_flags & TGT_O_NO_BACKING);
	ASSERT_TRUE(self->top->caps.read_only);
	ASSERT_EQ(0, blk_chain_replace_top(&self->d, self->top, &old, &c));
	EXPECT_EQ(ov, old);
	EXPECT_EQ(NULL, ov->backing);
	EXPECT_EQ(self->top, self->d.top);
	EXPECT_EQ(NULL, self->top->overlay);
	EXPECT_EQ(0, self->top->chain_depth);
	EXPECT_FALSE(self->top->caps.read_only);
	EXPECT_EQ(TGT_ROLE_IMAGE, self->top->role);
	EXPECT_TRUE(self->top->lock.use & IMG_PERM_WRITE);
	EXPECT_EQ(0, tgt_free_chain(old));
	load_start(self->l, self->qt);
	load_run(self->l, 2000);
	load_stop(self->l, self->qt);
	EXPECT_EQ(0, self->l->errors);
	EXPECT_EQ(0, verify_device(&self->d, self->l));
}

/* Stream's copy: every block the load wrote is read and written back, into the top. */
static int copy_up_fn(void *arg)
{
	struct verify *v = arg;
	char *buf = aligned_alloc(4096, BLK);
	uint32_t blk;

	for (blk = 0; blk < NR_BLKS; blk++) {
		uint64_t off = (uint64_t)blk * BLK;

		if (!v->l->stamp[blk])
			continue;
		if (blk_submit(&v->d->queues[0], BLK_OP_READ, 0, buf, off, BLK) != BLK ||
		    blk_submit(&v->d->queues[0], BLK_OP_WRITE, 0, buf, off, BLK) != BLK)
			v->bad++;
	}
	free(buf);
	return 0;
}

/*
 * Stream's end: snap over mid over base, where the load wrote into mid;
 * what mid holds is copied up into snap, then mid leaves the chain.
 * snap's header names base, and the device's data is unchanged.
 */
TEST_F(chain, drop_intermediate)
{
	struct blk_chain_change c = { 0 };
	struct verify v = { .d = &self->d, .l = self->l };
	struct tgt *mid_node, *top, *dropped = NULL;
	char mid[PATH_MAX], cmd[2 * PATH_MAX + 96];

	snprintf(mid, sizeof(mid), "%s/mid.qcow2", self->dir);
	ASSERT_EQ(0, make_qcow2(mid, self->base));
	ASSERT_EQ(0, make_qcow2(self->snap, mid));
	mid_node = open_node(mid, TGT_O_NO_BACKING);
	ASSERT_NE(NULL, mid_node);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, mid_node, &c));
	load_start(self->l, self->qt);
	load_run(self->l, 3000);
	load_stop(self->l, self->qt);
	top = open_node(self->snap, TGT_O_NO_BACKING);
	ASSERT_NE(NULL, top);
	ASSERT_EQ(0, blk_chain_push_overlay(&self->d, top, &c));
	EXPECT_EQ(2, self->top->chain_depth);
	exec_run_sync(copy_up_fn, &v);
	ASSERT_EQ(0, v.bad);

	/* Refusals: base not below, nothing between. */
	EXPECT_EQ(-EINVAL, blk_chain_drop(&self->d, mid_node, top, NULL, &dropped, &c));
	EXPECT_EQ(-EINVAL, blk_chain_drop(&self->d, top, mid_node, NULL, &dropped, &c));

	ASSERT_EQ(0, blk_chain_drop(&self->d, top, self->top, NULL, &dropped, &c));
	EXPECT_EQ(mid_node, dropped);
	EXPECT_EQ(NULL, mid_node->backing);
	EXPECT_EQ(self->top, top->backing);
	EXPECT_EQ(top, self->top->overlay);
	EXPECT_EQ(1, self->top->chain_depth);
	EXPECT_EQ(0, tgt_free_chain(dropped));
	EXPECT_EQ(0, verify_device(&self->d, self->l));
	load_start(self->l, self->qt);
	load_run(self->l, 1000);
	load_stop(self->l, self->qt);
	EXPECT_EQ(0, self->l->errors);
	EXPECT_EQ(0, verify_device(&self->d, self->l));

	tgt_free_chain(self->d.top);
	self->d.top = NULL;
	blk_dev_exit(&self->d);
	if (qemu_check(self->snap) < 0)
		SKIP(return, "qemu-img is not installed: images not checked");
	EXPECT_EQ(0, qemu_check(self->snap));
	EXPECT_EQ(0, qemu_check(self->base));
	snprintf(cmd, sizeof(cmd),
		 "qemu-img info -U '%s' | grep -qx 'backing file: %s'", self->snap, self->base);
	EXPECT_EQ(0, system(cmd));
}

/*
 * A target whose ->open can be made to fail, in memory: the old top of a
 * snapshot that cannot be opened again, neither read-only nor as it was.
 */
static bool flaky_fail_open;

static int flaky_open(struct tgt *t)
{
	static char data[DEV_BYTES];

	if (flaky_fail_open)
		return -EIO;
	t->priv = data;
	t->caps.size_bytes = DEV_BYTES;
	t->caps.read_only = t->cfg.open_flags & TGT_O_RDONLY;
	t->caps.can_flush = true;
	return 0;
}

static int flaky_close(struct tgt *t)
{
	t->priv = NULL;
	return 0;
}

static int flaky_read(struct tgt *t, void *buf, uint32_t len, uint64_t off)
{
	memcpy(buf, (char *)t->priv + off, len);
	return len;
}

static int flaky_write(struct tgt *t, const void *buf, uint32_t len, uint64_t off,
		       unsigned int flags)
{
	memcpy((char *)t->priv + off, buf, len);
	return len;
}

static int flaky_flush(struct tgt *t)
{
	return 0;
}

static const struct tgt_ops flaky_ops = {
	.name = "flaky",
	.open = flaky_open,
	.close = flaky_close,
	.read = flaky_read,
	.write = flaky_write,
	.flush = flaky_flush,
};

/*
 * An old top that cannot even be opened again as it was: the change
 * fails, and the device fails its I/O from then on instead of reaching
 * a node with nothing open (which would crash the server).
 */
TEST(unusable_old_top_fails_io)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT };
	struct tgt *old = calloc(1, sizeof(*old)), *ov = calloc(1, sizeof(*ov));
	struct load *l = calloc(1, sizeof(*l));
	struct blk_dev d;

	ASSERT_TRUE(old && ov && l);
	old->ops = ov->ops = &flaky_ops;
	flaky_fail_open = false;
	ASSERT_EQ(0, tgt_open(old));
	ASSERT_EQ(0, tgt_open(ov));
	ASSERT_EQ(0, blk_dev_init(&d, 5, old, &cfg, 1));
	l->d = &d;
	flaky_fail_open = true;
	EXPECT_EQ(-EIO, blk_chain_push_overlay(&d, ov, NULL));
	EXPECT_EQ(old, d.top);
	EXPECT_EQ(NULL, old->priv);
	/* Every block fails rather than reaching the closed node. */
	EXPECT_EQ(NR_BLKS, verify_device(&d, l));
	EXPECT_EQ(0, tgt_free_chain(ov));
	EXPECT_EQ(0, tgt_free_chain(old));
	blk_dev_exit(&d);
	free(l);
}

/* Bytes of @d's device that its top image allocates itself. */
struct top_bytes {
	struct tgt *top;
	uint64_t bytes;
	int ret;
};

static int top_bytes_fn(void *arg)
{
	struct top_bytes *tb = arg;
	uint64_t off = 0;

	tb->bytes = 0;
	while (off < DEV_BYTES) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(tb->top, off, DEV_BYTES - off, &ext, &depth, &layer);

		if (n <= 0) {
			tb->ret = n ? (int)n : -EIO;
			return tb->ret;
		}
		if (layer == tb->top)
			tb->bytes += n;
		off += n;
	}
	return 0;
}

static uint64_t top_bytes(struct tgt *top)
{
	struct top_bytes tb = { .top = top };

	exec_run_sync(top_bytes_fn, &tb);
	return tb.ret ? 0 : tb.bytes;
}

/*
 * Copy-on-read belongs to the device, not to the image it was added
 * with: asked for on an image without a backing file it has nothing to
 * do, and an external snapshot that gives the device a backing file
 * turns it on (QEMU's copy-on-read filter above the device's node works
 * so), until a drop leaves the top alone again.
 */
TEST(copy_on_read_follows_the_chain)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT,
				  .copy_on_read = true };
	char dir[] = "/tmp/imgblk-cor.XXXXXX", base[64], snap[64], cmd[96];
	struct load *l = calloc(1, sizeof(*l));
	struct tgt *top, *ov, *dropped = NULL;
	struct blk_dev d;

	ASSERT_NE(NULL, l);
	ASSERT_NE(NULL, mkdtemp(dir));
	snprintf(base, sizeof(base), "%s/base.qcow2", dir);
	snprintf(snap, sizeof(snap), "%s/snap.qcow2", dir);
	ASSERT_EQ(0, make_base(base));
	top = open_node(base, TGT_O_FIXED_SIZE);
	ASSERT_NE(NULL, top);
	ASSERT_EQ(0, blk_dev_init(&d, 6, top, &cfg, 1));
	l->d = &d;
	EXPECT_TRUE(d.cfg.copy_on_read);
	EXPECT_FALSE(d.copy_on_read);

	ASSERT_EQ(0, make_qcow2(snap, base));
	ov = open_node(snap, TGT_O_FIXED_SIZE | TGT_O_NO_BACKING);
	ASSERT_NE(NULL, ov);
	ASSERT_EQ(0, blk_chain_push_overlay(&d, ov, NULL));
	EXPECT_TRUE(d.copy_on_read);
	EXPECT_EQ(0, top_bytes(ov));
	/* Reading the device copies what the old top holds into the overlay. */
	EXPECT_EQ(0, verify_device(&d, l));
	EXPECT_EQ(DEV_BYTES, top_bytes(ov));
	EXPECT_TRUE(top->caps.read_only);

	/* The overlay alone: nothing to copy from any more. */
	ASSERT_EQ(0, blk_chain_drop(&d, ov, NULL, NULL, &dropped, NULL));
	EXPECT_EQ(top, dropped);
	EXPECT_EQ(0, tgt_free_chain(dropped));
	EXPECT_FALSE(d.copy_on_read);
	EXPECT_EQ(0, verify_device(&d, l));

	tgt_free_chain(d.top);
	blk_dev_exit(&d);
	free(l);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	EXPECT_EQ(0, system(cmd));
}

TEST_HARNESS_MAIN
