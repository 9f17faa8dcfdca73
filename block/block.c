// SPDX-License-Identifier: GPL-2.0
/*
 * The request path of the block layer (block.h): the gate that drain and
 * pause close, dispatch to the top image with throttling and
 * copy-on-read, the error policy, accounting and the write notifiers.
 *
 * The gate costs the fast path one atomic increment of a queue-local
 * counter and one load of a shared, rarely written word: a request counts
 * itself in first and looks at the gate second, while a drainer closes
 * the gate first and counts the requests second.  Both sides use
 * sequentially consistent atomics, so at least one of them sees the
 * other: either the request backs out and waits, or the drainer waits for
 * it to leave.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block.h"
#include "util.h"

const uint64_t blk_hist_bounds_ns[BLK_HIST_BOUNDS] = {
	10000, 20000, 50000,			/* 10, 20, 50 us */
	100000, 200000, 500000,
	1000000, 2000000, 5000000,		/* 1, 2, 5 ms */
	10000000, 20000000, 50000000,
	100000000, 200000000, 500000000,
	1000000000, 2000000000, 5000000000,	/* 1, 2, 5 s */
};

/* At most this many error lines per device per window; the rest are counted. */
#define BLK_LOG_BURST		10
#define BLK_LOG_WINDOW_NS	(5 * 1000000000LL)

int64_t blk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *blk_op_name(enum blk_op op)
{
	static const char *const names[BLK_OP_NR] = {
		[BLK_OP_READ] = "read",
		[BLK_OP_WRITE] = "write",
		[BLK_OP_FLUSH] = "flush",
		[BLK_OP_DISCARD] = "discard",
		[BLK_OP_WRITE_ZEROES] = "write-zeroes",
	};

	return op < BLK_OP_NR ? names[op] : "?";
}

static const char *const blk_action_names[] = {
	[BLK_ERR_REPORT] = "report",
	[BLK_ERR_IGNORE] = "ignore",
	[BLK_ERR_STOP] = "stop",
	[BLK_ERR_ENOSPC] = "enospc",
};

const char *blk_err_action_name(enum blk_err_action a)
{
	return (unsigned int)a < ARRAY_SIZE(blk_action_names) ? blk_action_names[a] : "?";
}

int blk_err_action_parse(const char *s, enum blk_err_action *a)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(blk_action_names); i++) {
		if (!strcmp(s, blk_action_names[i])) {
			*a = i;
			return 0;
		}
	}
	return -EINVAL;
}

int blk_dev_init(struct blk_dev *d, unsigned int id, struct tgt *top,
		 const struct blk_config *cfg, unsigned int nr_queues)
{
	unsigned int i;

	memset(d, 0, sizeof(*d));
	d->queues = aligned_alloc(64, ALIGN_UP(nr_queues * sizeof(*d->queues), 64));
	if (!d->queues)
		return -ENOMEM;
	memset(d->queues, 0, nr_queues * sizeof(*d->queues));
	for (i = 0; i < nr_queues; i++)
		d->queues[i].dev = d;
	d->nr_queues = nr_queues;
	d->top = top;
	d->id = id;
	d->cfg = *cfg;
	blk_update_copy_on_read(d);
	throttle_init(&d->thr, &cfg->throttle);
	range_lock_init(&d->cor_lock);
	exec_mutex_init(&d->chain_lock);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->idle, NULL);
	pthread_cond_init(&d->job_done, NULL);
	pthread_mutex_init(&d->log_lock, NULL);
	exec_waitq_init(&d->gate);
	d->held_list.next = d->held_list.prev = &d->held_list;
	d->gate_list.next = d->gate_list.prev = &d->gate_list;
	return 0;
}

void blk_update_copy_on_read(struct blk_dev *d)
{
	/* Copy-on-read needs something to copy from and somewhere to write. */
	d->copy_on_read = d->cfg.copy_on_read && d->top->backing && !d->top->caps.read_only;
}

