/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the kernel shows of a device's disk in sysfs and /proc: its
 * partitions, and who holds the disk or a partition (mounts, stacked
 * devices, exclusive or plain opens).
 */
#ifndef IMGBLK_DISK_H
#define IMGBLK_DISK_H

#include <stdbool.h>
#include <stddef.h>

/* Partition numbers are at most this (the kernel's DISK_MAX_PARTS). */
#define UBLK_MAX_PARTS		256

/*
 * Fills @nums (room for UBLK_MAX_PARTS) with the numbers of the
 * partitions the kernel lists for /dev/ublkb@id, in ascending order.
 * Returns how many, 0 when the disk has none or is gone.
 */
int ublk_disk_partitions(unsigned int id, unsigned int *nums);

/* Who uses a disk, the clearest first; ublk_disk_busy() says which. */
enum ublk_disk_user {
	UBLK_DISK_FREE,
	UBLK_DISK_MOUNTED,	/* a filesystem in our mount namespace */
	UBLK_DISK_HELD,		/* a stacked device: dm, md, bcache */
	UBLK_DISK_CLAIMED,	/* an exclusive opener (or a mount elsewhere) */
	UBLK_DISK_OPEN,		/* a process has a node open */
};

/*
 * Whether /dev/ublkb@id or one of its partitions is in use by anyone but
 * the caller: mounted, held by a stacked device (dm, md), or open.  When
 * it is, @why (of @len bytes) gets one sentence naming the node and the
 * holder, e.g. "/dev/ublkb0p1 is mounted on /mnt".  Returns the kind of
 * user found first, UBLK_DISK_FREE (0) when none.
 */
enum ublk_disk_user ublk_disk_busy(unsigned int id, char *why, size_t len);

#endif
