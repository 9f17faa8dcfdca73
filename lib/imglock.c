// SPDX-License-Identifier: GPL-2.0
/*
 * Image locks in QEMU's byte layout (include/imglock.h): taking, checking
 * and changing the set of one-byte OFD locks an open image holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imglock.h"
#include "util.h"

/* Where QEMU puts the two kinds of lock. */
#define IMG_LOCK_USE_BASE	100
#define IMG_LOCK_UNSHARE_BASE	200
#define IMG_PERM_COUNT		4

/* QEMU's names of the permissions, as its messages spell them. */
static const char *const img_perm_names[IMG_PERM_COUNT] = {
	"consistent read", "write", "write unchanged", "resize",
};

int img_lock_open(struct img_lock *l, const char *file)
{
	/* O_NONBLOCK: a FIFO named as an image must not hang us here. */
	int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	char *name;

	if (fd < 0) {
		img_err("%s: %s", file, strerror(errno));
		return -errno;
	}
	name = strdup(file);
	if (!name) {
		close(fd);
		return -ENOMEM;
	}
	*l = (struct img_lock){ .fd = fd, .file = name };
	return 0;
}

/* Takes (F_RDLCK) or drops (F_UNLCK) the one-byte lock at @byte. */
static int img_lock_byte(int fd, int type, int byte)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
	};

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

/*
 * Takes or drops the locks of @perms at @base + i.  Dropping never fails
 * for a lock we hold; taking fails only where someone holds an exclusive
 * lock (libvirt's kind), which QEMU reports the same way.
 */
static int img_lock_bytes(const struct img_lock *l, int type, int base,
			  unsigned int perms)
{
	int i, ret;

	for (i = 0; i < IMG_PERM_COUNT; i++) {
		if (!(perms & (1U << i)))
			continue;
		ret = img_lock_byte(l->fd, type, base + i);
		if (ret) {
			img_err("%s: failed to lock byte %d: %s", l->file, base + i,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* True if another open file description holds a lock on @byte. */
static bool img_lock_taken(int fd, int byte, int *err)
{
	struct flock fl = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1,
	};

	if (fcntl(fd, F_OFD_GETLK, &fl)) {
		*err = -errno;
		return true;
	}
	return fl.l_type != F_UNLCK;
}

/*
 * Checks @use and @unshare against everyone else's locks, as QEMU does:
 * first the permissions wanted, then those refused to others.  Returns 0
 * or -EBUSY after printing the first conflict.
 */
static int img_lock_check(const struct img_lock *l, unsigned int use,
			  unsigned int unshare)
{
	bool shared = false;
	int i, err = 0;

	for (i = 0; i < IMG_PERM_COUNT; i++) {
		if ((use & (1U << i)) &&
		    img_lock_taken(l->fd, IMG_LOCK_UNSHARE_BASE + i, &err))
			goto conflict;
	}
	shared = true;
	for (i = 0; i < IMG_PERM_COUNT; i++) {
		if ((unshare & (1U << i)) &&
		    img_lock_taken(l->fd, IMG_LOCK_USE_BASE + i, &err))
			goto conflict;
	}
	return 0;
conflict:
	if (err) {
		img_err("%s: cannot test the image locks: %s", l->file, strerror(-err));
		return err;
	}
	/* "shared": the lock saying that we refuse permission i to others. */
	img_err("%s: failed to get %s\"%s\" lock: is another process using the image?",
		l->file, shared ? "shared " : "", img_perm_names[i]);
	return -EBUSY;
}

int img_lock_set(struct img_lock *l, unsigned int use, unsigned int unshare)
{
	unsigned int add_use = use & ~l->use, add_unshare = unshare & ~l->unshare;
	int ret;

	/* Union first: from here on both the old and the new set are held. */
	ret = img_lock_bytes(l, F_RDLCK, IMG_LOCK_USE_BASE, add_use);
	if (!ret)
		ret = img_lock_bytes(l, F_RDLCK, IMG_LOCK_UNSHARE_BASE, add_unshare);
	if (!ret)
		ret = img_lock_check(l, use, unshare);
	if (ret) {
		/* Back to the old set, which stays as it was. */
		img_lock_bytes(l, F_UNLCK, IMG_LOCK_USE_BASE, add_use);
		img_lock_bytes(l, F_UNLCK, IMG_LOCK_UNSHARE_BASE, add_unshare);
		return ret;
	}
	img_lock_bytes(l, F_UNLCK, IMG_LOCK_USE_BASE, l->use & ~use);
	img_lock_bytes(l, F_UNLCK, IMG_LOCK_UNSHARE_BASE, l->unshare & ~unshare);
	l->use = use;
	l->unshare = unshare;
	return 0;
}

int img_lock_fd(int fd, const char *file, unsigned int use, unsigned int unshare)
{
	/* Messages only read the name. */
	struct img_lock l = { .fd = fd, .file = (char *)file };

	return img_lock_set(&l, use, unshare);
}

void img_lock_close(struct img_lock *l)
{
	/* The last close of the description drops its locks. */
	if (l->fd >= 0)
		close(l->fd);
	free(l->file);
	*l = IMG_LOCK_INIT;
}
