// SPDX-License-Identifier: GPL-2.0
/*
 * The throttle's arithmetic, with time given by the test: a bucket admits
 * while it holds at most a burst's worth, leaks at its rate, and reads
 * and writes only fill the buckets that apply to them.  (The rate a
 * device achieves is measured by scripts/bench/vm-throttle.sh.)
 */
#include "throttle.h"

#include "kselftest_harness.h"

#define SEC	1000000000LL

/* What throttle_io() does for one request at time @now: its wait, or 0 and the charge. */
static int64_t charge(struct throttle *t, bool write, uint64_t bytes, int64_t now)
{
	int64_t wait = throttle_wait_ns(t, write, now);

	if (!wait)
		throttle_charge(t, write, bytes);
	return wait;
}

TEST(no_limit_never_waits)
{
	struct throttle_cfg cfg = { 0 };
	struct throttle t;
	int i;

	throttle_init(&t, &cfg);
	ASSERT_FALSE(t.enabled);
	for (i = 0; i < 1000; i++)
		ASSERT_EQ(0, charge(&t, i & 1, 1 << 20, t.last_ns));
	throttle_destroy(&t);
}

TEST(iops_burst_then_rate)
{
	struct throttle_cfg cfg = { .rate[THR_IOPS_TOTAL] = 100, .burst_ms = 100 };
	struct throttle t;
	int64_t now, wait;
	int admitted = 0;

	throttle_init(&t, &cfg);
	now = t.last_ns;
	/* A burst of 100 ms at 100/s is 10 requests; one more fills past it. */
	while (charge(&t, false, 4096, now) == 0)
		admitted++;
	ASSERT_EQ(11, admitted);
	wait = throttle_wait_ns(&t, false, now);
	/* One request over the burst: 10 ms at 100/s. */
	ASSERT_GE(wait, 9 * SEC / 1000);
	ASSERT_LE(wait, 11 * SEC / 1000);
	/* After the wait it goes, and the next waits again. */
	now += wait;
	ASSERT_EQ(0, charge(&t, true, 4096, now));
	ASSERT_GT(throttle_wait_ns(&t, false, now), 0);
	throttle_destroy(&t);
}

TEST(long_run_rate)
{
	struct throttle_cfg cfg = { .rate[THR_BPS_WRITE] = 10 << 20 };
	struct throttle t;
	uint64_t bytes = 0;
	int64_t now, start;

	throttle_init(&t, &cfg);
	start = now = t.last_ns;
	/* 10 s of 64k writes, each sent as soon as it is allowed. */
	while (now - start < 10 * SEC) {
		int64_t w = charge(&t, true, 65536, now);

		if (w)
			now += w;
		else
			bytes += 65536;
	}
	/* 100 MiB plus at most one burst (a tenth of a second) and a request. */
	ASSERT_GE(bytes, 100ULL << 20);
	ASSERT_LE(bytes, (100ULL << 20) + (1ULL << 20) + 65536 * 2);
	throttle_destroy(&t);
}

TEST(reads_do_not_fill_write_buckets)
{
	struct throttle_cfg cfg = { .rate[THR_BPS_WRITE] = 1000, .rate[THR_IOPS_READ] = 1 };
	struct throttle t;
	int64_t now;

	throttle_init(&t, &cfg);
	now = t.last_ns;
	/* A huge read charges the read-iops bucket only. */
	ASSERT_EQ(0, charge(&t, false, 1 << 30, now));
	ASSERT_EQ(0, charge(&t, true, 100, now));
	ASSERT_EQ(0, (int64_t)t.level[THR_BPS_READ]);
	ASSERT_EQ(100, (int64_t)t.level[THR_BPS_WRITE]);
	/* The second read waits for the read bucket; a write does not. */
	ASSERT_GT(throttle_wait_ns(&t, false, now), 0);
	ASSERT_EQ(0, throttle_wait_ns(&t, true, now));
	throttle_destroy(&t);
}

TEST_HARNESS_MAIN
