// SPDX-License-Identifier: GPL-2.0
/*
 * Crash-state replay: runs the qcow2 and QED engines over their image
 * files with the executor's recorder on (exec_set_recorder()), then
 * rebuilds from the log the file states a power cut could have left, and
 * checks each one: it opens read-write (repairing what the format says to
 * repair), `qemu-img check` and our own check find no corruption (leaks
 * are allowed), and every guest byte acknowledged before the last
 * completed FLUSH reads back.  The `chain` fixture does the same for the
 * steps that change a chain (external snapshot, commit) over several
 * files and their directory, and checks the right image of each state;
 * it is built from this file as crash_chain (CRASH_CHAIN_ONLY,
 * tests/host/crash_chain.c), the single-file fixture without it.
 * Design and crash model: docs/crash-replay.md.
 *
 * Environment: CRASH_REPLAY_STATES (states per variant, default 450, 100
 * under ASan), CRASH_REPLAY_CHAIN_STATES (the same for the chain
 * variants, default 80, 40 under ASan),
 * CRASH_REPLAY_SEED (default fixed per variant; "random" for a new one),
 * CRASH_REPLAY_ROUNDS (workloads per variant, default 1),
 * CRASH_REPLAY_QCHECK (run qemu-img check on one state in N, default 6,
 * chain 5; 0 never), CRASH_REPLAY_KEEP (directory where failing states
 * are kept, default /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "cli.h"
#include "exec.h"
#include "job.h"
#include "tgt.h"
#include "throttle.h"
#include "util.h"

#include "kselftest_harness.h"

extern char **environ;

#define SECTOR		512ULL
#define KiB		1024ULL
#define MiB		(1024ULL * 1024)
#define NEVER		UINT64_MAX
#define MAX_GOPS	8192
#define MAX_BATCH	4
#define MAX_SNAPS	16
#define QCHECK_JOBS	2

/* Under ASan the engine runs a few times slower: a smaller default budget. */
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_STATES	100
#else
#define DEFAULT_STATES	450
#endif

/* Owners of a guest sector: who decides what it must read. */
#define OWN_INIT	0	/* the backing file's data, or zeros */
#define OWN_ZERO	1	/* a write-zeroes */
#define OWN_ANY		2	/* a discard: may read back as anything */
#define OWN_FIRST_WRITE	16	/* guest op i writes owner i + OWN_FIRST_WRITE */

/* ---------------------------------------------------------------- */
/* Random numbers and sector patterns                                */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s = splitmix64(r->s);
	return r->s;
}

/* Uniform in [0, n); n > 0. */
static uint64_t rnd_below(struct rng *r, uint64_t n)
{
	return rnd(r) % n;
}

static bool rnd_pct(struct rng *r, unsigned int pct)
{
	return rnd_below(r, 100) < pct;
}

/* The 512 bytes owner @own writes to guest sector @s: unique to both. */
static void sector_fill(void *buf, uint32_t own, uint64_t s)
{
	uint64_t w[SECTOR / 8];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(w); i++)
		w[i] = splitmix64(((uint64_t)own << 40) ^ (s << 6) ^ i);
	memcpy(buf, w, SECTOR);
}

static bool sector_is(const void *buf, uint32_t own, uint64_t s)
{
	unsigned char want[SECTOR];

	sector_fill(want, own, s);
	return !memcmp(buf, want, SECTOR);
}

/* ---------------------------------------------------------------- */
/* The recorder: every change the engine makes to the image file      */

enum ev_kind { EV_WRITE, EV_FALLOC, EV_SYNC };

struct rec_ev {
	uint8_t kind;
	bool done;
	int flags;
	int res;
	uint64_t off, len;
	uint64_t seq;
	uint64_t clock;
	uint64_t fsize;		/* file size seen at this event */
	size_t data;		/* offset in the data pool (issued writes) */
};

struct recorder {
	dev_t dev;
	ino_t ino;
	struct rec_ev *ev;
	size_t n, cap;
	unsigned char *pool;
	size_t pool_n, pool_cap;
	uint64_t clock;		/* shared with guest op boundaries */
	unsigned int foreign;	/* changes to a file that is not the image */
	bool on;
};

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		abort();
	return p;
}

/* Appends event @r, on the file @st describes, to @rc's log at @clock. */
static void rec_append(struct recorder *rc, const struct exec_rec *r, const struct stat *st,
		       uint64_t clock)
{
	struct rec_ev *e;

	if (rc->n == rc->cap) {
		rc->cap = rc->cap ? 2 * rc->cap : 4096;
		rc->ev = xrealloc(rc->ev, rc->cap * sizeof(*rc->ev));
	}
	e = &rc->ev[rc->n++];
	memset(e, 0, sizeof(*e));
	e->kind = r->kind == EXEC_REC_WRITE ? EV_WRITE :
		  r->kind == EXEC_REC_FALLOCATE ? EV_FALLOC : EV_SYNC;
	e->done = r->done;
	e->flags = r->flags;
	e->res = r->res;
	e->off = r->off;
	e->len = r->len;
	e->seq = r->seq;
	e->clock = clock;
	e->fsize = st->st_size;
	if (e->kind == EV_WRITE && !e->done) {
		if (rc->pool_n + r->len > rc->pool_cap) {
			rc->pool_cap = MAX(2 * rc->pool_cap, rc->pool_n + r->len + MiB);
			rc->pool = xrealloc(rc->pool, rc->pool_cap);
		}
		memcpy(rc->pool + rc->pool_n, r->data, r->len);
		e->data = rc->pool_n;
		rc->pool_n += r->len;
	}
}

/*
 * The next point of @rc's clock.  Atomic: in the chain tests a snapshot
 * or a commit job records from a thread of its own while guest ops run.
 */
static uint64_t tick(struct recorder *rc)
{
	return __atomic_add_fetch(&rc->clock, 1, __ATOMIC_SEQ_CST);
}

static void rec_cb(void *ctx, const struct exec_rec *r)
{
	struct recorder *rc = ctx;
	struct stat st;

	if (!rc->on)
		return;
	if (r->kind > EXEC_REC_FDATASYNC || fstat(r->fd, &st) || st.st_dev != rc->dev ||
	    st.st_ino != rc->ino) {
		/* A sync of another file is harmless; a change is not. */
		if (r->kind != EXEC_REC_FDATASYNC && r->kind != EXEC_REC_DIRSYNC && !r->done)
			rc->foreign++;
		return;
	}
	rec_append(rc, r, &st, tick(rc));
}

/* ---------------------------------------------------------------- */
/* The workload: guest ops in concurrent batches on the engine        */

/*
 * A snapshot create also makes every write that completed before it
 * durable; so does a chain change (G_CHAIN: an external snapshot flushes
 * the old top, a commit the active image).
 */
enum gop_kind { G_WRITE, G_ZERO, G_DISCARD, G_FLUSH, G_SNAP_CREATE, G_SNAP_DELETE,
		 G_BM_STORE, G_CHAIN };

struct gop {
	enum gop_kind kind;
	uint64_t off, len;
	unsigned int flags;		/* TGT_W_FUA for writes and write zeroes */
	unsigned int snap;		/* snapshot ops: index in wl.snaps */
	uint64_t issue_clock, done_clock;
	int ret;
};

/* After a barrier completes, every op that completed before its issue is durable. */
static bool gop_is_barrier(const struct gop *g)
{
	return g->kind == G_FLUSH || g->kind == G_SNAP_CREATE || g->kind == G_CHAIN;
}

/* Who op @g, the @idx-th, makes the owner of the sectors it touches. */
static uint32_t gop_owner(const struct gop *g, size_t idx)
{
	return g->kind == G_WRITE ? idx + OWN_FIRST_WRITE :
	       g->kind == G_ZERO ? OWN_ZERO : OWN_ANY;
}

struct variant_cfg {
	const char *fmt;
	const char *create_opts;	/* qemu-img create -o */
	uint64_t size_bytes;
	const char *backing_fmt;	/* NULL: no backing file */
	uint64_t backing_bytes;		/* may be shorter than the image */
	uint64_t data_bytes;		/* guest bytes to write */
	uint32_t max_io_sectors;
	bool want_rt_growth;		/* qcow2: the refcount table must grow */
	/* qcow2 without a backing file: start from `convert -c` with this compression_type. */
	const char *compress;
	/* qcow2 without a backing file: internal snapshots QEMU takes before the workload. */
	unsigned int pre_snaps;
	bool snap_ops;			/* the workload creates and deletes snapshots */
	unsigned int fua_pct;		/* writes and write zeroes issued with FUA */
	/* qcow2: the L2 cache's size (0: default); a tiny one evicts dirty tables. */
	uint64_t l2_cache_bytes;
	/*
	 * qcow2: the image has an enabled dirty bitmap "e" (QEMU adds it), and
	 * the workload stores the bitmaps clean (TGT_BITMAP_FLUSH) now and then.
	 */
	bool bitmap;
	/* Opened as a --recoverable device: TGT_O_RECOVERABLE's write-backs. */
	bool recoverable;
};

/* An internal snapshot the workload knows of, and what it must read. */
struct snap_exp {
	char name[16];
	size_t create_op;		/* guest op; NEVER: taken before the workload */
	size_t delete_op;		/* guest op; NEVER: never deleted */
	unsigned char *bytes;		/* taken before the workload: its content */
	const uint32_t *own;		/* taken by the workload: owner of each sector */
};

struct chain;

struct wl {
	const struct variant_cfg *cfg;
	struct recorder *rc;
	struct rng rng;
	struct tgt t;
	const char *path;
	struct gop *ops;
	size_t nr_ops;
	unsigned int running;
	struct coro *waiter;
	int err;
	uint64_t nsect;
	unsigned char *init;	/* what each sector reads before any write */
	struct snap_exp snaps[MAX_SNAPS];
	unsigned int nr_snaps;
	/* The chain tests: guest ops go through the device, G_CHAIN runs chain_fn. */
	struct blk_dev *dev;
	int (*chain_fn)(struct wl *w);
	struct chain *chain_ctx;
};

struct op_task {
	struct wl *w;
	size_t idx;
};

