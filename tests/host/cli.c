// SPDX-License-Identifier: GPL-2.0
/*
 * The command-line parsers (ublksrv/cmd_dev.c) and the number parsers
 * under them (lib/util.c).  The contract: valid input fills the options
 * with the documented defaults; bad input prints exactly one line on
 * stderr, saying what is wrong, and returns -EINVAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ublk.h"
#include "util.h"

#include "kselftest_harness.h"

#define MAX_ARGS	16

/* What a call printed on one stream. */
struct capture {
	int saved_fd;
	int fd;
	int target_fd;
	char text[4096];
	int lines;
};

/* Redirects @target_fd (1 or 2) into a temporary file.  Returns 0 or -errno. */
static int capture_begin(struct capture *c, int target_fd)
{
	char path[] = "/tmp/imgblk-cli-XXXXXX";

	memset(c, 0, sizeof(*c));
	c->target_fd = target_fd;
	fflush(target_fd == 1 ? stdout : stderr);
	c->fd = mkstemp(path);
	if (c->fd < 0)
		return -errno;
	unlink(path);
	c->saved_fd = dup(target_fd);
	if (c->saved_fd < 0 || dup2(c->fd, target_fd) < 0) {
		close(c->fd);
		return -errno;
	}
	return 0;
}

/* Restores the stream and reads what was written to it. */
static void capture_end(struct capture *c)
{
	ssize_t n;
	int i;

	fflush(c->target_fd == 1 ? stdout : stderr);
	dup2(c->saved_fd, c->target_fd);
	close(c->saved_fd);
	n = pread(c->fd, c->text, sizeof(c->text) - 1, 0);
	close(c->fd);
	if (n < 0)
		n = 0;
	c->text[n] = '\0';
	for (i = 0; i < n; i++)
		if (c->text[i] == '\n')
			c->lines++;
	/* A last line without a newline still counts. */
	if (n && c->text[n - 1] != '\n')
		c->lines++;
}

/* Copies a NULL-terminated list of strings into @av; returns argc. */
static int make_argv(const char *const *args, char **av)
{
	int argc = 0;

	while (args[argc] && argc < MAX_ARGS - 1) {
		av[argc] = (char *)args[argc];
		argc++;
	}
	av[argc] = NULL;
	return argc;
}

/* cli_parse_add() on @args, with its stderr captured into @err. */
static int parse_add(const char *const *args, struct ublk_add_opts *o,
		     struct capture *err)
{
	char *av[MAX_ARGS];
	int argc = make_argv(args, av), ret;

	if (capture_begin(err, 2))
		return -999;
	ret = cli_parse_add(argc, av, o);
	capture_end(err);
	return ret;
}

#define ARGS(...)	((const char *const[]){ __VA_ARGS__, NULL })

/* Valid add command lines. */

