// SPDX-License-Identifier: GPL-2.0
/*
 * Control commands: io_uring URING_CMDs on /dev/ublk-control, using the
 * ioctl-encoded opcodes (UBLK_U_CMD_*), one command at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
		img_err("%s: permission denied: run imgblk as root", UBLK_CONTROL_PATH);
	else
		img_err("%s: %s", UBLK_CONTROL_PATH, strerror(-err));
}

int ublk_ctrl_open(struct ublk_ctrl *c)
{
	int ret;

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

int ublk_ctrl_set_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.addr = (uint64_t)(uintptr_t)p,
		.len = sizeof(*p),
	};

	p->len = sizeof(*p);
	return ublk_ctrl_cmd(c, UBLK_U_CMD_SET_PARAMS, &hdr);
}

int ublk_ctrl_get_params(struct ublk_ctrl *c, unsigned int dev_id,
			 struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.addr = (uint64_t)(uintptr_t)p,
		.len = sizeof(*p),
	};

	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	return ublk_ctrl_cmd(c, UBLK_U_CMD_GET_PARAMS, &hdr);
}

int ublk_ctrl_start_dev(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.data[0] = pid,
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_START_DEV, &hdr);
}

int ublk_ctrl_stop_dev(struct ublk_ctrl *c, unsigned int dev_id)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_STOP_DEV, &hdr);
}

int ublk_ctrl_del_dev(struct ublk_ctrl *c, unsigned int dev_id)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_DEL_DEV, &hdr);
}

int ublk_ctrl_start_recovery(struct ublk_ctrl *c, unsigned int dev_id)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_START_USER_RECOVERY, &hdr);
}

int ublk_ctrl_end_recovery(struct ublk_ctrl *c, unsigned int dev_id, pid_t pid)
{
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.data[0] = pid,
	};

	return ublk_ctrl_cmd(c, UBLK_U_CMD_END_USER_RECOVERY, &hdr);
}

int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, unsigned int dev_id,
			   struct ublksrv_ctrl_dev_info *info)
{
	/*
	 * GET_DEV_INFO2 wants the char device path in front of the payload,
	 * so the kernel can check an unprivileged caller's access to it.
	 */
	struct {
		char path[32];
		struct ublksrv_ctrl_dev_info info;
	} buf;
	struct ublksrv_ctrl_cmd hdr = {
		.dev_id = dev_id,
		.queue_id = -1,
		.addr = (uint64_t)(uintptr_t)&buf,
		.len = sizeof(buf),
	};
	int ret;

	memset(&buf, 0, sizeof(buf));
	snprintf(buf.path, sizeof(buf.path), UBLK_CDEV_FMT, dev_id);
	hdr.dev_path_len = sizeof(buf.path);
	ret = ublk_ctrl_cmd(c, UBLK_U_CMD_GET_DEV_INFO2, &hdr);
	if (ret >= 0)
		*info = buf.info;
	return ret;
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
