// SPDX-License-Identifier: GPL-2.0
/*
 * The raw target (targets/raw.c) and the generic target code it goes
 * through (targets/tgt.c), on temporary files, with O_DIRECT and buffered.
 * Each target call runs in a coroutine through exec_run_sync(), as the
 * one-shot verbs do; the file itself, read with plain pread(), is the
 * oracle.
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

#include "exec.h"
#include "tgt.h"
#include "util.h"

#include "kselftest_harness.h"

/* Signed, to compare with the int64_t results; cast for the unsigned caps. */
#define KiB		1024LL
#define MiB		(1024LL * 1024)
#define FILE_BYTES	(8 * MiB)
#define MAX_IO		(512 * KiB)

/* One target call, run in a coroutine. */
enum tgt_call_kind {
	CALL_READ,
	CALL_WRITE,
	CALL_FLUSH,
	CALL_DISCARD,
	CALL_WRITE_ZEROES,
	CALL_STATUS,
};

struct tgt_call {
	enum tgt_call_kind kind;
	struct tgt *t;
	void *buf;
	uint64_t off, len;
	unsigned int flags;
	struct tgt_extent ext;
	int64_t ret;
};

static int tgt_call_fn(void *arg)
{
	struct tgt_call *c = arg;
	struct tgt *t = c->t;

	switch (c->kind) {
	case CALL_READ:
		c->ret = t->ops->read(t, c->buf, c->len, c->off);
		break;
	case CALL_WRITE:
		c->ret = t->ops->write(t, c->buf, c->len, c->off, c->flags);
		break;
	case CALL_FLUSH:
		c->ret = t->ops->flush(t);
		break;
	case CALL_DISCARD:
		c->ret = t->ops->discard(t, c->off, c->len);
		break;
	case CALL_WRITE_ZEROES:
		c->ret = t->ops->write_zeroes(t, c->off, c->len, c->flags);
		break;
	case CALL_STATUS:
		c->ret = t->ops->block_status(t, c->off, c->len, &c->ext);
		break;
	}
	return 0;
}

static int64_t tgt_call(struct tgt_call *c)
{
	int ret = exec_run_sync(tgt_call_fn, c);

	return ret ? ret : c->ret;
}

static int64_t t_read(struct tgt *t, void *buf, uint64_t len, uint64_t off)
{
	struct tgt_call c = { .kind = CALL_READ, .t = t, .buf = buf, .off = off,
			      .len = len };

	return tgt_call(&c);
}

static int64_t t_write(struct tgt *t, const void *buf, uint64_t len, uint64_t off,
		       unsigned int flags)
{
	struct tgt_call c = { .kind = CALL_WRITE, .t = t, .buf = (void *)buf,
			      .off = off, .len = len, .flags = flags };

	return tgt_call(&c);
}

static int64_t t_simple(enum tgt_call_kind kind, struct tgt *t, uint64_t off,
			uint64_t len)
{
	struct tgt_call c = { .kind = kind, .t = t, .off = off, .len = len };

	return tgt_call(&c);
}

static int64_t t_status(struct tgt *t, uint64_t off, uint64_t len,
			struct tgt_extent *ext)
{
	struct tgt_call c = { .kind = CALL_STATUS, .t = t, .off = off, .len = len };
	int64_t ret = tgt_call(&c);

	*ext = c.ext;
	return ret;
}

/* stderr of a call, captured in a temporary file. */
struct capture {
	int saved_fd, fd;
	char text[2048];
	int lines;
};

static int capture_begin(struct capture *c)
{
	char path[] = "/tmp/imgblk-raw-err-XXXXXX";

	memset(c, 0, sizeof(*c));
	fflush(stderr);
	c->fd = mkstemp(path);
	if (c->fd < 0)
		return -errno;
	unlink(path);
	c->saved_fd = dup(2);
	if (c->saved_fd < 0 || dup2(c->fd, 2) < 0)
		return -errno;
	return 0;
}

static void capture_end(struct capture *c)
{
	ssize_t n, i;

	fflush(stderr);
	dup2(c->saved_fd, 2);
	close(c->saved_fd);
	n = pread(c->fd, c->text, sizeof(c->text) - 1, 0);
	close(c->fd);
	c->text[n > 0 ? n : 0] = '\0';
	for (i = 0; i < n; i++)
		c->lines += c->text[i] == '\n';
}

