// SPDX-License-Identifier: GPL-2.0
/*
 * The control channel (ublksrv/control.c, docs/control.md) without a
 * device: a server on a temporary socket with a table of test commands,
 * driven by real clients over the socket.  The greeting and negotiation,
 * every kind of bad input (each followed by a good request on the same
 * connection, so the server is seen to carry on), long lines, clients
 * that vanish, 50 at once, events from other threads, a client that
 * never reads, the socket's mode, the client API and `imgblk qmp`.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

#include "kselftest_harness.h"

/* The test commands. */

static int t_echo(struct ctl_call *call)
{
	call->ret = json_object_get(call->args);
	return 0;
}

static int t_fail(struct ctl_call *call)
{
	return ctl_fail(call, -EBUSY, "busy now");
}

static int t_errno(struct ctl_call *call)
{
	return -ENOSPC;
}

static int t_nan(struct ctl_call *call)
{
	call->ret = json_object_new_double(NAN);
	return 0;
}

static int t_sleep(struct ctl_call *call)
{
	usleep(ctl_arg_int(call, "ms", 100) * 1000);
	return 0;
}

/* Emits events from the handler: the control thread itself. */
static int t_emit(struct ctl_call *call)
{
	struct ctl_server **srv = call->ctx;
	int64_t i, n = ctl_arg_int(call, "count", 1);

	for (i = 0; i < n; i++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "i", json_object_new_int64(i));
		ctl_event(*srv, ctl_arg_str(call, "name", "TEST"), d);
	}
	return 0;
}

static const struct ctl_cmd t_cmds[] = {
	{
		.name = "echo",
		.handler = t_echo,
		.args = {
			{ "s", CTL_STR, true },
			{ "n", CTL_INT, false },
			{ "b", CTL_BOOL, false },
			{ "x", CTL_NUM, false },
			{ "o", CTL_OBJ, false },
			{ "a", CTL_ARRAY, false },
		},
		.help = "returns its arguments",
	},
	{ .name = "fail", .handler = t_fail, .help = "fails with a message" },
	{ .name = "fail-errno", .handler = t_errno, .help = "fails with ENOSPC" },
	{ .name = "nan", .handler = t_nan, .help = "returns NaN" },
	{ .name = "sleep", .handler = t_sleep, .args = { { "ms", CTL_INT, false } } },
	{
		.name = "emit",
		.handler = t_emit,
		.args = { { "name", CTL_STR, false }, { "count", CTL_INT, false } },
	},
};

/* A raw client: a socket and the bytes received but not yet taken as lines. */
struct tc {
	int fd;
	bool eof;
	size_t len;
	char buf[256 * 1024];
};

static struct tc *tc_open(const char *path)
{
	struct tc *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = ctl_connect(path);
	if (c->fd < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static void tc_close(struct tc *c)
{
	if (c) {
		close(c->fd);
		free(c);
	}
}

/*
 * The next line as JSON, waiting up to @ms; NULL on timeout or EOF (then
 * c->eof), or if the line is not JSON (never, from our server).
 */
static struct json_object *tc_line(struct tc *c, int ms)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	struct json_object *o;
	char *nl;
	ssize_t n;

	for (;;) {
		nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			*nl = '\0';
			o = json_tokener_parse(c->buf);
			c->len -= nl + 1 - c->buf;
			memmove(c->buf, nl + 1, c->len);
			return o;
		}
		if (c->len == sizeof(c->buf) || poll(&pfd, 1, ms) <= 0)
			return NULL;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0) {
			c->eof = true;
			return NULL;
		}
		c->len += n;
	}
}

static int tc_send(struct tc *c, const char *s, size_t len)
{
	return send(c->fd, s, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int tc_puts(struct tc *c, const char *line)
{
	return tc_send(c, line, strlen(line));
}

/* Sends @line (newline added) and returns the next line. */
static struct json_object *tc_req(struct tc *c, const char *line)
{
	if (tc_puts(c, line) || tc_send(c, "\n", 1))
		return NULL;
	return tc_line(c, 5000);
}

/* Takes the greeting and negotiates.  Returns 0 or -1. */
static int tc_hello(struct tc *c)
{
	struct json_object *o = tc_line(c, 5000);
	bool ok = o && json_object_object_get_ex(o, "QMP", NULL);

	json_object_put(o);
	if (!ok)
		return -1;
	o = tc_req(c, "{\"execute\": \"qmp_capabilities\"}");
	ok = o && json_object_object_get_ex(o, "return", NULL);
	json_object_put(o);
	return ok ? 0 : -1;
}

static const char *get_str(struct json_object *o, const char *a, const char *b)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, a, &v))
		return NULL;
	if (b && !json_object_object_get_ex(v, b, &v))
		return NULL;
	return json_object_get_string(v);
}

