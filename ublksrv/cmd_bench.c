// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk bench`: qemu-img bench's options and output, on our engines.
 * DEPTH coroutines share one executor and issue COUNT requests between
 * them, walking the image from OFFSET in steps of STEP (wrapping at the
 * end) like qemu-img bench, or at random aligned offsets with --random.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

struct bench_ctx {
	const char *file;
	const char *fmt;
	unsigned int flags;
	uint64_t count;
	unsigned int depth;
	uint64_t size;
	uint64_t step;
	uint64_t offset;
	int pattern;
	bool write;
	bool random;
	uint64_t flush_interval;

	struct tgt t;
	uint64_t issued;
	uint64_t next_off;
	uint64_t since_flush;
	uint64_t rng;
	int error;
	unsigned int running;
	struct coro *waiter;
	/* One buffer per worker, registered as a device's are (exec_map_bufs()). */
	char *bufs;
	unsigned int buf_shift;
	unsigned int next_buf;
};

/* xorshift64*: cheap and good enough to spread requests. */
static uint64_t bench_rand(struct bench_ctx *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 0x2545f4914f6cdd1dULL;
}

static uint64_t bench_next_offset(struct bench_ctx *b)
{
	uint64_t size = b->t.caps.size_bytes;
	uint64_t off;

	if (b->random)
		return (bench_rand(b) % (size / b->size)) * b->size;
	off = b->next_off;
	/* Wrap like qemu-img bench: modulo the last offset a request fits at. */
	if (size <= b->size)
		b->next_off = 0;
	else
		b->next_off = (b->next_off + b->step) % (size - b->size);
	return off;
}