/* tgt_open_file() with its stderr captured. */
static int open_captured(struct tgt *t, const char *file, const char *fmt,
			 unsigned int flags, struct capture *err)
{
	int ret;

	memset(t, 0, sizeof(*t));
	if (capture_begin(err))
		return -999;
	ret = tgt_open_file(t, file, fmt, flags);
	capture_end(err);
	return ret;
}

static unsigned char pattern_byte(uint64_t off, unsigned int seed)
{
	return (unsigned char)((off >> 9) * 13 + (off & 511) + seed * 101 + 1);
}

static void fill_pattern(unsigned char *buf, uint64_t len, uint64_t off,
			 unsigned int seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		buf[i] = pattern_byte(off + i, seed);
}

/* Index of the first byte of @buf that breaks the pattern, or -1. */
static int64_t check_pattern(const unsigned char *buf, uint64_t len, uint64_t off,
			     unsigned int seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		if (buf[i] != pattern_byte(off + i, seed))
			return i;
	return -1;
}

/* Allocated blocks of @path, in 512-byte units. */
static long long file_blocks(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : (long long)st.st_blocks;
}

/* True if O_DIRECT works for a file in @dir. */
static bool dir_takes_o_direct(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/odirect-probe", dir);
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return fd >= 0;
}

FIXTURE(raw) {
	char dir[PATH_MAX / 2];
	char path[PATH_MAX];	/* the image, FILE_BYTES, sparse */
	struct tgt t;
	bool opened;
	unsigned int lbs;	/* logical block size of the opened target */
	int oracle_fd;		/* plain buffered fd on the image */
	unsigned char *buf, *buf2;
};

FIXTURE_VARIANT(raw) {
	unsigned int flags;
};

FIXTURE_VARIANT_ADD(raw, direct) { .flags = 0 };
FIXTURE_VARIANT_ADD(raw, buffered) { .flags = TGT_O_BUFFERED };

/*
 * A temporary directory where the variant's I/O mode works: O_DIRECT is
 * refused by some filesystems (tmpfs before 6.6, overlayfs on some).
 * Candidates: $TMPDIR, /var/tmp, /tmp, and the build directory.
 */
static bool make_test_dir(char *dir, size_t len, bool direct)
{
	char exe[PATH_MAX], *slash;
	const char *cands[4];
	unsigned int n = 0, i, up;
	ssize_t r;

	cands[n++] = getenv("TMPDIR");
	cands[n++] = "/var/tmp";
	cands[n++] = "/tmp";
	/* build/tests/host/raw -> build */
	r = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (r > 0) {
		exe[r] = '\0';
		for (up = 0; up < 3 && (slash = strrchr(exe, '/')); up++)
			*slash = '\0';
		cands[n++] = exe;
	}
	for (i = 0; i < n; i++) {
		if (!cands[i] || !*cands[i])
			continue;
		snprintf(dir, len, "%s/imgblk-raw-XXXXXX", cands[i]);
		if (!mkdtemp(dir))
			continue;
		if (!direct || dir_takes_o_direct(dir))
			return true;
		rmdir(dir);
	}
	return false;
}

FIXTURE_SETUP(raw)
{
	bool direct = !(variant->flags & TGT_O_BUFFERED);
	int fd;

	self->oracle_fd = -1;
	if (!make_test_dir(self->dir, sizeof(self->dir), direct))
		SKIP(return, "no temporary directory whose filesystem accepts %s",
		     direct ? "O_DIRECT" : "files");
	snprintf(self->path, sizeof(self->path), "%s/disk.img", self->dir);
	fd = open(self->path, O_RDWR | O_CREAT | O_EXCL, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, FILE_BYTES));
	close(fd);
	ASSERT_EQ(0, tgt_open_file(&self->t, self->path, "raw", variant->flags));
	self->opened = true;
	self->lbs = 1U << self->t.caps.logical_bs_shift;
	self->oracle_fd = open(self->path, O_RDWR);
	ASSERT_LE(0, self->oracle_fd);
	ASSERT_EQ(0, posix_memalign((void **)&self->buf, 4096, MAX_IO));
	ASSERT_EQ(0, posix_memalign((void **)&self->buf2, 4096, MAX_IO));
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	return remove(path);
}