static void gop_run(void *arg)
{
	struct op_task *task = arg;
	struct wl *w = task->w;
	struct gop *g = &w->ops[task->idx];
	struct tgt *t = &w->t;
	void *buf = NULL;
	uint64_t s;

	if (g->kind == G_WRITE) {
		if (posix_memalign(&buf, 4096, g->len))
			abort();
		for (s = 0; s < g->len / SECTOR; s++)
			sector_fill((char *)buf + s * SECTOR, task->idx + OWN_FIRST_WRITE,
				    g->off / SECTOR + s);
	}
	g->issue_clock = tick(w->rc);
	if (w->dev && g->kind <= G_FLUSH) {
		static const enum blk_op op[] = { BLK_OP_WRITE, BLK_OP_WRITE_ZEROES,
						  BLK_OP_DISCARD, BLK_OP_FLUSH };

		g->ret = blk_submit(&w->dev->queues[0], op[g->kind],
				    g->flags & TGT_W_FUA ? BLK_REQ_FUA : 0, buf, g->off, g->len);
		goto done;
	}
	switch (g->kind) {
	case G_WRITE:
		g->ret = t->ops->write(t, buf, g->len, g->off, g->flags);
		break;
	case G_ZERO:
		g->ret = t->ops->write_zeroes(t, g->off, g->len, g->flags);
		break;
	case G_DISCARD:
		g->ret = t->ops->discard(t, g->off, g->len);
		break;
	case G_FLUSH:
		g->ret = t->ops->flush(t);
		break;
	case G_SNAP_CREATE:
		g->ret = t->ops->snapshot(t, TGT_SNAPSHOT_CREATE, w->snaps[g->snap].name);
		break;
	case G_SNAP_DELETE:
		g->ret = t->ops->snapshot(t, TGT_SNAPSHOT_DELETE, w->snaps[g->snap].name);
		break;
	case G_BM_STORE:
		g->ret = t->ops->bitmap(t, TGT_BITMAP_FLUSH, "", NULL);
		break;
	case G_CHAIN:
		g->ret = w->chain_fn(w);
		break;
	}
done:
	g->done_clock = tick(w->rc);
	if (g->ret < 0 && !w->err)
		w->err = g->ret;
	free(buf);
	free(task);
	if (--w->running == 0 && w->waiter)
		exec_wake(w->waiter);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Picks a guest range that overlaps no other op of the batch. */
static bool pick_range(struct wl *w, size_t first, struct gop *g)
{
	const struct variant_cfg *v = w->cfg;
	unsigned int tries;
	size_t i;

	for (tries = 0; tries < 16; tries++) {
		uint64_t n = 1 + rnd_below(&w->rng, rnd_pct(&w->rng, 20) ?
					   v->max_io_sectors : v->max_io_sectors / 8 + 1);
		uint64_t s;

		n = MIN(n, w->nsect);
		s = rnd_below(&w->rng, w->nsect - n + 1);
		g->off = s * SECTOR;
		g->len = n * SECTOR;
		for (i = first; i < w->nr_ops; i++)
			if (w->ops[i].kind != G_FLUSH &&
			    overlaps(g->off, g->len, w->ops[i].off, w->ops[i].len))
				break;
		if (i == w->nr_ops)
			return true;
	}
	return false;
}

/* Runs ops @first.. of @w concurrently, each in its own coroutine, and waits for all. */
static void wl_run_ops(struct wl *w, size_t first)
{
	w->running = w->nr_ops - first;
	w->waiter = exec_self();
	for (size_t i = first; i < w->nr_ops; i++) {
		struct op_task *task = malloc(sizeof(*task));

		task->w = w;
		task->idx = i;
		if (exec_spawn(exec_current(), gop_run, task))
			abort();
	}
	while (w->running)
		exec_sleep();
}

/*
 * A batch of one snapshot operation, which needs the image to itself:
 * delete one of two or more live snapshots, or take a new one while
 * there is room.
 */
static void wl_snap_batch(struct wl *w)
{
	struct gop *g = &w->ops[w->nr_ops];
	unsigned int live[MAX_SNAPS], nr_live = 0, k;

	for (k = 0; k < w->nr_snaps; k++)
		if (w->snaps[k].delete_op == NEVER)
			live[nr_live++] = k;
	memset(g, 0, sizeof(*g));
	if (nr_live >= 2 && (w->nr_snaps == MAX_SNAPS || rnd_pct(&w->rng, 50))) {
		g->kind = G_SNAP_DELETE;
		g->snap = live[rnd_below(&w->rng, nr_live)];
		w->snaps[g->snap].delete_op = w->nr_ops;
	} else if (w->nr_snaps < MAX_SNAPS) {
		struct snap_exp *sn = &w->snaps[w->nr_snaps];

		g->kind = G_SNAP_CREATE;
		g->snap = w->nr_snaps++;
		snprintf(sn->name, sizeof(sn->name), "w%zu", w->nr_ops);
		sn->create_op = w->nr_ops;
		sn->delete_op = NEVER;
	} else {
		return;
	}
	wl_run_ops(w, w->nr_ops++);
}

static void wl_add_random(struct wl *w, size_t first, unsigned int n, uint64_t *written);

static void wl_batch(struct wl *w, uint64_t *written)
{
	unsigned int n = 1 + rnd_below(&w->rng, MAX_BATCH);
	size_t first = w->nr_ops;

	if (w->cfg->snap_ops && rnd_pct(&w->rng, 6)) {
		wl_snap_batch(w);
		return;
	}
	/* A clean bitmap store needs no writes beside it to be tested, but allows them. */
	if (w->cfg->bitmap && rnd_pct(&w->rng, 8)) {
		memset(&w->ops[w->nr_ops], 0, sizeof(w->ops[0]));
		w->ops[w->nr_ops].kind = G_BM_STORE;
		w->nr_ops++;
	}
	wl_add_random(w, first, n, written);
	wl_run_ops(w, first);
}

/* Adds @n random guest ops to the batch that begins at op @first. */
static void wl_add_random(struct wl *w, size_t first, unsigned int n, uint64_t *written)
{
	bool flushed = false;
	unsigned int k;

	for (k = 0; k < n && w->nr_ops < MAX_GOPS - 1; k++) {
		struct gop *g = &w->ops[w->nr_ops];
		unsigned int dice = rnd_below(&w->rng, 100);

		memset(g, 0, sizeof(*g));
		if (dice < 12 && !flushed) {
			g->kind = G_FLUSH;
			flushed = true;
		} else if (dice < 22 && w->t.caps.can_discard) {
			g->kind = G_DISCARD;
		} else if (dice < 34) {
			g->kind = G_ZERO;
		} else {
			g->kind = G_WRITE;
		}
		if (g->kind != G_FLUSH && !pick_range(w, first, g))
			continue;
		if ((g->kind == G_WRITE || g->kind == G_ZERO) && w->cfg->fua_pct &&
		    rnd_pct(&w->rng, w->cfg->fua_pct))
			g->flags = TGT_W_FUA;
		if (g->kind == G_WRITE)
			*written += g->len;
		w->nr_ops++;
	}
}

/* Batches until @until guest bytes are written (or the op log is nearly full). */
static void wl_batches(struct wl *w, uint64_t *written, uint64_t until)
{
	while (!w->err && *written < until && w->nr_ops < MAX_GOPS - 16)
		wl_batch(w, written);
}

/* Appends an op of @kind, zeroed otherwise, to the log. */
static struct gop *wl_add_op(struct wl *w, enum gop_kind kind)
{
	struct gop *g = &w->ops[w->nr_ops++];

	memset(g, 0, sizeof(*g));
	g->kind = kind;
	return g;
}

/* The recorded run: open, batches of guest ops, close (a final flush). */
static int wl_run(struct wl *w)
{
	uint64_t written = 0;
	struct gop *g;
	int ret;

	w->rc->on = true;
	memset(&w->t, 0, sizeof(w->t));
	w->t.cfg.l2_cache_bytes = w->cfg->l2_cache_bytes;
	ret = tgt_open_file(&w->t, w->path, w->cfg->fmt,
			    w->cfg->recoverable ? TGT_O_RECOVERABLE : 0);
	if (ret)
		goto out;
	wl_batches(w, &written, w->cfg->data_bytes);
	/* Close writes everything back: it counts as a flush. */
	g = wl_add_op(w, G_FLUSH);
	g->issue_clock = tick(w->rc);
	ret = tgt_close(&w->t);
	g->done_clock = tick(w->rc);
	if (!ret)
		ret = w->err;
out:
	w->rc->on = false;
	return ret;
}

/* ---------------------------------------------------------------- */
/* The crash model                                                    */

/* One file change, from its issue and completion events. */
struct change {
	uint8_t kind;
	int flags;
	size_t issue, done;	/* event indexes; done NEVER if it never completed */
	uint64_t off, len;	/* len: what was issued, or what completed */
	size_t data;
};

struct model {
	struct change *ch;
	size_t nr_ch;
	size_t *by_done;	/* changes that completed, in completion order */
	size_t nr_done;
	struct change *syncs;
	size_t nr_syncs;
	uint64_t init_size;
	uint64_t max_size;
};

static int model_build(struct model *m, const struct recorder *rc, uint64_t init_size)
{
	size_t i, j;

	memset(m, 0, sizeof(*m));
	m->ch = calloc(rc->n + 1, sizeof(*m->ch));
	m->syncs = calloc(rc->n + 1, sizeof(*m->syncs));
	m->by_done = calloc(rc->n + 1, sizeof(*m->by_done));
	m->init_size = m->max_size = init_size;
	for (i = 0; i < rc->n; i++) {
		const struct rec_ev *e = &rc->ev[i];
		struct change *c;

		m->max_size = MAX(m->max_size, e->fsize);
		if (!e->done) {
			c = e->kind == EV_SYNC ? &m->syncs[m->nr_syncs++] : &m->ch[m->nr_ch++];
			c->kind = e->kind;
			c->flags = e->flags;
			c->issue = i;
			c->done = NEVER;
			c->off = e->off;
			c->len = e->len;
			c->data = e->data;
			m->max_size = MAX(m->max_size, e->off + e->len);
			continue;
		}
		/* Pair the completion with its issue (by sequence number). */
		for (j = i; j-- > 0; )
			if (!rc->ev[j].done && rc->ev[j].seq == e->seq)
				break;
		if (j == (size_t)-1)
			return -EINVAL;
		if (e->kind == EV_SYNC) {
			for (c = m->syncs; c->issue != j; c++)
				;
			c->done = i;
			continue;
		}
		for (c = m->ch; c->issue != j; c++)
			;
		c->done = i;
		if (e->res < 0)
			c->len = 0;	/* failed: assume nothing changed */
		else if (e->kind == EV_WRITE)
			c->len = e->res;
		m->by_done[m->nr_done++] = c - m->ch;
	}
	return 0;
}

/* A file image in memory: contents and size. */
struct fimg {
	unsigned char *buf;
	uint64_t size;
	uint64_t data_end;	/* past it, the buffer is all zeros */
	uint64_t cap;
};

/* Applies change @c to @f, only the sectors set in @mask (NULL: all). */
static void change_apply(struct fimg *f, const struct recorder *rc,
			 const struct change *c, const uint64_t *mask)
{
	uint64_t end = c->off + c->len, s, o, n;
	bool grows = true;

	if (!c->len)
		return;
	if (c->kind == EV_FALLOC)
		grows = !(c->flags & (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE));
	for (s = 0; s < DIV_ROUND_UP(c->len, SECTOR); s++) {
		if (mask && !(mask[s / 64] & (1ULL << (s % 64))))
			continue;
		o = c->off + s * SECTOR;
		n = MIN(SECTOR, end - o);
		if (o + n > f->cap)
			abort();
		if (c->kind == EV_WRITE) {
			memcpy(f->buf + o, rc->pool + c->data + s * SECTOR, n);
			f->data_end = MAX(f->data_end, o + n);
		}
		else if (c->flags & (FALLOC_FL_ZERO_RANGE | FALLOC_FL_PUNCH_HOLE))
			memset(f->buf + o, 0, n);
		if (grows && o + n > f->size) {
			/* Space past the old end reads as zeros. */
			if (c->kind == EV_FALLOC && !(c->flags & FALLOC_FL_ZERO_RANGE))
				memset(f->buf + MAX(o, f->size), 0, o + n - MAX(o, f->size));
			f->size = o + n;
		}
	}
}

/* Writes @f to @path as a sparse file (all-zero 4 KiB blocks are holes). */
static int fimg_save(const struct fimg *f, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint64_t o;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, f->size))
		goto err;
	for (o = 0; o < MIN(f->size, f->data_end); o += 4096) {
		uint64_t n = MIN(4096, f->size - o);

		if (buf_is_zero(f->buf + o, n))
			continue;
		if (pwrite(fd, f->buf + o, n, o) != (ssize_t)n)
			goto err;
	}
	close(fd);
	return 0;
err:
	close(fd);
	return -EIO;
}

static int run_cmd(const char *fmt, ...) __printf(1, 2);
static int run_cmd(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static bool have_tool(const char *name)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s > /dev/null 2>&1", name);
	return system(cmd) == 0;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

/* Makes a new directory @prefix-XXXXXX in $TMPDIR (/tmp) into @dir.  Returns 0 or -errno. */
static int make_tmpdir(char *dir, size_t len, const char *prefix)
{
	snprintf(dir, len, "%s/%s-XXXXXX", getenv("TMPDIR") ?: "/tmp", prefix);
	return mkdtemp(dir) ? 0 : -errno;
}

static int rm_rf(const char *dir)
{
	return run_cmd("rm -rf '%s'", dir);
}

static int read_file(const char *path, struct fimg *f)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st))
		return -errno;
	f->size = st.st_size;
	f->cap = st.st_size;
	f->buf = malloc(f->size + 1);
	if (pread(fd, f->buf, f->size, 0) != (ssize_t)f->size) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* ---------------------------------------------------------------- */
/* Checking one crash state                                           */

struct qjob {
	pid_t pid;
	char path[PATH_MAX];
	unsigned long state;
};

struct replay {
	const struct variant_cfg *cfg;
	const char *dir;
	const char *keep_dir;
	struct wl *w;
	struct recorder *rc;
	struct model m;
	struct rng rng;
	uint64_t seed;
	/* Durable owners of each sector at each guest flush (and before any). */
	uint32_t **flush_owner;
	size_t *flush_op;	/* index of the flush op of each snapshot */
	size_t nr_flush;
	/*
	 * Per state, with FUA ops: the owners after the FUA writes that
	 * completed since that flush, and the issue clock of the one that
	 * set each sector (0: none; what completed before it cannot show).
	 */
	uint32_t *fua_own;
	uint64_t *fua_floor;
	/* Per state: sectors whose content ops in flight may have changed. */
	uint32_t *alt_head;
	uint32_t *alt_own, *alt_next;
	size_t alt_n, alt_cap;
	unsigned char *rbuf;
	struct qjob jobs[QCHECK_JOBS];
	unsigned int qcheck_every;
	/* Results. */
	unsigned long states, corrupt, lost, open_failed, qchecks, qcheck_bad;
	unsigned long torn, subsets, prefixes;
	unsigned long snap_bad, snap_reads, snap_qemu;
	unsigned long bitmap_bad, bitmap_consistent, bitmap_in_use;
	unsigned int failures_shown;
};

static void replay_fail(struct replay *r, unsigned long state, const char *path,
			const char *what)
{
	char keep[PATH_MAX], cmd[3 * PATH_MAX];

	if (r->failures_shown++ >= 5)
		return;
	snprintf(keep, sizeof(keep), "%s/crash-replay-%s-%llx-%lu.img", r->keep_dir,
		 r->cfg->fmt, (unsigned long long)r->seed, state);
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", path, keep);
	if (system(cmd))
		keep[0] = '\0';
	printf("# state %lu (seed %#llx): %s%s%s\n", state,
	       (unsigned long long)r->seed, what, keep[0] ? "; kept as " : "", keep);
}

/* Reaps one finished qemu-img check (blocking if @wait). */
static void qjob_reap(struct replay *r, bool wait)
{
	int status;
	pid_t pid = waitpid(-1, &status, wait ? 0 : WNOHANG);
	unsigned int i;

	if (pid <= 0)
		return;
	for (i = 0; i < QCHECK_JOBS; i++) {
		struct qjob *j = &r->jobs[i];
		int rc;

		if (j->pid != pid)
			continue;
		rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		r->qchecks++;
		/* 0: clean, 3: leaks only.  Anything else is a corruption or worse. */
		if (rc != 0 && rc != 3) {
			char what[64];

			r->qcheck_bad++;
			snprintf(what, sizeof(what), "qemu-img check exited with %d", rc);
			replay_fail(r, j->state, j->path, what);
		}
		unlink(j->path);
		j->pid = 0;
	}
}

/* Starts `qemu-img check` on a copy of @path, in the background. */
static void qjob_start(struct replay *r, const char *path, unsigned long state)
{
	struct qjob *j = NULL;
	char *argv[8];
	posix_spawn_file_actions_t fa;
	unsigned int i;

	for (;;) {
		for (i = 0; i < QCHECK_JOBS && !j; i++)
			if (!r->jobs[i].pid)
				j = &r->jobs[i];
		if (j)
			break;
		qjob_reap(r, true);
	}
	snprintf(j->path, sizeof(j->path), "%s/q%u.img", r->dir, i);
	if (rename(path, j->path))
		return;
	j->state = state;
	argv[0] = "qemu-img";
	argv[1] = "check";
	argv[2] = "-q";
	argv[3] = "-f";
	argv[4] = (char *)r->cfg->fmt;
	argv[5] = j->path;
	argv[6] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&j->pid, "qemu-img", &fa, NULL, argv, environ))
		j->pid = 0;
	posix_spawn_file_actions_destroy(&fa);
}

static void alt_add(struct replay *r, uint64_t s, uint32_t own)
{
	if (r->alt_n == r->alt_cap) {
		r->alt_cap = r->alt_cap ? 2 * r->alt_cap : 65536;
		r->alt_own = xrealloc(r->alt_own, r->alt_cap * sizeof(*r->alt_own));
		r->alt_next = xrealloc(r->alt_next, r->alt_cap * sizeof(*r->alt_next));
	}
	r->alt_own[r->alt_n] = own;
	r->alt_next[r->alt_n] = r->alt_head[s];
	r->alt_head[s] = r->alt_n++;
}

static bool sector_ok(struct replay *r, const unsigned char *buf, uint32_t own,
		      uint64_t s)
{
	if (own == OWN_ANY)
		return true;
	if (own == OWN_ZERO)
		return buf_is_zero(buf, SECTOR);
	if (own == OWN_INIT)
		return !memcmp(buf, r->w->init + s * SECTOR, SECTOR);
	return sector_is(buf, own, s);
}

/* True if @buf is what snapshot @sn holds at guest sector @s. */
static bool snap_sector_ok(struct replay *r, const struct snap_exp *sn,
			   const unsigned char *buf, uint64_t s)
{
	if (sn->bytes)
		return !memcmp(buf, sn->bytes + s * SECTOR, SECTOR);
	return sector_ok(r, buf, sn->own[s], s);
}

/*
 * Must snapshot @sn be listed after a crash at @clockP (1), must it not
 * (-1), or may it either way (0)?  A create or delete that completed has
 * happened: each ends with a synced header write (S1).  One that had
 * started may or may not have.
 */