static void bench_worker(void *arg)
{
	struct bench_ctx *b = arg;
	char *buf = b->bufs + ((size_t)b->next_buf++ << b->buf_shift);

	memset(buf, b->pattern, b->size);
	while (!b->error && b->issued < b->count) {
		uint64_t off = bench_next_offset(b);
		int ret;

		b->issued++;
		if (b->write)
			ret = b->t.ops->write(&b->t, buf, b->size, off, 0);
		else
			ret = b->t.ops->read(&b->t, buf, b->size, off);
		if (ret < 0) {
			b->error = ret;
			break;
		}
		if (b->write && b->flush_interval && ++b->since_flush >= b->flush_interval &&
		    b->t.ops->flush) {
			b->since_flush = 0;
			ret = b->t.ops->flush(&b->t);
			if (ret < 0)
				b->error = ret;
		}
	}
	if (--b->running == 0)
		exec_wake(b->waiter);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bench_body(void *arg)
{
	struct bench_ctx *b = arg;
	double t0, t1;
	unsigned int i;
	int ret, status = CLI_EXIT_OK;

	if (tgt_open_file(&b->t, b->file, b->fmt, b->flags))
		return CLI_EXIT_ERR;
	if (b->size > b->t.caps.size_bytes || b->offset > b->t.caps.size_bytes - b->size) {
		img_err("bench: requests of %llu bytes from offset %llu do not fit in the image",
			(unsigned long long)b->size, (unsigned long long)b->offset);
		tgt_close(&b->t);
		return CLI_EXIT_ERR;
	}
	b->next_off = b->offset;
	for (b->buf_shift = 12; (1ULL << b->buf_shift) < b->size; b->buf_shift++)
		;
	b->bufs = exec_map_bufs(exec_current(), b->depth, b->buf_shift, CLI_PINNED_BYTES);
	if (!b->bufs) {
		img_err("bench: cannot allocate the buffers: %s", strerror(ENOMEM));
		tgt_close(&b->t);
		return CLI_EXIT_ERR;
	}
	printf("Sending %llu %s requests, %llu bytes each, %u in parallel (starting at offset %llu, step size %llu)\n",
	       (unsigned long long)b->count, b->write ? "write" : "read",
	       (unsigned long long)b->size, b->depth, (unsigned long long)b->offset,
	       b->random ? 0ULL : (unsigned long long)b->step);
	fflush(stdout);

	t0 = now_s();
	b->waiter = exec_self();
	for (i = 0; i < b->depth; i++) {
		ret = exec_spawn(exec_current(), bench_worker, b);
		if (ret) {
			b->error = ret;
			break;
		}
		b->running++;
	}
	/* The workers run while we sleep; the last one to finish wakes us. */
	while (b->running)
		exec_sleep();
	t1 = now_s();

	if (b->error) {
		img_err("bench: request failed: %s", strerror(-b->error));
		status = CLI_EXIT_ERR;
	} else {
		printf("Run completed in %.3f seconds.\n", t1 - t0);
		printf("%.0f IOPS, %.1f MiB/s\n", b->count / (t1 - t0),
		       b->count * (double)b->size / (t1 - t0) / (1 << 20));
	}
	if (tgt_close(&b->t))
		status = CLI_EXIT_ERR;
	exec_unmap_bufs(b->bufs, b->depth, b->buf_shift);
	return status;
}

/* What bench's options fill in beside its context. */
struct bench_parse {
	struct bench_ctx *b;
	bool step_given;
};

static int bench_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct bench_parse *p = ctx;
	struct bench_ctx *b = p->b;
	char name[64];
	uint64_t v;

	switch (opt->key) {
	case 'f':
		b->fmt = arg;
		break;
	case 'c':
		if (parse_uint(arg, 1, UINT64_MAX, &b->count))
			goto bad_num;
		break;
	case 'd':
		if (parse_uint(arg, 1, 4096, &v))
			goto bad_num;
		b->depth = v;
		break;
	case 's':
		if (parse_size(arg, &b->size) || !b->size || b->size % 512 ||
		    b->size > (1 << 24))
			goto bad_num;
		break;
	case 'S':
		if (parse_size(arg, &b->step))
			goto bad_num;
		p->step_given = true;
		break;
	case 'o':
		if (parse_size(arg, &b->offset) || b->offset % 512)
			goto bad_num;
		break;
	case 'w':
		b->write = true;
		break;
	case 't':
		if (!strcmp(arg, "writeback")) {
			b->flags |= TGT_O_BUFFERED;
		} else if (strcmp(arg, "none")) {
			img_err("bench: cache mode must be none or writeback, not '%s'", arg);
			return -EINVAL;
		}
		break;
	case CLI_K_PATTERN:
		if (parse_uint(arg, 0, 255, &v))
			goto bad_num;
		b->pattern = v;
		break;
	case CLI_K_RANDOM:
		b->random = true;
		break;
	case 'U':
		b->flags |= TGT_O_FORCE_SHARE;
		break;
	case CLI_K_RECOVERABLE:
		b->flags |= TGT_O_RECOVERABLE;
		break;
	case CLI_K_FLUSH_INTERVAL:
		if (parse_uint(arg, 0, UINT64_MAX, &b->flush_interval))
			goto bad_num;
		break;
	case CLI_K_L2_CACHE:
		if (parse_size(arg, &b->t.cfg.l2_cache_bytes) || !b->t.cfg.l2_cache_bytes)
			goto bad_num;
		break;
	}
	return 0;

bad_num:
	img_err("bench: bad value '%s' for %s", arg, cli_opt_name(opt, name, sizeof(name)));
	return -EINVAL;
}

int cli_cmd_bench(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct bench_ctx b = {
		.count = 75000, .depth = 64, .size = 4096, .pattern = 0xcd,
		.rng = 0x9e3779b97f4a7c15ULL,
	};
	struct bench_parse p = { .b = &b };
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, bench_opt, &p, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (!p.step_given)
		b.step = b.size;
	if (b.step % 512) {
		img_err("bench: the step must be a multiple of 512");
		return CLI_EXIT_ERR;
	}
	b.file = a.argv[0];
	if (!b.write)
		b.flags |= TGT_O_RDONLY;
	return cli_run(bench_body, &b);
}