FIXTURE_TEARDOWN(raw)
{
	if (self->opened)
		EXPECT_EQ(0, tgt_close(&self->t));
	if (self->oracle_fd >= 0)
		close(self->oracle_fd);
	free(self->buf);
	free(self->buf2);
	/* The tests leave a few files of their own in the directory. */
	if (self->dir[0] && nftw(self->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS))
		TH_LOG("could not remove %s", self->dir);
}

TEST_F(raw, caps)
{
	const struct tgt_caps *c = &self->t.caps;

	ASSERT_EQ(&raw_tgt_ops, self->t.ops);
	ASSERT_EQ((uint64_t)FILE_BYTES, c->size_bytes);
	ASSERT_GE(c->logical_bs_shift, 9U);
	ASSERT_LE(c->logical_bs_shift, 12U);
	ASSERT_GE(c->physical_bs_shift, c->logical_bs_shift);
	ASSERT_LE(c->physical_bs_shift, 12U);
	ASSERT_FALSE(c->read_only);
	ASSERT_TRUE(c->can_flush);
	ASSERT_TRUE(c->can_fua);
	ASSERT_TRUE(c->can_discard);
	ASSERT_TRUE(c->can_write_zeroes);
	ASSERT_EQ(1U << c->physical_bs_shift, c->discard_granularity_bytes);
	/* tgt_open() recorded the file's identity, for loop detection. */
	ASSERT_NE(0U, (unsigned int)self->t.st_ino);
}

/* Patterns written at several offsets read back, through us and directly. */
TEST_F(raw, write_read_patterns)
{
	const uint64_t lbs = self->lbs;
	const struct {
		uint64_t off, len;
	} io[] = {
		{ 0, lbs },
		{ lbs, 2 * lbs },
		{ 7 * lbs, 64 * KiB },
		{ MiB - 4096, 8192 },		/* across a MiB boundary */
		{ 3 * MiB, MAX_IO },
		{ FILE_BYTES - 128 * KiB, 64 * KiB },
		{ FILE_BYTES - lbs, lbs },	/* the last block */
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(io); i++) {
		fill_pattern(self->buf, io[i].len, io[i].off, i);
		ASSERT_EQ((int64_t)io[i].len,
			  t_write(&self->t, self->buf, io[i].len, io[i].off, 0))
			TH_LOG("write %u", i);
	}
	for (i = 0; i < ARRAY_SIZE(io); i++) {
		memset(self->buf, 0, io[i].len);
		ASSERT_EQ((int64_t)io[i].len,
			  t_read(&self->t, self->buf, io[i].len, io[i].off));
		ASSERT_EQ(-1, check_pattern(self->buf, io[i].len, io[i].off, i))
			TH_LOG("read %u through the target", i);
		ASSERT_EQ((ssize_t)io[i].len,
			  pread(self->oracle_fd, self->buf2, io[i].len, io[i].off));
		ASSERT_EQ(-1, check_pattern(self->buf2, io[i].len, io[i].off, i))
			TH_LOG("read %u from the file", i);
	}
	/* What was never written reads as zeros. */
	ASSERT_EQ(64 * KiB, t_read(&self->t, self->buf, 64 * KiB, 5 * MiB));
	ASSERT_TRUE(buf_is_zero(self->buf, 64 * KiB));
	/* The file did not grow. */
	ASSERT_EQ((off_t)FILE_BYTES, lseek(self->oracle_fd, 0, SEEK_END));
}

TEST_F(raw, fua_write)
{
	fill_pattern(self->buf, 64 * KiB, MiB, 9);
	ASSERT_EQ(64 * KiB, t_write(&self->t, self->buf, 64 * KiB, MiB, TGT_W_FUA));
	ASSERT_EQ(64 * KiB, pread(self->oracle_fd, self->buf2, 64 * KiB, MiB));
	ASSERT_EQ(-1, check_pattern(self->buf2, 64 * KiB, MiB, 9));
}