static int snap_due(const struct wl *w, const struct snap_exp *sn, uint64_t clockP)
{
	const struct gop *c = sn->create_op == NEVER ? NULL : &w->ops[sn->create_op];
	const struct gop *d = sn->delete_op == NEVER ? NULL : &w->ops[sn->delete_op];

	if ((c && c->issue_clock >= clockP) || (d && d->done_clock < clockP))
		return -1;
	if ((c && c->done_clock >= clockP) || (d && d->issue_clock < clockP))
		return 0;
	return 1;
}

/*
 * The dirty bitmap "e" of a state open as @t (README "Dirty bitmaps", D0):
 * it is there, and either flagged in use, or consistent and marking every
 * guest byte a write, write zeroes or discard that completed before the
 * crash changed.  Consistent and missing one is the failure: a backup
 * would skip data.  Counts the kinds of state seen in @r.
 */
static bool bitmap_sound(struct replay *r, const struct wl *w, struct tgt *t,
			 uint64_t clockP, char *what, size_t len)
{
	const struct tgt_bitmap_info *list;
	int n = t->ops->bitmap_list(t, &list), k;
	size_t i;

	for (k = 0; k < n && strcmp(list[k].name, "e"); k++)
		;
	if (k >= n) {
		snprintf(what, len, "bitmap 'e' is gone");
		return false;
	}
	if (list[k].in_use) {
		r->bitmap_in_use++;
		return true;
	}
	r->bitmap_consistent++;
	for (i = 0; i < w->nr_ops; i++) {
		const struct gop *g = &w->ops[i];
		uint64_t pos = g->off;

		if ((g->kind != G_WRITE && g->kind != G_ZERO && g->kind != G_DISCARD) ||
		    g->done_clock >= clockP || g->ret < 0)
			continue;
		while (pos < g->off + g->len) {
			bool dirty;
			int64_t m = t->ops->bitmap_status(t, "e", pos, g->off + g->len - pos, &dirty);

			if (m <= 0 || !dirty) {
				snprintf(what, len, "bitmap 'e' is consistent but misses guest "
					 "bytes at %llu, changed by op %zu before the crash",
					 (unsigned long long)pos, i);
				return false;
			}
			pos += m;
		}
	}
	return true;
}

/*
 * Marks in @present which of our snapshots the state open as @t lists.
 * Returns false, saying why in @what, if it lists one we never took, one
 * already deleted, or misses one that must be there.
 */
static bool snaps_listed(struct replay *r, struct tgt *t, uint64_t clockP, bool *present,
			 char *what, size_t len)
{
	const struct tgt_snapshot_info *list;
	const struct wl *w = r->w;
	unsigned int k;
	int n, i;

	memset(present, 0, MAX_SNAPS * sizeof(*present));
	n = t->ops->snapshot_list(t, &list);
	if (n < 0) {
		snprintf(what, len, "listing the snapshots failed: %s", strerror(-n));
		return false;
	}
	for (i = 0; i < n; i++) {
		for (k = 0; k < w->nr_snaps && strcmp(list[i].name, w->snaps[k].name); k++)
			;
		if (k == w->nr_snaps || present[k] || snap_due(w, &w->snaps[k], clockP) < 0) {
			snprintf(what, len, "unexpected snapshot '%s' (id %s)", list[i].name,
				 list[i].id);
			return false;
		}
		present[k] = true;
	}
	for (k = 0; k < w->nr_snaps; k++)
		if (!present[k] && snap_due(w, &w->snaps[k], clockP) > 0) {
			snprintf(what, len, "snapshot '%s' is gone", w->snaps[k].name);
			return false;
		}
	return true;
}

/* Compares @n bytes of snapshot @sn read at guest offset @off. */
static bool snap_cmp(struct replay *r, const struct snap_exp *sn, const unsigned char *buf,
		     uint64_t off, uint64_t n, const char *who, char *what, size_t len)
{
	uint64_t s;

	for (s = 0; s < n / SECTOR; s++)
		if (!snap_sector_ok(r, sn, buf + s * SECTOR, off / SECTOR + s)) {
			snprintf(what, len, "snapshot '%s' read by %s: guest sector %llu is wrong",
				 sn->name, who, (unsigned long long)(off / SECTOR + s));
			return false;
		}
	return true;
}

/* Reads snapshot @sn of the image at @path through our engine's read-only snapshot open. */
static bool snap_reads_back(struct replay *r, const char *path, const struct snap_exp *sn,
			    char *what, size_t len)
{
	struct tgt t = { 0 };
	uint64_t off;
	bool ok = true;
	int ret;

	t.ops = tgt_find(r->cfg->fmt);
	t.cfg.file = path;
	t.cfg.format = r->cfg->fmt;
	t.cfg.open_flags = TGT_O_RDONLY | TGT_O_BUFFERED;
	t.cfg.snapshot = sn->name;
	ret = tgt_open(&t);
	if (ret) {
		snprintf(what, len, "opening snapshot '%s' failed: %s", sn->name, strerror(-ret));
		return false;
	}
	for (off = 0; off < r->w->nsect * SECTOR && ok; off += 256 * KiB) {
		uint64_t n = MIN(256 * KiB, r->w->nsect * SECTOR - off);

		ret = t.ops->read(&t, r->rbuf, n, off);
		if (ret < 0) {
			snprintf(what, len, "snapshot '%s': read at %llu failed: %s", sn->name,
				 (unsigned long long)off, strerror(-ret));
			ok = false;
		} else {
			ok = snap_cmp(r, sn, r->rbuf, off, n, "imgblk", what, len);
		}
	}
	tgt_close(&t);
	r->snap_reads++;
	return ok;
}

/*
 * QEMU's view of the state at @path: `qemu-img snapshot -l` lists the
 * snapshots our engine listed (@present), and one of them (a different
 * one each time), read by `qemu-img convert -l`, holds what it must.
 */
static bool snaps_qemu(struct replay *r, const char *path, const bool *present,
		       unsigned long state, char *what, size_t len)
{
	const struct wl *w = r->w;
	bool listed[MAX_SNAPS] = { false };
	char cmd[3 * PATH_MAX], line[512], name[64], raw[PATH_MAX];
	unsigned int k, nr_present = 0, pick;
	struct fimg f = { 0 };
	bool ok, stray = false;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "qemu-img snapshot -l '%s' 2>&1", path);
	p = popen(cmd, "r");
	if (!p) {
		snprintf(what, len, "cannot run qemu-img snapshot -l");
		return false;
	}
	while (fgets(line, sizeof(line), p)) {
		if (!strncmp(line, "Snapshot list:", 14) || !strncmp(line, "ID ", 3))
			continue;
		if (sscanf(line, "%*s %63s", name) != 1)
			continue;
		for (k = 0; k < w->nr_snaps && strcmp(name, w->snaps[k].name); k++)
			;
		if (k < w->nr_snaps)
			listed[k] = true;
		else
			stray = true;
	}
	if (pclose(p) || stray) {
		snprintf(what, len, "qemu-img snapshot -l failed or lists a snapshot we never took");
		return false;
	}
	for (k = 0; k < w->nr_snaps; k++) {
		if (listed[k] != present[k]) {
			snprintf(what, len, "qemu-img snapshot -l %s '%s'",
				 listed[k] ? "lists" : "misses", w->snaps[k].name);
			return false;
		}
		nr_present += present[k];
	}
	if (!nr_present)
		return true;
	pick = state % nr_present;
	for (k = 0; !present[k] || pick--; k++)
		;
	snprintf(raw, sizeof(raw), "%s/snap.raw", r->dir);
	if (run_cmd("qemu-img convert -f %s -O raw -l snapshot.name=%s '%s' '%s'",
		    r->cfg->fmt, w->snaps[k].name, path, raw) || read_file(raw, &f)) {
		snprintf(what, len, "qemu-img convert -l snapshot.name=%s failed", w->snaps[k].name);
		return false;
	}
	r->snap_qemu++;
	ok = f.size == w->nsect * SECTOR &&
	     snap_cmp(r, &w->snaps[k], f.buf, 0, f.size, "qemu-img", what, len);
	if (f.size != w->nsect * SECTOR)
		snprintf(what, len, "snapshot '%s' read by qemu-img: %llu bytes",
			 w->snaps[k].name, (unsigned long long)f.size);
	free(f.buf);
	unlink(raw);
	return ok;
}