void blk_dev_exit(struct blk_dev *d)
{
	throttle_destroy(&d->thr);
	exec_mutex_destroy(&d->chain_lock);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->idle);
	pthread_cond_destroy(&d->job_done);
	pthread_mutex_destroy(&d->log_lock);
	free(d->queues);
	d->queues = NULL;
}

static unsigned int blk_inflight(const struct blk_dev *d)
{
	unsigned int i, n = 0;

	for (i = 0; i < d->nr_queues; i++)
		n += __atomic_load_n(&d->queues[i].inflight, __ATOMIC_SEQ_CST);
	return n + __atomic_load_n(&d->job_inflight, __ATOMIC_SEQ_CST);
}

/* A request leaves the layer; the last one out tells a waiting drainer. */
static void blk_leave(struct blk_queue *q)
{
	struct blk_dev *d = q->dev;

	if (__atomic_sub_fetch(&q->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&d->quiesce, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&d->lock);
		pthread_cond_broadcast(&d->idle);
		pthread_mutex_unlock(&d->lock);
	}
}

/* Caller holds d->lock.  Puts @w, a request that arrived at @arrived_ns, on @head. */
static void blk_waiter_add(struct blk_waiter *head, struct blk_waiter *w, int64_t arrived_ns)
{
	w->arrived_ns = arrived_ns;
	w->expired = false;
	w->next = head;
	w->prev = head->prev;
	head->prev->next = w;
	head->prev = w;
}

/* Caller holds d->lock. */
static void blk_waiter_del(struct blk_waiter *w)
{
	w->prev->next = w->next;
	w->next->prev = w->prev;
}

/*
 * A request that arrived at @arrived_ns enters the layer, waiting while
 * the gate is closed.  Returns false if it must fail instead: the device
 * is going away, or it waited past the hold limit (blk_tick()).
 */
static bool blk_enter(struct blk_queue *q, int64_t arrived_ns)
{
	struct blk_dev *d = q->dev;
	struct blk_waiter w;
	bool fail;

	for (;;) {
		__atomic_add_fetch(&q->inflight, 1, __ATOMIC_SEQ_CST);
		if (likely(!__atomic_load_n(&d->quiesce, __ATOMIC_SEQ_CST)))
			return true;
		blk_leave(q);
		pthread_mutex_lock(&d->lock);
		blk_waiter_add(&d->gate_list, &w, arrived_ns);
		while (d->quiesce && !d->dying && !w.expired)
			exec_waitq_sleep(&d->gate, &d->lock);
		blk_waiter_del(&w);
		fail = d->dying || w.expired;
		pthread_mutex_unlock(&d->lock);
		if (fail)
			return false;
	}
}

/* Caller holds d->lock.  Waits until no request is inside the layer. */
static void blk_wait_idle_locked(struct blk_dev *d)
{
	while (blk_inflight(d))
		pthread_cond_wait(&d->idle, &d->lock);
}

void blk_drain_begin(struct blk_dev *d)
{
	pthread_mutex_lock(&d->lock);
	__atomic_add_fetch(&d->quiesce, 1, __ATOMIC_SEQ_CST);
	blk_wait_idle_locked(d);
	pthread_mutex_unlock(&d->lock);
}

/* Caller holds d->lock. */
static void blk_open_gate_locked(struct blk_dev *d)
{
	if (__atomic_sub_fetch(&d->quiesce, 1, __ATOMIC_SEQ_CST) == 0)
		exec_waitq_wake_all(&d->gate);
}

void blk_drain_end(struct blk_dev *d)
{
	pthread_mutex_lock(&d->lock);
	blk_open_gate_locked(d);
	pthread_mutex_unlock(&d->lock);
}

static void blk_emit(struct blk_dev *d, const struct blk_event *ev)
{
	void (*fn)(void *ctx, const struct blk_event *ev);
	void *ctx;

	pthread_mutex_lock(&d->lock);
	fn = d->event_fn;
	ctx = d->event_ctx;
	pthread_mutex_unlock(&d->lock);
	if (fn)
		fn(ctx, ev);
}