TEST(add_defaults)
{
	struct ublk_add_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_add(ARGS("add", "-t", "raw", "-f", "disk.img"), &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(&raw_tgt_ops, o.ops);
	ASSERT_STREQ("disk.img", o.cfg.file);
	ASSERT_EQ(-1, o.dev_id);
	ASSERT_EQ(1U, o.nr_queues);
	ASSERT_EQ(128U, o.depth);
	ASSERT_EQ(0U, o.cfg.open_flags);
	ASSERT_EQ(0ULL, o.cfg.size_bytes);
	ASSERT_FALSE(o.foreground);
}

TEST(add_short_options)
{
	struct ublk_add_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_add(ARGS("add", "-t", "raw", "-f", "/x/y.img", "-n", "7",
				    "-q", "4", "-d", "64", "-r", "--buffered"),
			       &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(7, o.dev_id);
	ASSERT_EQ(4U, o.nr_queues);
	ASSERT_EQ(64U, o.depth);
	ASSERT_EQ(TGT_O_RDONLY | TGT_O_BUFFERED, o.cfg.open_flags);
	ASSERT_STREQ("/x/y.img", o.cfg.file);
}

TEST(add_long_options)
{
	struct ublk_add_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_add(ARGS("add", "--type=raw", "--file", "f", "--number=0",
				    "--queues", "64", "--depth=4096", "--read-only",
				    "--foreground"),
			       &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(&raw_tgt_ops, o.ops);
	ASSERT_STREQ("f", o.cfg.file);
	ASSERT_EQ(0, o.dev_id);
	ASSERT_EQ(64U, o.nr_queues);
	ASSERT_EQ(4096U, o.depth);
	ASSERT_EQ(TGT_O_RDONLY, o.cfg.open_flags);
	ASSERT_TRUE(o.foreground);
}

/* The largest id, the smallest queue count and depth. */
TEST(add_limits)
{
	struct ublk_add_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_add(ARGS("add", "-t", "raw", "-f", "f", "-n", "1048575",
				    "-q", "1", "-d", "1"),
			       &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(1048575, o.dev_id);
	ASSERT_EQ(1U, o.nr_queues);
	ASSERT_EQ(1U, o.depth);
}

FIXTURE(add_size) {
	struct ublk_add_opts o;
};

FIXTURE_VARIANT(add_size) {
	const char *size;
	uint64_t bytes;
};

FIXTURE_VARIANT_ADD(add_size, bytes) { .size = "4096", .bytes = 4096 };
FIXTURE_VARIANT_ADD(add_size, sector) { .size = "512", .bytes = 512 };
FIXTURE_VARIANT_ADD(add_size, k) { .size = "4k", .bytes = 4096 };
FIXTURE_VARIANT_ADD(add_size, K) { .size = "64K", .bytes = 65536 };
FIXTURE_VARIANT_ADD(add_size, M) { .size = "100M", .bytes = 100ULL << 20 };
FIXTURE_VARIANT_ADD(add_size, MiB) { .size = "100MiB", .bytes = 100ULL << 20 };
FIXTURE_VARIANT_ADD(add_size, G) { .size = "1G", .bytes = 1ULL << 30 };
FIXTURE_VARIANT_ADD(add_size, GB) { .size = "2GB", .bytes = 2ULL << 30 };
FIXTURE_VARIANT_ADD(add_size, T) { .size = "1T", .bytes = 1ULL << 40 };
FIXTURE_VARIANT_ADD(add_size, TiB) { .size = "3TiB", .bytes = 3ULL << 40 };

FIXTURE_SETUP(add_size)
{
}

FIXTURE_TEARDOWN(add_size)
{
}

TEST_F(add_size, null)
{
	struct capture err;

	ASSERT_EQ(0, parse_add(ARGS("add", "-t", "null", "--size", variant->size),
			       &self->o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(&null_tgt_ops, self->o.ops);
	ASSERT_EQ(variant->bytes, self->o.cfg.size_bytes);
	ASSERT_EQ(NULL, self->o.cfg.file);
}

/* Without -t the file's content decides; a plain file is raw. */
TEST(add_probes_file)
{
	char path[] = "/tmp/imgblk-cli-img-XXXXXX";
	struct ublk_add_opts o;
	struct capture err;
	int fd = mkstemp(path);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 1 << 20));
	close(fd);
	EXPECT_EQ(0, parse_add(ARGS("add", "-f", path), &o, &err));
	EXPECT_EQ(0, err.lines);
	EXPECT_EQ(&raw_tgt_ops, o.ops);
	unlink(path);
}

TEST(add_help)
{
	struct ublk_add_opts o;
	struct capture out, err;
	char *av[MAX_ARGS];
	int argc = make_argv(ARGS("add", "--help"), av), ret;

	ASSERT_EQ(0, capture_begin(&err, 2));
	ASSERT_EQ(0, capture_begin(&out, 1));
	ret = cli_parse_add(argc, av, &o);
	capture_end(&out);
	capture_end(&err);
	ASSERT_EQ(CLI_HELP, ret);
	ASSERT_EQ(0, err.lines);
	ASSERT_EQ(0, strncmp(out.text, "usage: imgblk add", 17));
}

/* Invalid add command lines: -EINVAL and one line naming the problem. */

FIXTURE(add_bad) {
	struct ublk_add_opts o;
	struct capture err;
	int ret;
};

FIXTURE_VARIANT(add_bad) {
	const char *args[MAX_ARGS];
	/* A word the one line must contain. */
	const char *says;
};

FIXTURE_VARIANT_ADD(add_bad, queues_zero) {
	.args = { "add", "-t", "raw", "-f", "f", "-q", "0" }, .says = "-q",
};
FIXTURE_VARIANT_ADD(add_bad, queues_65) {
	.args = { "add", "-t", "raw", "-f", "f", "-q", "65" }, .says = "-q",
};
FIXTURE_VARIANT_ADD(add_bad, queues_abc) {
	.args = { "add", "-t", "raw", "-f", "f", "-q", "abc" }, .says = "'abc'",
};
FIXTURE_VARIANT_ADD(add_bad, queues_empty) {
	.args = { "add", "-t", "raw", "-f", "f", "-q", "" }, .says = "-q",
};
FIXTURE_VARIANT_ADD(add_bad, queues_trailing_junk) {
	.args = { "add", "-t", "raw", "-f", "f", "-q", "2x" }, .says = "'2x'",
};
FIXTURE_VARIANT_ADD(add_bad, depth_zero) {
	.args = { "add", "-t", "raw", "-f", "f", "-d", "0" }, .says = "-d",
};
FIXTURE_VARIANT_ADD(add_bad, depth_4097) {
	.args = { "add", "-t", "raw", "-f", "f", "-d", "4097" }, .says = "-d",
};
FIXTURE_VARIANT_ADD(add_bad, id_negative) {
	.args = { "add", "-t", "raw", "-f", "f", "-n", "-5" }, .says = "'-5'",
};
FIXTURE_VARIANT_ADD(add_bad, id_too_big) {
	.args = { "add", "-t", "raw", "-f", "f", "-n", "1048576" }, .says = "1048576",
};
FIXTURE_VARIANT_ADD(add_bad, id_overflows) {
	.args = { "add", "-t", "raw", "-f", "f", "-n", "99999999999999999999999" },
	.says = "-n",
};
FIXTURE_VARIANT_ADD(add_bad, unknown_target) {
	.args = { "add", "-t", "floppy", "-f", "f" }, .says = "'floppy'",
};
FIXTURE_VARIANT_ADD(add_bad, unknown_long_option) {
	.args = { "add", "-t", "raw", "-f", "f", "--bogus" }, .says = "'--bogus'",
};
FIXTURE_VARIANT_ADD(add_bad, unknown_short_option) {
	.args = { "add", "-t", "raw", "-f", "f", "-x" }, .says = "'-x'",
};
FIXTURE_VARIANT_ADD(add_bad, unknown_option_in_cluster) {
	.args = { "add", "-t", "raw", "-f", "f", "-xr" }, .says = "'-x'",
};
FIXTURE_VARIANT_ADD(add_bad, missing_value_short) {
	.args = { "add", "-t", "raw", "-f", "f", "-q" }, .says = "-q",
};
FIXTURE_VARIANT_ADD(add_bad, missing_value_in_cluster) {
	.args = { "add", "-t", "raw", "-f", "f", "-rq" }, .says = "'-q'",
};
FIXTURE_VARIANT_ADD(add_bad, missing_value_long) {
	.args = { "add", "-t", "null", "--size" }, .says = "--size",
};
FIXTURE_VARIANT_ADD(add_bad, size_for_raw) {
	.args = { "add", "-t", "raw", "-f", "f", "--size", "1M" }, .says = "--size",
};
FIXTURE_VARIANT_ADD(add_bad, buffered_for_null) {
	.args = { "add", "-t", "null", "--size", "1M", "--buffered" },
	.says = "--buffered",
};
FIXTURE_VARIANT_ADD(add_bad, file_for_null) {
	.args = { "add", "-t", "null", "--size", "1M", "-f", "f" }, .says = "-f",
};
FIXTURE_VARIANT_ADD(add_bad, raw_without_file) {
	.args = { "add", "-t", "raw" }, .says = "-f",
};
FIXTURE_VARIANT_ADD(add_bad, null_without_size) {
	.args = { "add", "-t", "null" }, .says = "--size",
};
FIXTURE_VARIANT_ADD(add_bad, size_not_sector_multiple) {
	.args = { "add", "-t", "null", "--size", "1000" }, .says = "512",
};
FIXTURE_VARIANT_ADD(add_bad, size_zero) {
	.args = { "add", "-t", "null", "--size", "0" }, .says = "--size",
};
FIXTURE_VARIANT_ADD(add_bad, size_garbage) {
	.args = { "add", "-t", "null", "--size", "1Q" }, .says = "'1Q'",
};
FIXTURE_VARIANT_ADD(add_bad, size_overflows) {
	.args = { "add", "-t", "null", "--size", "16E" }, .says = "'16E'",
};
FIXTURE_VARIANT_ADD(add_bad, extra_argument) {
	.args = { "add", "-t", "raw", "-f", "f", "extra" }, .says = "'extra'",
};
FIXTURE_VARIANT_ADD(add_bad, neither_type_nor_file) {
	.args = { "add" }, .says = "-t",
};
FIXTURE_VARIANT_ADD(add_bad, probe_missing_file) {
	.args = { "add", "-f", "/nonexistent/imgblk-test.img" },
	.says = "/nonexistent/imgblk-test.img",
};
FIXTURE_VARIANT_ADD(add_bad, newline_in_file) {
	.args = { "add", "-t", "raw", "-f", "a\nb" }, .says = "newline",
};

FIXTURE_SETUP(add_bad)
{
	self->ret = parse_add(variant->args, &self->o, &self->err);
}

FIXTURE_TEARDOWN(add_bad)
{
}

TEST_F(add_bad, einval_and_one_line)
{
	ASSERT_EQ(-EINVAL, self->ret);
	ASSERT_EQ(1, self->err.lines)
		TH_LOG("stderr: %s", self->err.text);
	ASSERT_NE(NULL, strstr(self->err.text, variant->says))
		TH_LOG("'%s' not in: %s", variant->says, self->err.text);
	/* The line names the program, as every imgblk message does. */
	ASSERT_EQ(0, strncmp(self->err.text, "imgblk: ", 8));
}

/* del */

static int parse_del(const char *const *args, struct cli_del_opts *o,
		     struct capture *err)
{
	char *av[MAX_ARGS];
	int argc = make_argv(args, av), ret;

	if (capture_begin(err, 2))
		return -999;
	ret = cli_parse_del(argc, av, o);
	capture_end(err);
	return ret;
}

TEST(del_id)
{
	struct cli_del_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_del(ARGS("del", "-n", "12"), &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_FALSE(o.all);
	ASSERT_EQ(12U, o.id);

	ASSERT_EQ(0, parse_del(ARGS("del", "--number=0"), &o, &err));
	ASSERT_FALSE(o.all);
	ASSERT_EQ(0U, o.id);
}

TEST(del_all)
{
	struct cli_del_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_del(ARGS("del", "-a"), &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_TRUE(o.all);
	ASSERT_EQ(0, parse_del(ARGS("del", "--all"), &o, &err));
	ASSERT_TRUE(o.all);
}

TEST(del_bad)
{
	const char *const *const bad[] = {
		ARGS("del"),				/* neither */
		ARGS("del", "-n", "3", "-a"),		/* both */
		ARGS("del", "-a", "-n", "3"),
		ARGS("del", "-n", "x"),
		ARGS("del", "-n", "1048576"),
		ARGS("del", "-n"),
		ARGS("del", "-n", "1", "2"),
		ARGS("del", "--bogus"),
	};
	struct cli_del_opts o;
	struct capture err;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ASSERT_EQ(-EINVAL, parse_del(bad[i], &o, &err))
			TH_LOG("case %u", i);
		ASSERT_EQ(1, err.lines)
			TH_LOG("case %u: %s", i, err.text);
	}
}

/* list */

static int parse_list(const char *const *args, struct cli_list_opts *o,
		      struct capture *err)
{
	char *av[MAX_ARGS];
	int argc = make_argv(args, av), ret;

	if (capture_begin(err, 2))
		return -999;
	ret = cli_parse_list(argc, av, o);
	capture_end(err);
	return ret;
}

TEST(list_options)
{
	struct cli_list_opts o;
	struct capture err;

	ASSERT_EQ(0, parse_list(ARGS("list"), &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_FALSE(o.json);
	ASSERT_FALSE(o.have_id);

	ASSERT_EQ(0, parse_list(ARGS("list", "--json", "-n", "5"), &o, &err));
	ASSERT_EQ(0, err.lines);
	ASSERT_TRUE(o.json);
	ASSERT_TRUE(o.have_id);
	ASSERT_EQ(5U, o.id);
}

TEST(list_bad)
{
	const char *const *const bad[] = {
		ARGS("list", "-n", "-1"),
		ARGS("list", "-n"),
		ARGS("list", "extra"),
		ARGS("list", "--jsonx"),
	};
	struct cli_list_opts o;
	struct capture err;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ASSERT_EQ(-EINVAL, parse_list(bad[i], &o, &err))
			TH_LOG("case %u", i);
		ASSERT_EQ(1, err.lines)
			TH_LOG("case %u: %s", i, err.text);
	}
}

/* parse_uint */

TEST(parse_uint_valid)
{
	uint64_t v;

	ASSERT_EQ(0, parse_uint("0", 0, 10, &v));
	ASSERT_EQ(0ULL, v);
	ASSERT_EQ(0, parse_uint("007", 0, 10, &v));
	ASSERT_EQ(7ULL, v);
	ASSERT_EQ(0, parse_uint("10", 0, 10, &v));
	ASSERT_EQ(10ULL, v);
	ASSERT_EQ(0, parse_uint("18446744073709551615", 0, UINT64_MAX, &v));
	ASSERT_EQ(UINT64_MAX, v);
}

TEST(parse_uint_invalid)
{
	uint64_t v = 42;

	ASSERT_EQ(-EINVAL, parse_uint("", 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint(NULL, 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint("-1", 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint("+1", 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint(" 1", 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint("1 ", 0, 10, &v));
	ASSERT_EQ(-EINVAL, parse_uint("0x10", 0, 100, &v));
	ASSERT_EQ(-EINVAL, parse_uint("1k", 0, 10000, &v));
	ASSERT_EQ(-ERANGE, parse_uint("11", 0, 10, &v));
	ASSERT_EQ(-ERANGE, parse_uint("0", 1, 10, &v));
	ASSERT_EQ(-ERANGE, parse_uint("18446744073709551616", 0, UINT64_MAX, &v));
	ASSERT_EQ(-ERANGE, parse_uint("99999999999999999999999", 0, UINT64_MAX, &v));
	/* A failed parse leaves the output alone. */
	ASSERT_EQ(42ULL, v);
}

/* parse_size */

TEST(parse_size_valid)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} ok[] = {
		{ "0", 0 },
		{ "512", 512 },
		{ "1B", 1 },
		{ "1k", 1ULL << 10 },
		{ "1K", 1ULL << 10 },
		{ "1KB", 1ULL << 10 },
		{ "1KiB", 1ULL << 10 },
		{ "3M", 3ULL << 20 },
		{ "3MiB", 3ULL << 20 },
		{ "3MB", 3ULL << 20 },
		{ "5G", 5ULL << 30 },
		{ "5GiB", 5ULL << 30 },
		{ "7T", 7ULL << 40 },
		{ "7TiB", 7ULL << 40 },
		{ "2P", 2ULL << 50 },
		{ "15E", 15ULL << 60 },
		{ "18446744073709551615", UINT64_MAX },
		{ "17179869183G", 17179869183ULL << 30 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		uint64_t v = 1;

		ASSERT_EQ(0, parse_size(ok[i].s, &v))
			TH_LOG("'%s'", ok[i].s);
		ASSERT_EQ(ok[i].bytes, v)
			TH_LOG("'%s'", ok[i].s);
	}
}

TEST(parse_size_invalid)
{
	static const struct {
		const char *s;
		int err;
	} bad[] = {
		{ "", -EINVAL },
		{ "-1", -EINVAL },
		{ "-1K", -EINVAL },
		{ "K", -EINVAL },
		{ " 1K", -EINVAL },
		{ "1 K", -EINVAL },
		{ "1Ki", -EINVAL },
		{ "1i", -EINVAL },
		{ "1iB", -EINVAL },
		{ "1KK", -EINVAL },
		{ "1KBB", -EINVAL },
		{ "1X", -EINVAL },
		{ "1.5G", -EINVAL },
		{ "16E", -ERANGE },
		{ "17179869184G", -ERANGE },
		{ "18014398509481984K", -ERANGE },
		{ "18446744073709551616", -ERANGE },
	};
	unsigned int i;

	ASSERT_EQ(-EINVAL, parse_size(NULL, &(uint64_t){ 0 }));
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t v = 42;

		ASSERT_EQ(bad[i].err, parse_size(bad[i].s, &v))
			TH_LOG("'%s'", bad[i].s);
		ASSERT_EQ(42ULL, v);
	}
}

/* format_size: what qemu-img info prints for the same sizes. */
TEST(format_size_like_qemu)
{
	static const struct {
		uint64_t bytes;
		const char *s;
	} cases[] = {
		{ 0, "0 B" },
		{ 1, "1 B" },
		{ 512, "512 B" },
		{ 999, "999 B" },
		/* qemu moves to the next unit at 1000, not 1024. */
		{ 1000, "0.977 KiB" },
		{ 1024, "1 KiB" },
		{ 1536, "1.5 KiB" },
		{ 1048064, "1 MiB" },
		/* 999.5 KiB: qemu's own output, exponent included. */
		{ 1023488, "1e+03 KiB" },
		{ 1048575, "1 MiB" },
		{ 1024000, "0.977 MiB" },
		{ 1048576, "1 MiB" },
		{ 64ULL << 20, "64 MiB" },
		{ 3ULL << 29, "1.5 GiB" },
		{ 1ULL << 40, "1 TiB" },
		{ 1ULL << 50, "1 PiB" },
		{ 1ULL << 60, "1 EiB" },
		{ UINT64_MAX, "16 EiB" },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[32];

		format_size(cases[i].bytes, buf, sizeof(buf));
		ASSERT_STREQ(cases[i].s, buf)
			TH_LOG("%llu bytes", (unsigned long long)cases[i].bytes);
	}
}

/* A short buffer gets a truncated, terminated string, never an overflow. */
TEST(format_size_short_buffer)
{
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	format_size(3ULL << 29, buf, 4);
	ASSERT_STREQ("1.5", buf);
	ASSERT_EQ('x', buf[4]);
}

TEST(buf_is_zero_edges)
{
	static char zeros[8192];
	char buf[4097];

	ASSERT_TRUE(buf_is_zero(zeros, 0));
	ASSERT_TRUE(buf_is_zero(zeros, 1));
	ASSERT_TRUE(buf_is_zero(zeros, sizeof(zeros)));
	memset(buf, 0, sizeof(buf));
	buf[0] = 1;
	ASSERT_FALSE(buf_is_zero(buf, sizeof(buf)));
	buf[0] = 0;
	buf[sizeof(buf) - 1] = (char)0x80;
	ASSERT_FALSE(buf_is_zero(buf, sizeof(buf)));
	ASSERT_TRUE(buf_is_zero(buf, sizeof(buf) - 1));
	buf[2048] = 1;
	ASSERT_FALSE(buf_is_zero(buf, 4096));
	/* All the same non-zero byte: the shifted compare alone would say equal. */
	memset(buf, 7, sizeof(buf));
	ASSERT_FALSE(buf_is_zero(buf, sizeof(buf)));
}

TEST_HARNESS_MAIN
