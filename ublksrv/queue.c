// SPDX-License-Identifier: GPL-2.0
/*
 * Queue threads.  Each hardware queue gets one thread and one io_uring
 * (its executor), carrying both the ublk io commands of its tags and the
 * target's file I/O.  Each tag is a coroutine that loops: queue
 * FETCH_REQ/COMMIT_AND_FETCH_REQ, sleep until the kernel hands over a
 * request, serve it through the target, and commit the result with the
 * next fetch.  The result is committed whatever it is, errors included:
 * a tag never committed would hang the device and later its deletion.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "ublk.h"
#include "user_data.h"
#include "util.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

static void ublk_queue_cmd(struct ublk_io *io, unsigned int cmd_op, int res)
{
	struct ublk_queue *q = io->q;
	struct io_uring_sqe *sqe = exec_get_sqe();
	struct ublksrv_io_cmd *cmd = (struct ublksrv_io_cmd *)sqe->cmd;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0;			/* the char device, registered file 0 */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = cmd_op;
	cmd->q_id = q->q_id;
	cmd->tag = io->tag;
	cmd->result = res;
	cmd->addr = (uint64_t)(uintptr_t)io->buf;
	io_uring_sqe_set_data64(sqe, ud_ublk(io->tag, _IOC_NR(cmd_op), q->q_id));
	io->cmd_done = false;
}

/*
 * The block layer's name of a ublk operation; BLK_OP_NR for one it does
 * not know (refused with EOPNOTSUPP).
 */
static enum blk_op ublk_blk_op(unsigned int op)
{
	switch (op) {
	case UBLK_IO_OP_READ:
		return BLK_OP_READ;
	case UBLK_IO_OP_WRITE:
		return BLK_OP_WRITE;
	case UBLK_IO_OP_FLUSH:
		return BLK_OP_FLUSH;
	case UBLK_IO_OP_DISCARD:
		return BLK_OP_DISCARD;
	case UBLK_IO_OP_WRITE_ZEROES:
		return BLK_OP_WRITE_ZEROES;
	default:
		return BLK_OP_NR;
	}
}

/*
 * Serves one request through the block layer.  Returns the byte count or
 * 0 on success, -errno on failure: what the tag commits.
 */
static int ublk_serve(struct ublk_io *io)
{
	const struct ublksrv_io_desc *iod = &io->q->iods[io->tag];
	struct ublk_dev *dev = io->q->dev;
	enum blk_op op = ublk_blk_op(ublksrv_get_op(iod));
	uint64_t off = iod->start_sector << 9;
	uint64_t len = (uint64_t)iod->nr_sectors << 9;
	unsigned int flags = (iod->op_flags & UBLK_IO_F_FUA) ? BLK_REQ_FUA : 0;

	img_dbg(IMG_DBG_IO, "q %u tag %u op %u off %llu len %llu", io->q->q_id,
		io->tag, ublksrv_get_op(iod), (unsigned long long)off,
		(unsigned long long)len);

	if (op == BLK_OP_NR)
		return -EOPNOTSUPP;
	/* The tag's buffer is all the data a read or write can have. */
	if ((op == BLK_OP_READ || op == BLK_OP_WRITE) && len > dev->info.max_io_buf_bytes)
		return -EIO;
	return blk_submit(&dev->blk.queues[io->q->q_id], op, flags, io->buf, off, len);
}

static void ublk_tag_main(void *arg)
{
	struct ublk_io *io = arg;
	unsigned int cmd_op = UBLK_U_IO_FETCH_REQ;
	int res = 0;

	io->co = exec_self();
	for (;;) {
		ublk_queue_cmd(io, cmd_op, res);
		while (!io->cmd_done)
			exec_sleep();
		/*
		 * UBLK_IO_RES_ABORT: the device is stopping and this tag will
		 * get no more requests.  Anything else negative means the
		 * kernel refused the command; the tag is unusable either way.
		 */
		if (io->cmd_res != UBLK_IO_RES_OK) {
			if (io->cmd_res != UBLK_IO_RES_ABORT)
				img_err("queue %u tag %u: io command failed: %s",
					io->q->q_id, io->tag, strerror(-io->cmd_res));
			return;
		}
		res = ublk_serve(io);
		cmd_op = UBLK_U_IO_COMMIT_AND_FETCH_REQ;
	}
}