int blk_pause(struct blk_dev *d)
{
	struct blk_event ev = { .type = BLK_EV_STOP, .user = true };

	pthread_mutex_lock(&d->lock);
	if (d->paused) {
		pthread_mutex_unlock(&d->lock);
		return -EALREADY;
	}
	d->paused = BLK_PAUSED_USER;
	d->pause_err = 0;
	d->paused_ns = blk_now_ns();
	__atomic_add_fetch(&d->quiesce, 1, __ATOMIC_SEQ_CST);
	blk_wait_idle_locked(d);
	pthread_mutex_unlock(&d->lock);
	img_log("device %u: paused", d->id);
	blk_emit(d, &ev);
	return 0;
}

int blk_resume(struct blk_dev *d)
{
	struct blk_event ev = { .type = BLK_EV_RESUME, .user = true };
	unsigned int held;

	pthread_mutex_lock(&d->lock);
	if (!d->paused) {
		pthread_mutex_unlock(&d->lock);
		return -EALREADY;
	}
	d->paused = BLK_RUNNING;
	held = d->held;
	/*
	 * Held requests retry first, each queue's in the order they failed;
	 * the last one to finish opens the gate (blk_retry_done()).
	 */
	d->retrying += held;
	d->resume_gen++;
	exec_waitq_wake_all(&d->gate);
	if (!d->retrying)
		blk_open_gate_locked(d);
	pthread_mutex_unlock(&d->lock);
	img_log("device %u: resumed, retrying %u held request%s", d->id, held,
		held == 1 ? "" : "s");
	blk_emit(d, &ev);
	return 0;
}

/* Caller holds d->lock: held requests fail, the device runs again. */
static void blk_release_held_locked(struct blk_dev *d)
{
	d->release_gen++;
	if (d->paused) {
		d->paused = BLK_RUNNING;
		blk_open_gate_locked(d);
	}
	exec_waitq_wake_all(&d->gate);
}

/*
 * The age of a request is counted from its arrival, not from the pause:
 * the kernel's clock for it started then, and a request whose retry
 * failed again is held a second time with its first arrival.
 */
void blk_tick(struct blk_dev *d)
{
	unsigned int held = 0, expired = 0, limit_ms;
	int64_t now = blk_now_ns(), limit_ns;
	struct blk_waiter *w;

	pthread_mutex_lock(&d->lock);
	limit_ms = d->cfg.hold_limit_ms;
	limit_ns = (int64_t)limit_ms * 1000000;
	if (!limit_ns) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (d->paused == BLK_PAUSED_ERROR) {
		for (w = d->held_list.next; w != &d->held_list; w = w->next) {
			if (now - w->arrived_ns > limit_ns) {
				held = d->held;
				blk_release_held_locked(d);
				break;
			}
		}
	}
	for (w = d->gate_list.next; w != &d->gate_list; w = w->next) {
		if (!w->expired && now - w->arrived_ns > limit_ns) {
			w->expired = true;
			expired++;
		}
	}
	if (expired)
		exec_waitq_wake_all(&d->gate);
	pthread_mutex_unlock(&d->lock);
	if (held) {
		struct blk_event ev = { .type = BLK_EV_RESUME };

		img_err("device %u: a request was held for %u ms: failing the %u held request%s",
			d->id, limit_ms, held, held == 1 ? "" : "s");
		/* The pause ended: who saw it STOP must see it run again. */
		blk_emit(d, &ev);
	}
	if (expired)
		img_err("device %u: %u request%s waited %u ms at the pause: failing %s with EIO",
			d->id, expired, expired == 1 ? "" : "s", limit_ms,
			expired == 1 ? "it" : "them");
}

void blk_set_hold_limit(struct blk_dev *d, unsigned int ms)
{
	pthread_mutex_lock(&d->lock);
	d->cfg.hold_limit_ms = ms;
	pthread_mutex_unlock(&d->lock);
}

void blk_shutdown(struct blk_dev *d)
{
	pthread_mutex_lock(&d->lock);
	d->dying = true;
	blk_release_held_locked(d);
	pthread_mutex_unlock(&d->lock);
}

