// SPDX-License-Identifier: GPL-2.0
/*
 * Passphrases by image (lib/secret.c): an unqualified --key-file is for
 * the top image until a server binds it to the image it was added with
 * (secret_bind_unnamed()); from then on it unlocks that image at any
 * depth of the chain, as after an external snapshot, and the state file's
 * record of it (secret_key_file_args()) reads back to the same binding,
 * '=' in the image's path included.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secret.h"

#include "kselftest_harness.h"

FIXTURE(secret) {
	char dir[64];
	char key[PATH_MAX], img[PATH_MAX], other[PATH_MAX];
};

static int touch(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, data, strlen(data));
	close(fd);
	return n == (ssize_t)strlen(data) ? 0 : -EIO;
}

FIXTURE_SETUP(secret)
{
	char sub[128];

	strcpy(self->dir, "/tmp/imgblk-secret.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	/* The image lives under a directory whose name holds '='. */
	snprintf(sub, sizeof(sub), "%s/a=b", self->dir);
	ASSERT_EQ(0, mkdir(sub, 0700));
	snprintf(self->key, sizeof(self->key), "%s/key", self->dir);
	snprintf(self->img, sizeof(self->img), "%s/enc.qcow2", sub);
	snprintf(self->other, sizeof(self->other), "%s/new.qcow2", self->dir);
	ASSERT_EQ(0, touch(self->key, "pass phrase"));
	ASSERT_EQ(0, touch(self->img, ""));
	ASSERT_EQ(0, touch(self->other, ""));
}

FIXTURE_TEARDOWN(secret)
{
	char cmd[128];

	secret_wipe_all();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", self->dir);
	if (system(cmd))
		TH_LOG("cannot remove %s", self->dir);
}

TEST_F(secret, unqualified_key_is_for_the_top)
{
	const struct secret *s;

	ASSERT_EQ(0, secret_add_key_file(self->key));
	s = secret_for_image(self->img, 1);
	ASSERT_NE(NULL, s);
	EXPECT_EQ(11U, s->len);
	EXPECT_EQ(NULL, secret_for_image(self->img, 0));
}

/*
 * Bound to the image added, the key follows that image down the chain
 * (an external snapshot put NEW over it) and no longer goes to whatever
 * is the top.
 */
TEST_F(secret, bound_key_follows_its_image)
{
	char args[2 * PATH_MAX], want[2 * PATH_MAX + 2];

	ASSERT_EQ(0, secret_add_key_file(self->key));
	ASSERT_EQ(0, secret_bind_unnamed(self->img));
	EXPECT_NE(NULL, secret_for_image(self->img, 0));
	EXPECT_NE(NULL, secret_for_image(self->img, 1));
	EXPECT_EQ(NULL, secret_for_image(self->other, 1));

	/* What the state file keeps, and what `recover` makes of it. */
	ASSERT_EQ(0, secret_key_file_args(args, sizeof(args)));
	snprintf(want, sizeof(want), "%s=%s", self->img, self->key);
	EXPECT_STREQ(want, args);
	secret_wipe_all();
	ASSERT_EQ(0, secret_add_key_file(args));
	EXPECT_NE(NULL, secret_for_image(self->img, 0));
	EXPECT_EQ(NULL, secret_for_image(self->other, 1));
}

/* A key already named by image, or given by --object, stays as it is. */
TEST_F(secret, bind_leaves_named_keys)
{
	char arg[2 * PATH_MAX + 2], spec[PATH_MAX + 32];

	snprintf(arg, sizeof(arg), "%s=%s", self->other, self->key);
	ASSERT_EQ(0, secret_add_key_file(arg));
	snprintf(spec, sizeof(spec), "secret,id=s0,file=%s", self->key);
	ASSERT_EQ(0, secret_add_object(spec));
	ASSERT_EQ(0, secret_bind_unnamed(self->img));
	EXPECT_NE(NULL, secret_for_image(self->other, 0));
	EXPECT_EQ(NULL, secret_for_image(self->img, 1));
	EXPECT_NE(NULL, secret_by_id("s0"));
}

TEST_HARNESS_MAIN