/* CQE of an io command: hand the result to the tag's coroutine. */
static void ublk_queue_cqe(void *ctx, const struct io_uring_cqe *cqe)
{
	struct ublk_queue *q = ctx;
	struct ublk_io *io = &q->ios[ud_tag(cqe->user_data)];

	io->cmd_res = cqe->res;
	io->cmd_done = true;
	exec_wake(io->co);
}

/* Size of the kernel's per-queue descriptor area for @depth tags. */
static size_t ublk_iods_bytes(unsigned int depth)
{
	size_t page = sysconf(_SC_PAGESIZE);

	return ALIGN_UP(depth * sizeof(struct ublksrv_io_desc), page);
}

static int ublk_queue_setup(struct ublk_queue *q)
{
	struct ublk_dev *dev = q->dev;
	/* Where the kernel puts queue q_id's descriptors in the cdev's mmap space. */
	off_t iods_off = UBLKSRV_CMD_BUF_OFFSET +
			 (off_t)q->q_id * ublk_iods_bytes(UBLK_MAX_QUEUE_DEPTH);
	void *iods;
	char name[16];
	unsigned int i;
	int ret;

	/* Our writes may be what frees memory: do not recurse into reclaim. */
	prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
	/* So `top -H` and the tests can tell the queues apart. */
	snprintf(name, sizeof(name), "imgblk-q%u", q->q_id);
	pthread_setname_np(pthread_self(), name);
	/*
	 * Best effort, before the ring and buffers are allocated so they land
	 * near those CPUs: a cpuset that excludes them leaves the thread
	 * where the scheduler put it, which works, only slower.
	 */
	if (CPU_COUNT(&q->cpus) &&
	    sched_setaffinity(0, sizeof(q->cpus), &q->cpus))
		img_dbg(IMG_DBG_QUEUE, "queue %u: cannot pin to its CPUs: %s",
			q->q_id, strerror(errno));

	ret = exec_init(&q->exec, 2 * q->depth);
	if (ret)
		return ret;
	q->exec.cqe_fn = ublk_queue_cqe;
	q->exec.cqe_ctx = q;
	ret = io_uring_register_files(&q->exec.ring, &dev->cdev_fd, 1);
	if (ret)
		goto err_exec;

	q->iods_bytes = ublk_iods_bytes(q->depth);
	iods = mmap(NULL, q->iods_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE,
		    dev->cdev_fd, iods_off);
	if (iods == MAP_FAILED) {
		ret = -errno;
		goto err_exec;
	}
	q->iods = iods;

	q->ios = calloc(q->depth, sizeof(*q->ios));
	if (!q->ios) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	/*
	 * The tags' buffers, page-aligned so O_DIRECT targets use them as
	 * they are.  Their file I/O is READ_FIXED/WRITE_FIXED where it fits
	 * the registered part: the kernel then skips pinning the pages every
	 * time, and in the VM 4k random I/O at QD32 gains 15% (raw) to 28%
	 * (qcow2).  The budget bounds what that pins per device, whatever the
	 * depth.  A device added by another server may not fit our slots.
	 */
	ret = -EINVAL;
	if (dev->info.max_io_buf_bytes > UBLK_IO_BUF_BYTES)
		goto err_ios;
	q->bufs = exec_map_bufs(&q->exec, q->depth, UBLK_IO_BUF_SHIFT,
				dev->feat.pinned_bytes / dev->info.nr_hw_queues);
	ret = -ENOMEM;
	if (!q->bufs)
		goto err_ios;
	for (i = 0; i < q->depth; i++) {
		struct ublk_io *io = &q->ios[i];

		io->q = q;
		io->tag = i;
		io->buf = q->bufs + ((size_t)i << UBLK_IO_BUF_SHIFT);
		/*
		 * On failure the coroutines spawned have not run yet; they
		 * are freed with the executor.  No FETCH was submitted, so
		 * the kernel holds nothing.
		 */
		ret = exec_spawn(&q->exec, ublk_tag_main, io);
		if (ret)
			goto err_bufs;
	}
	return 0;

err_bufs:
	exec_unmap_bufs(q->bufs, q->depth, UBLK_IO_BUF_SHIFT);
err_ios:
	free(q->ios);
err_unmap:
	munmap((void *)q->iods, q->iods_bytes);
err_exec:
	exec_exit(&q->exec);
	return ret;
}