void blk_set_throttle(struct blk_dev *d, const struct throttle_cfg *cfg)
{
	throttle_set(&d->thr, cfg);
}

void blk_set_error_policy(struct blk_dev *d, enum blk_err_action werror,
			  enum blk_err_action rerror)
{
	pthread_mutex_lock(&d->lock);
	d->cfg.werror = werror;
	d->cfg.rerror = rerror;
	pthread_mutex_unlock(&d->lock);
}

void blk_get_config(struct blk_dev *d, struct throttle_cfg *thr,
		    enum blk_err_action *werror, enum blk_err_action *rerror)
{
	throttle_get(&d->thr, thr);
	pthread_mutex_lock(&d->lock);
	*werror = d->cfg.werror;
	*rerror = d->cfg.rerror;
	pthread_mutex_unlock(&d->lock);
}

void blk_set_event_fn(struct blk_dev *d, void (*fn)(void *ctx, const struct blk_event *ev),
		      void *ctx)
{
	pthread_mutex_lock(&d->lock);
	d->event_ctx = ctx;
	d->event_fn = fn;
	pthread_mutex_unlock(&d->lock);
}

enum blk_pause_reason blk_paused(struct blk_dev *d, int *err, enum blk_op *op,
				 unsigned int *held)
{
	enum blk_pause_reason r;

	pthread_mutex_lock(&d->lock);
	r = d->paused;
	*err = d->pause_err;
	*op = d->pause_op;
	*held = d->held;
	pthread_mutex_unlock(&d->lock);
	return r;
}

void blk_add_write_notifier(struct blk_dev *d, struct blk_write_notifier *n)
{
	n->next = d->notifiers;
	d->notifiers = n;
}

void blk_remove_write_notifier(struct blk_dev *d, struct blk_write_notifier *n)
{
	struct blk_write_notifier **p;

	for (p = &d->notifiers; *p; p = &(*p)->next) {
		if (*p == n) {
			*p = n->next;
			return;
		}
	}
}

void blk_add_before_write(struct blk_dev *d, struct blk_before_write *h)
{
	blk_drain_begin(d);
	h->next = d->before_write;
	d->before_write = h;
	blk_drain_end(d);
}

