// SPDX-License-Identifier: GPL-2.0
/*
 * blk_cost - what the block layer adds to a request, natively: 4k reads of
 * the null target called directly, then the same reads through
 * blk_submit() (gate, throttle check, dispatch, accounting, error policy),
 * timed over many requests in one coroutine, best of several rounds.
 * The difference is the layer's cost per request; scripts/bench/
 * host-block-cost.sh sets it against the time a device's request takes.
 * A benchmark: it prints figures and asserts nothing.
 *
 *   blk_cost [REQUESTS]        (default 2000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "block.h"
#include "exec.h"
#include "tgt.h"

#define ROUNDS	5

struct cost {
	struct tgt t;
	struct blk_dev d;
	void *buf;
	unsigned long n;
	double direct_ns, layer_ns;	/* per request, best round */
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void cost_main(void *arg)
{
	struct cost *c = arg;
	unsigned long i;
	int r;

	c->direct_ns = c->layer_ns = 1e18;
	for (r = 0; r < ROUNDS; r++) {
		double t0 = now_ns(), t1;

		for (i = 0; i < c->n; i++)
			c->t.ops->read(&c->t, c->buf, 4096, (i & 255) << 12);
		t1 = now_ns();
		if ((t1 - t0) / c->n < c->direct_ns)
			c->direct_ns = (t1 - t0) / c->n;
		t0 = now_ns();
		for (i = 0; i < c->n; i++)
			blk_submit(&c->d.queues[0], BLK_OP_READ, 0, c->buf, (i & 255) << 12, 4096);
		t1 = now_ns();
		if ((t1 - t0) / c->n < c->layer_ns)
			c->layer_ns = (t1 - t0) / c->n;
	}
}

int main(int argc, char **argv)
{
	struct blk_config cfg = { .werror = BLK_ERR_ENOSPC, .rerror = BLK_ERR_REPORT };
	struct cost c = { .n = argc > 1 ? strtoul(argv[1], NULL, 0) : 2000000 };
	struct img_exec e;
	struct blk_stats st;

	if (!c.n)
		return 2;
	c.t.ops = &null_tgt_ops;
	c.t.cfg.size_bytes = 1 << 20;
	if (tgt_open(&c.t) || blk_dev_init(&c.d, 0, &c.t, &cfg, 1) ||
	    posix_memalign(&c.buf, 4096, 4096) || exec_init(&e, 8) ||
	    exec_spawn(&e, cost_main, &c) || exec_run(&e)) {
		fprintf(stderr, "blk_cost: setup failed\n");
		return 1;
	}
	exec_exit(&e);
	blk_stats_read(&c.d, -1, &st);
	printf("requests %lu x %d rounds (%llu counted)\n", c.n, ROUNDS,
	       (unsigned long long)st.op[BLK_OP_READ].ops);
	printf("direct_ns %.1f\nlayer_ns %.1f\nadded_ns %.1f\n", c.direct_ns, c.layer_ns,
	       c.layer_ns - c.direct_ns);
	blk_dev_exit(&c.d);
	tgt_close(&c.t);
	free(c.buf);
	return 0;
}
