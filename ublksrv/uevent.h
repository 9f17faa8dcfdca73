/* SPDX-License-Identifier: GPL-2.0 */
/* Kernel uevents over netlink (libnl-3), for device readiness. */
#ifndef IMGBLK_UEVENT_H
#define IMGBLK_UEVENT_H

#include <stdbool.h>
#include <stddef.h>

struct nl_sock;

struct uevent_listener {
	struct nl_sock *sk;
};

/* Subscribes to kernel uevents.  Returns 0 or -errno. */
int uevent_open(struct uevent_listener *u);
void uevent_close(struct uevent_listener *u);

/*
 * Waits up to @timeout_ms for the uevent announcing block device @devname
 * ("ublkb3").  Returns 0 when seen, -ETIMEDOUT, or -errno.
 */
int uevent_wait_block_add(struct uevent_listener *u, const char *devname,
			  int timeout_ms);

/*
 * Waits up to @timeout_ms until the uevents announcing each of the @n
 * block devices @names (those whose @seen is false) have arrived, setting
 * @seen for each.  Returns 0 when all were seen, -ETIMEDOUT (@seen then
 * tells which were not), or -errno.
 */
int uevent_wait_block_adds(struct uevent_listener *u, char *const *names,
			   bool *seen, unsigned int n, int timeout_ms);

/* True if the raw uevent @msg of @len bytes is the "add" of block device @devname. */
bool uevent_is_block_add(const char *msg, size_t len, const char *devname);

#endif