/* Whether @o is an error of @cls whose desc contains @desc. */
static bool is_error(struct json_object *o, const char *cls, const char *desc)
{
	const char *c = get_str(o, "error", "class"), *d = get_str(o, "error", "desc");

	return c && d && !strcmp(c, cls) && strstr(d, desc) &&
	       !json_object_object_get_ex(o, "return", NULL);
}

static bool has_return(struct json_object *o)
{
	return o && json_object_object_get_ex(o, "return", NULL) &&
	       !json_object_object_get_ex(o, "error", NULL);
}

FIXTURE(ctl) {
	char dir[64];
	char path[128];
	struct ctl_server *srv;
	struct ctl_table table;
};

FIXTURE_SETUP(ctl)
{
	snprintf(self->dir, sizeof(self->dir), "/tmp/imgblk-ctl-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->path, sizeof(self->path), "%s/0.sock", self->dir);
	self->table = (struct ctl_table){ t_cmds, ARRAY_SIZE(t_cmds), &self->srv };
	ASSERT_EQ(0, ctl_server_start(&self->srv, self->path, &self->table));
}

FIXTURE_TEARDOWN(ctl)
{
	ctl_server_stop(self->srv);
	unlink(self->path);
	rmdir(self->dir);
}

TEST_F(ctl, greeting)
{
	struct tc *c = tc_open(self->path);
	struct json_object *o, *v;

	ASSERT_NE(NULL, c);
	o = tc_line(c, 5000);
	ASSERT_NE(NULL, o);
	ASSERT_TRUE(json_object_object_get_ex(o, "QMP", &v));
	ASSERT_TRUE(json_object_object_get_ex(v, "capabilities", &v));
	EXPECT_TRUE(json_object_is_type(v, json_type_array));
	EXPECT_EQ(0U, json_object_array_length(v));
	ASSERT_TRUE(json_object_object_get_ex(o, "QMP", &v));
	ASSERT_TRUE(json_object_object_get_ex(v, "version", &v));
	EXPECT_STREQ("imgblk 0.1.0", get_str(v, "package", NULL));
	json_object_put(o);
	tc_close(c);
}

TEST_F(ctl, negotiation)
{
	struct tc *c = tc_open(self->path);
	struct json_object *o;

	ASSERT_NE(NULL, c);
	json_object_put(tc_line(c, 5000));
	/* Nothing but qmp_capabilities first, as QMP: CommandNotFound, id kept. */
	o = tc_req(c, "{\"execute\": \"query-version\", \"id\": \"x1\"}");
	EXPECT_TRUE(is_error(o, "CommandNotFound", "Expecting capabilities negotiation"));
	EXPECT_STREQ("x1", get_str(o, "id", NULL));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\"}}");
	EXPECT_TRUE(is_error(o, "CommandNotFound", "Expecting capabilities negotiation"));
	json_object_put(o);
	/* No capability is offered, so none can be enabled. */
	o = tc_req(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}");
	EXPECT_TRUE(is_error(o, "GenericError", "Capability 'oob' not available"));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [1]}}");
	EXPECT_TRUE(is_error(o, "GenericError", "expected: string"));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}, \"id\": 7}");
	EXPECT_TRUE(has_return(o));
	EXPECT_STREQ("7", get_str(o, "id", NULL));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"qmp_capabilities\"}");
	EXPECT_TRUE(is_error(o, "CommandNotFound", "already complete"));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"query-version\"}");
	EXPECT_TRUE(has_return(o));
	EXPECT_EQ(IMGBLK_VERSION_MINOR, atoi(get_str(json_object_object_get(o, "return"),
						     "imgblk", "minor")));
	json_object_put(o);
	tc_close(c);
}

