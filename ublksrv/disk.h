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

/*
 * Whether /dev/ublkb@id or one of its partitions is in use by anyone but
 * the caller: mounted, held by a stacked device (dm, md), or open.  On
 * true @why (of @len bytes) gets one sentence naming the node and the
 * holder, e.g. "/dev/ublkb0p1 is mounted on /mnt".
 */
bool ublk_disk_busy(unsigned int id, char *why, size_t len);

#endif