/* stderr into a scratch file for the duration of a state's check. */
static int quiet_begin(const char *dir)
{
	char path[PATH_MAX];
	int fd, saved;

	snprintf(path, sizeof(path), "%s/stderr", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	fflush(stderr);
	saved = dup(2);
	if (fd >= 0) {
		dup2(fd, 2);
		close(fd);
	}
	return saved;
}

static void quiet_end(int saved, const char *dir, bool show)
{
	char path[PATH_MAX], line[512];
	FILE *f;

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	if (!show)
		return;
	snprintf(path, sizeof(path), "%s/stderr", dir);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		printf("#   %s", line);
	if (f)
		fclose(f);
}

/* True if the qcow2 image at @path is v3 with the dirty bit set. */
static bool qcow2_dirty(const char *path)
{
	unsigned char h[80];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool dirty;

	if (fd < 0)
		return false;
	dirty = pread(fd, h, sizeof(h), 0) == sizeof(h) && get_be32(h + 4) >= 3 &&
		(get_be64(h + 72) & 1);
	close(fd);
	return dirty;
}

/*
 * What each guest sector may read after a crash at @clockP: returns the
 * owners it must show (those of the last barrier that completed before,
 * with the FUA ops that completed since), and lists in r->alt_* the ops
 * not covered by that barrier, whose data it may show instead.
 */
static const uint32_t *expect_at(struct replay *r, uint64_t clockP)
{
	const struct wl *w = r->w;
	const uint32_t *own;
	uint64_t s, cover;
	size_t f, i;

	/* The last guest flush that completed before the crash. */
	for (f = r->nr_flush; f > 1; f--)
		if (w->ops[r->flush_op[f - 1]].done_clock < clockP)
			break;
	own = r->flush_owner[f - 1];
	cover = f > 1 ? w->ops[r->flush_op[f - 1]].issue_clock : 0;
	/*
	 * A FUA op that completed is durable as if a flush followed it, for
	 * its own sectors.  Ops touching the same sector are in different
	 * batches, so index order is completion order.
	 */
	if (r->cfg->fua_pct) {
		memcpy(r->fua_own, own, w->nsect * sizeof(*own));
		memset(r->fua_floor, 0, w->nsect * sizeof(*r->fua_floor));
		for (i = 0; i < w->nr_ops; i++) {
			const struct gop *g = &w->ops[i];

			if (!(g->flags & TGT_W_FUA) || g->done_clock < cover ||
			    g->done_clock >= clockP)
				continue;
			for (s = g->off / SECTOR; s < (g->off + g->len) / SECTOR; s++) {
				r->fua_own[s] = gop_owner(g, i);
				r->fua_floor[s] = g->issue_clock;
			}
		}
		own = r->fua_own;
	}
	/* Ops not covered by those that had started: each may or may not show. */
	memset(r->alt_head, 0xff, w->nsect * sizeof(*r->alt_head));
	r->alt_n = 0;
	for (i = 0; i < w->nr_ops; i++) {
		const struct gop *g = &w->ops[i];

		if (g->kind == G_FLUSH || g->kind == G_CHAIN || g->issue_clock >= clockP ||
		    (g->done_clock < cover))
			continue;
		for (s = g->off / SECTOR; s < (g->off + g->len) / SECTOR; s++)
			if (!r->cfg->fua_pct || g->done_clock >= r->fua_floor[s])
				alt_add(r, s, gop_owner(g, i));
	}
	return own;
}

/*
 * Reads every guest sector of @t: each must hold what @own says, or (when
 * @alt) the data of one of the ops expect_at() listed.  Returns true if
 * all do; else says what in @what and counts the loss.
 */
static bool reads_back(struct replay *r, struct tgt *t, const uint32_t *own, bool alt,
		       char *what, size_t len)
{
	uint64_t off, s;
	int ret;

	for (off = 0; off < t->caps.size_bytes; off += 256 * KiB) {
		uint64_t n = MIN(256 * KiB, t->caps.size_bytes - off);

		ret = t->ops->read(t, r->rbuf, n, off);
		if (ret < 0) {
			/* Unreadable is as lost as wrong (a punched compressed cluster). */
			snprintf(what, len, "%s: read at %llu failed: %s", t->cfg.file,
				 (unsigned long long)off, strerror(-ret));
			r->lost++;
			return false;
		}
		for (s = off / SECTOR; s < (off + n) / SECTOR; s++) {
			const unsigned char *b = r->rbuf + (s * SECTOR - off);
			uint32_t a = UINT32_MAX;

			if (sector_ok(r, b, own[s], s))
				continue;
			if (alt)
				for (a = r->alt_head[s]; a != UINT32_MAX; a = r->alt_next[a])
					if (sector_ok(r, b, r->alt_own[a], s))
						break;
			if (a != UINT32_MAX)
				continue;
			snprintf(what, len, "%s: guest sector %llu lost its flushed data (owner %u)",
				 t->cfg.file, (unsigned long long)s, own[s]);
			r->lost++;
			return false;
		}
	}
	return true;
}

/* imgblk's own ->check of the image at @path, repairing nothing: true if clean. */
static bool own_check(const char *path, const char *fmt, char *what, size_t len)
{
	struct tgt_check_result cr = { 0 };
	struct tgt t = { 0 };
	int ret;

	ret = tgt_open_file(&t, path, fmt, TGT_O_RDONLY | TGT_O_CHECK | TGT_O_BUFFERED);
	if (!ret) {
		ret = t.ops->check(&t, 0, &cr);
		tgt_close(&t);
	}
	if (!ret && !cr.corruptions && !cr.check_errors)
		return true;
	snprintf(what, len, "imgblk check of %s: %s, %llu corruptions, %llu errors", path,
		 ret ? strerror(-ret) : "ran", (unsigned long long)cr.corruptions,
		 (unsigned long long)cr.check_errors);
	return false;
}

/*
 * Checks the state saved at @path, a crash at event @P.  Returns true if
 * it passed.
 */
static bool state_check(struct replay *r, const char *path, size_t P,
			unsigned long state)
{
	const struct wl *w = r->w;
	uint64_t clockP = P < r->rc->n ? r->rc->ev[P].clock : NEVER;
	const uint32_t *own = expect_at(r, clockP);
	struct tgt t;
	char what[256];
	bool qcheck, pre_check, ok = true, present[MAX_SNAPS];
	unsigned int k;
	int saved, ret;

	qcheck = r->qcheck_every && state % r->qcheck_every == 0;
	/*
	 * qcow2 not marked dirty: QEMU must accept the state as it is, since
	 * it repairs nothing.  A dirty one (lazy refcounts) and QED are
	 * checked as our repairing open leaves them.
	 */
	pre_check = qcheck && !strcmp(r->cfg->fmt, "qcow2") && !qcow2_dirty(path);
	if (pre_check) {
		char copy[PATH_MAX], cmd[3 * PATH_MAX];

		snprintf(copy, sizeof(copy), "%s/pre.img", r->dir);
		snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", path, copy);
		if (!system(cmd))
			qjob_start(r, copy, state);
	}

	saved = quiet_begin(r->dir);
	memset(&t, 0, sizeof(t));
	ret = tgt_open_file(&t, path, r->cfg->fmt, TGT_O_BUFFERED);
	if (ret) {
		quiet_end(saved, r->dir, r->failures_shown < 5);
		r->open_failed++;
		snprintf(what, sizeof(what), "read-write open failed: %s", strerror(-ret));
		replay_fail(r, state, path, what);
		return false;
	}
	if (w->nr_snaps && !snaps_listed(r, &t, clockP, present, what, sizeof(what))) {
		r->snap_bad++;
		ok = false;
	}
	if (ok && r->cfg->bitmap && !bitmap_sound(r, w, &t, clockP, what, sizeof(what))) {
		r->bitmap_bad++;
		ok = false;
	}
	if (ok)
		ok = reads_back(r, &t, own, true, what, sizeof(what));
	ret = tgt_close(&t);
	if (ret && ok) {
		snprintf(what, sizeof(what), "close failed: %s", strerror(-ret));
		ok = false;
	}
	/* Every snapshot the state lists reads back what it held when taken. */
	for (k = 0; k < w->nr_snaps && ok; k++)
		if (present[k] && !snap_reads_back(r, path, &w->snaps[k], what, sizeof(what))) {
			r->snap_bad++;
			ok = false;
		}
	/* Our own check, after the repairing open and the close. */
	if (ok && !own_check(path, r->cfg->fmt, what, sizeof(what))) {
		r->corrupt++;
		ok = false;
	}
	/* And QEMU agrees, on the states it checks. */
	if (ok && qcheck && w->nr_snaps && !snaps_qemu(r, path, present, state, what, sizeof(what))) {
		r->snap_bad++;
		ok = false;
	}
	quiet_end(saved, r->dir, !ok && r->failures_shown < 5);
	if (!ok)
		replay_fail(r, state, path, what);
	if (qcheck && !pre_check)
		qjob_start(r, path, state);
	return ok;
}

/* Durable owners of every sector at each guest flush. */
static void replay_owners(struct replay *r)
{
	const struct wl *w = r->w;
	size_t nf = 1, i, k, *order;
	uint32_t *cur;

	for (i = 0; i < w->nr_ops; i++)
		nf += gop_is_barrier(&w->ops[i]);
	r->flush_owner = calloc(nf, sizeof(*r->flush_owner));
	r->flush_op = calloc(nf, sizeof(*r->flush_op));
	cur = calloc(w->nsect, sizeof(*cur));
	/* Ops in completion order. */
	order = calloc(w->nr_ops, sizeof(*order));
	for (i = 0; i < w->nr_ops; i++)
		order[i] = i;
	for (i = 1; i < w->nr_ops; i++)
		for (k = i; k > 0 && w->ops[order[k - 1]].done_clock >
				      w->ops[order[k]].done_clock; k--) {
			size_t tmp = order[k];

			order[k] = order[k - 1];
			order[k - 1] = tmp;
		}
	r->flush_owner[0] = calloc(w->nsect, sizeof(*cur));
	r->nr_flush = 1;
	k = 0;
	for (i = 0; i < w->nr_ops; i++) {
		const struct gop *fl = &w->ops[i];

		if (!gop_is_barrier(fl))
			continue;
		/* Flushes are issued in order: apply what completed before this one. */
		for (; k < w->nr_ops && w->ops[order[k]].done_clock < fl->issue_clock; k++) {
			const struct gop *g = &w->ops[order[k]];
			uint64_t s;

			if (g->kind == G_FLUSH)
				continue;
			for (s = g->off / SECTOR; s < (g->off + g->len) / SECTOR; s++)
				cur[s] = gop_owner(g, order[k]);
		}
		r->flush_owner[r->nr_flush] = malloc(w->nsect * sizeof(*cur));
		memcpy(r->flush_owner[r->nr_flush], cur, w->nsect * sizeof(*cur));
		/* What a snapshot holds: every op completed before it was taken. */
		if (fl->kind == G_SNAP_CREATE)
			r->w->snaps[fl->snap].own = r->flush_owner[r->nr_flush];
		r->flush_op[r->nr_flush++] = i;
	}
	free(order);
	free(cur);
}

/* Frees what the replay of a run allocated. */
static void replay_free(struct replay *r)
{
	size_t i;

	for (i = 0; i < r->nr_flush; i++)
		free(r->flush_owner[i]);
	free(r->flush_owner);
	free(r->flush_op);
	free(r->alt_head);
	free(r->fua_own);
	free(r->fua_floor);
	free(r->alt_own);
	free(r->alt_next);
	free(r->rbuf);
	free(r->m.ch);
	free(r->m.syncs);
	free(r->m.by_done);
}

static void shuffle(struct rng *g, size_t *a, size_t n)
{
	size_t i;

	for (i = n; i > 1; i--) {
		size_t j = rnd_below(g, i), t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

/*
 * Adds to @st, the file as the changes durable at event @P left it (those
 * that completed before the issue of the sync at event @bar, 0: none;
 * the first @applied of m->by_done), what a crash at @P may also have
 * kept: unless @prefix, a random subset of the other changes issued
 * before @P, in random order (15%: all, in issue order), 20% of them
 * torn at sectors; and the size may or may not have followed the last
 * ftruncate.  Then every completed RWF_DSYNC write, whole.
 */
static void state_unsynced(struct replay *r, const struct model *m, const struct recorder *rc,
			   size_t P, size_t bar, size_t applied, bool prefix, struct fimg *st)
{
	size_t *cand = calloc(m->nr_ch + 1, sizeof(*cand)), nc = 0, k;
	uint64_t *mask = NULL, size = st->size;
	size_t mask_words = 0;

	/* Unsynced changes issued before P. */
	for (k = 0; k < m->nr_ch && m->ch[k].issue < P; k++)
		if (m->ch[k].done == NEVER || m->ch[k].done >= bar)
			cand[nc++] = k;
	if (!prefix && nc) {
		unsigned int pct = (unsigned int[]){ 100, 75, 50, 25 }[rnd_below(&r->rng, 4)];
		bool in_order = rnd_pct(&r->rng, 15);

		/* The file size may or may not have followed the later ftruncates. */
		if (rnd_pct(&r->rng, 50))
			st->size = MAX(size, rc->ev[P - 1].fsize);
		if (!in_order)
			shuffle(&r->rng, cand, nc);
		for (k = 0; k < nc; k++) {
			const struct change *c = &m->ch[cand[k]];
			uint64_t *msk = NULL;
			size_t words = DIV_ROUND_UP(DIV_ROUND_UP(c->len, SECTOR), 64), x;

			if (!in_order && !rnd_pct(&r->rng, pct))
				continue;
			if (!in_order && c->len > SECTOR && rnd_pct(&r->rng, 20)) {
				if (words > mask_words) {
					mask_words = words;
					mask = xrealloc(mask, words * 8);
				}
				for (x = 0; x < words; x++)
					mask[x] = rnd(&r->rng);
				msk = mask;
				r->torn++;
			}
			change_apply(st, rc, c, msk);
		}
		r->subsets++;
	} else {
		r->prefixes++;
	}
	/*
	 * A completed RWF_DSYNC write (an in-place FUA write) is durable
	 * by itself: applied whole, last.  Over a later write of the same
	 * bytes that the state kept, it stands for that write's sectors
	 * not having reached the disk, which a crash may also do.
	 */
	for (k = applied; k < m->nr_done && m->ch[m->by_done[k]].done < P; k++) {
		const struct change *c = &m->ch[m->by_done[k]];

		if (c->kind == EV_WRITE && (c->flags & RWF_DSYNC))
			change_apply(st, rc, c, NULL);
	}
	free(mask);
	free(cand);
}

/*
 * Generates about @budget crash states from the log and checks each.
 * State kinds: the file right after each fdatasync completed (nothing
 * unsynced); and at random points inside each epoch, the synced state
 * plus a random subset of the unsynced changes, applied in random order,
 * some torn at 512-byte sectors.
 */
static void replay_run(struct replay *r, unsigned long budget, const struct fimg *init)
{
	const struct model *m = &r->m;
	const struct recorder *rc = r->rc;
	struct fimg dur = { 0 }, st = { 0 };
	size_t nr_states = 0, cap_states = 0;
	struct pt { size_t P; bool prefix; } *pts = NULL;
	size_t bar_sync, applied = 0, i, k, P;
	uint64_t dur_size;
	char path[PATH_MAX];

	dur.cap = st.cap = ALIGN_UP(m->max_size, 4096) + 4096;
	dur.buf = calloc(1, dur.cap);
	st.buf = calloc(1, st.cap);
	memcpy(dur.buf, init->buf, init->size);
	dur.size = dur.data_end = init->size;

	/* Crash points: after each completed sync, then random ones. */
	for (i = 0; i < m->nr_syncs; i++) {
		if (m->syncs[i].done == NEVER)
			continue;
		if (nr_states == cap_states) {
			cap_states = cap_states ? 2 * cap_states : 1024;
			pts = xrealloc(pts, cap_states * sizeof(*pts));
		}
		pts[nr_states].P = m->syncs[i].done + 1;
		pts[nr_states++].prefix = true;
	}
	/* Too many syncs for the budget: keep an even sample, then random points. */
	if (nr_states > budget / 3) {
		size_t keep = budget / 3, j = 0;

		for (i = 0; i < keep; i++)
			pts[j++] = pts[i * nr_states / keep];
		nr_states = keep;
	}
	while (nr_states < budget) {
		if (nr_states == cap_states) {
			cap_states = cap_states ? 2 * cap_states : 1024;
			pts = xrealloc(pts, cap_states * sizeof(*pts));
		}
		pts[nr_states].P = 1 + rnd_below(&r->rng, rc->n);
		pts[nr_states++].prefix = false;
	}
	/* In order of P, so the synced state only moves forward. */
	for (i = 1; i < nr_states; i++)
		for (k = i; k > 0 && pts[k - 1].P > pts[k].P; k--) {
			struct pt tmp = pts[k];

			pts[k] = pts[k - 1];
			pts[k - 1] = tmp;
		}

	bar_sync = NEVER;
	dur_size = init->size;
	snprintf(path, sizeof(path), "%s/state.img", r->dir);
	for (i = 0; i < nr_states; i++) {
		size_t bar = 0;

		P = pts[i].P;
		/* The newest sync that completed before P covers changes done before its issue. */
		for (k = 0; k < m->nr_syncs; k++)
			if (m->syncs[k].done < P && (bar_sync == NEVER || k > bar_sync))
				bar_sync = k;
		if (bar_sync != NEVER) {
			bar = m->syncs[bar_sync].issue;
			dur_size = rc->ev[bar].fsize;
		}
		for (; applied < m->nr_done && m->ch[m->by_done[applied]].done < bar; applied++)
			change_apply(&dur, rc, &m->ch[m->by_done[applied]], NULL);
		dur.size = MAX(dur.size, dur_size);

		/* st = dur; only the part either ever wrote needs copying. */
		memcpy(st.buf, dur.buf, dur.data_end);
		if (st.data_end > dur.data_end)
			memset(st.buf + dur.data_end, 0, st.data_end - dur.data_end);
		st.data_end = dur.data_end;
		st.size = dur.size;
		state_unsynced(r, m, rc, P, bar, applied, pts[i].prefix, &st);
		if (fimg_save(&st, path))
			abort();
		state_check(r, path, P, r->states);
		r->states++;
	}
	while (r->jobs[0].pid || r->jobs[1].pid)
		qjob_reap(r, true);
	free(pts);
	free(dur.buf);
	free(st.buf);
}

#ifdef CRASH_CHAIN_ONLY
/* ---------------------------------------------------------------- */
/* Chain changes: several files and their directory                  */

/*
 * The metadata steps of an external snapshot and of commit (live
 * intermediate, offline), run in-process through the functions the
 * server and the CLI use, recorded over every file of the directory and
 * the directory's own changes (links, unlinks, syncs: exec_link() ...),
 * then replayed as a power cut could leave them.  What each state must
 * pass, and which image is the right one to open at each point:
 * docs/crash-replay.md, "Chain changes".
 */
#define MAX_FILES	6
#define MAX_NAMES	16

/* Chain tests: states per variant, and qemu-img check on one state in CHAIN_QCHECK. */
#if defined(__SANITIZE_ADDRESS__)
#define CHAIN_STATES	40
#else
#define CHAIN_STATES	80
#endif
#define CHAIN_QCHECK	5

struct mfile {
	char name[64];		/* a name it is known by (none: not linked yet) */
	ino_t ino;
	struct recorder rc;	/* its changes (rc.clock unused: the clock is shared) */
	struct fimg init;	/* its content when the recording began */
	struct model m;
};

/* A change of the directory, or a sync of it (NS_SYNC). */
enum ns_kind { NS_LINK, NS_UNLINK, NS_SYNC };

struct ns_op {
	uint8_t kind;
	int res;
	uint64_t seq, issue_clock, done_clock;	/* done NEVER: never completed */
	int file;		/* NS_LINK: the file linked */
	char name[64];		/* NS_LINK: the new name; NS_UNLINK: the name removed */
};

struct mrec {
	struct recorder clk;	/* .clock: shared with the guest ops; .on */
	pthread_mutex_t lock;	/* a commit job records from its own thread */
	dev_t dev;
	ino_t dir_ino;
	struct mfile f[MAX_FILES];
	unsigned int nr;
	struct ns_op *ns;
	size_t nr_ns, cap_ns;
	unsigned int foreign;
	bool overflow;
};

static const char *base_name(const char *path)
{
	const char *b = strrchr(path, '/');

	return b ? b + 1 : path;
}

/* The file of inode @ino, added (empty at the start: made during the run) if new. */
static int mrec_file(struct mrec *mr, ino_t ino)
{
	unsigned int i;

	for (i = 0; i < mr->nr; i++)
		if (mr->f[i].ino == ino)
			return i;
	if (mr->nr == MAX_FILES) {
		mr->overflow = true;
		return -1;
	}
	memset(&mr->f[mr->nr], 0, sizeof(mr->f[0]));
	mr->f[mr->nr].ino = ino;
	return mr->nr++;
}

static void mrec_ns(struct mrec *mr, const struct exec_rec *r)
{
	struct ns_op *o;
	struct stat st;
	size_t i;

	if (r->done) {
		for (i = mr->nr_ns; i-- > 0; )
			if (mr->ns[i].seq == r->seq) {
				mr->ns[i].done_clock = tick(&mr->clk);
				mr->ns[i].res = r->res;
			}
		return;
	}
	/* Another directory's sync is harmless; a change there is not. */
	if (r->kind == EXEC_REC_DIRSYNC && (fstat(r->fd, &st) || st.st_ino != mr->dir_ino))
		return;
	if (mr->nr_ns == mr->cap_ns) {
		mr->cap_ns = mr->cap_ns ? 2 * mr->cap_ns : 64;
		mr->ns = xrealloc(mr->ns, mr->cap_ns * sizeof(*mr->ns));
	}
	o = &mr->ns[mr->nr_ns++];
	memset(o, 0, sizeof(*o));
	o->seq = r->seq;
	o->issue_clock = tick(&mr->clk);
	o->done_clock = NEVER;
	o->file = -1;
	if (r->kind == EXEC_REC_DIRSYNC) {
		o->kind = NS_SYNC;
		return;
	}
	o->kind = r->kind == EXEC_REC_LINK ? NS_LINK : NS_UNLINK;
	snprintf(o->name, sizeof(o->name), "%s", base_name(o->kind == NS_LINK ? r->path2 : r->path));
	if (o->kind == NS_LINK) {
		if (stat(r->path, &st) || st.st_dev != mr->dev)
			mr->foreign++;
		else
			o->file = mrec_file(mr, st.st_ino);
		if (o->file >= 0 && !mr->f[o->file].name[0])
			snprintf(mr->f[o->file].name, sizeof(mr->f[0].name), "%s", o->name);
	}
}

static void mrec_cb(void *ctx, const struct exec_rec *r)
{
	struct mrec *mr = ctx;
	struct stat st;
	int i;

	if (!mr->clk.on)
		return;
	pthread_mutex_lock(&mr->lock);
	if (r->kind == EXEC_REC_LINK || r->kind == EXEC_REC_UNLINK || r->kind == EXEC_REC_DIRSYNC)
		mrec_ns(mr, r);
	else if (!fstat(r->fd, &st) && st.st_dev == mr->dev && (i = mrec_file(mr, st.st_ino)) >= 0)
		rec_append(&mr->f[i].rc, r, &st, tick(&mr->clk));
	else if (r->kind != EXEC_REC_FDATASYNC && !r->done)
		mr->foreign++;
	pthread_mutex_unlock(&mr->lock);
}

/* Adds the image at @path as it is now (before the recording). */
static int mrec_add(struct mrec *mr, const char *path)
{
	struct stat st;
	int i;

	if (stat(path, &st))
		return -errno;
	i = mrec_file(mr, st.st_ino);
	if (i < 0)
		return -ENOSPC;
	snprintf(mr->f[i].name, sizeof(mr->f[0].name), "%s", base_name(path));
	return read_file(path, &mr->f[i].init);
}

enum chain_kind { CH_SNAPSHOT, CH_COMMIT, CH_COMMIT_OFFLINE };

/* The images of a chain variant (names in the directory) and the run's facts. */
struct chain {
	enum chain_kind kind;
	const char *new_fmt;		/* snapshot: NEW's format */
	char dir[PATH_MAX - 64];
	char top[PATH_MAX];		/* the device's image; offline: FILE */
	char base[PATH_MAX];		/* commit: BASE */
	char mid[PATH_MAX];		/* live commit: TOP, between the two */
	char new[PATH_MAX];		/* snapshot: NEW */
	size_t op;			/* the G_CHAIN op */
	size_t rec_op;			/* the barrier op of the record hook, or op */
	unsigned int qcheck_every;	/* qemu-img check on one state in this many */
	int job_ret;			/* the commit job's end */
	struct wl *w;
	int step_ret;
	bool step_done;			/* atomic */
	struct mrec mr;
	/* Results. */
	unsigned long states, bad, lost, corrupt, qchecks, qcheck_bad, right_new, right_old;
	unsigned long old_chain, new_chain;
	unsigned long drained;		/* guest writes the step's drain waited for */
};

static void chain_job_event(void *ctx, const struct blk_job_info *job, int type, const char *err)
{
	struct chain *c = ctx;

	if (type == BLK_JOB_EV_COMPLETED)
		c->job_ret = err ? -EIO : 0;
	else if (type == BLK_JOB_EV_CANCELLED)
		c->job_ret = -ECANCELED;
}

/*
 * The record hook of the chain primitives, called under the drain once
 * the old chain is durable (E3, C3): every guest op that completed before
 * it went to that chain and is durable from here.  A barrier op, then.
 */
static int chain_note_record(void *ctx, const struct tgt *top)
{
	struct chain *c = ctx;
	struct gop *g;

	c->rec_op = c->w->nr_ops;
	g = wl_add_op(c->w, G_FLUSH);
	g->issue_clock = g->done_clock = tick(c->w->rc);
	return 0;
}

/* The step of each kind, through what the server and the CLI call. */
static int chain_body(void *arg)
{
	struct chain *c = arg;
	struct blk_dev *d = c->w->dev;
	struct blk_chain_change ch = { .record = chain_note_record, .ctx = c };
	struct blk_job_info info;
	char why[256] = "";
	struct tgt *ov;
	int ret;

	switch (c->kind) {
	case CH_SNAPSHOT:
		/* ublksrv/control_snap.c's blockdev-snapshot-sync: E1-E5. */
		ret = blk_overlay_create(d->top, tgt_find(c->new_fmt), c->new, &ov, why,
					 sizeof(why));
		if (!ret) {
			ret = blk_chain_push_overlay(d, ov, &ch);
			if (ret)
				tgt_free_chain(ov);
		}
		break;
	case CH_COMMIT: {
		struct blk_chain_opts o = { .top = d->top->backing,
					    .base = d->top->backing->backing,
					    .cluster_bytes = 65536,
					    .record = chain_note_record, .record_ctx = c };

		/* block/stream.c: C1-C4, on the job's own thread. */
		c->job_ret = -EINPROGRESS;
		blk_job_set_event_fn(d, chain_job_event, c);
		ret = blk_commit_start(d, &o, why, sizeof(why));
		while (!ret && !blk_job_query(d, &info))
			exec_sleep_ms(2);
		if (!ret)
			ret = c->job_ret;
		break;
	}
	case CH_COMMIT_OFFLINE: {
		/* `imgblk commit -q FILE`: the data into BASE, then FILE emptied. */
		const struct cli_cmd *cmd = cli_find("commit");
		char *argv[] = { "commit", "-q", c->top, NULL };

		ret = cmd->run(cmd, 3, argv) == CLI_EXIT_OK ? 0 : -EIO;
		break;
	}
	default:
		ret = -EINVAL;
	}
	if (ret)
		printf("# chain step failed: %s %s\n", strerror(-ret), why);
	return ret;
}

static void *chain_thread(void *arg)
{
	struct chain *c = arg;

	c->step_ret = exec_run_sync(chain_body, c);
	__atomic_store_n(&c->step_done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * G_CHAIN: the step runs on a thread of its own, as the control thread
 * runs it in the server: a drain blocks its thread until the guest ops in
 * flight, coroutines of this one, have left.
 */
static int chain_step(struct wl *w)
{
	struct chain *c = w->chain_ctx;
	pthread_t th;

	c->step_done = false;
	if (pthread_create(&th, NULL, chain_thread, c))
		return -EAGAIN;
	while (!__atomic_load_n(&c->step_done, __ATOMIC_SEQ_CST))
		exec_sleep_ms(1);
	pthread_join(th, NULL);
	return c->step_ret;
}

/*
 * The file @f as a crash at clock @C leaves it, in @st (allocated): its
 * changes durable by then, and unless @prefix a random part of the rest.
 */
static void chain_file_state(struct replay *r, const struct mfile *f, uint64_t C, bool prefix,
			     struct fimg *st)
{
	const struct model *m = &f->m;
	const struct recorder *rc = &f->rc;
	size_t P = 0, bar = 0, applied = 0, k;
	int last = -1;

	while (P < rc->n && rc->ev[P].clock < C)
		P++;
	for (k = 0; k < m->nr_syncs; k++)
		if (m->syncs[k].done < P)
			last = k;
	if (last >= 0)
		bar = m->syncs[last].issue;
	st->cap = ALIGN_UP(m->max_size, 4096) + 4096;
	st->buf = calloc(1, st->cap);
	if (f->init.size)	/* a file made during the run has no start */
		memcpy(st->buf, f->init.buf, f->init.size);
	st->size = st->data_end = f->init.size;
	for (; applied < m->nr_done && m->ch[m->by_done[applied]].done < bar; applied++)
		change_apply(st, rc, &m->ch[m->by_done[applied]], NULL);
	if (last >= 0)
		st->size = MAX(st->size, rc->ev[bar].fsize);
	state_unsynced(r, m, rc, P, bar, applied, prefix, st);
}

/*
 * Writes into the directory the files a crash at clock @C leaves, under
 * the names it leaves: the links and unlinks done before a directory sync
 * that completed (issued after they completed) are there; of the others
 * issued before @C, unless @prefix, a random part, in order.  A name it
 * does not leave is removed.  Sets @present[i] when file i has a name.
 */
static int chain_state_write(struct replay *r, struct chain *c, uint64_t C, bool prefix,
			     bool *present)
{
	struct mrec *mr = &c->mr;
	struct { char name[64]; int file; } dir[MAX_NAMES];
	char names[MAX_NAMES][64], path[PATH_MAX + 64];
	unsigned int nd = 0, nn = 0, i, j;
	uint64_t synced = 0;
	size_t k;

	for (i = 0; i < mr->nr; i++)
		if (mr->f[i].init.buf) {
			snprintf(dir[nd].name, sizeof(dir[0].name), "%s", mr->f[i].name);
			dir[nd++].file = i;
		}
	for (k = 0; k < mr->nr_ns; k++)
		if (mr->ns[k].kind == NS_SYNC && mr->ns[k].done_clock < C)
			synced = mr->ns[k].issue_clock;
	for (k = 0; k < mr->nr_ns; k++) {
		const struct ns_op *o = &mr->ns[k];

		if (o->kind == NS_SYNC || o->issue_clock >= C || o->res < 0)
			continue;
		for (i = 0; i < nn && strcmp(names[i], o->name); i++)
			;
		if (i == nn && nn < MAX_NAMES)
			snprintf(names[nn++], sizeof(names[0]), "%s", o->name);
		if (!(o->done_clock < synced) && (prefix || rnd_pct(&r->rng, 50)))
			continue;
		for (i = 0; i < nd && strcmp(dir[i].name, o->name); i++)
			;
		if (o->kind == NS_LINK && i == nd && o->file >= 0 && nd < MAX_NAMES) {
			snprintf(dir[nd].name, sizeof(dir[0].name), "%s", o->name);
			dir[nd++].file = o->file;
		} else if (o->kind == NS_UNLINK && i < nd) {
			dir[i] = dir[--nd];
		}
	}
	memset(present, 0, MAX_FILES * sizeof(*present));
	for (i = 0; i < nn; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]);
		unlink(path);
	}
	for (i = 0; i < nd; i++) {
		struct fimg st = { 0 };
		int ret;

		chain_file_state(r, &mr->f[dir[i].file], C, prefix, &st);
		snprintf(path, sizeof(path), "%s/%s", c->dir, dir[i].name);
		ret = fimg_save(&st, path);
		free(st.buf);
		if (ret)
			return ret;
		present[dir[i].file] = true;
	}
	for (j = 0; j < mr->nr; j++)
		if (mr->f[j].init.buf && !present[j])
			return -ENOENT;		/* an image we started with lost its name */
	return 0;
}

/* True if the file named @path has a name in the state (@present). */
static bool chain_has(const struct chain *c, const bool *present, const char *path)
{
	unsigned int i;

	for (i = 0; i < c->mr.nr; i++)
		if (present[i] && !strcmp(c->mr.f[i].name, base_name(path)))
			return true;
	return false;
}

/* The format of the image at @path: what its first bytes say. */
static const char *chain_fmt(const char *path)
{
	unsigned char m[4] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (pread(fd, m, 4, 0) != 4)
			m[0] = 0;
		close(fd);
	}
	return !memcmp(m, "QFI\xfb", 4) ? "qcow2" : !memcmp(m, "QED\0", 4) ? "qed" : "raw";
}

/* qemu-img check of @path, its backing files in place: 0 or 3 (leaks) is clean. */
static bool chain_qcheck(struct chain *c, const char *path, char *what, size_t len)
{
	int rc = run_cmd("qemu-img check -q -f %s '%s' > /dev/null 2>&1", chain_fmt(path), path);

	rc = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
	c->qchecks++;
	if (rc == 0 || rc == 3)
		return true;
	c->qcheck_bad++;
	snprintf(what, len, "qemu-img check of %s exited with %d", path, rc);
	return false;
}

/*
 * Opens @path (read-only with @ro) and reads it all: the guest content
 * @own, with the alternatives of ops in flight when @alt.  Checks the
 * backing file it opened is @want_backing (NULL: no check).
 */
static bool chain_reads(struct replay *r, const char *path, bool ro, const uint32_t *own,
			bool alt, const char *want_backing, char *what, size_t len)
{
	struct tgt t = { 0 };
	bool ok;
	int ret;

	ret = tgt_open_file(&t, path, chain_fmt(path), ro ? TGT_O_RDONLY | TGT_O_BUFFERED :
			    TGT_O_BUFFERED);
	if (ret) {
		snprintf(what, len, "opening %s failed: %s", path, strerror(-ret));
		r->open_failed++;
		return false;
	}
	ok = reads_back(r, &t, own, alt, what, len);
	if (ok && want_backing && (!t.backing || strcmp(base_name(t.backing->cfg.file),
							 base_name(want_backing)))) {
		snprintf(what, len, "%s reads %s, not %s", path,
			 t.backing ? t.backing->cfg.file : "no backing file", want_backing);
		ok = false;
	}
	ret = tgt_close(&t);
	if (ok && ret) {
		snprintf(what, len, "closing %s failed: %s", path, strerror(-ret));
		ok = false;
	}
	return ok;
}

/* The owners at the barrier that is op @op. */
static const uint32_t *owners_at(const struct replay *r, size_t op)
{
	size_t f;

	for (f = 1; f < r->nr_flush && r->flush_op[f] != op; f++)
		;
	return r->flush_owner[f < r->nr_flush ? f : 0];
}

/*
 * Checks the state a crash at clock @C left in the directory (docs:
 * "Chain changes"): QEMU accepts every image as it is (qcow2 without the
 * dirty bit; the others after our repairing open), imgblk's check too,
 * and the right image reads the guest's content.
 */
static bool chain_check(struct replay *r, struct chain *c, uint64_t C, const bool *present,
			unsigned long state)
{
	const struct gop *g = &r->w->ops[c->op];
	const uint32_t *own = expect_at(r, C);
	bool qcheck = c->qcheck_every && state % c->qcheck_every == 0;
	bool ok = true, pre[MAX_FILES] = { false };
	bool started = g->issue_clock < C, done = g->done_clock < C;
	char what[512], path[PATH_MAX + 64];
	const char *right = c->top, *want_backing = NULL;
	unsigned int i;
	int saved = quiet_begin(c->dir);

	/* qcow2 without the dirty bit: QEMU repairs nothing, so the state itself must be clean. */
	for (i = 0; i < c->mr.nr && ok; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->dir, c->mr.f[i].name);
		pre[i] = present[i] && !strcmp(chain_fmt(path), "qcow2") && !qcow2_dirty(path);
		if (qcheck && pre[i])
			ok = chain_qcheck(c, path, what, sizeof(what));
	}
	switch (c->kind) {
	case CH_SNAPSHOT:
		/* NEW if it is there (empty, it reads the old top), else the old top. */
		if (chain_has(c, present, c->new)) {
			right = c->new;
			c->right_new++;
		} else if (done) {
			snprintf(what, sizeof(what), "%.300s is gone, after the snapshot completed",
				 c->new);
			ok = false;
		} else {
			c->right_old++;
		}
		break;
	case CH_COMMIT:
		/* The active image always; its header names TOP until C3, BASE from then. */
		if (!started)
			want_backing = c->mid;
		if (done)
			want_backing = c->base;
		break;
	case CH_COMMIT_OFFLINE:
		break;
	}
	if (ok)
		ok = chain_reads(r, right, false, own, true, want_backing, what, sizeof(what));
	/*
	 * After the step: the old top holds the snapshot (what completed
	 * before the record, under the drain), BASE the committed content.
	 */
	if (ok && done && c->kind == CH_SNAPSHOT)
		ok = chain_reads(r, c->top, true, owners_at(r, c->rec_op), false, NULL, what,
				 sizeof(what));
	if (ok && done && c->kind == CH_COMMIT_OFFLINE)
		ok = chain_reads(r, c->base, true, owners_at(r, c->op), false, NULL, what,
				 sizeof(what));
	if (ok && c->kind == CH_COMMIT) {
		struct tgt t = { 0 };

		/* Which chain the active image names, counted: both must occur. */
		if (!tgt_open_file(&t, c->top, "qcow2", TGT_O_RDONLY | TGT_O_BUFFERED)) {
			if (t.backing && !strcmp(base_name(t.backing->cfg.file), base_name(c->base)))
				c->new_chain++;
			else
				c->old_chain++;
			tgt_close(&t);
		}
	}
	/* Every image: the rest repaired by a read-write open, then both checks. */
	for (i = 0; i < c->mr.nr && ok; i++) {
		struct tgt t = { 0 };

		if (!present[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s", c->dir, c->mr.f[i].name);
		if (!pre[i] && !tgt_open_file(&t, path, chain_fmt(path), TGT_O_BUFFERED))
			tgt_close(&t);
		ok = own_check(path, chain_fmt(path), what, sizeof(what));
		if (!ok)
			c->corrupt++;
		if (ok && qcheck && !pre[i])
			ok = chain_qcheck(c, path, what, sizeof(what));
	}
	quiet_end(saved, c->dir, !ok && r->failures_shown < 5);
	if (!ok && r->failures_shown++ < 5) {
		snprintf(path, sizeof(path), "%s/crash-chain-%llx-%lu", r->keep_dir,
			 (unsigned long long)r->seed, state);
		if (run_cmd("rm -rf '%s' && cp -a '%s' '%s'", path, c->dir, path))
			path[0] = '\0';
		printf("# state %lu (seed %#llx, clock %llu of %llu, step %s): %s%s%s\n", state,
		       (unsigned long long)r->seed, (unsigned long long)C,
		       (unsigned long long)c->mr.clk.clock,
		       done ? "done" : started ? "running" : "not started", what,
		       path[0] ? "; kept in " : "", path);
	}
	return ok;
}

/* Crash clocks: after each sync that completed (a sample), then random ones; half in the step. */
static void chain_states(struct replay *r, struct chain *c, unsigned long budget)
{
	const struct gop *g = &r->w->ops[c->op];
	uint64_t end = c->mr.clk.clock + 1, *syncs = NULL;
	size_t nr_syncs = 0, k;
	unsigned long n = 0, nr_prefix;
	unsigned int i;
	bool present[MAX_FILES];

	for (i = 0; i < c->mr.nr; i++)
		for (k = 0; k < c->mr.f[i].m.nr_syncs; k++)
			if (c->mr.f[i].m.syncs[k].done != NEVER) {
				syncs = xrealloc(syncs, (nr_syncs + 1) * sizeof(*syncs));
				syncs[nr_syncs++] = c->mr.f[i].rc.ev[c->mr.f[i].m.syncs[k].done].clock + 1;
			}
	for (k = 0; k < c->mr.nr_ns; k++)
		if (c->mr.ns[k].kind == NS_SYNC && c->mr.ns[k].done_clock != NEVER) {
			syncs = xrealloc(syncs, (nr_syncs + 1) * sizeof(*syncs));
			syncs[nr_syncs++] = c->mr.ns[k].done_clock + 1;
		}
	for (k = 0; k < r->w->nr_ops; k++) {
		const struct gop *o = &r->w->ops[k];

		c->drained += (o->kind == G_WRITE || o->kind == G_ZERO) &&
			      o->issue_clock > g->issue_clock &&
			      o->done_clock < r->w->ops[c->rec_op].issue_clock;
	}
	nr_prefix = MIN((unsigned long)nr_syncs, budget / 3);
	for (n = 0; n < budget; n++) {
		bool prefix = n < nr_prefix;
		uint64_t C;

		if (prefix)
			C = syncs[n * nr_syncs / nr_prefix];
		else if (rnd_pct(&r->rng, 50))
			C = g->issue_clock + rnd_below(&r->rng, g->done_clock - g->issue_clock + 2);
		else
			C = 1 + rnd_below(&r->rng, end);
		if (chain_state_write(r, c, C, prefix, present)) {
			printf("# state %lu: an image of the start has no name\n", n);
			c->bad++;
			continue;
		}
		c->bad += !chain_check(r, c, C, present, n);
		c->states++;
	}
	free(syncs);
}
#endif /* CRASH_CHAIN_ONLY */

/* ---------------------------------------------------------------- */
/* The test                                                           */

#ifndef CRASH_CHAIN_ONLY
FIXTURE(crash) {
	char dir[PATH_MAX];
};

FIXTURE_VARIANT(crash) {
	struct variant_cfg cfg;
	uint64_t seed;
};

/* 512-byte clusters with 64-bit refcounts: 2 MiB of file outgrow the first refcount table. */
FIXTURE_VARIANT_ADD(crash, qcow2_512_rc64) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=512,refcount_bits=64",
		 .size_bytes = 8 * MiB, .data_bytes = 3 * MiB, .max_io_sectors = 64,
		 .want_rt_growth = true },
	.seed = 0x5eed0001,
};

/* Small clusters over a qcow2 backing file shorter than the image: COW everywhere. */
FIXTURE_VARIANT_ADD(crash, qcow2_512_backing) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=512",
		 .size_bytes = 4 * MiB, .backing_fmt = "qcow2", .backing_bytes = 3 * MiB,
		 .data_bytes = 1 * MiB, .max_io_sectors = 32 },
	.seed = 0x5eed0002,
};