static void ublk_queue_teardown(struct ublk_queue *q)
{
	exec_exit(&q->exec);
	munmap((void *)q->iods, q->iods_bytes);
	exec_unmap_bufs(q->bufs, q->depth, UBLK_IO_BUF_SHIFT);
	free(q->ios);
}

static void *ublk_queue_thread(void *arg)
{
	struct ublk_queue *q = arg;
	struct ublk_dev *dev = q->dev;
	uint64_t one = 1;
	int ret;

	ret = ublk_queue_setup(q);
	pthread_mutex_lock(&dev->lock);
	q->init_res = ret;
	dev->nr_queues_setup++;
	pthread_cond_broadcast(&dev->cond);
	pthread_mutex_unlock(&dev->lock);
	if (ret)
		goto out;

	ret = exec_run(&q->exec);
	if (ret)
		img_err("queue %u: io_uring failed: %s", q->q_id, strerror(-ret));
	img_dbg(IMG_DBG_QUEUE, "queue %u done", q->q_id);
	ublk_queue_teardown(q);
out:
	pthread_mutex_lock(&dev->lock);
	dev->nr_queues_exited++;
	pthread_mutex_unlock(&dev->lock);
	/* Tell the main thread; a failed write leaves it to its next poll. */
	if (write(dev->event_fd, &one, sizeof(one)) < 0)
		img_err("queue %u: eventfd: %s", q->q_id, strerror(errno));
	return NULL;
}

int ublk_queues_start(struct ublk_dev *dev, struct ublk_ctrl *ctrl)
{
	unsigned int nr = dev->info.nr_hw_queues;
	sigset_t all, old;
	unsigned int i;
	int ret = 0;

	dev->queues = calloc(nr, sizeof(*dev->queues));
	if (!dev->queues)
		return -ENOMEM;
	dev->event_fd = eventfd(0, EFD_CLOEXEC);
	if (dev->event_fd < 0) {
		free(dev->queues);
		return -errno;
	}
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->cond, NULL);
	dev->nr_queues_setup = 0;
	dev->nr_queues_exited = 0;

	/* Signals are the main thread's business: queue threads block them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < nr; i++) {
		struct ublk_queue *q = &dev->queues[i];
		q->dev = dev;
		q->q_id = i;
		q->depth = dev->info.queue_depth;
		/*
		 * A request is queued on the hardware queue of the CPU that
		 * issued it, and its completion runs as task work in the
		 * queue's thread: keeping the thread on those CPUs keeps the
		 * work near the submitters and two queues' threads off each
		 * other's CPUs.  But a queue of one CPU would make the
		 * thread share that CPU with its submitter while the others
		 * idle: in the VM (2 vCPUs, -q 2, one fio job, 4k QD32)
		 * pinned, qcow2 did 16k IOPS, unpinned 38k-46k, and with
		 * two jobs unpinned was as fast or faster (randwrite 28k ->
		 * 30k).  So only a queue of several CPUs is pinned; the
		 * scheduler places the rest, as without the map (an older
		 * driver).
		 */
		if (ublk_ctrl_get_queue_affinity(ctrl, dev->info.dev_id, i, &q->cpus) ||
		    CPU_COUNT(&q->cpus) < 2)
			CPU_ZERO(&q->cpus);
		ret = -pthread_create(&q->thread, NULL, ublk_queue_thread, q);
		if (ret)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	/* Wait for every started thread to finish its setup. */
	pthread_mutex_lock(&dev->lock);
	while (dev->nr_queues_setup < i)
		pthread_cond_wait(&dev->cond, &dev->lock);
	pthread_mutex_unlock(&dev->lock);
	dev->nr_queues_started = i;
	if (!ret) {
		for (i = 0; i < nr; i++) {
			if (dev->queues[i].init_res) {
				ret = dev->queues[i].init_res;
				break;
			}
		}
	}
	return ret;
}

void ublk_queues_join(struct ublk_dev *dev)
{
	unsigned int i;

	for (i = 0; i < dev->nr_queues_started; i++)
		pthread_join(dev->queues[i].thread, NULL);
	free(dev->queues);
	dev->queues = NULL;
	close(dev->event_fd);
	pthread_mutex_destroy(&dev->lock);
	pthread_cond_destroy(&dev->cond);
}
