// SPDX-License-Identifier: GPL-2.0
/*
 * State files (ublksrv/state.c): how `list`, `del` and `recover` find the
 * devices that other invocations added.  Everything runs in a temporary
 * IMGBLK_RUN_DIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"
#include "ublk.h"
#include "util.h"

#include "kselftest_harness.h"

FIXTURE(state) {
	char top[PATH_MAX / 2];
	char run[PATH_MAX / 2 + 8];	/* IMGBLK_RUN_DIR, created by the first write */
};

FIXTURE_SETUP(state)
{
	snprintf(self->top, sizeof(self->top), "/tmp/imgblk-state-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->top));
	snprintf(self->run, sizeof(self->run), "%s/run", self->top);
	ASSERT_EQ(0, setenv("IMGBLK_RUN_DIR", self->run, 1));
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	return remove(path);
}

FIXTURE_TEARDOWN(state)
{
	if (nftw(self->top, remove_entry, 8, FTW_DEPTH | FTW_PHYS))
		TH_LOG("could not remove %s", self->top);
}

static struct ublk_state sample(unsigned int id)
{
	struct ublk_state s;

	memset(&s, 0, sizeof(s));
	s.id = id;
	snprintf(s.target, sizeof(s.target), "raw");
	snprintf(s.file, sizeof(s.file), "/images/disk %u=a b.img", id);
	s.queues = 4;
	s.depth = 64;
	s.pid = 12345;
	s.read_only = true;
	s.open_flags = TGT_O_RDONLY | TGT_O_BUFFERED;
	s.size_bytes = (1ULL << 40) + 512;
	s.recoverable = true;
	s.pinned_bytes = 3ULL << 20;
	return s;
}

/* Writes a file of @text at @name in the run directory. */
static int put_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		ret = -EIO;
	close(fd);
	return ret;
}

TEST_F(state, dir_from_env)
{
	ASSERT_STREQ(self->run, ublk_state_dir());
	/* Empty means unset. */
	ASSERT_EQ(0, setenv("IMGBLK_RUN_DIR", "", 1));
	ASSERT_STREQ(UBLK_STATE_DIR, ublk_state_dir());
	ASSERT_EQ(0, unsetenv("IMGBLK_RUN_DIR"));
	ASSERT_STREQ(UBLK_STATE_DIR, ublk_state_dir());
}

