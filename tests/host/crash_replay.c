// SPDX-License-Identifier: GPL-2.0
/*
 * Crash-state replay: runs the qcow2 and QED engines over their image
 * files with the executor's recorder on (exec_set_recorder()), then
 * rebuilds from the log the file states a power cut could have left, and
 * checks each one: it opens read-write (repairing what the format says to
 * repair), `qemu-img check` and our own check find no corruption (leaks
 * are allowed), and every guest byte acknowledged before the last
 * completed FLUSH reads back.  Design and crash model: docs/crash-replay.md.
 *
 * Environment: CRASH_REPLAY_STATES (states per variant, default 450, 100
 * under ASan),
 * CRASH_REPLAY_SEED (default fixed per variant; "random" for a new one),
 * CRASH_REPLAY_ROUNDS (workloads per variant, default 1),
 * CRASH_REPLAY_QCHECK (run qemu-img check on one state in N, default 6;
 * 0 never), CRASH_REPLAY_KEEP (directory where failing states are kept,
 * default /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "tgt.h"
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

static void rec_cb(void *ctx, const struct exec_rec *r)
{
	struct recorder *rc = ctx;
	struct rec_ev *e;
	struct stat st;

	if (!rc->on)
		return;
	if (fstat(r->fd, &st) || st.st_dev != rc->dev || st.st_ino != rc->ino) {
		/* A sync of another file is harmless; a change is not. */
		if (r->kind != EXEC_REC_FDATASYNC && !r->done)
			rc->foreign++;
		return;
	}
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
	e->clock = ++rc->clock;
	e->fsize = st.st_size;
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

/* ---------------------------------------------------------------- */
/* The workload: guest ops in concurrent batches on the engine        */

/* A snapshot create also makes every write that completed before it durable. */
enum gop_kind { G_WRITE, G_ZERO, G_DISCARD, G_FLUSH, G_SNAP_CREATE, G_SNAP_DELETE,
		 G_BM_STORE };

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
	return g->kind == G_FLUSH || g->kind == G_SNAP_CREATE;
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
	g->issue_clock = ++w->rc->clock;
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
	}
	g->done_clock = ++w->rc->clock;
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

static void wl_batch(struct wl *w, uint64_t *written)
{
	unsigned int n = 1 + rnd_below(&w->rng, MAX_BATCH), k;
	size_t first = w->nr_ops;
	bool flushed = false;

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
	wl_run_ops(w, first);
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
	while (!w->err && written < w->cfg->data_bytes && w->nr_ops < MAX_GOPS - 16)
		wl_batch(w, &written);
	/* Close writes everything back: it counts as a flush. */
	g = &w->ops[w->nr_ops++];
	memset(g, 0, sizeof(*g));
	g->kind = G_FLUSH;
	g->issue_clock = ++w->rc->clock;
	ret = tgt_close(&w->t);
	g->done_clock = ++w->rc->clock;
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
 * Checks the state saved at @path, a crash at event @P.  Returns true if
 * it passed.
 */
static bool state_check(struct replay *r, const char *path, size_t P,
			unsigned long state)
{
	const struct wl *w = r->w;
	uint64_t clockP = P < r->rc->n ? r->rc->ev[P].clock : NEVER;
	const uint32_t *own;
	struct tgt_check_result cr;
	struct tgt t;
	char what[256];
	size_t f, i;
	uint64_t s, off, cover, bad_sector = NEVER;
	bool qcheck, pre_check, ok = true, present[MAX_SNAPS];
	unsigned int k;
	int saved, ret;

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

		if (g->kind == G_FLUSH || g->issue_clock >= clockP ||
		    (g->done_clock < cover))
			continue;
		for (s = g->off / SECTOR; s < (g->off + g->len) / SECTOR; s++)
			if (!r->cfg->fua_pct || g->done_clock >= r->fua_floor[s])
				alt_add(r, s, gop_owner(g, i));
	}

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
	for (off = 0; off < t.caps.size_bytes && ok; off += 256 * KiB) {
		uint64_t n = MIN(256 * KiB, t.caps.size_bytes - off);

		ret = t.ops->read(&t, r->rbuf, n, off);
		if (ret < 0) {
			/* Unreadable is as lost as wrong (a punched compressed cluster). */
			snprintf(what, sizeof(what), "read at %llu failed: %s",
				 (unsigned long long)off, strerror(-ret));
			r->lost++;
			ok = false;
			break;
		}
		for (s = off / SECTOR; s < (off + n) / SECTOR; s++) {
			const unsigned char *b = r->rbuf + (s * SECTOR - off);
			uint32_t a;

			if (sector_ok(r, b, own[s], s))
				continue;
			for (a = r->alt_head[s]; a != UINT32_MAX; a = r->alt_next[a])
				if (sector_ok(r, b, r->alt_own[a], s))
					break;
			if (a != UINT32_MAX)
				continue;
			bad_sector = s;
			break;
		}
		if (bad_sector != NEVER) {
			snprintf(what, sizeof(what),
				 "guest sector %llu lost its flushed data (owner %u)",
				 (unsigned long long)bad_sector, own[bad_sector]);
			r->lost++;
			ok = false;
		}
	}
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
	if (ok) {
		memset(&t, 0, sizeof(t));
		ret = tgt_open_file(&t, path, r->cfg->fmt,
				    TGT_O_RDONLY | TGT_O_CHECK | TGT_O_BUFFERED);
		memset(&cr, 0, sizeof(cr));
		if (!ret) {
			ret = t.ops->check(&t, 0, &cr);
			tgt_close(&t);
		}
		if (ret || cr.corruptions || cr.check_errors) {
			snprintf(what, sizeof(what),
				 "imgblk check: %s, %llu corruptions, %llu errors",
				 ret ? strerror(-ret) : "ran", (unsigned long long)cr.corruptions,
				 (unsigned long long)cr.check_errors);
			r->corrupt++;
			ok = false;
		}
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
	size_t *cand = calloc(m->nr_ch + 1, sizeof(*cand));
	uint64_t *mask = NULL;
	size_t mask_words = 0;
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
		size_t bar = 0, nc = 0;
		uint64_t size;

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

		/* Unsynced changes issued before P. */
		for (k = 0; k < m->nr_ch && m->ch[k].issue < P; k++)
			if (m->ch[k].done == NEVER || m->ch[k].done >= bar)
				cand[nc++] = k;
		/* st = dur; only the part either ever wrote needs copying. */
		memcpy(st.buf, dur.buf, dur.data_end);
		if (st.data_end > dur.data_end)
			memset(st.buf + dur.data_end, 0, st.data_end - dur.data_end);
		st.data_end = dur.data_end;
		size = dur.size;
		if (!pts[i].prefix && nc) {
			unsigned int pct = (unsigned int[]){ 100, 75, 50, 25 }[rnd_below(&r->rng, 4)];
			bool in_order = rnd_pct(&r->rng, 15);

			/* The file size may or may not have followed the later ftruncates. */
			if (rnd_pct(&r->rng, 50))
				size = MAX(dur.size, rc->ev[P - 1].fsize);
			if (!in_order)
				shuffle(&r->rng, cand, nc);
			st.size = size;
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
				change_apply(&st, rc, c, msk);
			}
			size = st.size;
			r->subsets++;
		} else {
			r->prefixes++;
		}
		st.size = size;
		/*
		 * A completed RWF_DSYNC write (an in-place FUA write) is durable
		 * by itself: applied whole, last.  Over a later write of the same
		 * bytes that the state kept, it stands for that write's sectors
		 * not having reached the disk, which a crash may also do.
		 */
		for (k = applied; k < m->nr_done && m->ch[m->by_done[k]].done < P; k++) {
			const struct change *c = &m->ch[m->by_done[k]];

			if (c->kind == EV_WRITE && (c->flags & RWF_DSYNC))
				change_apply(&st, rc, c, NULL);
		}
		if (fimg_save(&st, path))
			abort();
		state_check(r, path, P, r->states);
		r->states++;
	}
	while (r->jobs[0].pid || r->jobs[1].pid)
		qjob_reap(r, true);
	free(pts);
	free(mask);
	free(cand);
	free(dur.buf);
	free(st.buf);
}