void blk_remove_before_write(struct blk_dev *d, struct blk_before_write *h)
{
	struct blk_before_write **p;

	blk_drain_begin(d);
	for (p = &d->before_write; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	blk_drain_end(d);
}

/*
 * Copy-on-read: writes what a read just got from the backing chain into
 * the top image, so the next read is served from it.  Holding the range
 * keeps a racing write from being overwritten with the older data; what
 * was allocated meanwhile is skipped.  Best effort: a failure leaves the
 * range unallocated, as it was.
 */
static void blk_copy_on_read(struct blk_dev *d, struct tgt *t, const void *buf,
			     uint64_t off, uint64_t len)
{
	struct range_entry e;
	uint64_t pos = off;

	range_lock(&d->cor_lock, &e, off, len);
	while (pos < off + len) {
		struct tgt_extent ext;
		struct tgt *layer;
		unsigned int depth;
		int64_t n = tgt_chain_status(t, pos, off + len - pos, &ext, &depth, &layer);

		if (n <= 0)
			break;
		/* Backing data that is not zeros: the image would read it anyway. */
		if (layer && layer != t && !(ext.flags & TGT_EXT_ZERO) &&
		    t->ops->write(t, (const char *)buf + (pos - off), n, pos,
				  TGT_W_SAME_DATA) < 0)
			break;
		pos += n;
	}
	range_unlock(&d->cor_lock, &e);
}

/* Runs a request that changes data, under the COR range lock when needed. */
static int blk_change(struct blk_dev *d, struct tgt *t, enum blk_op op, const void *buf,
		      uint64_t off, uint64_t len, unsigned int wflags)
{
	bool lock = d->copy_on_read || d->lock_writes;
	struct blk_write_notifier *n;
	struct blk_before_write *h;
	struct range_entry e;
	int ret;

	for (h = d->before_write; unlikely(h); h = h->next)
		h->fn(h, op, off, len);
	if (lock)
		range_lock(&d->cor_lock, &e, off, len);
	if (op == BLK_OP_WRITE)
		ret = t->ops->write(t, buf, len, off, wflags);
	else if (op == BLK_OP_DISCARD)
		ret = t->ops->discard(t, off, len);
	else
		ret = t->ops->write_zeroes(t, off, len, wflags);
	if (lock)
		range_unlock(&d->cor_lock, &e);
	for (n = d->notifiers; n; n = n->next)
		n->notify(n, op, off, len, ret);
	return ret;
}

/* One try of a request, inside the gate.  Returns as blk_submit(). */
static int blk_dispatch(struct blk_dev *d, enum blk_op op, unsigned int flags, void *buf,
			uint64_t off, uint64_t len)
{
	/* Pairs with blk_set_top() in chain.c; the gate already orders it. */
	struct tgt *t = __atomic_load_n(&d->top, __ATOMIC_ACQUIRE);
	unsigned int wflags = (flags & BLK_REQ_FUA) ? TGT_W_FUA : 0;
	int ret;

	switch (op) {
	case BLK_OP_READ:
		throttle_io(&d->thr, false, len);
		ret = t->ops->read(t, buf, len, off);
		if (ret >= 0 && d->copy_on_read)
			blk_copy_on_read(d, t, buf, off, len);
		return ret;
	case BLK_OP_WRITE:
		if (t->caps.read_only)
			return -EROFS;
		throttle_io(&d->thr, true, len);
		return blk_change(d, t, op, buf, off, len, wflags);
	case BLK_OP_FLUSH:
		return t->ops->flush ? t->ops->flush(t) : 0;
	case BLK_OP_DISCARD:
		if (t->caps.read_only)
			return -EOPNOTSUPP;
		/* --discard=ignore: the device takes discards and keeps the data. */
		if (d->cfg.discard_ignore)
			return 0;
		if (!t->caps.can_discard)
			return -EOPNOTSUPP;
		return blk_change(d, t, op, NULL, off, len, 0);
	case BLK_OP_WRITE_ZEROES:
		if (!t->caps.can_write_zeroes || t->caps.read_only)
			return -EOPNOTSUPP;
		return blk_change(d, t, op, NULL, off, len, wflags);
	default:
		return -EOPNOTSUPP;
	}
}

/* The action the policy takes for @op failing with @err. */
static enum blk_err_action blk_action(struct blk_dev *d, enum blk_op op, int err)
{
	enum blk_err_action a;

	/* A request the target cannot do is the caller's mistake, not the host's. */
	if (err == -EOPNOTSUPP || err == -EROFS || err == -EINVAL)
		return BLK_ERR_REPORT;
	pthread_mutex_lock(&d->lock);
	a = op == BLK_OP_READ ? d->cfg.rerror : d->cfg.werror;
	pthread_mutex_unlock(&d->lock);
	if (a == BLK_ERR_ENOSPC)
		a = (err == -ENOSPC || err == -EDQUOT) ? BLK_ERR_STOP : BLK_ERR_REPORT;
	return a;
}

/*
 * Logs a failed request, at most BLK_LOG_BURST lines per window and
 * device, so that no failure is silent and none floods the log.
 */
static void blk_log_error(struct blk_dev *d, enum blk_op op, uint64_t off, uint64_t len,
			  int err, enum blk_err_action a)
{
	int64_t now = blk_now_ns();
	unsigned int suppressed = 0;
	bool print;

	pthread_mutex_lock(&d->log_lock);
	if (now - d->log_window_ns > BLK_LOG_WINDOW_NS) {
		suppressed = d->log_suppressed;
		d->log_window_ns = now;
		d->log_count = 0;
		d->log_suppressed = 0;
	}
	print = d->log_count < BLK_LOG_BURST;
	if (print)
		d->log_count++;
	else
		d->log_suppressed++;
	pthread_mutex_unlock(&d->log_lock);
	if (suppressed)
		img_err("device %u: %u more I/O errors not logged", d->id, suppressed);
	if (print)
		img_err("device %u: %s at %llu+%llu failed: %s (action %s)", d->id,
			blk_op_name(op), (unsigned long long)off, (unsigned long long)len,
			strerror(-err), blk_err_action_name(a));
}

/*
 * A held request that a resume counted in d->retrying has retried (or
 * failed): the last one opens the gate the pause closed.
 */
static void blk_retry_done(struct blk_dev *d)
{
	pthread_mutex_lock(&d->lock);
	if (--d->retrying == 0)
		blk_open_gate_locked(d);
	pthread_mutex_unlock(&d->lock);
}

/*
 * Holds a request that failed with @err under action stop: pauses the
 * device (if this is the first) and sleeps until blk_resume().  Returns
 * true to retry, false to fail it after all (the device is going away, or
 * a held request outlived cfg.hold_limit_ms: blk_tick()).  @arrived_ns is
 * when the request arrived.  Sets *@counted when a resume
 * woke it: blk_retry_done() must follow its retry, or its failure.
 */
static bool blk_hold(struct blk_dev *d, enum blk_op op, int err, uint64_t off, uint64_t len,
		     int64_t arrived_ns, bool *counted)
{
	struct blk_waiter w;
	struct blk_event ev = {
		.type = BLK_EV_IO_ERROR, .op = op, .action = BLK_ERR_STOP,
		.err = err, .off = off, .len = len,
	};
	struct blk_event stop = { .type = BLK_EV_STOP };
	bool first = false, retry;
	unsigned int gen, resume_gen;

	pthread_mutex_lock(&d->lock);
	if (d->dying) {
		pthread_mutex_unlock(&d->lock);
		return false;
	}
	if (d->paused != BLK_PAUSED_ERROR) {
		/* A user's pause becomes an error pause: `cont` ends both. */
		if (!d->paused)
			__atomic_add_fetch(&d->quiesce, 1, __ATOMIC_SEQ_CST);
		d->paused = BLK_PAUSED_ERROR;
		d->pause_err = err;
		d->pause_op = op;
		d->paused_ns = blk_now_ns();
		first = true;
	}
	d->held++;
	blk_waiter_add(&d->held_list, &w, arrived_ns);
	/*
	 * Taken with the waiter's addition, not after the unlocked part
	 * below: a blk_tick() or blk_resume() in between already counts
	 * this request, and must not be missed (a request past the hold
	 * limit was retried instead of failed, and a resume's retry count
	 * was never given back).
	 */
	gen = d->release_gen;
	resume_gen = d->resume_gen;
	pthread_mutex_unlock(&d->lock);

	blk_log_error(d, op, off, len, err, BLK_ERR_STOP);
	blk_emit(d, &ev);
	if (first) {
		img_err("device %u: paused after a %s error: %s; `imgblk resume -n %u` retries",
			d->id, blk_op_name(op), strerror(-err), d->id);
		blk_emit(d, &stop);
	}

	pthread_mutex_lock(&d->lock);
	while (d->paused && !d->dying && d->release_gen == gen && d->resume_gen == resume_gen)
		exec_waitq_sleep(&d->gate, &d->lock);
	*counted = d->resume_gen != resume_gen;
	retry = !d->dying && d->release_gen == gen;
	d->held--;
	blk_waiter_del(&w);
	pthread_mutex_unlock(&d->lock);
	if (*counted && !retry) {
		blk_retry_done(d);
		*counted = false;
	}
	return retry;
}

/* Counts a completed request in its queue's statistics. */
static void blk_account(struct blk_queue *q, enum blk_op op, uint64_t len, int ret,
			int64_t start_ns)
{
	struct blk_op_stats *s = &q->st.op[op];
	int64_t now = exec_now_ns();
	uint64_t ns = now - start_ns;
	unsigned int bin = 0;

	/* One writer per queue: plain read-modify-write, whole-value stores. */
	if (ret < 0) {
		__atomic_store_n(&s->failed, s->failed + 1, __ATOMIC_RELAXED);
	} else {
		while (bin < BLK_HIST_BOUNDS && ns >= blk_hist_bounds_ns[bin])
			bin++;
		__atomic_store_n(&s->ops, s->ops + 1, __ATOMIC_RELAXED);
		__atomic_store_n(&s->bytes, s->bytes + len, __ATOMIC_RELAXED);
		__atomic_store_n(&s->total_ns, s->total_ns + ns, __ATOMIC_RELAXED);
		__atomic_store_n(&s->hist[bin], s->hist[bin] + 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&q->st.last_done_ns, (uint64_t)now, __ATOMIC_RELAXED);
}

int blk_submit(struct blk_queue *q, enum blk_op op, unsigned int flags, void *buf,
	       uint64_t off, uint64_t len)
{
	struct blk_dev *d = q->dev;
	int64_t start = exec_now_ns();
	enum blk_err_action a;
	bool retry = false;
	struct blk_event ev;
	int ret;

	for (;;) {
		if (retry) {
			/* Past the gate, which stays closed until the retries are done. */
			__atomic_add_fetch(&q->inflight, 1, __ATOMIC_SEQ_CST);
		} else if (!blk_enter(q, start)) {
			ret = -EIO;
			a = BLK_ERR_REPORT;
			break;
		}
		ret = blk_dispatch(d, op, flags, buf, off, len);
		blk_leave(q);
		if (retry)
			blk_retry_done(d);
		if (likely(ret >= 0))
			break;
		a = blk_action(d, op, ret);
		if (a != BLK_ERR_STOP || !blk_hold(d, op, ret, off, len, start, &retry))
			break;
	}
	if (ret >= 0) {
		blk_account(q, op, len, ret, start);
		return op == BLK_OP_READ || op == BLK_OP_WRITE ? (int)len : 0;
	}

	if (a == BLK_ERR_STOP)		/* released by a shutdown or the hold limit */
		a = BLK_ERR_REPORT;
	blk_log_error(d, op, off, len, ret, a);
	ev = (struct blk_event){
		.type = BLK_EV_IO_ERROR, .op = op, .action = a,
		.err = ret, .off = off, .len = len,
	};
	blk_emit(d, &ev);
	if (a == BLK_ERR_IGNORE) {
		/* Counted as done: the guest was told it was. */
		blk_account(q, op, len, 0, start);
		return op == BLK_OP_READ || op == BLK_OP_WRITE ? (int)len : 0;
	}
	blk_account(q, op, len, ret, start);
	return ret;
}

void blk_stats_read(const struct blk_dev *d, int q_id, struct blk_stats *out)
{
	unsigned int i, o, b, first = 0, last = d->nr_queues;

	memset(out, 0, sizeof(*out));
	if (q_id >= 0) {
		first = q_id;
		last = q_id + 1;
	}
	for (i = first; i < last && i < d->nr_queues; i++) {
		const struct blk_queue *q = &d->queues[i];
		uint64_t t;

		for (o = 0; o < BLK_OP_NR; o++) {
			const struct blk_op_stats *s = &q->st.op[o];
			struct blk_op_stats *r = &out->op[o];

			r->ops += __atomic_load_n(&s->ops, __ATOMIC_RELAXED);
			r->bytes += __atomic_load_n(&s->bytes, __ATOMIC_RELAXED);
			r->failed += __atomic_load_n(&s->failed, __ATOMIC_RELAXED);
			r->total_ns += __atomic_load_n(&s->total_ns, __ATOMIC_RELAXED);
			for (b = 0; b < BLK_HIST_BINS; b++)
				r->hist[b] += __atomic_load_n(&s->hist[b], __ATOMIC_RELAXED);
		}
		out->inflight += __atomic_load_n(&q->inflight, __ATOMIC_RELAXED);
		t = __atomic_load_n(&q->st.last_done_ns, __ATOMIC_RELAXED);
		out->last_done_ns = MAX(out->last_done_ns, t);
	}
}