TEST_F(state, round_trip)
{
	struct ublk_state in = sample(3), out;
	char path[PATH_MAX];
	struct stat st;

	ASSERT_EQ(0, ublk_state_write(&in));
	/* The run directory was created, and no temporary file is left. */
	ASSERT_EQ(0, stat(self->run, &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	snprintf(path, sizeof(path), "%s/3.state.tmp", self->run);
	ASSERT_NE(0, access(path, F_OK));

	memset(&out, 0xa5, sizeof(out));
	ASSERT_EQ(0, ublk_state_read(3, &out));
	ASSERT_EQ(in.id, out.id);
	ASSERT_STREQ(in.target, out.target);
	ASSERT_STREQ(in.file, out.file);
	ASSERT_EQ(in.queues, out.queues);
	ASSERT_EQ(in.depth, out.depth);
	ASSERT_EQ(in.pid, out.pid);
	ASSERT_EQ(in.read_only, out.read_only);
	ASSERT_EQ(in.open_flags, out.open_flags);
	ASSERT_EQ(in.size_bytes, out.size_bytes);
	ASSERT_EQ(in.recoverable, out.recoverable);
	ASSERT_EQ(in.pinned_bytes, out.pinned_bytes);

	ASSERT_EQ(0, ublk_state_remove(3));
	ASSERT_EQ(-ENOENT, ublk_state_read(3, &out));
	ASSERT_EQ(-ENOENT, ublk_state_remove(3));
}

/* Rewriting a device's state replaces it entirely. */
TEST_F(state, overwrite)
{
	struct ublk_state s = sample(0), out;

	ASSERT_EQ(0, ublk_state_write(&s));
	s.pid = 999;
	s.read_only = false;
	s.recoverable = false;
	snprintf(s.file, sizeof(s.file), "/other.img");
	ASSERT_EQ(0, ublk_state_write(&s));
	ASSERT_EQ(0, ublk_state_read(0, &out));
	ASSERT_EQ(999, out.pid);
	ASSERT_FALSE(out.read_only);
	ASSERT_FALSE(out.recoverable);
	ASSERT_STREQ("/other.img", out.file);
}

/* The longest file name a state can hold survives, byte for byte. */
TEST_F(state, long_file_name)
{
	struct ublk_state s = sample(9), out;

	memset(s.file, 'f', sizeof(s.file) - 1);
	s.file[0] = '/';
	s.file[sizeof(s.file) - 1] = '\0';
	ASSERT_EQ(0, ublk_state_write(&s));
	ASSERT_EQ(0, ublk_state_read(9, &out));
	ASSERT_STREQ(s.file, out.file);
	ASSERT_EQ(s.queues, out.queues);
	ASSERT_EQ(s.size_bytes, out.size_bytes);
}

TEST_F(state, missing)
{
	struct ublk_state out;
	unsigned int *ids = (unsigned int *)1;

	/* No run directory yet: no devices, not an error. */
	ASSERT_EQ(0, ublk_state_ids(&ids));
	ASSERT_EQ(NULL, ids);
	ASSERT_EQ(-ENOENT, ublk_state_read(1, &out));
	ASSERT_EQ(-ENOENT, ublk_state_remove(1));
}

/* A run directory whose parent is missing is an error, not a crash. */
TEST_F(state, unwritable_dir)
{
	struct ublk_state s = sample(1);
	char deep[PATH_MAX];

	snprintf(deep, sizeof(deep), "%s/no/such/dir", self->top);
	ASSERT_EQ(0, setenv("IMGBLK_RUN_DIR", deep, 1));
	ASSERT_EQ(-ENOENT, ublk_state_write(&s));
}

TEST_F(state, ids_sorted_and_filtered)
{
	static const unsigned int written[] = { 10, 2, 1048575, 0, 33 };
	static const unsigned int sorted[] = { 0, 2, 10, 33, 1048575 };
	unsigned int *ids, i;
	int n;

	for (i = 0; i < ARRAY_SIZE(written); i++) {
		struct ublk_state s = sample(written[i]);

		ASSERT_EQ(0, ublk_state_write(&s));
	}
	/* Not state files, or not of a device: ignored. */
	ASSERT_EQ(0, put_file(self->run, "7.state.tmp", "id=7\n"));
	ASSERT_EQ(0, put_file(self->run, "abc.state", "id=1\n"));
	ASSERT_EQ(0, put_file(self->run, "-1.state", "id=1\n"));
	ASSERT_EQ(0, put_file(self->run, "5.statex", "id=5\n"));
	ASSERT_EQ(0, put_file(self->run, ".state", "\n"));
	ASSERT_EQ(0, put_file(self->run, "99999999999.state", "\n"));
	ASSERT_EQ(0, put_file(self->run, "README", "hello\n"));

	n = ublk_state_ids(&ids);
	ASSERT_EQ((int)ARRAY_SIZE(sorted), n);
	for (i = 0; i < ARRAY_SIZE(sorted); i++)
		ASSERT_EQ(sorted[i], ids[i]);
	free(ids);

	ASSERT_EQ(0, ublk_state_remove(10));
	n = ublk_state_ids(&ids);
	ASSERT_EQ((int)ARRAY_SIZE(sorted) - 1, n);
	for (i = 0; i < (unsigned int)n; i++)
		ASSERT_NE(10U, ids[i]);
	free(ids);
}

/* Many devices: the id array grows past its first allocation. */
TEST_F(state, many_ids)
{
	unsigned int *ids, i;
	int n;

	for (i = 0; i < 100; i++) {
		struct ublk_state s = sample(99 - i);

		ASSERT_EQ(0, ublk_state_write(&s));
	}
	n = ublk_state_ids(&ids);
	ASSERT_EQ(100, n);
	for (i = 0; i < 100; i++)
		ASSERT_EQ(i, ids[i]);
	free(ids);
}

/* A hand-edited or damaged file reads as what it holds, never garbage. */
TEST_F(state, tolerant_reader)
{
	struct ublk_state out;

	ASSERT_EQ(0, mkdir(self->run, 0755));
	ASSERT_EQ(0, put_file(self->run, "4.state",
			      "garbage line\nqueues=2\nunknown=1\nfile=/x=y\ntarget=null"));
	memset(&out, 0xa5, sizeof(out));
	ASSERT_EQ(0, ublk_state_read(4, &out));
	ASSERT_EQ(4U, out.id);
	ASSERT_EQ(2U, out.queues);
	ASSERT_STREQ("/x=y", out.file);
	/* The last line had no newline. */
	ASSERT_STREQ("null", out.target);
	ASSERT_EQ(0U, out.depth);
	ASSERT_EQ(0, out.pid);
	ASSERT_FALSE(out.read_only);
	/* A file from before --pinned-buffers: recover uses the default. */
	ASSERT_EQ(UBLK_DEF_PINNED_BYTES, out.pinned_bytes);
}

TEST_HARNESS_MAIN
