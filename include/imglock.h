/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Image locks, compatible with QEMU's (block/file-posix.c): what a process
 * does with an image file, and what it forbids others, told to every other
 * process by one-byte shared (F_RDLCK) OFD locks.  Byte 100 + i says "I use
 * permission i", byte 200 + i "I do not let anyone else have permission
 * i".  A conflict is seen with F_OFD_GETLK: a permission I want needs byte
 * 200 + i free of others' locks, a permission I refuse to share needs byte
 * 100 + i free.  QEMU, qemu-img, qemu-nbd and imgblk thus keep each other
 * from writing an image that another one has open.
 */
#ifndef IMGBLK_IMGLOCK_H
#define IMGBLK_IMGLOCK_H

/* QEMU's permission numbers: bit i is permission i (lock bytes 100+i, 200+i). */
#define IMG_PERM_CONSISTENT_READ	(1U << 0)
#define IMG_PERM_WRITE			(1U << 1)
#define IMG_PERM_WRITE_UNCHANGED	(1U << 2)
#define IMG_PERM_RESIZE			(1U << 3)
#define IMG_PERM_ALL			0xfU

/*
 * The locks one open image holds.  They live on a descriptor of their
 * own, opened for them: OFD locks belong to an open file description, so
 * they outlast whatever the format engine does with its descriptors (qcow2
 * reopens its file to change O_DIRECT), are shared by a fork()ed server
 * (the parent exiting drops nothing) and go away with the last close.
 */
struct img_lock {
	int fd;			/* -1: nothing is held */
	char *file;		/* a copy of the name, for messages */
	unsigned int use;	/* IMG_PERM_* held on bytes 100 + i */
	unsigned int unshare;	/* IMG_PERM_* held on bytes 200 + i */
};

/* A lock that holds nothing, before img_lock_open(). */
#define IMG_LOCK_INIT	((struct img_lock){ .fd = -1 })

/*
 * Opens @file for locking into @l, taking no lock yet.  A FIFO is not waited on.  Returns 0 or -errno after
 * printing why.
 */
int img_lock_open(struct img_lock *l, const char *file);

/*
 * Makes @l hold exactly @use and @unshare.  The locks of both the old and
 * the new set are taken first, the new set is then checked against other
 * holders, and only then is what the new set lacks dropped: a change of
 * role is never without protection, and a refused change leaves the old
 * set held.  Returns 0, or -EBUSY after printing which permission another
 * process holds or refuses, or another -errno.
 */
int img_lock_set(struct img_lock *l, unsigned int use, unsigned int unshare);

/*
 * Takes and checks the locks @use and @unshare on @fd itself, a file being
 * created (@file names it in messages): they go with its close.  Returns
 * as img_lock_set().
 */
int img_lock_fd(int fd, const char *file, unsigned int use, unsigned int unshare);

/* Drops every lock of @l and closes its descriptor; safe to call twice. */
void img_lock_close(struct img_lock *l);

#endif
