/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ublk server: control commands on /dev/ublk-control, and one queue
 * thread per hardware queue serving /dev/ublkcN through a target.
 */
#ifndef IMGBLK_UBLK_H
#define IMGBLK_UBLK_H

#include <linux/ublk_cmd.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "exec.h"
#include "tgt.h"

#define UBLK_CONTROL_PATH	"/dev/ublk-control"
#define UBLK_CDEV_FMT		"/dev/ublkc%u"
#define UBLK_BDEV_FMT		"/dev/ublkb%u"
#define UBLK_STATE_DIR		"/run/imgblk"

/* Defaults and limits of the CLI. */
#define UBLK_DEF_QUEUES		1
#define UBLK_DEF_DEPTH		128
#define UBLK_MAX_QUEUES		64
/* Largest device id the driver accepts (UBLK_MAX_UBLKS - 1 in 6.12). */
#define UBLK_MAX_DEV_ID		((1U << 20) - 1)
/* Largest request the kernel sends us; also the size of each tag's buffer. */
#define UBLK_IO_BUF_SHIFT	19
#define UBLK_IO_BUF_BYTES	(1U << UBLK_IO_BUF_SHIFT)
/*
 * Of the tags' buffers, this much per device by default (--pinned-buffers)
 * is registered with the queues' rings, and so pinned and resident
 * (exec_map_bufs()): enough for every tag of one queue of depth 128 to do
 * 128k I/O on the fast path.
 */
#define UBLK_DEF_PINNED_BYTES	(32U << 20)
#define UBLK_MAX_PINNED_BYTES	(1ULL << 30)

/* A handle on /dev/ublk-control with its own small SQE128 ring. */
struct ublk_ctrl {
	int fd;
	struct io_uring ring;
	/* The device was added unprivileged: commands carry its char device's path. */
	bool unprivileged;
};

/* Opens /dev/ublk-control.  Returns 0 or -errno; prints nothing. */
int ublk_ctrl_open(struct ublk_ctrl *c);
/* Prints one line saying why ublk_ctrl_open() failed with @err, and what to do. */
void ublk_ctrl_explain(int err);
void ublk_ctrl_close(struct ublk_ctrl *c);

/*
 * Control commands; each returns the kernel's result: 0 (or a
 * non-negative value) on success, -errno on failure.
 */
int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *features);
int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info);
int ublk_ctrl_set_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p);
int ublk_ctrl_get_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p);
int ublk_ctrl_start_dev(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid);
int ublk_ctrl_stop_dev(struct ublk_ctrl *c, unsigned int dev_id);
int ublk_ctrl_del_dev(struct ublk_ctrl *c, unsigned int dev_id);
/*
 * DEL_DEV without waiting for the last opener of the disk (a mounted
 * filesystem) to let go; the id stays taken until it does.
 */
int ublk_ctrl_del_dev_async(struct ublk_ctrl *c, unsigned int dev_id);
int ublk_ctrl_start_recovery(struct ublk_ctrl *c, unsigned int dev_id);
int ublk_ctrl_end_recovery(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid);
int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, unsigned int dev_id,
			   struct ublksrv_ctrl_dev_info *info);
int ublk_ctrl_get_queue_affinity(struct ublk_ctrl *c, unsigned int dev_id,
				 unsigned int q_id, cpu_set_t *cpus);

/* Name of a UBLK_S_DEV_* state: LIVE, QUIESCED or DEAD. */
const char *ublk_state_name(unsigned int state);

/*
 * Fills @p from the target's capabilities: size, block sizes, max request
 * size, discard/write-zeroes limits, volatile cache and FUA, read-only.
 * @max_io_bytes is the device's max_io_buf_bytes.
 */
void ublk_params_from_caps(const struct tgt_caps *caps, uint32_t max_io_bytes,
			   struct ublk_params *p);

/* Options of a device: its block layer's, and the ublk plane's own. */
struct ublk_features {
	struct blk_config blk;
	uint64_t pinned_bytes;	/* --pinned-buffers: registered buffer budget */
};

struct ublk_queue;
struct ctl_server;

/* One tag: its coroutine, its buffer and the state of its io command. */
struct ublk_io {
	struct ublk_queue *q;
	void *buf;
	struct coro *co;
	unsigned int tag;
	int cmd_res;		/* res of the io command's CQE */
	bool cmd_done;		/* cmd_res is fresh */
};

struct ublk_dev;

struct ublk_queue {
	struct ublk_dev *dev;
	unsigned int q_id;
	unsigned int depth;
	char *bufs;		/* the tags' buffers, UBLK_IO_BUF_BYTES apart */
	const struct ublksrv_io_desc *iods;	/* kernel-written, mmap'ed */
	size_t iods_bytes;
	struct img_exec exec;
	struct ublk_io *ios;
	pthread_t thread;
	int init_res;		/* queue setup result, for the main thread */
	cpu_set_t cpus;		/* where its thread runs; empty: where the scheduler puts it */
};

struct ublk_dev {
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params params;
	/* The top it started with, for its parameters; the live one is blk.top. */
	struct tgt *tgt;
	int cdev_fd;
	struct ublk_queue *queues;

	struct ublk_features feat;
	/* Every request goes through it; queue i is blk.queues[i]. */
	struct blk_dev blk;
	struct ctl_server *ctl;	/* its control channel, once ready */

	/* Queue threads report setup and exit here for the main thread. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int nr_queues_started;	/* threads created */
	unsigned int nr_queues_setup;	/* threads done with setup */
	unsigned int nr_queues_exited;
	int event_fd;		/* written when a queue thread exits */
};

/*
 * Starts one thread per queue, on the CPUs the kernel maps to the queue
 * (asked through @ctrl); each sets up its ring and queues FETCH_REQ for
 * every tag.  Returns 0 once all queues are set up, or -errno; either
 * way ublk_queues_join() must follow (after STOP_DEV, which aborts the
 * fetches of the queues that did start).
 */
int ublk_queues_start(struct ublk_dev *dev, struct ublk_ctrl *ctrl);

/* Waits for every queue thread to end and frees the queues. */
void ublk_queues_join(struct ublk_dev *dev);

#endif
