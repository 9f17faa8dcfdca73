// SPDX-License-Identifier: GPL-2.0
/* Leaky-bucket throttling of a device's reads and writes. */
#include <string.h>
#include <time.h>

#include "exec.h"
#include "throttle.h"
#include "util.h"

static int64_t throttle_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool throttle_cfg_any(const struct throttle_cfg *cfg)
{
	unsigned int i;

	for (i = 0; i < THR_NR; i++)
		if (cfg->rate[i])
			return true;
	return false;
}

void throttle_init(struct throttle *t, const struct throttle_cfg *cfg)
{
	pthread_mutex_init(&t->lock, NULL);
	t->cfg = *cfg;
	if (!t->cfg.burst_ms)
		t->cfg.burst_ms = THR_DEFAULT_BURST_MS;
	t->enabled = throttle_cfg_any(cfg);
	t->last_ns = throttle_now_ns();
}

void throttle_destroy(struct throttle *t)
{
	pthread_mutex_destroy(&t->lock);
}

/* Does bucket @k apply to a read (@write false) or write? */
static bool throttle_applies(enum throttle_kind k, bool write)
{
	switch (k) {
	case THR_BPS_READ:
	case THR_IOPS_READ:
		return !write;
	case THR_BPS_WRITE:
	case THR_IOPS_WRITE:
		return write;
	default:
		return true;
	}
}

int64_t throttle_wait_ns(struct throttle *t, bool write, int64_t now_ns)
{
	double dt = (now_ns - t->last_ns) / 1e9;
	int64_t wait = 0;
	unsigned int k;

	for (k = 0; k < THR_NR; k++) {
		double rate = t->cfg.rate[k], cap;

		if (!rate)
			continue;
		t->level[k] = MAX(0.0, t->level[k] - rate * dt);
		if (!throttle_applies(k, write))
			continue;
		/* Admitted while the bucket holds at most a burst: bounded bursts. */
		cap = rate * t->cfg.burst_ms / 1000.0;
		if (t->level[k] > cap)
			wait = MAX(wait, (int64_t)((t->level[k] - cap) / rate * 1e9));
	}
	t->last_ns = now_ns;
	return wait;
}

void throttle_charge(struct throttle *t, bool write, uint64_t bytes)
{
	unsigned int k;

	for (k = 0; k < THR_NR; k++) {
		if (!t->cfg.rate[k] || !throttle_applies(k, write))
			continue;
		/* Byte buckets count bytes, the others requests. */
		t->level[k] += k <= THR_BPS_WRITE ? (double)bytes : 1.0;
	}
}

void throttle_set(struct throttle *t, const struct throttle_cfg *cfg)
{
	unsigned int k;

	pthread_mutex_lock(&t->lock);
	memcpy(t->cfg.rate, cfg->rate, sizeof(t->cfg.rate));
	if (cfg->burst_ms)
		t->cfg.burst_ms = cfg->burst_ms;
	/* A bucket whose limit went away must not delay the next request. */
	for (k = 0; k < THR_NR; k++)
		if (!t->cfg.rate[k])
			t->level[k] = 0;
	__atomic_store_n(&t->enabled, throttle_cfg_any(&t->cfg), __ATOMIC_RELAXED);
	pthread_mutex_unlock(&t->lock);
}

void throttle_get(struct throttle *t, struct throttle_cfg *cfg)
{
	pthread_mutex_lock(&t->lock);
	*cfg = t->cfg;
	pthread_mutex_unlock(&t->lock);
}

/*
 * Longest one sleep of a throttled request: it looks again after this, so
 * a limit changed or lifted while it waits applies within this time.
 */
#define THR_MAX_SLEEP_MS	100

void throttle_io(struct throttle *t, bool write, uint64_t bytes)
{
	if (!__atomic_load_n(&t->enabled, __ATOMIC_RELAXED))
		return;
	for (;;) {
		int64_t wait;

		pthread_mutex_lock(&t->lock);
		wait = throttle_wait_ns(t, write, throttle_now_ns());
		if (!wait) {
			throttle_charge(t, write, bytes);
			pthread_mutex_unlock(&t->lock);
			return;
		}
		pthread_mutex_unlock(&t->lock);
		exec_sleep_ms(MIN(THR_MAX_SLEEP_MS, MAX(1, (unsigned int)(wait / 1000000))));
	}
}
