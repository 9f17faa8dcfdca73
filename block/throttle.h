/* SPDX-License-Identifier: GPL-2.0 */
/*
 * I/O throttling for a device, in the manner of QEMU's block throttling:
 * one leaky bucket per limit (bytes and operations; read, write, total),
 * shared by every queue of the device.  A request is admitted while its
 * buckets hold at most a burst's worth; otherwise its coroutine sleeps
 * until they have leaked enough.
 */
#ifndef IMGBLK_THROTTLE_H
#define IMGBLK_THROTTLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum throttle_kind {
	THR_BPS_TOTAL,
	THR_BPS_READ,
	THR_BPS_WRITE,
	THR_IOPS_TOTAL,
	THR_IOPS_READ,
	THR_IOPS_WRITE,
	THR_NR,
};

/* Default burst: a tenth of a second's worth, as QEMU allows without a max. */
#define THR_DEFAULT_BURST_MS	100

struct throttle_cfg {
	uint64_t rate[THR_NR];		/* per second; 0: no limit */
	unsigned int burst_ms;		/* bucket size, in time at the rate */
};

struct throttle {
	pthread_mutex_t lock;
	struct throttle_cfg cfg;
	double level[THR_NR];		/* bytes or operations not yet leaked */
	int64_t last_ns;		/* when the buckets last leaked */
	bool enabled;
};

/* True if @cfg sets any limit. */
bool throttle_cfg_any(const struct throttle_cfg *cfg);

void throttle_init(struct throttle *t, const struct throttle_cfg *cfg);
void throttle_destroy(struct throttle *t);

/*
 * Changes the limits (and the burst, when @cfg->burst_ms is set) of a
 * throttle in use; requests waiting on it see them within 100 ms.
 */
void throttle_set(struct throttle *t, const struct throttle_cfg *cfg);
/* The limits in force. */
void throttle_get(struct throttle *t, struct throttle_cfg *cfg);

/*
 * Waits, as a coroutine, until a read or write of @bytes may go, and
 * charges it.  Returns at once when no limit is set.
 */
void throttle_io(struct throttle *t, bool write, uint64_t bytes);

/*
 * The two halves of throttle_io(), under t->lock: nanoseconds to wait
 * before a read or write may go at time @now_ns (leaking the buckets up
 * to then), and charging an admitted one to its buckets.
 */
int64_t throttle_wait_ns(struct throttle *t, bool write, int64_t now_ns);
void throttle_charge(struct throttle *t, bool write, uint64_t bytes);

#endif