/* 4 KiB clusters, raw backing file, lazy refcounts requested by the image. */
FIXTURE_VARIANT_ADD(crash, qcow2_4k_raw_backing_lazy) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=4096,lazy_refcounts=on",
		 .size_bytes = 16 * MiB, .backing_fmt = "raw", .backing_bytes = 16 * MiB,
		 .data_bytes = 2 * MiB, .max_io_sectors = 128 },
	.seed = 0x5eed0003,
};

/* Version 2 (no zero flag) with a backing file, 1-bit refcounts. */
FIXTURE_VARIANT_ADD(crash, qcow2_v2_4k_backing) {
	.cfg = { .fmt = "qcow2", .create_opts = "compat=0.10,cluster_size=4096",
		 .size_bytes = 8 * MiB, .backing_fmt = "raw", .backing_bytes = 6 * MiB,
		 .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0004,
};

/* 1-bit refcounts: a refcount block covers many clusters, overflow is near. */
FIXTURE_VARIANT_ADD(crash, qcow2_4k_rc1) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=4096,refcount_bits=1",
		 .size_bytes = 8 * MiB, .data_bytes = 2 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0005,
};

/* QED without a backing file: need-check protects the tables. */
FIXTURE_VARIANT_ADD(crash, qed_4k) {
	.cfg = { .fmt = "qed", .create_opts = "cluster_size=4096,table_size=2",
		 .size_bytes = 24 * MiB, .data_bytes = 2 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0006,
};

/* QED with a raw backing file: data synced before the L2 update; some FUA writes. */
FIXTURE_VARIANT_ADD(crash, qed_4k_raw_backing) {
	.cfg = { .fmt = "qed", .create_opts = "cluster_size=4096,table_size=2",
		 .fua_pct = 15, .size_bytes = 16 * MiB, .backing_fmt = "raw", .backing_bytes = 12 * MiB,
		 .data_bytes = 1536 * KiB, .max_io_sectors = 64 },
	.seed = 0x5eed0007,
};

/* QED over a QED backing file. */
FIXTURE_VARIANT_ADD(crash, qed_4k_qed_backing) {
	.cfg = { .fmt = "qed", .create_opts = "cluster_size=4096,table_size=4",
		 .size_bytes = 8 * MiB, .backing_fmt = "qed", .backing_bytes = 8 * MiB,
		 .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0008,
};

/*
 * Starting from a compressed image (4 KiB clusters, zstd): writes, zeroes
 * and discards into compressed clusters free their share of packed host
 * clusters.  Small: each zstd cluster read costs a decompression context.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_4k_zstd) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=4096", .compress = "zstd",
		 .size_bytes = 4 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0009,
};

/*
 * 512-byte clusters, zlib: several compressed clusters share each host
 * cluster, and a snapshot shares all of them.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_512_zlib_snap) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=512", .compress = "zlib",
		 .pre_snaps = 1, .size_bytes = 1 * MiB, .data_bytes = 512 * KiB,
		 .max_io_sectors = 32 },
	.seed = 0x5eed000a,
};

/*
 * Two snapshots taken over written data: the workload's writes, zeroes
 * and discards hit clusters with refcount 2 or 3, and 1 KiB clusters
 * make 32 L2 tables for it to copy.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_1k_snap) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=1024", .pre_snaps = 2,
		 .fua_pct = 15, .size_bytes = 4 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed000b,
};

/*
 * Few large clusters and many FUA writes: a FUA write often lands in
 * place on a cluster that an earlier, unflushed write allocated, whose
 * L2 entry is not durable yet.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_64k_fua) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=65536", .fua_pct = 40,
		 .size_bytes = 1 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0012,
};

/*
 * A recoverable device writes its tables before each request completes,
 * with only the syncs that order them: a power cut must still find them
 * in order.  With and without lazy refcounts (which skip F2's sync), over
 * a backing file (COW), with discards and write zeroes.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_4k_recoverable) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=4096",
		 .size_bytes = 8 * MiB, .backing_fmt = "qcow2", .backing_bytes = 6 * MiB,
		 .data_bytes = 2 * MiB, .max_io_sectors = 64, .recoverable = true },
	.seed = 0x5eed0030,
};

FIXTURE_VARIANT_ADD(crash, qcow2_1k_lazy_recoverable) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=1024,lazy_refcounts=on",
		 .size_bytes = 4 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 32,
		 .l2_cache_bytes = 4096, .recoverable = true },
	.seed = 0x5eed0031,
};

/* The same for QED: its L2 updates are written at once, but not synced. */
FIXTURE_VARIANT_ADD(crash, qed_64k_fua) {
	.cfg = { .fmt = "qed", .create_opts = "cluster_size=65536,table_size=4", .fua_pct = 40,
		 .size_bytes = 4 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0020,
};

/*
 * The workload takes snapshots and deletes them (S1-S3) between its
 * batches: every L2 table is shared again after each one.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_1k_snap_ops) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=1024", .pre_snaps = 1,
		 .snap_ops = true, .size_bytes = 4 * MiB, .data_bytes = 2 * MiB,
		 .max_io_sectors = 64 },
	.seed = 0x5eed000c,
};

/*
 * The smallest L2 cache: dirty tables are evicted all the time, each
 * eviction writing them back after their refcounts and data (F1-F3)
 * without a full flush.  Eager refcounts over a backing file, and lazy.
 */
FIXTURE_VARIANT_ADD(crash, qcow2_512_backing_small_l2) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=512",
		 .size_bytes = 4 * MiB, .backing_fmt = "raw", .backing_bytes = 4 * MiB,
		 .data_bytes = 1 * MiB, .max_io_sectors = 64, .l2_cache_bytes = 1 },
	.seed = 0x5eed000d,
};

FIXTURE_VARIANT_ADD(crash, qcow2_1k_lazy_small_l2) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=1024,lazy_refcounts=on",
		 .size_bytes = 8 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64,
		 .l2_cache_bytes = 1 },
	.seed = 0x5eed000e,
};