/* ---------------------------------------------------------------- */
/* The test                                                           */

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
	snprintf(self->dir, sizeof(self->dir), "%s/imgblk-crash-XXXXXX",
		 getenv("TMPDIR") ?: "/tmp");
	ASSERT_NE(NULL, mkdtemp(self->dir));
}

FIXTURE_TEARDOWN(crash)
{
	rm_rf(self->dir);
}

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
 * Takes internal snapshot @k with qemu-img, then (@write) has qemu-io
 * write new data over a few ranges, so the next snapshot differs from
 * this one: the clusters (and L2 tables, which QEMU copied) the ranges
 * touch are shared with fewer snapshots.  Returns 0 or -errno.
 */
static int pre_snapshot(const char *dir, struct wl *w, const char *img, unsigned int k,
			bool write, struct rng *g)
{
	struct snap_exp *sn = &w->snaps[w->nr_snaps++];
	char cmd[4096], chunk[PATH_MAX];
	size_t pos;
	unsigned int j;
	int ret;

	snprintf(sn->name, sizeof(sn->name), "pre%u", k);
	sn->create_op = sn->delete_op = NEVER;
	sn->bytes = malloc(w->nsect * SECTOR);
	memcpy(sn->bytes, w->init, w->nsect * SECTOR);
	if (run_cmd("qemu-img snapshot -c %s '%s'", sn->name, img))
		return -EIO;
	if (!write)
		return 0;
	pos = snprintf(cmd, sizeof(cmd), "cd '%s' && qemu-io -f qcow2", dir);
	for (j = 0; j < 6; j++) {
		uint64_t n = 1 + rnd_below(g, 128), s0 = rnd_below(g, w->nsect - n + 1), s;

		for (s = s0; s < s0 + n; s++)
			sector_fill(w->init + s * SECTOR, 8 + k, s);
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
	for (i = 0; i < r.nr_flush; i++)
		free(r.flush_owner[i]);
	free(r.flush_owner);
	free(r.flush_op);
	free(r.alt_head);
	free(r.fua_own);
	free(r.fua_floor);
	free(r.alt_own);
	free(r.alt_next);
	free(r.rbuf);
	free(r.m.ch);
	free(r.m.syncs);
	free(r.m.by_done);
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

TEST_HARNESS_MAIN