TEST_F(ctl, bad_requests)
{
	static const struct {
		const char *line;
		const char *cls, *desc;
		const char *id;		/* the id expected back; NULL: none */
	} cases[] = {
		{ "{\"execute\": }", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-version\"", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-version\"}}", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-version\"} {}", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-version\"} x", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-version\",}", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"query-\xff\"}", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"echo\", \"id\": NaN}", "GenericError", "Invalid JSON syntax", NULL },
		{ "{\"execute\": \"echo\", \"id\": 1e999}", "GenericError", "Invalid JSON syntax", NULL },
		{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		  "GenericError", "Invalid JSON syntax", NULL },
		{ "null", "GenericError", "Invalid JSON syntax", NULL },
		{ "[{\"execute\": \"query-version\"}]", "GenericError", "must be a JSON object", NULL },
		{ "42", "GenericError", "must be a JSON object", NULL },
		{ "\"query-version\"", "GenericError", "must be a JSON object", NULL },
		{ "{\"id\": 3}", "GenericError", "lacks member 'execute'", "3" },
		{ "{\"execute\": 1, \"id\": \"a\"}", "GenericError", "'execute' must be a string", "\"a\"" },
		{ "{\"execute\": null, \"id\": 5}", "GenericError", "'execute' must be a string", "5" },
		{ "{\"execute\": \"echo\", \"arguments\": [], \"id\": 6}", "GenericError",
		  "'arguments' must be an object", "6" },
		{ "{\"execute\": \"echo\", \"argument\": {}, \"id\": 7}", "GenericError",
		  "member 'argument' is unexpected", "7" },
		{ "{\"exec-oob\": \"echo\"}", "GenericError", "member 'exec-oob' is unexpected", NULL },
		{ "{\"execute\": \"nosuch\", \"id\": {\"a\": [1]}}", "CommandNotFound",
		  "The command nosuch has not been found", "{\"a\":[1]}" },
		{ "{\"execute\": \"query-version\\u0000\"}", "CommandNotFound", "has not been found", NULL },
		{ "{\"execute\": \"\"}", "CommandNotFound", "has not been found", NULL },
		{ "{\"execute\": \"query-version\", \"arguments\": {\"x\": 1}}", "GenericError",
		  "Parameter 'x' is unexpected", NULL },
		{ "{\"execute\": \"echo\"}", "GenericError", "Parameter 's' is missing", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {}}", "GenericError", "Parameter 's' is missing", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": 1}}", "GenericError",
		  "Invalid parameter type for 's', expected: string", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": null}}", "GenericError",
		  "Invalid parameter type for 's', expected: string", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\\u0000b\"}}", "GenericError",
		  "must not contain a NUL", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"n\": 1.5}}", "GenericError",
		  "for 'n', expected: integer", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"n\": \"1\"}}", "GenericError",
		  "for 'n', expected: integer", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"b\": 1}}", "GenericError",
		  "for 'b', expected: boolean", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"x\": true}}", "GenericError",
		  "for 'x', expected: number", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"o\": []}}", "GenericError",
		  "for 'o', expected: object", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"a\": {}}}", "GenericError",
		  "for 'a', expected: array", NULL },
		{ "{\"execute\": \"echo\", \"arguments\": {\"s\": \"a\", \"zz\": 1}, \"id\": 9}",
		  "GenericError", "Parameter 'zz' is unexpected", "9" },
		{ "{\"execute\": \"fail\", \"id\": 10}", "GenericError", "busy now", "10" },
		{ "{\"execute\": \"fail-errno\"}", "GenericError", "No space left on device", NULL },
		{ "{\"execute\": \"nan\"}", "GenericError", "non-finite", NULL },
	};
	struct tc *c = tc_open(self->path);
	struct json_object *o, *id;
	unsigned int i;

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		o = tc_req(c, cases[i].line);
		ASSERT_NE(NULL, o) TH_LOG("no reply to %s", cases[i].line);
		EXPECT_TRUE(is_error(o, cases[i].cls, cases[i].desc))
			TH_LOG("%s -> %s", cases[i].line, ctl_to_string(o));
		if (cases[i].id) {
			EXPECT_TRUE(json_object_object_get_ex(o, "id", &id));
			EXPECT_STREQ(cases[i].id, ctl_to_string(id));
		} else {
			EXPECT_FALSE(json_object_object_get_ex(o, "id", NULL))
				TH_LOG("%s -> %s", cases[i].line, ctl_to_string(o));
		}
		json_object_put(o);
		/* The same connection goes on. */
		o = tc_req(c, "{\"execute\": \"query-version\"}");
		EXPECT_TRUE(has_return(o)) TH_LOG("after %s", cases[i].line);
		json_object_put(o);
	}
	tc_close(c);
}