/*
 * An enabled dirty bitmap (QEMU's), stored clean by the workload now and
 * then while writes run beside it: a crash leaves it in use, or
 * consistent and marking every completed change (D0-D4).
 */
FIXTURE_VARIANT_ADD(crash, qcow2_4k_bitmap) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=4096", .bitmap = true,
		 .size_bytes = 8 * MiB, .data_bytes = 1 * MiB, .max_io_sectors = 64 },
	.seed = 0x5eed0030,
};

/* The same with lazy refcounts: D2 must write the refcount blocks itself. */
FIXTURE_VARIANT_ADD(crash, qcow2_1k_bitmap_lazy) {
	.cfg = { .fmt = "qcow2", .create_opts = "cluster_size=1024,lazy_refcounts=on",
		 .bitmap = true, .size_bytes = 4 * MiB, .data_bytes = 1 * MiB,
		 .max_io_sectors = 64 },
	.seed = 0x5eed0031,
};

FIXTURE_SETUP(crash)
{
	ASSERT_EQ(0, make_tmpdir(self->dir, sizeof(self->dir), "imgblk-crash"));
}

FIXTURE_TEARDOWN(crash)
{
	rm_rf(self->dir);
}
#endif /* !CRASH_CHAIN_ONLY */

/*
 * What a converted starting image holds: per 4 KiB, zeros (left
 * unallocated by convert), random data (too dense to compress: stored as a
 * normal cluster) or sectors that compress well yet begin with 16 bytes
 * unique to the sector, so a sector read from the wrong place still fails.
 */
