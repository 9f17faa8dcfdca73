/* SPDX-License-Identifier: GPL-2.0 */
/* The life of one device's server: add, serve, shut down. */
#ifndef IMGBLK_SERVER_H
#define IMGBLK_SERVER_H

#include <stdbool.h>

#include "tgt.h"
#include "ublk.h"

/* How long `add` waits for /dev/ublkbN to appear and answer. */
#define UBLK_READY_TIMEOUT_MS	10000
/*
 * Longest an unprivileged device holds a request in a pause, as a share
 * of the kernel's timeout for its requests (io_timeout in sysfs, 30 s by
 * default): the driver kills its server when a request outlives that.
 * UBLK_UNPRIV_HOLD_MS (the share of the default) holds until the server
 * has read io_timeout.
 */
#define UBLK_UNPRIV_HOLD_NUM	2
#define UBLK_UNPRIV_HOLD_DEN	3
#define UBLK_UNPRIV_HOLD_MS	20000
/* How long `del` waits for a server it asked to stop. */
#define UBLK_STOP_TIMEOUT_MS	10000
/* How long del waits for an opener of the disk (udev's probe) to close it. */
#define UBLK_DEL_OPEN_WAIT_MS	2000

struct ublk_add_opts {
	const struct tgt_ops *ops;
	struct tgt_config cfg;
	int dev_id;		/* -1: let the kernel choose */
	unsigned int nr_queues;
	unsigned int depth;
	bool foreground;	/* serve in this process instead of a daemon */
	bool recoverable;	/* UBLK_F_USER_RECOVERY: survive the server's death */
	bool recover;		/* serve the existing quiesced device @dev_id */
	int log_level;		/* IMG_LOG_*; 0: the default */
	const char *name;	/* stable name (--name), or NULL */
	struct ublk_features feat;
};

/*
 * Adds a device and serves it, in a background process unless
 * @o->foreground.  Returns (to the command line) once /dev/ublkbN works,
 * having printed its path.  Returns the exit status: 0 or 1.
 */
int ublk_add(const struct ublk_add_opts *o);

/*
 * Starts a new server for recoverable device @id whose server died, with
 * the target and options recorded in its state file.  Returns the exit
 * status.
 */
int ublk_recover(unsigned int id, bool foreground);

/*
 * Deletes device @id; refuses, saying who holds it, while its disk or a
 * partition is mounted or open elsewhere, unless @force.  Returns the
 * exit status.
 */
int ublk_del(unsigned int id, bool force);

/*
 * Deletes every device that has a state file, but (unless @force) not
 * those in use.  Returns the exit status: 1 if any was left.
 */
int ublk_del_all(bool force);

#endif