TEST_F(ctl, good_requests)
{
	struct tc *c = tc_open(self->path);
	struct json_object *o, *r;

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	/* Blank lines and CRLF are fine; an id of any type comes back as it was. */
	ASSERT_EQ(0, tc_puts(c, "\n  \r\n\t\n"));
	o = tc_req(c, "{\"id\": [1, {\"b\": null}], \"execute\": \"echo\", \"arguments\": "
		      "{\"s\": \"h\u00e9/\", \"n\": -9007199254740993, \"b\": false, \"x\": 2.5, "
		      "\"o\": {\"k\": [1]}, \"a\": []}}\r");
	ASSERT_TRUE(has_return(o));
	r = json_object_object_get(o, "return");
	EXPECT_STREQ("h\u00e9/", get_str(r, "s", NULL));
	EXPECT_EQ(-9007199254740993LL, json_object_get_int64(json_object_object_get(r, "n")));
	EXPECT_STREQ("[1,{\"b\":null}]", ctl_to_string(json_object_object_get(o, "id")));
	json_object_put(o);
	/* Strict JSON: not QMP's single-quoted strings. */
	o = tc_req(c, "{\"execute\": 'echo', \"arguments\": {\"s\": \"q\"}}");
	EXPECT_TRUE(is_error(o, "GenericError", "Invalid JSON syntax"));
	json_object_put(o);
	o = tc_req(c, "{\"execute\": \"query-commands\"}");
	ASSERT_TRUE(has_return(o));
	r = json_object_object_get(o, "return");
	EXPECT_EQ(3 + ARRAY_SIZE(t_cmds), json_object_array_length(r));
	EXPECT_STREQ("qmp_capabilities", get_str(json_object_array_get_idx(r, 0), "name", NULL));
	EXPECT_STREQ("echo", get_str(json_object_array_get_idx(r, 3), "name", NULL));
	EXPECT_STREQ("{\"name\":\"s\",\"type\":\"string\",\"required\":true}",
		     ctl_to_string(json_object_array_get_idx(
			     json_object_object_get(json_object_array_get_idx(r, 3), "arguments"), 0)));
	json_object_put(o);
	/* Pipelined: every reply, in order. */
	ASSERT_EQ(0, tc_puts(c, "{\"execute\": \"query-version\", \"id\": 1}\n"
				"{\"execute\": \"nosuch\", \"id\": 2}\n"
				"{\"execute\": \"echo\", \"arguments\": {\"s\": \"\"}, \"id\": 3}\n"));
	for (int i = 1; i <= 3; i++) {
		o = tc_line(c, 5000);
		EXPECT_EQ(i, json_object_get_int(json_object_object_get(o, "id")));
		json_object_put(o);
	}
	tc_close(c);
}

static const char echo_head[] = "{\"execute\": \"echo\", \"arguments\": {\"s\": \"";
static const char echo_tail[] = "\"}}";

/* An echo request of exactly @len bytes, without its newline. */
static char *echo_line(size_t len)
{
	const char *head = echo_head, *tail = echo_tail;
	char *s = malloc(len + 1);

	memcpy(s, head, strlen(head));
	memset(s + strlen(head), 'a', len - strlen(head) - strlen(tail));
	memcpy(s + len - strlen(tail), tail, strlen(tail) + 1);
	return s;
}

TEST_F(ctl, long_lines)
{
	struct tc *c = tc_open(self->path);
	struct json_object *o;
	char *s;

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	/* 64 KiB exactly is served. */
	s = echo_line(CTL_LINE_MAX);
	o = tc_req(c, s);
	EXPECT_TRUE(has_return(o));
	EXPECT_EQ(CTL_LINE_MAX - strlen(echo_head) - strlen(echo_tail),
		  strlen(get_str(o, "return", "s")));
	json_object_put(o);
	free(s);
	/* One byte more is refused, in small pieces as in one. */
	s = echo_line(CTL_LINE_MAX + 1);
	o = tc_req(c, s);
	EXPECT_TRUE(is_error(o, "GenericError", "Line longer than 65536 bytes"));
	json_object_put(o);
	for (size_t off = 0; off < CTL_LINE_MAX + 1; off += 1000)
		ASSERT_EQ(0, tc_send(c, s + off, MIN((size_t)1000, CTL_LINE_MAX + 1 - off)));
	o = tc_req(c, "");
	EXPECT_TRUE(is_error(o, "GenericError", "Line longer"));
	json_object_put(o);
	free(s);
	/* Megabytes without a newline: one error, the rest skipped, no memory growth. */
	s = malloc(4 << 20);
	memset(s, '{', 4 << 20);
	ASSERT_EQ(0, tc_send(c, s, 4 << 20));
	o = tc_line(c, 5000);
	EXPECT_TRUE(is_error(o, "GenericError", "Line longer"));
	json_object_put(o);
	/* Then resynchronised at the newline: the next line is served. */
	o = tc_req(c, "}}}\n{\"execute\": \"query-version\", \"id\": \"after\"}");
	EXPECT_TRUE(has_return(o));
	EXPECT_STREQ("after", get_str(o, "id", NULL));
	json_object_put(o);
	o = tc_line(c, 200);
	EXPECT_EQ(NULL, o) TH_LOG("one error only, got %s", ctl_to_string(o));
	free(s);
	tc_close(c);
}

