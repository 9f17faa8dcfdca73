/* SPDX-License-Identifier: GPL-2.0 */
/* The life of one device's server: add, serve, shut down. */
#ifndef IMGBLK_SERVER_H
#define IMGBLK_SERVER_H

#include <stdbool.h>

#include "tgt.h"

/* How long `add` waits for /dev/ublkbN to appear and answer. */
#define UBLK_READY_TIMEOUT_MS	10000

struct ublk_add_opts {
	const struct tgt_ops *ops;
	struct tgt_config cfg;
	int dev_id;		/* -1: let the kernel choose */
	unsigned int nr_queues;
	unsigned int depth;
	bool foreground;	/* serve in this process instead of a daemon */
};

/*
 * Adds a device and serves it, in a background process unless
 * @o->foreground.  Returns (to the command line) once /dev/ublkbN works,
 * having printed its path.  Returns the exit status: 0 or 1.
 */
int ublk_add(const struct ublk_add_opts *o);

/* Deletes device @id.  Returns the exit status. */
int ublk_del(unsigned int id);

/* Deletes every device that has a state file.  Returns the exit status. */
int ublk_del_all(void);

#endif
