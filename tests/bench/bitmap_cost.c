// SPDX-License-Identifier: GPL-2.0
/*
 * bitmap_cost - what dirty tracking adds to a qcow2 write, natively: the
 * engine's marking call (qcow2_bitmaps_track()) timed alone with 0, 1
 * and 4 enabled bitmaps, and 4k overwrites through ->write of an image in
 * DIR (tmpfs is best: no disk in the figure) with the same bitmaps, best
 * of several rounds in one coroutine.  scripts/bench/host-bitmap-cost.sh
 * runs it beside the IOPS of imgblk bench.  A benchmark: it prints
 * figures and asserts nothing.
 *
 *   bitmap_cost [DIR] [REQUESTS]      (default /dev/shm, 200000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../targets/qcow2/qcow2.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#define ROUNDS		5
#define IMG_BYTES	(256ULL << 20)

struct cost {
	const char *path;
	unsigned long n;
	int ret;
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Pseudo-random 4k-aligned offsets, the same for every configuration. */
static uint64_t next_off(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return ((*s >> 20) % (IMG_BYTES / 4096)) * 4096;
}

static void cost_main(void *arg)
{
	struct cost *c = arg;
	struct tgt_create_opts co = { .file = c->path, .size_bytes = IMG_BYTES };
	struct tgt_bitmap_args ba = { 0 };
	struct tgt t = { 0 };
	static const unsigned int configs[] = { 0, 1, 4 };
	double base_write = 0;
	unsigned int k, b, r;
	void *buf;

	c->ret = 1;
	if (qcow2_tgt_ops.create(&co) || tgt_open_file(&t, c->path, "qcow2", TGT_O_BUFFERED))
		return;
	if (posix_memalign(&buf, 4096, 1 << 20))
		goto out;
	memset(buf, 0x5a, 1 << 20);
	for (uint64_t off = 0; off < IMG_BYTES; off += 1 << 20)
		if (t.ops->write(&t, buf, 1 << 20, off, 0) < 0)
			goto out;
	for (b = 0; b < 4; b++) {
		char name[8];

		snprintf(name, sizeof(name), "b%u", b);
		ba.disabled = true;
		if (t.ops->bitmap(&t, TGT_BITMAP_ADD, name, &ba))
			goto out;
	}
	printf("%-8s %12s %12s %12s\n", "bitmaps", "track_ns", "write_ns", "write_ratio");
	/* Two passes; the first warms caches and the file, only the second prints. */
	for (k = 0; k < 6; k++) {
		double track = 1e18, write = 1e18;

		for (b = 0; b < 4; b++) {
			char name[8];

			snprintf(name, sizeof(name), "b%u", b);
			if (t.ops->bitmap(&t, b < configs[k % 3] ? TGT_BITMAP_ENABLE : TGT_BITMAP_DISABLE,
					  name, &ba))
				goto out;
		}
		/* The first write stores in_use; the rounds time what follows. */
		if (t.ops->write(&t, buf, 4096, 0, 0) < 0)
			goto out;
		for (r = 0; r < ROUNDS; r++) {
			uint64_t s = 1;
			unsigned long i;
			double t0 = now_ns(), t1;

			for (i = 0; i < c->n; i++)
				qcow2_bitmaps_track(t.priv, next_off(&s), 4096);
			t1 = now_ns();
			track = MIN(track, (t1 - t0) / c->n);
			s = 1;
			t0 = now_ns();
			for (i = 0; i < c->n; i++)
				if (t.ops->write(&t, buf, 4096, next_off(&s), 0) < 0)
					goto out;
			t1 = now_ns();
			write = MIN(write, (t1 - t0) / c->n);
		}
		if (k == 3)
			base_write = write;
		if (k >= 3)
			printf("%-8u %12.1f %12.1f %12.3f\n", configs[k % 3], track, write,
			       write / base_write);
	}
	c->ret = 0;
out:
	tgt_close(&t);
	unlink(c->path);
}

int main(int argc, char **argv)
{
	char path[4096];
	struct cost c = { .path = path, .n = argc > 2 ? strtoul(argv[2], NULL, 0) : 200000 };
	struct img_exec e;

	snprintf(path, sizeof(path), "%s/bitmap_cost.%d.qcow2", argc > 1 ? argv[1] : "/dev/shm",
		 (int)getpid());
	if (exec_init(&e, 64) || exec_spawn(&e, cost_main, &c))
		return 1;
	exec_run(&e);
	exec_exit(&e);
	return c.ret;
}
