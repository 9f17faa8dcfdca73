// SPDX-License-Identifier: GPL-2.0
/*
 * lib/imglock.c on its own: OFD locks of two open file descriptions
 * conflict even inside one process, so two struct img_lock on one file
 * stand for two processes.  The bytes held are read back with F_OFD_GETLK
 * from a third description; the messages go to stderr.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "imglock.h"

#include "kselftest_harness.h"

/* The IMG_PERM_* bits whose lock bytes at @base + i anyone holds. */
static int held(const char *file, int base)
{
	int bits = 0;
	int fd = open(file, O_RDONLY), i;

	for (i = 0; i < 4; i++) {
		struct flock fl = {
			.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = base + i, .l_len = 1,
		};

		if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
			bits |= 1U << i;
	}
	close(fd);
	return bits;
}

#define R	(int)IMG_PERM_CONSISTENT_READ
#define W	(int)IMG_PERM_WRITE
#define Z	(int)IMG_PERM_RESIZE

FIXTURE(lock) {
	char file[64];
	struct img_lock a, b;
};

FIXTURE_SETUP(lock)
{
	int fd;

	snprintf(self->file, sizeof(self->file), "/tmp/imglock-test.XXXXXX");
	fd = mkstemp(self->file);
	ASSERT_LE(0, fd);
	close(fd);
	ASSERT_EQ(0, img_lock_open(&self->a, self->file));
	ASSERT_EQ(0, img_lock_open(&self->b, self->file));
}

FIXTURE_TEARDOWN(lock)
{
	img_lock_close(&self->a);
	img_lock_close(&self->b);
	unlink(self->file);
}

/* A qcow2 writer's set: bytes 100, 101, 103 and 201, 203. */
TEST_F(lock, writer_bytes)
{
	ASSERT_EQ(0, img_lock_set(&self->a, R | W | Z, W | Z));
	ASSERT_EQ(R | W | Z, held(self->file, 100));
	ASSERT_EQ(W | Z, held(self->file, 200));
	img_lock_close(&self->a);
	ASSERT_EQ(0, held(self->file, 100) | held(self->file, 200));
}

/* Readers share; a writer is refused by a reader's refusal, and back. */
TEST_F(lock, readers_share_writers_do_not)
{
	ASSERT_EQ(0, img_lock_set(&self->a, R, W | Z));
	ASSERT_EQ(0, img_lock_set(&self->b, R, W | Z));
	ASSERT_EQ(-EBUSY, img_lock_set(&self->b, R | W | Z, W | Z));
	/* The refused change left b as it was. */
	ASSERT_EQ(R, (int)self->b.use);
	ASSERT_EQ(W | Z, (int)self->b.unshare);
	img_lock_close(&self->a);
	ASSERT_EQ(R, held(self->file, 100));
	ASSERT_EQ(0, img_lock_set(&self->b, R | W | Z, W | Z));
	ASSERT_EQ(0, img_lock_open(&self->a, self->file));
	ASSERT_EQ(-EBUSY, img_lock_set(&self->a, R, W | Z));
	ASSERT_EQ(0, img_lock_set(&self->a, R, 0));
}

/* A change of role drops only what the new role lacks, after the check. */
TEST_F(lock, role_change)
{
	ASSERT_EQ(0, img_lock_set(&self->a, R | W | Z, W | Z));
	/* A writer becoming a backing file: write dropped, refusals kept. */
	ASSERT_EQ(0, img_lock_set(&self->a, R, W | Z));
	ASSERT_EQ(R, held(self->file, 100));
	ASSERT_EQ(W | Z, held(self->file, 200));
	/* Now another reader fits; then the old writer cannot come back. */
	ASSERT_EQ(0, img_lock_set(&self->b, R, W | Z));
	ASSERT_EQ(-EBUSY, img_lock_set(&self->a, R | W | Z, W | Z));
	ASSERT_EQ(R, held(self->file, 100));
	ASSERT_EQ(W | Z, held(self->file, 200));
}

/* Locks taken on a descriptor itself go with its close. */
TEST_F(lock, fd_locks)
{
	int fd = open(self->file, O_RDWR);

	ASSERT_EQ(0, img_lock_fd(fd, self->file, W | Z, Z));
	ASSERT_EQ(-EBUSY, img_lock_set(&self->a, R, W));
	close(fd);
	ASSERT_EQ(0, img_lock_set(&self->a, R, W));
}

TEST_HARNESS_MAIN