TEST_F(raw, flush)
{
	fill_pattern(self->buf, 4096, 0, 3);
	ASSERT_EQ(4096, t_write(&self->t, self->buf, 4096, 0, 0));
	ASSERT_EQ(0, t_simple(CALL_FLUSH, &self->t, 0, 0));
	/* Flushing with nothing dirty is fine too. */
	ASSERT_EQ(0, t_simple(CALL_FLUSH, &self->t, 0, 0));
}

TEST_F(raw, discard_punches_hole)
{
	struct tgt_extent ext;
	long long before, after;
	uint64_t off;

	for (off = 2 * MiB; off < 3 * MiB; off += MAX_IO) {
		fill_pattern(self->buf, MAX_IO, off, 5);
		ASSERT_EQ(MAX_IO, t_write(&self->t, self->buf, MAX_IO, off, 0));
	}
	ASSERT_EQ(0, t_simple(CALL_FLUSH, &self->t, 0, 0));
	before = file_blocks(self->path);
	ASSERT_GE(before, (long long)(MiB / 512));

	ASSERT_EQ(0, t_simple(CALL_DISCARD, &self->t, 2 * MiB, MiB));
	after = file_blocks(self->path);
	/* The whole MiB went back to the filesystem. */
	ASSERT_LE(after, before - (long long)(MiB / 512));
	ASSERT_EQ(MAX_IO, t_read(&self->t, self->buf, MAX_IO, 2 * MiB));
	ASSERT_TRUE(buf_is_zero(self->buf, MAX_IO));
	ASSERT_EQ((int64_t)MiB, t_status(&self->t, 2 * MiB, MiB, &ext));
	ASSERT_TRUE((bool)(ext.flags & TGT_EXT_ZERO));
	ASSERT_FALSE((bool)(ext.flags & TGT_EXT_DATA));
	/* The size stays: KEEP_SIZE. */
	ASSERT_EQ((off_t)FILE_BYTES, lseek(self->oracle_fd, 0, SEEK_END));
}

TEST_F(raw, write_zeroes)
{
	const uint64_t off = 4 * MiB, len = MAX_IO;

	fill_pattern(self->buf, len, off, 7);
	ASSERT_EQ((int64_t)len, t_write(&self->t, self->buf, len, off, 0));
	/* Zero the middle half; the quarters on either side must stay. */
	ASSERT_EQ(0, t_simple(CALL_WRITE_ZEROES, &self->t, off + len / 4, len / 2));
	ASSERT_EQ((int64_t)len, t_read(&self->t, self->buf, len, off));
	ASSERT_EQ(-1, check_pattern(self->buf, len / 4, off, 7));
	ASSERT_TRUE(buf_is_zero(self->buf + len / 4, len / 2));
	ASSERT_EQ(-1, check_pattern(self->buf + 3 * len / 4, len / 4,
				    off + 3 * len / 4, 7));
	/* And the file says the same. */
	ASSERT_EQ((ssize_t)len, pread(self->oracle_fd, self->buf2, len, off));
	ASSERT_EQ(0, memcmp(self->buf, self->buf2, len));
	ASSERT_EQ((off_t)FILE_BYTES, lseek(self->oracle_fd, 0, SEEK_END));
}