TEST_F(ctl, vanishing_clients)
{
	struct tc *c;
	struct json_object *o;
	int i;

	for (i = 0; i < 20; i++) {
		/* Gone before reading the greeting. */
		c = tc_open(self->path);
		ASSERT_NE(NULL, c);
		tc_close(c);
		/* Gone in the middle of a line. */
		c = tc_open(self->path);
		ASSERT_NE(NULL, c);
		ASSERT_EQ(0, tc_hello(c));
		ASSERT_EQ(0, tc_puts(c, "{\"execute\": \"echo\", \"argu"));
		tc_close(c);
		/* Gone while its command runs: the reply has nowhere to go. */
		c = tc_open(self->path);
		ASSERT_NE(NULL, c);
		ASSERT_EQ(0, tc_hello(c));
		ASSERT_EQ(0, tc_puts(c, "{\"execute\": \"sleep\", \"arguments\": {\"ms\": 20}}\n"));
		tc_close(c);
	}
	/* A request and then only half a close: the reply still comes, then EOF. */
	c = tc_open(self->path);
	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	ASSERT_EQ(0, tc_puts(c, "{\"execute\": \"sleep\", \"arguments\": {\"ms\": 50}, \"id\": 1}\n"
				"{\"execute\": \"query-version\", \"id\": 2}"));
	shutdown(c->fd, SHUT_WR);
	o = tc_line(c, 5000);
	EXPECT_TRUE(has_return(o));
	json_object_put(o);
	/* The last line had no newline: it is served at EOF too. */
	o = tc_line(c, 5000);
	EXPECT_TRUE(has_return(o));
	EXPECT_STREQ("2", get_str(o, "id", NULL));
	json_object_put(o);
	EXPECT_EQ(NULL, tc_line(c, 5000));
	EXPECT_TRUE(c->eof);
	tc_close(c);
	/* And the server is fine. */
	c = tc_open(self->path);
	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	o = tc_req(c, "{\"execute\": \"query-version\"}");
	EXPECT_TRUE(has_return(o));
	json_object_put(o);
	tc_close(c);
}

#define MANY 50

TEST_F(ctl, many_clients)
{
	struct tc *c[MANY];
	struct json_object *o;
	char line[128];
	int i, k;

	for (i = 0; i < MANY; i++) {
		c[i] = tc_open(self->path);
		ASSERT_NE(NULL, c[i]);
	}
	for (i = 0; i < MANY; i++)
		ASSERT_EQ(0, tc_hello(c[i])) TH_LOG("client %d", i);
	/* Everyone's requests first, then everyone's replies: no one waits on another. */
	for (k = 0; k < 5; k++) {
		for (i = 0; i < MANY; i++) {
			snprintf(line, sizeof(line),
				 "{\"execute\": \"echo\", \"arguments\": {\"s\": \"c%d\"}, \"id\": %d}\n",
				 i, k);
			ASSERT_EQ(0, tc_puts(c[i], line));
		}
	}
	for (i = 0; i < MANY; i++) {
		for (k = 0; k < 5; k++) {
			o = tc_line(c[i], 5000);
			ASSERT_TRUE(has_return(o)) TH_LOG("client %d reply %d", i, k);
			snprintf(line, sizeof(line), "c%d", i);
			EXPECT_STREQ(line, get_str(o, "return", "s"));
			EXPECT_EQ(k, json_object_get_int(json_object_object_get(o, "id")));
			json_object_put(o);
		}
	}
	for (i = 0; i < MANY; i++)
		tc_close(c[i]);
}

TEST_F(ctl, too_many_clients)
{
	struct tc **c = calloc(CTL_MAX_CLIENTS + 1, sizeof(*c));
	struct json_object *o;
	int i;

	for (i = 0; i < CTL_MAX_CLIENTS; i++) {
		c[i] = tc_open(self->path);
		ASSERT_NE(NULL, c[i]);
		o = tc_line(c[i], 5000);
		ASSERT_TRUE(json_object_object_get_ex(o, "QMP", NULL));
		json_object_put(o);
	}
	c[i] = tc_open(self->path);
	ASSERT_NE(NULL, c[i]);
	o = tc_line(c[i], 5000);
	EXPECT_TRUE(is_error(o, "GenericError", "Too many clients"));
	json_object_put(o);
	EXPECT_EQ(NULL, tc_line(c[i], 5000));
	EXPECT_TRUE(c[i]->eof);
	tc_close(c[i]);
	/* One leaves, another may come. */
	tc_close(c[0]);
	usleep(100000);
	c[0] = tc_open(self->path);
	ASSERT_NE(NULL, c[0]);
	ASSERT_EQ(0, tc_hello(c[0]));
	for (i = 0; i < CTL_MAX_CLIENTS; i++)
		tc_close(c[i]);
	free(c);
}

struct reader {
	struct tc *c;
	int want;
	int got;		/* __atomic */
};