static void init_fill(unsigned char *buf, uint64_t bytes, uint32_t tag)
{
	uint64_t s, i;

	for (s = 0; s < bytes / SECTOR; s++) {
		unsigned char *p = buf + s * SECTOR;
		uint64_t kind = splitmix64((s * SECTOR / (4 * KiB)) ^ ((uint64_t)tag << 48)) % 100;

		if (kind < 15)
			continue;
		if (kind < 30) {
			sector_fill(p, tag, s);
			continue;
		}
		put_be64(p, splitmix64(((uint64_t)tag << 40) ^ s));
		put_be64(p + 8, s);
		for (i = 16; i < SECTOR; i++)
			p[i] = (s * 3 + i / 16) & 0xff;
	}
}

static int write_whole(const char *path, const void *buf, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pwrite(fd, buf, len, 0);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

/*
 * Has qemu-io write owner @tag's data over six random ranges of the qcow2
 * image @img (in @dir), and notes it in @w->init.  Returns 0 or -errno.
 */
static int qemu_io_scribble(const char *dir, struct wl *w, const char *img, uint32_t tag,
			    struct rng *g)
{
	char cmd[4096], chunk[PATH_MAX];
	size_t pos;
	unsigned int j;
	int ret;

	pos = snprintf(cmd, sizeof(cmd), "cd '%s' && qemu-io -f qcow2", dir);
	for (j = 0; j < 6; j++) {
		uint64_t n = 1 + rnd_below(g, 128), s0 = rnd_below(g, w->nsect - n + 1), s;

		for (s = s0; s < s0 + n; s++)
			sector_fill(w->init + s * SECTOR, tag, s);
		snprintf(chunk, sizeof(chunk), "%s/chunk%u", dir, j);
		ret = write_whole(chunk, w->init + s0 * SECTOR, n * SECTOR);
		if (ret)
			return ret;
		pos += snprintf(cmd + pos, sizeof(cmd) - pos, " -c 'write -q -s chunk%u %llu %llu'",
				j, (unsigned long long)(s0 * SECTOR),
				(unsigned long long)(n * SECTOR));
	}
	snprintf(cmd + pos, sizeof(cmd) - pos, " '%s' && rm -f chunk*", img);
	return system(cmd) ? -EIO : 0;
}

/*
 * Takes internal snapshot @k with qemu-img, then (@write) has qemu-io
 * write new data over a few ranges, so the next snapshot differs from
 * this one: the clusters (and L2 tables, which QEMU copied) the ranges
 * touch are shared with fewer snapshots.  Returns 0 or -errno.
 */
static int pre_snapshot(const char *dir, struct wl *w, const char *img, unsigned int k,
			bool write, struct rng *g)
{
	struct snap_exp *sn = &w->snaps[w->nr_snaps++];

	snprintf(sn->name, sizeof(sn->name), "pre%u", k);
	sn->create_op = sn->delete_op = NEVER;
	sn->bytes = malloc(w->nsect * SECTOR);
	memcpy(sn->bytes, w->init, w->nsect * SECTOR);
	if (run_cmd("qemu-img snapshot -c %s '%s'", sn->name, img))
		return -EIO;
	return write ? qemu_io_scribble(dir, w, img, 8 + k, g) : 0;
}

/*
 * A starting image that QEMU converts from a raw file of init_fill()
 * content.  Compressed (every compressible cluster): the workload's
 * writes COW out of compressed clusters and drop their share of host
 * clusters that several of them pack into.  With snapshots taken first:
 * nothing written after the last one, the workload's first write to
 * each L2 table copies it, and each write COWs out of a shared cluster.
 */
static int make_converted(const char *dir, const struct variant_cfg *v, struct wl *w,
			  const char *img)
{
	struct rng g = { .s = splitmix64(w->rng.s ^ 0x5a5a) };
	char raw[PATH_MAX], comp[64] = "";
	unsigned int k;
	int ret;

	init_fill(w->init, v->size_bytes, 7);
	snprintf(raw, sizeof(raw), "%s/start.raw", dir);
	ret = write_whole(raw, w->init, v->size_bytes);
	if (ret)
		return ret;
	if (v->compress)
		snprintf(comp, sizeof(comp), ",compression_type=%s", v->compress);
	if (run_cmd("qemu-img convert -q %s -f raw -O %s -o %s%s '%s' '%s'",
		    v->compress ? "-c" : "", v->fmt, v->create_opts, comp, raw, img))
		return -EIO;
	if (unlink(raw))
		return -errno;
	for (k = 0; k < v->pre_snaps; k++) {
		ret = pre_snapshot(dir, w, img, k, k + 1 < v->pre_snaps, &g);
		if (ret)
			return ret;
	}
	return 0;
}

/* Builds the backing file (if any) and the image; fills @w->init. */
static int make_images(const char *dir, const struct variant_cfg *v, struct wl *w,
		       char *img, size_t len)
{
	char raw[PATH_MAX], back[PATH_MAX];
	uint64_t s;
	int fd;

	w->nsect = v->size_bytes / SECTOR;
	w->init = calloc(1, v->size_bytes);
	snprintf(img, len, "%s/image.%s", dir, v->fmt);
	if (v->compress || v->pre_snaps)
		return make_converted(dir, v, w, img);
	if (!v->backing_fmt)
		return run_cmd("qemu-img create -q -f %s -o %s '%s' %llu", v->fmt,
			       v->create_opts, img, (unsigned long long)v->size_bytes) ||
		       (v->bitmap && run_cmd("qemu-img bitmap --add -g 4K '%s' e", img)) ? -EIO : 0;
	for (s = 0; s < v->backing_bytes / SECTOR; s++)
		sector_fill(w->init + s * SECTOR, 7, s);
	snprintf(raw, sizeof(raw), "%s/backing.raw", dir);
	fd = open(raw, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || pwrite(fd, w->init, v->backing_bytes, 0) != (ssize_t)v->backing_bytes)
		return -EIO;
	close(fd);
	snprintf(back, sizeof(back), "backing.raw");
	if (strcmp(v->backing_fmt, "raw")) {
		if (run_cmd("qemu-img convert -O %s '%s' '%s/backing.%s'", v->backing_fmt,
			    raw, dir, v->backing_fmt))
			return -EIO;
		snprintf(back, sizeof(back), "backing.%s", v->backing_fmt);
	}
	/* A relative name: the states live in the same directory. */
	return run_cmd("qemu-img create -q -f %s -o %s -b '%s' -F %s '%s' %llu", v->fmt,
		       v->create_opts, back, v->backing_fmt, img,
		       (unsigned long long)v->size_bytes);
}

#ifndef CRASH_CHAIN_ONLY
/*
 * Compressed clusters in the image at @path, as our check counts them
 * (read-only, nothing repaired).  Returns the count or -errno.
 */
static int64_t compressed_clusters(const char *path, const char *fmt)
{
	struct tgt_check_result cr = { 0 };
	struct tgt t = { 0 };
	int ret;

	ret = tgt_open_file(&t, path, fmt, TGT_O_RDONLY | TGT_O_CHECK | TGT_O_BUFFERED);
	if (ret)
		return ret;
	ret = t.ops->check(&t, 0, &cr);
	tgt_close(&t);
	return ret ? ret : (int64_t)cr.compressed_clusters;
}

struct round_ctx {
	struct __test_metadata *_metadata;
	const struct variant_cfg *cfg;
	const char *dir;
	uint64_t seed;
	unsigned long budget;
	unsigned int qcheck_every;
	/* Totals over rounds. */
	unsigned long states, corrupt, lost, open_failed, qchecks, qcheck_bad;
	unsigned long torn, subsets, prefixes, events, syncs, foreign;
	unsigned long snap_bad, snap_reads, snap_qemu, snap_created, snap_deleted, fua_ops;
	unsigned long bitmap_bad, bitmap_consistent, bitmap_in_use, bitmap_stores;
	int64_t comp_start, comp_end;	/* compressed clusters before and after */
	int err;
	bool rt_grew;
};

static void round_main(void *arg)
{
	struct round_ctx *c = arg;
	const struct variant_cfg *v = c->cfg;
	struct recorder rc = { 0 };
	struct wl w = { 0 };
	struct replay r = { 0 };
	struct fimg init = { 0 };
	char img[PATH_MAX], dir[PATH_MAX];
	struct stat st;
	uint32_t rt0 = 0, rt1 = 0;
	int64_t comp = 0;
	size_t i;

	snprintf(dir, sizeof(dir), "%s/r", c->dir);
	rm_rf(dir);
	if (mkdir(dir, 0755)) {
		c->err = -errno;
		return;
	}
	w.cfg = v;
	w.rc = &rc;
	w.rng.s = c->seed;
	w.path = img;
	w.ops = calloc(MAX_GOPS, sizeof(*w.ops));
	if (make_images(dir, v, &w, img, sizeof(img)) || read_file(img, &init) ||
	    stat(img, &st)) {
		printf("# cannot make the images in %s\n", dir);
		c->err = -EIO;
		goto out;
	}
	if (!strcmp(v->fmt, "qcow2"))
		rt0 = get_be32(init.buf + 56);
	if (v->compress) {
		comp = compressed_clusters(img, v->fmt);
		if (comp < 0) {
			c->err = comp;
			goto out;
		}
		c->comp_start += comp;
	}
	rc.dev = st.st_dev;
	rc.ino = st.st_ino;
	exec_set_recorder(rec_cb, &rc);
	c->err = wl_run(&w);
	exec_set_recorder(NULL, NULL);
	if (c->err) {
		printf("# recorded run failed: %s\n", strerror(-c->err));
		goto out;
	}
	if (!strcmp(v->fmt, "qcow2")) {
		struct fimg fin = { 0 };

		if (!read_file(img, &fin))
			rt1 = get_be32(fin.buf + 56);
		free(fin.buf);
		c->rt_grew |= rt1 > rt0;
	}
	if (v->compress) {
		comp = compressed_clusters(img, v->fmt);
		if (comp < 0) {
			c->err = comp;
			goto out;
		}
		c->comp_end += comp;
	}
	if (model_build(&r.m, &rc, init.size)) {
		c->err = -EINVAL;
		goto out;
	}
	/* The image itself must never be needed again: the states replace it. */
	r.cfg = v;
	r.dir = dir;
	r.keep_dir = getenv("CRASH_REPLAY_KEEP") ?: "/tmp";
	r.w = &w;
	r.rc = &rc;
	r.rng.s = splitmix64(c->seed);
	r.seed = c->seed;
	r.qcheck_every = c->qcheck_every;
	r.alt_head = malloc(w.nsect * sizeof(*r.alt_head));
	r.fua_own = malloc(w.nsect * sizeof(*r.fua_own));
	r.fua_floor = malloc(w.nsect * sizeof(*r.fua_floor));
	r.rbuf = aligned_alloc(4096, 256 * KiB);
	replay_owners(&r);
	replay_run(&r, c->budget, &init);

	c->states += r.states;
	c->corrupt += r.corrupt + r.qcheck_bad;
	c->lost += r.lost;
	c->open_failed += r.open_failed;
	c->qchecks += r.qchecks;
	c->qcheck_bad += r.qcheck_bad;
	c->torn += r.torn;
	c->subsets += r.subsets;
	c->prefixes += r.prefixes;
	c->events += rc.n;
	c->syncs += r.m.nr_syncs;
	c->foreign += rc.foreign;
	c->snap_bad += r.snap_bad;
	c->snap_reads += r.snap_reads;
	c->snap_qemu += r.snap_qemu;
	c->bitmap_bad += r.bitmap_bad;
	c->bitmap_consistent += r.bitmap_consistent;
	c->bitmap_in_use += r.bitmap_in_use;
	for (i = 0; i < w.nr_ops; i++) {
		c->fua_ops += !!(w.ops[i].flags & TGT_W_FUA);
		c->bitmap_stores += w.ops[i].kind == G_BM_STORE;
	}
	for (i = 0; i < w.nr_snaps; i++) {
		c->snap_created += w.snaps[i].create_op != NEVER;
		c->snap_deleted += w.snaps[i].delete_op != NEVER;
	}
	replay_free(&r);
out:
	free(init.buf);
	free(w.init);
	for (i = 0; i < w.nr_snaps; i++)
		free(w.snaps[i].bytes);
	free(w.ops);
	free(rc.ev);
	free(rc.pool);
}

TEST_F_TIMEOUT(crash, replay, 3600)
{
	const struct variant_cfg *v = &variant->cfg;
	struct round_ctx c = { 0 };
	const char *seed_env = getenv("CRASH_REPLAY_SEED");
	unsigned int rounds = env_u64("CRASH_REPLAY_ROUNDS", 1), i;
	struct img_exec e;
	time_t t0 = time(NULL);

	if (!have_tool("qemu-img"))
		SKIP(return, "qemu-img not available");
	c._metadata = _metadata;
	c.cfg = v;
	c.dir = self->dir;
	c.budget = env_u64("CRASH_REPLAY_STATES", DEFAULT_STATES);
	c.qcheck_every = env_u64("CRASH_REPLAY_QCHECK", 6);
	for (i = 0; i < rounds; i++) {
		if (seed_env && !strcmp(seed_env, "random"))
			c.seed = splitmix64(time(NULL) ^ ((uint64_t)getpid() << 20) ^ i);
		else
			c.seed = env_u64("CRASH_REPLAY_SEED", variant->seed) + i;
		printf("# %s: round %u seed %#llx\n", v->fmt, i, (unsigned long long)c.seed);
		ASSERT_EQ(0, exec_init(&e, 256));
		ASSERT_EQ(0, exec_spawn(&e, round_main, &c));
		ASSERT_EQ(0, exec_run(&e));
		exec_exit(&e);
		ASSERT_EQ(0, c.err);
	}
	printf("# %lu states (%lu after a sync, %lu with unsynced writes, %lu torn writes) "
	       "from %lu events, %lu syncs; qemu-img check on %lu; %lu s\n",
	       c.states, c.prefixes, c.subsets, c.torn, c.events, c.syncs, c.qchecks,
	       (unsigned long)(time(NULL) - t0));
	printf("# corruptions %lu, lost flushed data %lu, failed opens %lu\n",
	       c.corrupt, c.lost, c.open_failed);
	EXPECT_EQ(0UL, (unsigned long)c.foreign);
	if (v->pre_snaps || v->snap_ops) {
		printf("# snapshots: %lu created, %lu deleted by the workload; read back %lu times "
		       "by imgblk, %lu by qemu-img; wrong %lu\n", c.snap_created, c.snap_deleted,
		       c.snap_reads, c.snap_qemu, c.snap_bad);
		EXPECT_EQ(0UL, c.snap_bad);
	}
	if (v->bitmap) {
		/* Both kinds of state must occur, or the check proved nothing. */
		printf("# bitmap: %lu clean stores by the workload; %lu states with it consistent, "
		       "%lu in use; wrong %lu\n", c.bitmap_stores, c.bitmap_consistent,
		       c.bitmap_in_use, c.bitmap_bad);
		EXPECT_EQ(0UL, c.bitmap_bad);
		EXPECT_LT(0UL, c.bitmap_stores);
		EXPECT_LT(0UL, c.bitmap_consistent);
		EXPECT_LT(0UL, c.bitmap_in_use);
	}
	if (v->fua_pct) {
		printf("# %lu FUA writes and write zeroes\n", c.fua_ops);
		EXPECT_LT(0UL, c.fua_ops);
	}
	if (v->snap_ops) {
		EXPECT_LT(0UL, c.snap_created);
		EXPECT_LT(0UL, c.snap_deleted);
	}
	if (v->compress) {
		/* The workload must have rewritten some of them: COW out of compressed clusters. */
		printf("# compressed clusters: %lld at the start, %lld at the end\n",
		       (long long)c.comp_start, (long long)c.comp_end);
		EXPECT_LT(0, c.comp_start);
		EXPECT_GT(c.comp_start, c.comp_end);
	}
	if (v->want_rt_growth)
		EXPECT_TRUE(c.rt_grew);
	EXPECT_EQ(0UL, (unsigned long)c.open_failed);
	EXPECT_EQ(0UL, (unsigned long)c.lost);
	EXPECT_EQ(0UL, (unsigned long)c.corrupt);
}

#endif /* !CRASH_CHAIN_ONLY */

#ifdef CRASH_CHAIN_ONLY
/* The recorded run: guest batches, the step between them (offline: after the close). */
static int chain_record(struct chain *c, struct wl *w)
{
	struct blk_config cfg = { .werror = BLK_ERR_REPORT, .rerror = BLK_ERR_REPORT };
	uint64_t written = 0;
	struct blk_dev d;
	struct tgt *t;
	struct gop *g;
	int ret;

	w->chain_fn = chain_step;
	w->chain_ctx = c;
	c->w = w;
	if (c->kind == CH_COMMIT_OFFLINE) {
		ret = wl_run(w);
		if (ret)
			return ret;
		w->rc->on = true;
	} else {
		w->rc->on = true;
		t = calloc(1, sizeof(*t));
		ret = tgt_open_file(t, strdup(c->top), "qcow2", TGT_O_FIXED_SIZE);
		if (!ret)
			ret = blk_dev_init(&d, 7, t, &cfg, 1);
		if (ret) {
			w->rc->on = false;
			return ret;
		}
		w->dev = &d;
		wl_batches(w, &written, w->cfg->data_bytes / 2);
	}
	/*
	 * The step runs with guest ops in flight beside it, as on a device;
	 * a write limit keeps them inside the layer (a write waits there for
	 * its turn) until after the flush the step does before its drain,
	 * so that only what the step does under the drain (E3, the drop's
	 * flush) can make them durable.
	 */
	c->op = c->rec_op = w->nr_ops;
	wl_add_op(w, G_CHAIN);
	if (w->dev) {
		struct throttle_cfg thr = { .burst_ms = 1 };

		thr.rate[THR_IOPS_WRITE] = 50;
		blk_set_throttle(w->dev, &thr);
		wl_add_random(w, c->op, 1 + rnd_below(&w->rng, MAX_BATCH), &written);
	}
	wl_run_ops(w, c->op);
	if (w->dev)
		blk_set_throttle(w->dev, &(struct throttle_cfg){ 0 });
	if (w->dev) {
		wl_batches(w, &written, w->cfg->data_bytes);
		/* Closing the chain writes everything back: a last flush. */
		g = wl_add_op(w, G_FLUSH);
		g->issue_clock = tick(w->rc);
		blk_job_shutdown(&d);
		ret = tgt_free_chain(d.top);
		blk_dev_exit(&d);
		g->done_clock = tick(w->rc);
		w->dev = NULL;
	}
	w->rc->on = false;
	return ret ? ret : w->err;
}

/* The images a variant starts with, in c->dir; @w->init what the device reads. */
static int chain_images(struct chain *c, const struct variant_cfg *v, struct wl *w, bool bitmap)
{
	struct rng g = { .s = splitmix64(w->rng.s ^ 0xc4a1) };
	const char *first = c->kind == CH_SNAPSHOT ? c->top : c->base;
	int ret;

	w->nsect = v->size_bytes / SECTOR;
	w->init = calloc(1, v->size_bytes);
	snprintf(c->top, sizeof(c->top), "%s/top.qcow2", c->dir);
	snprintf(c->base, sizeof(c->base), "%s/base.qcow2", c->dir);
	snprintf(c->mid, sizeof(c->mid), "%s/mid.qcow2", c->dir);
	snprintf(c->new, sizeof(c->new), "%s/new.%s", c->dir, c->new_fmt ?: "qcow2");
	ret = make_converted(c->dir, v, w, first);
	if (ret)
		return ret;
	if (bitmap && run_cmd("qemu-img bitmap --add -g 4K '%s' e", first))
		return -EIO;
	if (c->kind == CH_SNAPSHOT)
		return mrec_add(&c->mr, c->top);
	ret = mrec_add(&c->mr, c->base);
	if (!ret && c->kind == CH_COMMIT) {
		ret = run_cmd("qemu-img create -q -f qcow2 -o %s -b base.qcow2 -F qcow2 '%s'",
			      v->create_opts, c->mid) ? -EIO : 0;
		if (!ret)
			ret = qemu_io_scribble(c->dir, w, c->mid, 8, &g);
		if (!ret)
			ret = mrec_add(&c->mr, c->mid);
	}
	if (!ret)
		ret = run_cmd("qemu-img create -q -f qcow2 -o %s -b %s.qcow2 -F qcow2 '%s'",
			      v->create_opts, c->kind == CH_COMMIT ? "mid" : "base", c->top) ?
		      -EIO : 0;
	if (!ret)
		ret = qemu_io_scribble(c->dir, w, c->top, 9, &g);
	/* The images were read before the scribbles of those above: read them again. */
	if (!ret) {
		unsigned int i;

		for (i = 0; i < c->mr.nr; i++) {
			free(c->mr.f[i].init.buf);
			memset(&c->mr.f[i].init, 0, sizeof(c->mr.f[i].init));
		}
		c->mr.nr = 0;
		ret = mrec_add(&c->mr, c->base);
		if (!ret && c->kind == CH_COMMIT)
			ret = mrec_add(&c->mr, c->mid);
		if (!ret)
			ret = mrec_add(&c->mr, c->top);
	}
	return ret;
}

FIXTURE(chain) {
	char dir[PATH_MAX - 128];
};

FIXTURE_VARIANT(chain) {
	enum chain_kind kind;
	const char *opts;	/* qemu-img -o of the images made before the run */
	const char *new_fmt;	/* snapshot: NEW's format */
	bool bitmap;		/* the first image has an enabled dirty bitmap */
	uint64_t seed;
};

/*
 * External snapshot of a qcow2 with an enabled dirty bitmap: at E5 its
 * close stores the bitmap and clears the autoclear bit's in-use state
 * while NEW already names it.
 */
FIXTURE_VARIANT_ADD(chain, snapshot_qcow2_bitmap) {
	.kind = CH_SNAPSHOT, .opts = "cluster_size=4096", .new_fmt = "qcow2", .bitmap = true,
	.seed = 0x5eed0101,
};

/* A QED overlay over a qcow2 with lazy refcounts: E5's close clears its dirty bit. */
FIXTURE_VARIANT_ADD(chain, snapshot_lazy_qed) {
	.kind = CH_SNAPSHOT, .opts = "cluster_size=1024,lazy_refcounts=on", .new_fmt = "qed",
	.seed = 0x5eed0105,
};

/* Intermediate commit of mid into base under top, the device writing top. */
FIXTURE_VARIANT_ADD(chain, commit_live) {
	.kind = CH_COMMIT, .opts = "cluster_size=4096", .seed = 0x5eed0103,
};

/* `imgblk commit FILE`: top into base, then top emptied. */
FIXTURE_VARIANT_ADD(chain, commit_offline) {
	.kind = CH_COMMIT_OFFLINE, .opts = "cluster_size=1024", .seed = 0x5eed0104,
};

FIXTURE_SETUP(chain)
{
	ASSERT_EQ(0, make_tmpdir(self->dir, sizeof(self->dir), "imgblk-crash-chain"));
}

FIXTURE_TEARDOWN(chain)
{
	rm_rf(self->dir);
}

struct chain_round {
	const FIXTURE_VARIANT(chain) *v;
	struct chain *c;
	uint64_t seed;
	unsigned long budget;
	int err;
};

static void chain_main(void *arg)
{
	struct chain_round *cr = arg;
	struct chain *c = cr->c;
	struct variant_cfg v = { .fmt = "qcow2", .create_opts = cr->v->opts,
				 .size_bytes = 4 * MiB, .data_bytes = 768 * KiB,
				 .max_io_sectors = 64 };
	struct wl w = { 0 };
	struct replay r = { 0 };
	struct stat st;
	unsigned int i;

	w.cfg = &v;
	w.rc = &c->mr.clk;
	w.rng.s = cr->seed;
	w.path = c->top;
	w.ops = calloc(MAX_GOPS, sizeof(*w.ops));
	cr->err = chain_images(c, &v, &w, cr->v->bitmap);
	if (!cr->err && stat(c->dir, &st))
		cr->err = -errno;
	if (cr->err) {
		printf("# cannot make the images in %s: %s\n", c->dir, strerror(-cr->err));
		goto out;
	}
	c->mr.dev = st.st_dev;
	c->mr.dir_ino = st.st_ino;
	pthread_mutex_init(&c->mr.lock, NULL);
	exec_set_recorder(mrec_cb, &c->mr);
	cr->err = chain_record(c, &w);
	exec_set_recorder(NULL, NULL);
	pthread_mutex_destroy(&c->mr.lock);
	if (cr->err) {
		printf("# recorded run failed: %s\n", strerror(-cr->err));
		goto out;
	}
	for (i = 0; i < c->mr.nr && !cr->err; i++)
		cr->err = model_build(&c->mr.f[i].m, &c->mr.f[i].rc, c->mr.f[i].init.size);
	if (cr->err)
		goto out;
	r.cfg = &v;
	r.dir = c->dir;
	r.keep_dir = getenv("CRASH_REPLAY_KEEP") ?: "/tmp";
	r.w = &w;
	r.rc = &c->mr.clk;
	r.rng.s = splitmix64(cr->seed);
	r.seed = cr->seed;
	r.alt_head = malloc(w.nsect * sizeof(*r.alt_head));
	r.rbuf = aligned_alloc(4096, 256 * KiB);
	replay_owners(&r);
	chain_states(&r, c, cr->budget);
	c->lost += r.lost;
	replay_free(&r);
out:
	for (i = 0; i < c->mr.nr; i++) {
		free(c->mr.f[i].init.buf);
		free(c->mr.f[i].rc.ev);
		free(c->mr.f[i].rc.pool);
		free(c->mr.f[i].m.ch);
		free(c->mr.f[i].m.syncs);
		free(c->mr.f[i].m.by_done);
	}
	free(c->mr.ns);
	free(w.init);
	free(w.ops);
}

TEST_F_TIMEOUT(chain, replay, 3600)
{
	const char *seed_env = getenv("CRASH_REPLAY_SEED");
	unsigned int rounds = env_u64("CRASH_REPLAY_ROUNDS", 1), i;
	struct chain_round cr = { .v = variant };
	struct img_exec e;
	time_t t0 = time(NULL);

	if (!have_tool("qemu-img") || !have_tool("qemu-io"))
		SKIP(return, "qemu-img or qemu-io not available");
	cr.budget = env_u64("CRASH_REPLAY_CHAIN_STATES", CHAIN_STATES);
	for (i = 0; i < rounds; i++) {
		struct chain *c = calloc(1, sizeof(*c));

		ASSERT_NE(NULL, c);
		c->kind = variant->kind;
		c->qcheck_every = env_u64("CRASH_REPLAY_QCHECK", CHAIN_QCHECK);
		c->new_fmt = variant->new_fmt;
		snprintf(c->dir, sizeof(c->dir), "%s/r%u", self->dir, i);
		ASSERT_EQ(0, mkdir(c->dir, 0755));
		if (seed_env && !strcmp(seed_env, "random"))
			cr.seed = splitmix64(time(NULL) ^ ((uint64_t)getpid() << 20) ^ i);
		else
			cr.seed = env_u64("CRASH_REPLAY_SEED", variant->seed) + i;
		printf("# round %u seed %#llx\n", i, (unsigned long long)cr.seed);
		cr.c = c;
		ASSERT_EQ(0, exec_init(&e, 256));
		ASSERT_EQ(0, exec_spawn(&e, chain_main, &cr));
		ASSERT_EQ(0, exec_run(&e));
		exec_exit(&e);
		ASSERT_EQ(0, cr.err);
		printf("# %lu states from %llu events over %u files and %zu directory "
		       "changes; qemu-img check %lu times; %lu s\n", c->states,
		       (unsigned long long)c->mr.clk.clock, c->mr.nr, c->mr.nr_ns, c->qchecks,
		       (unsigned long)(time(NULL) - t0));
		printf("# failed %lu (lost data %lu, corrupt %lu, qemu-img %lu)\n", c->bad, c->lost,
		       c->corrupt, c->qcheck_bad);
		EXPECT_EQ(0U, c->mr.foreign);
		EXPECT_FALSE(c->mr.overflow);
		EXPECT_EQ(0UL, c->bad);
		if (c->qcheck_every)
			EXPECT_LT(0UL, c->qchecks);
		if (c->kind != CH_COMMIT_OFFLINE) {
			/* Writes the step's drain waited for: only the step made them durable. */
			printf("# %lu guest writes in flight when the step began, durable by it\n",
			       c->drained);
			EXPECT_LT(0UL, c->drained);
		}
		if (c->kind == CH_SNAPSHOT) {
			/* Both sides of the link's durability must occur. */
			printf("# the right image was NEW in %lu states, the old top in %lu\n",
			       c->right_new, c->right_old);
			EXPECT_LT(0UL, c->right_new);
			EXPECT_LT(0UL, c->right_old);
		}
		if (c->kind == CH_COMMIT) {
			printf("# the active image read the old chain in %lu states, the new in %lu\n",
			       c->old_chain, c->new_chain);
			EXPECT_LT(0UL, c->old_chain);
			EXPECT_LT(0UL, c->new_chain);
		}
		free(c);
	}
}

#endif /* CRASH_CHAIN_ONLY */

TEST_HARNESS_MAIN