TEST_F(raw, block_status)
{
	struct tgt_extent ext;
	const uint64_t data_off = MiB, data_len = 64 * KiB;

	/* A fresh sparse file is one hole. */
	ASSERT_EQ((int64_t)FILE_BYTES, t_status(&self->t, 0, FILE_BYTES, &ext));
	ASSERT_EQ(TGT_EXT_ALLOCATED | TGT_EXT_OFFSET_VALID | TGT_EXT_ZERO, ext.flags);
	ASSERT_EQ(0ULL, ext.host_off);

	fill_pattern(self->buf, data_len, data_off, 1);
	ASSERT_EQ((int64_t)data_len, t_write(&self->t, self->buf, data_len, data_off, 0));
	ASSERT_EQ(0, t_simple(CALL_FLUSH, &self->t, 0, 0));

	/* Hole up to the data... */
	ASSERT_EQ((int64_t)data_off, t_status(&self->t, 0, FILE_BYTES, &ext));
	ASSERT_TRUE((bool)(ext.flags & TGT_EXT_ZERO));
	ASSERT_FALSE((bool)(ext.flags & TGT_EXT_DATA));
	/* ...the data... */
	ASSERT_EQ((int64_t)data_len, t_status(&self->t, data_off,
					       FILE_BYTES - data_off, &ext));
	ASSERT_EQ(TGT_EXT_ALLOCATED | TGT_EXT_OFFSET_VALID | TGT_EXT_DATA, ext.flags);
	ASSERT_EQ(data_off, ext.host_off);
	/* ...asked from inside it, limited by len... */
	ASSERT_EQ(4096, t_status(&self->t, data_off + 4096, 4096, &ext));
	ASSERT_TRUE((bool)(ext.flags & TGT_EXT_DATA));
	ASSERT_EQ(data_off + 4096, ext.host_off);
	/* ...and the hole after it, to the end. */
	ASSERT_EQ((int64_t)(FILE_BYTES - data_off - data_len),
		  t_status(&self->t, data_off + data_len,
			   FILE_BYTES - data_off - data_len, &ext));
	ASSERT_TRUE((bool)(ext.flags & TGT_EXT_ZERO));
	ASSERT_FALSE((bool)(ext.flags & TGT_EXT_DATA));
}

/* Opened read-only: caps say so, and nothing can write through it. */
TEST_F(raw, read_only)
{
	struct tgt ro;
	struct capture err;

	fill_pattern(self->buf, 4096, 0, 2);
	ASSERT_EQ(4096, pwrite(self->oracle_fd, self->buf, 4096, 0));
	ASSERT_EQ(0, fsync(self->oracle_fd));

	ASSERT_EQ(0, open_captured(&ro, self->path, "raw",
				   variant->flags | TGT_O_RDONLY, &err));
	ASSERT_EQ(0, err.lines);
	EXPECT_TRUE(ro.caps.read_only);
	EXPECT_EQ(4096, t_read(&ro, self->buf2, 4096, 0));
	EXPECT_EQ(-1, check_pattern(self->buf2, 4096, 0, 2));
	EXPECT_EQ(-EBADF, t_write(&ro, self->buf, 4096, 0, 0));
	EXPECT_EQ(-EBADF, t_simple(CALL_DISCARD, &ro, 0, 4096));
	EXPECT_EQ(-EBADF, t_simple(CALL_WRITE_ZEROES, &ro, 0, 4096));
	ASSERT_EQ(0, tgt_close(&ro));
	/* The data is untouched. */
	ASSERT_EQ(4096, pread(self->oracle_fd, self->buf2, 4096, 0));
	ASSERT_EQ(-1, check_pattern(self->buf2, 4096, 0, 2));
}