struct emitter {
	struct ctl_server *srv;
	int count;
	int pad;
	int batch;		/* with @reader: wait for it after each batch */
	struct reader *reader;
	int64_t max_ns;		/* the slowest ctl_event() */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *emit_thread(void *arg)
{
	struct emitter *e = arg;
	char *pad = malloc(e->pad + 1);
	int64_t deadline;
	int i;

	memset(pad, 'p', e->pad);
	pad[e->pad] = '\0';
	for (i = 0; i < e->count; i++) {
		struct json_object *d = json_object_new_object();
		int64_t t;

		json_object_object_add(d, "i", json_object_new_int(i));
		json_object_object_add(d, "pad", json_object_new_string(pad));
		t = now_ns();
		ctl_event(e->srv, "TICK", d);
		t = now_ns() - t;
		if (t > e->max_ns)
			e->max_ns = t;
		if (!e->reader || (i + 1) % e->batch)
			continue;
		/* A client that reads keeps up with a pace it can follow. */
		deadline = now_ns() + 10000000000LL;
		while (__atomic_load_n(&e->reader->got, __ATOMIC_ACQUIRE) < i + 1 &&
		       now_ns() < deadline)
			usleep(1000);
	}
	free(pad);
	return NULL;
}

static void *read_thread(void *arg)
{
	struct reader *r = arg;
	struct json_object *o;

	while (r->got < r->want && (o = tc_line(r->c, 10000))) {
		if (json_object_object_get_ex(o, "event", NULL))
			__atomic_add_fetch(&r->got, 1, __ATOMIC_RELEASE);
		json_object_put(o);
	}
	return NULL;
}

TEST_F(ctl, events)
{
	struct emitter e = { .srv = self->srv, .count = 3, .pad = 1 };
	struct tc *c[3], *quiet;
	struct json_object *o, *ts;
	pthread_t th;
	int i, k;

	for (i = 0; i < 3; i++) {
		c[i] = tc_open(self->path);
		ASSERT_NE(NULL, c[i]);
		ASSERT_EQ(0, tc_hello(c[i]));
	}
	/* Not negotiated: no events. */
	quiet = tc_open(self->path);
	ASSERT_NE(NULL, quiet);
	json_object_put(tc_line(quiet, 5000));

	/* From another thread than the control thread. */
	ASSERT_EQ(0, pthread_create(&th, NULL, emit_thread, &e));
	pthread_join(th, NULL);
	for (i = 0; i < 3; i++) {
		for (k = 0; k < 3; k++) {
			o = tc_line(c[i], 5000);
			ASSERT_NE(NULL, o);
			EXPECT_STREQ("TICK", get_str(o, "event", NULL));
			EXPECT_EQ(k, json_object_get_int(json_object_object_get(
					     json_object_object_get(o, "data"), "i")));
			ASSERT_TRUE(json_object_object_get_ex(o, "timestamp", &ts));
			EXPECT_GT(json_object_get_int64(json_object_object_get(ts, "seconds")),
				  1600000000);
			EXPECT_LT(json_object_get_int64(json_object_object_get(ts, "microseconds")),
				  1000000);
			json_object_put(o);
		}
	}
	/* From a handler: the events first, then its reply. */
	o = tc_req(c[0], "{\"execute\": \"emit\", \"arguments\": {\"name\": \"BLOCK_IO_ERROR\", \"count\": 2}}");
	EXPECT_STREQ("BLOCK_IO_ERROR", get_str(o, "event", NULL));
	json_object_put(o);
	o = tc_line(c[0], 5000);
	EXPECT_STREQ("BLOCK_IO_ERROR", get_str(o, "event", NULL));
	json_object_put(o);
	o = tc_line(c[0], 5000);
	EXPECT_TRUE(has_return(o));
	json_object_put(o);
	for (i = 1; i < 3; i++) {
		for (k = 0; k < 2; k++) {
			o = tc_line(c[i], 5000);
			EXPECT_STREQ("BLOCK_IO_ERROR", get_str(o, "event", NULL));
			json_object_put(o);
		}
	}
	/* NULL data is an empty object. */
	ctl_event(self->srv, "EMPTY", NULL);
	o = tc_line(c[1], 5000);
	EXPECT_STREQ("{}", ctl_to_string(json_object_object_get(o, "data")));
	json_object_put(o);
	/* The one that never negotiated saw none of it. */
	EXPECT_EQ(NULL, tc_line(quiet, 200));
	EXPECT_FALSE(quiet->eof);
	for (i = 0; i < 3; i++)
		tc_close(c[i]);
	tc_close(quiet);
}

TEST_F(ctl, slow_reader_dropped)
{
	/*
	 * 4000 events of 1 KiB: 4 MiB, past the bound and the socket
	 * buffers, in batches of 200 that a reading client follows.
	 */
	struct reader r = { .want = 4000 };
	struct emitter e = { .srv = self->srv, .count = 4000, .pad = 1024, .batch = 200,
			     .reader = &r };
	struct json_object *o;
	struct tc *slow;
	pthread_t th, rt;
	int got = 0;

	slow = tc_open(self->path);
	ASSERT_NE(NULL, slow);
	ASSERT_EQ(0, tc_hello(slow));
	r.c = tc_open(self->path);
	ASSERT_NE(NULL, r.c);
	ASSERT_EQ(0, tc_hello(r.c));
	ASSERT_EQ(0, pthread_create(&rt, NULL, read_thread, &r));
	ASSERT_EQ(0, pthread_create(&th, NULL, emit_thread, &e));
	pthread_join(th, NULL);
	pthread_join(rt, NULL);
	/* The client that reads gets every event... */
	EXPECT_EQ(4000, r.got);
	/*
	 * ...and the emitter never waited for the one that does not (that
	 * would be forever); the bound only allows for a loaded machine.
	 */
	EXPECT_LT(e.max_ns, 1000000000LL);
	TH_LOG("slowest ctl_event: %lld us", (long long)e.max_ns / 1000);
	/* The slow one was dropped: what the socket held, then EOF. */
	while ((o = tc_line(slow, 5000))) {
		got++;
		json_object_put(o);
	}
	EXPECT_TRUE(slow->eof);
	EXPECT_LT(got, 4000);
	TH_LOG("the slow client got %d events before it was dropped", got);
	tc_close(slow);
	tc_close(r.c);
}

TEST_F(ctl, socket_file)
{
	struct ctl_server *srv2;
	struct stat st;
	int fd;

	ASSERT_EQ(0, lstat(self->path, &st));
	EXPECT_TRUE(S_ISSOCK(st.st_mode));
	EXPECT_EQ(0600U, st.st_mode & 07777);
	EXPECT_EQ(geteuid(), st.st_uid);
	/* A live server's socket is not taken over. */
	EXPECT_EQ(-EADDRINUSE, ctl_server_start(&srv2, self->path, &self->table));
	/* Stop removes it. */
	ctl_server_stop(self->srv);
	self->srv = NULL;
	EXPECT_EQ(-1, lstat(self->path, &st));
	/* A dead server's socket is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, self->path);
		ASSERT_EQ(0, bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	}
	close(fd);
	ASSERT_EQ(0, ctl_server_start(&self->srv, self->path, &self->table));
	ASSERT_EQ(0, lstat(self->path, &st));
	EXPECT_EQ(0600U, st.st_mode & 07777);
	ctl_server_stop(self->srv);
	self->srv = NULL;
	/* Anything else in the way is left alone. */
	fd = open(self->path, O_CREAT | O_WRONLY, 0644);
	ASSERT_LE(0, fd);
	close(fd);
	EXPECT_EQ(-EEXIST, ctl_server_start(&srv2, self->path, &self->table));
	ASSERT_EQ(0, lstat(self->path, &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	unlink(self->path);
	/* Even under a permissive umask, the mode is 0600 from the start. */
	umask(0);
	ASSERT_EQ(0, ctl_server_start(&self->srv, self->path, &self->table));
	ASSERT_EQ(0, lstat(self->path, &st));
	EXPECT_EQ(0600U, st.st_mode & 07777);
	umask(022);
}

TEST_F(ctl, stop_flushes)
{
	struct tc *c = tc_open(self->path);
	struct json_object *o;

	ASSERT_NE(NULL, c);
	ASSERT_EQ(0, tc_hello(c));
	ctl_event(self->srv, "SHUTDOWN", NULL);
	ctl_server_stop(self->srv);
	self->srv = NULL;
	o = tc_line(c, 5000);
	EXPECT_STREQ("SHUTDOWN", get_str(o, "event", NULL));
	json_object_put(o);
	EXPECT_EQ(NULL, tc_line(c, 5000));
	EXPECT_TRUE(c->eof);
	tc_close(c);
	/* ctl_event() without a server only frees its data. */
	ctl_event(NULL, "NOTHING", json_object_new_object());
}

TEST_F(ctl, client_api)
{
	struct ctl_client *c;
	struct json_object *args, *ret;
	char *big;

	ASSERT_EQ(-ENOENT, ctl_client_connect("/nonexistent/x.sock", &c));
	ASSERT_EQ(0, ctl_client_connect(self->path, &c));
	args = json_tokener_parse("{\"s\": \"v\", \"n\": 3}");
	ASSERT_EQ(0, ctl_client_call(c, "echo", args, 5000, &ret));
	EXPECT_STREQ("{\"s\":\"v\",\"n\":3}", ctl_to_string(ret));
	json_object_put(ret);
	json_object_put(args);
	ASSERT_EQ(-EREMOTEIO, ctl_client_call(c, "nosuch", NULL, 5000, &ret));
	EXPECT_STREQ("CommandNotFound", get_str(ret, "class", NULL));
	json_object_put(ret);
	/* Events during a call are kept for next(), in order, then the later ones. */
	args = json_tokener_parse("{\"count\": 3}");
	ASSERT_EQ(0, ctl_client_call(c, "emit", args, 5000, &ret));
	json_object_put(ret);
	json_object_put(args);
	ctl_event(self->srv, "LATER", NULL);
	for (int i = 0; i < 3; i++) {
		struct json_object *d, *v;

		ASSERT_EQ(0, ctl_client_next(c, 5000, &ret));
		EXPECT_STREQ("TEST", get_str(ret, "event", NULL));
		ASSERT_TRUE(json_object_object_get_ex(ret, "data", &d));
		ASSERT_TRUE(json_object_object_get_ex(d, "i", &v));
		EXPECT_EQ(i, json_object_get_int(v));
		json_object_put(ret);
	}
	ASSERT_EQ(0, ctl_client_next(c, 5000, &ret));
	EXPECT_STREQ("LATER", get_str(ret, "event", NULL));
	json_object_put(ret);
	EXPECT_EQ(-ETIMEDOUT, ctl_client_next(c, 100, &ret));
	/* A request the server would refuse unread is refused here. */
	big = malloc(CTL_LINE_MAX + 1);
	memset(big, 'b', CTL_LINE_MAX);
	big[CTL_LINE_MAX] = '\0';
	args = json_object_new_object();
	json_object_object_add(args, "s", json_object_new_string(big));
	EXPECT_EQ(-E2BIG, ctl_client_call(c, "echo", args, 5000, &ret));
	json_object_put(args);
	free(big);
	ASSERT_EQ(-ETIMEDOUT, ctl_client_call(c, "sleep", json_tokener_parse("{\"ms\": 500}"),
					      100, &ret));
	ctl_client_close(c);
	/* The server ends: the client sees it. */
	ASSERT_EQ(0, ctl_client_connect(self->path, &c));
	ctl_server_stop(self->srv);
	self->srv = NULL;
	EXPECT_EQ(-ECONNRESET, ctl_client_next(c, 5000, &ret));
	ctl_client_close(c);
}

/* Runs `$IMGBLK qmp ARGS` with @in on stdin; output in @out.  Returns the exit status. */
static int run_cli(const char *args, const char *in, char *out, size_t size)
{
	char cmd[1024];
	FILE *p;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd), "printf '%%b' '%s' | %s qmp %s 2>&1", in ? in : "",
		 getenv("IMGBLK"), args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_F(ctl, cli)
{
	char args[512], out[8192];
	const char *bin = getenv("IMGBLK");

	if (!bin || access(bin, X_OK))
		SKIP(return, "IMGBLK (the imgblk binary) not set: run from scripts/check.sh");
	snprintf(args, sizeof(args), "-s %s query-version", self->path);
	EXPECT_EQ(0, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "\"package\":\"imgblk 0.1.0\"")) TH_LOG("%s", out);
	snprintf(args, sizeof(args), "-s %s --pretty echo '{\"s\": \"x\", \"n\": 5}'", self->path);
	EXPECT_EQ(0, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "\"n\": 5")) TH_LOG("%s", out);
	snprintf(args, sizeof(args), "-s %s nosuch", self->path);
	EXPECT_EQ(1, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "qmp: nosuch: CommandNotFound: The command nosuch has not been found"))
		TH_LOG("%s", out);
	snprintf(args, sizeof(args), "-s %s echo '{\"n\": 1}'", self->path);
	EXPECT_EQ(1, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "Parameter 's' is missing")) TH_LOG("%s", out);
	snprintf(args, sizeof(args), "-s %s echo '[1]'", self->path);
	EXPECT_EQ(2, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_EQ(2, run_cli("query-version", NULL, out, sizeof(out)));
	snprintf(args, sizeof(args), "-s %s --events query-version", self->path);
	EXPECT_EQ(2, run_cli(args, NULL, out, sizeof(out)));
	EXPECT_EQ(0, run_cli("--help", NULL, out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "usage: imgblk qmp"));
	snprintf(args, sizeof(args), "-s %s.none query-version", self->path);
	EXPECT_EQ(1, run_cli(args, NULL, out, sizeof(out)));
	/* --raw: the lines as they are, a malformed one included. */
	snprintf(args, sizeof(args), "-s %s --raw", self->path);
	EXPECT_EQ(0, run_cli(args, "{\"execute\": }\\n{\"execute\": \"qmp_capabilities\"}\\n"
			     "{\"execute\": \"query-version\", \"id\": 4}\\n", out, sizeof(out)));
	EXPECT_NE(NULL, strstr(out, "{\"QMP\":")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "\"desc\":\"Invalid JSON syntax")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "\"id\":4")) TH_LOG("%s", out);
}

TEST_HARNESS_MAIN
