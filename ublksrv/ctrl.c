// SPDX-License-Identifier: GPL-2.0
/*
 * Control commands: io_uring URING_CMDs on /dev/ublk-control, using the
 * ioctl-encoded opcodes (UBLK_U_CMD_*), one command at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ublk.h"
#include "util.h"

void ublk_ctrl_explain(int err)
{
	if (err == -ENOENT)
		img_err("%s not found: the ublk_drv kernel module is not loaded (run: modprobe ublk_drv)",
			UBLK_CONTROL_PATH);
	else if (err == -EACCES || err == -EPERM)
		img_err("%s: permission denied: run imgblk as root, or let users add unprivileged devices (scripts/udev/99-imgblk.rules)",
			UBLK_CONTROL_PATH);
	else
		img_err("%s: %s", UBLK_CONTROL_PATH, strerror(-err));
}

int ublk_ctrl_open(struct ublk_ctrl *c)
{
	int ret;

	c->unprivileged = false;
	c->fd = open(UBLK_CONTROL_PATH, O_RDWR | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	/* Control commands carry an 80-byte payload: they need 128-byte SQEs. */
	ret = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
	if (ret < 0)
		close(c->fd);
	return ret;
}

void ublk_ctrl_close(struct ublk_ctrl *c)
{
	io_uring_queue_exit(&c->ring);
	close(c->fd);
}

/* Returns the command's result (>= 0) or -errno. */
static int ublk_ctrl_cmd(struct ublk_ctrl *c, unsigned int cmd_op,
			 const struct ublksrv_ctrl_cmd *hdr)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	struct io_uring_cqe *cqe;
	int ret;

	/* One command at a time on a 4-entry ring: a free SQE is always there. */
	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = cmd_op;
	memcpy(sqe->cmd, hdr, sizeof(*hdr));

	ret = io_uring_submit(&c->ring);
	if (ret < 0)
		return ret;
	do {
		ret = io_uring_wait_cqe(&c->ring, &cqe);
	} while (ret == -EINTR);
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	img_dbg(IMG_DBG_CTRL, "cmd %#x dev %u -> %d", cmd_op, hdr->dev_id, ret);
	return ret;
}

int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *features)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = -1U,
		.queue_id = -1,
		.addr = (uint64_t)(uintptr_t)features,
		.len = sizeof(*features),
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_GET_FEATURES, &hdr);
}

int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = info->dev_id,
		.queue_id = -1,
		.addr = (uint64_t)(uintptr_t)info,
		.len = sizeof(*info),
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_ADD_DEV, &hdr);
}

/* Room for "/dev/ublkcN" in front of a payload. */
#define UBLK_CTRL_PATH_BYTES	32

/*
 * A command on an existing device, with @len bytes of @payload (read back
 * after the command) and @data0.  The kernel wants the char device's path
 * in front of the payload for a device added unprivileged, to check the
 * caller's access to it, and for GET_DEV_INFO2 always.  Returns the
 * command's result or -errno.
 */
static int ublk_ctrl_dev_cmd(struct ublk_ctrl *c, unsigned int cmd_op,
			     unsigned int dev_id, void *payload, size_t len,
			     uint64_t data0)
{
	bool with_path = c->unprivileged || cmd_op == UBLK_U_CMD_GET_DEV_INFO2;
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.data[0] = data0,
		.addr = (uint64_t)(uintptr_t)payload,
		.len = len,
	};
	char *buf;
	int ret;

	if (!with_path)
		return ublk_ctrl_cmd(c, cmd_op, &hdr);
	buf = calloc(1, UBLK_CTRL_PATH_BYTES + len);
	if (!buf)
		return -ENOMEM;
	snprintf(buf, UBLK_CTRL_PATH_BYTES, UBLK_CDEV_FMT, dev_id);
	if (len)
		memcpy(buf + UBLK_CTRL_PATH_BYTES, payload, len);
	hdr.addr = (uint64_t)(uintptr_t)buf;
	hdr.len = UBLK_CTRL_PATH_BYTES + len;
	hdr.dev_path_len = UBLK_CTRL_PATH_BYTES;
	ret = ublk_ctrl_cmd(c, cmd_op, &hdr);
	if (ret >= 0 && len)
		memcpy(payload, buf + UBLK_CTRL_PATH_BYTES, len);
	free(buf);
	return ret;
}

int ublk_ctrl_set_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p)
{
	p->len = sizeof(*p);
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_SET_PARAMS, dev_id, p, sizeof(*p), 0);
}

int ublk_ctrl_get_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p)
{
	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_GET_PARAMS, dev_id, p, sizeof(*p), 0);
}

int ublk_ctrl_start_dev(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_START_DEV, dev_id, NULL, 0, pid);
}

int ublk_ctrl_stop_dev(struct ublk_ctrl *c, unsigned int dev_id)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_STOP_DEV, dev_id, NULL, 0, 0);
}

int ublk_ctrl_del_dev(struct ublk_ctrl *c, unsigned int dev_id)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_DEL_DEV, dev_id, NULL, 0, 0);
}

int ublk_ctrl_del_dev_async(struct ublk_ctrl *c, unsigned int dev_id)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_DEL_DEV_ASYNC, dev_id, NULL, 0, 0);
}

int ublk_ctrl_start_recovery(struct ublk_ctrl *c, unsigned int dev_id)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_START_USER_RECOVERY, dev_id, NULL, 0, 0);
}

int ublk_ctrl_end_recovery(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_END_USER_RECOVERY, dev_id, NULL, 0, pid);
}

int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, unsigned int dev_id,
			   struct ublksrv_ctrl_dev_info *info)
{
	return ublk_ctrl_dev_cmd(c, UBLK_U_CMD_GET_DEV_INFO2, dev_id, info, sizeof(*info), 0);
}

/*
 * The CPUs whose requests the kernel queues on hardware queue @q_id (blk-mq's
 * map for the device).  Returns 0 or -errno.
 */
int ublk_ctrl_get_queue_affinity(struct ublk_ctrl *c, unsigned int dev_id,
				 unsigned int q_id, cpu_set_t *cpus)
{
	int ret;

	CPU_ZERO(cpus);
	ret = ublk_ctrl_dev_cmd(c, UBLK_U_CMD_GET_QUEUE_AFFINITY, dev_id, cpus,
				sizeof(*cpus), q_id);
	return ret < 0 ? ret : 0;
}

const char *ublk_state_name(unsigned int state)
{
	switch (state) {
	case UBLK_S_DEV_LIVE:
		return "LIVE";
	case UBLK_S_DEV_QUIESCED:
		return "QUIESCED";
	default:
		return "DEAD";
	}
}