/* A file that is not a whole number of blocks ends at its last whole block. */
TEST_F(raw, size_rounding)
{
	static const off_t sizes[] = { 40960 + 700, 40960 + 4095, 512 * 3 + 1, 4096 };
	char path[PATH_MAX];
	struct capture err;
	struct tgt t;
	unsigned int i;
	int fd;

	snprintf(path, sizeof(path), "%s/odd.img", self->dir);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint64_t lbs;

		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, ftruncate(fd, sizes[i]));
		close(fd);
		ASSERT_EQ(0, open_captured(&t, path, "raw", variant->flags, &err))
			TH_LOG("%lld bytes: %s", (long long)sizes[i], err.text);
		lbs = 1ULL << t.caps.logical_bs_shift;
		EXPECT_EQ(ALIGN_DOWN((uint64_t)sizes[i], lbs), t.caps.size_bytes)
			TH_LOG("%lld bytes, %llu-byte blocks", (long long)sizes[i],
			       (unsigned long long)lbs);
		EXPECT_EQ(0ULL, t.caps.size_bytes % 512);
		ASSERT_EQ(0, tgt_close(&t));
	}

	/* Smaller than one block: refused, with one line. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 100));
	close(fd);
	ASSERT_EQ(-EINVAL, open_captured(&t, path, "raw", variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_NE(NULL, strstr(err.text, path));
}

/* What cannot be opened fails with -errno and one line naming the file. */
TEST_F(raw, bad_files)
{
	char missing[PATH_MAX];
	struct capture err;
	struct tgt t;

	snprintf(missing, sizeof(missing), "%s/no-such.img", self->dir);

	ASSERT_EQ(-ENOENT, open_captured(&t, missing, "raw", variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_NE(NULL, strstr(err.text, missing));

	/* Probing first: still one line, still a negative errno. */
	ASSERT_GT(0, open_captured(&t, missing, NULL, variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_NE(NULL, strstr(err.text, missing));

	/* A directory, read-write: the kernel refuses. */
	ASSERT_EQ(-EISDIR, open_captured(&t, self->dir, "raw", variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_NE(NULL, strstr(err.text, self->dir));

	/* A directory, read-only: opens, then refused as not a file. */
	ASSERT_EQ(-EINVAL, open_captured(&t, self->dir, "raw",
					 variant->flags | TGT_O_RDONLY, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_NE(NULL, strstr(err.text, self->dir));

	/* An unknown format, and a target that is not a format. */
	ASSERT_EQ(-EINVAL, open_captured(&t, self->path, "qcow7", variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_EQ(-EINVAL, open_captured(&t, self->path, "null", variant->flags, &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
}

TEST_F(raw, probe)
{
	char empty[PATH_MAX], missing[PATH_MAX];
	struct capture err;
	struct tgt t;
	int fd;

	ASSERT_EQ(&raw_tgt_ops, tgt_probe_file(self->path));

	/* Data that looks like nothing in particular is raw. */
	memset(self->buf, 'Q', 4096);
	ASSERT_EQ(4096, pwrite(self->oracle_fd, self->buf, 4096, 0));
	ASSERT_EQ(&raw_tgt_ops, tgt_probe_file(self->path));

	snprintf(empty, sizeof(empty), "%s/empty.img", self->dir);
	fd = open(empty, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, fd);
	close(fd);
	ASSERT_EQ(&raw_tgt_ops, tgt_probe_file(empty));

	snprintf(missing, sizeof(missing), "%s/no-such.img", self->dir);
	ASSERT_EQ(0, capture_begin(&err));
	ASSERT_EQ(NULL, tgt_probe_file(missing));
	capture_end(&err);
	ASSERT_EQ(1, err.lines);

	/* tgt_open_file() without a format probes too. */
	ASSERT_EQ(0, open_captured(&t, self->path, NULL, variant->flags, &err));
	ASSERT_EQ(&raw_tgt_ops, t.ops);
	ASSERT_EQ(0, tgt_close(&t));
}

/* Backing chains, with raw images: loops, depth, reads past the end. */

struct backing_call {
	struct tgt *overlay;
	const char *name;
	int ret;
};

static int backing_fn(void *arg)
{
	struct backing_call *c = arg;

	c->ret = tgt_open_backing(c->overlay, c->name, "raw");
	return 0;
}

static int open_backing(struct tgt *overlay, const char *name, struct capture *err)
{
	struct backing_call c = { .overlay = overlay, .name = name };
	int ret;

	if (capture_begin(err))
		return -999;
	ret = exec_run_sync(backing_fn, &c);
	capture_end(err);
	return ret ? ret : c.ret;
}

struct read_backing_call {
	struct tgt *b;
	void *buf;
	uint32_t len;
	uint64_t off;
	int ret;
};

static int read_backing_fn(void *arg)
{
	struct read_backing_call *c = arg;

	c->ret = tgt_read_backing(c->b, c->buf, c->len, c->off);
	return 0;
}

TEST_F(raw, backing_chain)
{
	char base[PATH_MAX];
	struct read_backing_call rc;
	struct capture err;
	struct tgt *b;
	unsigned int saved;
	int fd;

	/* The image as its own backing file: a loop. */
	ASSERT_EQ(-ELOOP, open_backing(&self->t, "disk.img", &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);
	ASSERT_EQ(NULL, self->t.backing);

	/* A missing backing file: -ENOENT, one line. */
	ASSERT_EQ(-ENOENT, open_backing(&self->t, "absent.img", &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);

	/* A real one, named relative to the overlay's directory, 1 MiB long. */
	snprintf(base, sizeof(base), "%s/base.img", self->dir);
	fd = open(base, O_RDWR | O_CREAT, 0600);
	ASSERT_LE(0, fd);
	fill_pattern(self->buf, 4096, MiB - 4096, 4);
	ASSERT_EQ(4096, pwrite(fd, self->buf, 4096, MiB - 4096));
	close(fd);
	ASSERT_EQ(0, open_backing(&self->t, "base.img", &err));
	ASSERT_EQ(0, err.lines) TH_LOG("%s", err.text);
	b = self->t.backing;
	ASSERT_NE(NULL, b);
	ASSERT_STREQ(base, b->cfg.file);
	ASSERT_EQ(1U, b->chain_depth);
	ASSERT_EQ(&self->t, b->overlay);
	ASSERT_TRUE(b->caps.read_only);
	ASSERT_EQ((uint64_t)MiB, b->caps.size_bytes);
	/*
	 * The backing file inherits the caching mode, is never written, and
	 * its name is the image's, not the user's.
	 */
	ASSERT_EQ(TGT_O_RDONLY | TGT_O_FROM_IMAGE | (variant->flags & TGT_O_BUFFERED),
		  b->cfg.open_flags);

	/* The overlay as the backing file's backing file: a loop too. */
	ASSERT_EQ(-ELOOP, open_backing(b, "disk.img", &err));
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);

	/* Too deep a chain is refused like a loop. */
	saved = b->chain_depth;
	b->chain_depth = TGT_MAX_CHAIN - 1;
	ASSERT_EQ(-ELOOP, open_backing(b, "disk.img", &err));
	b->chain_depth = saved;
	ASSERT_EQ(1, err.lines) TH_LOG("%s", err.text);

	/* A read straddling the backing file's end: data, then zeros. */
	memset(self->buf2, 0xff, 8192);
	rc = (struct read_backing_call){ b, self->buf2, 8192, MiB - 4096, 0 };
	ASSERT_EQ(0, exec_run_sync(read_backing_fn, &rc));
	ASSERT_EQ(8192, rc.ret);
	ASSERT_EQ(-1, check_pattern(self->buf2, 4096, MiB - 4096, 4));
	ASSERT_TRUE(buf_is_zero(self->buf2 + 4096, 4096));
	/* Wholly past it: all zeros. */
	memset(self->buf2, 0xff, 4096);
	rc = (struct read_backing_call){ b, self->buf2, 4096, 4 * MiB, 0 };
	ASSERT_EQ(0, exec_run_sync(read_backing_fn, &rc));
	ASSERT_EQ(4096, rc.ret);
	ASSERT_TRUE(buf_is_zero(self->buf2, 4096));
	/* The fixture's tgt_close() closes and frees the chain. */
}

TEST(resolve_path)
{
	static const struct {
		const char *base, *name, *out;
	} cases[] = {
		{ "/a/b/over.qcow2", "base.img", "/a/b/base.img" },
		{ "/a/b/over.qcow2", "/abs/base.img", "/abs/base.img" },
		{ "/a/b/over.qcow2", "../c/base.img", "/a/b/../c/base.img" },
		{ "rel/over.qcow2", "base.img", "rel/base.img" },
		{ "over.qcow2", "base.img", "base.img" },
		{ "over.qcow2", "/abs/base.img", "/abs/base.img" },
		{ "/over.qcow2", "base.img", "/base.img" },
		{ "/a/b/over.qcow2", "sub/base.img", "/a/b/sub/base.img" },
	};
	char out[PATH_MAX], small[8];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		tgt_resolve_path(cases[i].base, cases[i].name, out, sizeof(out));
		ASSERT_STREQ(cases[i].out, out);
	}
	/* Too long for the buffer: truncated and terminated, never overrun. */
	memset(small, 'x', sizeof(small));
	tgt_resolve_path("/a/b/over", "base.img", small, 6);
	ASSERT_STREQ("/a/b/", small);
	ASSERT_EQ('x', small[6]);
}

TEST_HARNESS_MAIN
