// SPDX-License-Identifier: GPL-2.0
/*
 * The client side of the control channel (control.h): connect, take the
 * greeting, negotiate, then send requests and read their replies line by
 * line.  Used by `imgblk qmp` and the verbs that talk to a running
 * device, and by the tests.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "state.h"

/* How long the greeting and the negotiation may take. */
#define CTL_CLIENT_HELLO_MS	10000
/* Events kept while a call waits for its reply; older ones go first. */
#define CTL_CLIENT_KEPT_EVENTS	32

struct ctl_client {
	int fd;
	int64_t next_id;
	/* Received bytes not yet returned as lines. */
	char *buf;
	size_t len, cap;
	/*
	 * Events that arrived during a call, for ctl_client_next(): a verb
	 * that starts a job and waits for its end must not lose an end that
	 * came before the reply.
	 */
	struct json_object *kept[CTL_CLIENT_KEPT_EVENTS];
	unsigned int nr_kept;
};

int ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static int64_t ctl_client_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Returns the next non-blank line's JSON object in *@obj, waiting until
 * @deadline (monotonic ms; -1: forever).  Returns 0 or -errno.
 */
static int ctl_client_line(struct ctl_client *c, int64_t deadline, struct json_object **obj)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	char *nl;
	ssize_t n;
	int ret, timeout;

	*obj = NULL;
	for (;;) {
		while (c->len && (nl = memchr(c->buf, '\n', c->len))) {
			size_t llen = nl - c->buf;

			*nl = '\0';
			if (llen && strspn(c->buf, " \t\r") != llen) {
				*obj = json_tokener_parse(c->buf);
				ret = *obj && json_object_is_type(*obj, json_type_object) ? 0 : -EPROTO;
				if (ret) {
					json_object_put(*obj);
					*obj = NULL;
				}
			} else {
				ret = 1;
			}
			memmove(c->buf, nl + 1, c->len - llen - 1);
			c->len -= llen + 1;
			if (ret <= 0)
				return ret;
		}
		/* A server sends nothing longer than its output bound. */
		if (c->len > CTL_OUT_MAX)
			return -EPROTO;
		if (c->len == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 4096;
			char *p = realloc(c->buf, cap);

			if (!p)
				return -ENOMEM;
			c->buf = p;
			c->cap = cap;
		}
		timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - ctl_client_now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			timeout = left > 60000 ? 60000 : (int)left;
		}
		ret = poll(&pfd, 1, timeout);
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (ret <= 0)
			continue;
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		c->len += n;
	}
}

int ctl_client_next(struct ctl_client *c, int timeout_ms, struct json_object **obj)
{
	if (c->nr_kept) {
		*obj = c->kept[0];
		memmove(c->kept, c->kept + 1, --c->nr_kept * sizeof(c->kept[0]));
		return 0;
	}
	return ctl_client_line(c, timeout_ms < 0 ? -1 : ctl_client_now_ms() + timeout_ms, obj);
}

static int ctl_write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

int ctl_client_call(struct ctl_client *c, const char *cmd, struct json_object *args,
		    int timeout_ms, struct json_object **ret)
{
	int64_t deadline = timeout_ms < 0 ? -1 : ctl_client_now_ms() + timeout_ms;
	struct json_object *req, *reply, *v, *id;
	int64_t my_id = c->next_id++;
	const char *s;
	int err;

	*ret = NULL;
	req = json_object_new_object();
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", json_object_get(args));
	json_object_object_add(req, "id", json_object_new_int64(my_id));
	s = ctl_to_string(req);
	/* The server would refuse it without reading its id: say so here. */
	if (strlen(s) > CTL_LINE_MAX) {
		json_object_put(req);
		return -E2BIG;
	}
	err = ctl_write_all(c->fd, s, strlen(s));
	if (!err)
		err = ctl_write_all(c->fd, "\n", 1);
	json_object_put(req);
	if (err)
		return err;

	for (;;) {
		err = ctl_client_line(c, deadline, &reply);
		if (err)
			return err;
		/* Replies to no request of ours are passed over, events kept. */
		if (json_object_object_get_ex(reply, "id", &id) &&
		    json_object_is_type(id, json_type_int) && json_object_get_int64(id) == my_id)
			break;
		if (json_object_object_get_ex(reply, "event", NULL)) {
			if (c->nr_kept == CTL_CLIENT_KEPT_EVENTS) {
				json_object_put(c->kept[0]);
				memmove(c->kept, c->kept + 1, --c->nr_kept * sizeof(c->kept[0]));
			}
			c->kept[c->nr_kept++] = reply;
			continue;
		}
		json_object_put(reply);
	}
	if (json_object_object_get_ex(reply, "return", &v)) {
		*ret = json_object_get(v);
		err = 0;
	} else if (json_object_object_get_ex(reply, "error", &v) &&
		   json_object_is_type(v, json_type_object)) {
		*ret = json_object_get(v);
		err = -EREMOTEIO;
	} else {
		err = -EPROTO;
	}
	json_object_put(reply);
	return err;
}

int ctl_client_connect(const char *path, struct ctl_client **out)
{
	struct json_object *greeting, *ret;
	struct ctl_client *c;
	int err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = ctl_connect(path);
	if (c->fd < 0) {
		err = c->fd;
		free(c);
		return err;
	}
	err = ctl_client_next(c, CTL_CLIENT_HELLO_MS, &greeting);
	if (!err) {
		if (!json_object_object_get_ex(greeting, "QMP", NULL))
			err = -EPROTO;
		json_object_put(greeting);
	}
	if (!err) {
		err = ctl_client_call(c, "qmp_capabilities", NULL, CTL_CLIENT_HELLO_MS, &ret);
		json_object_put(ret);
		if (err == -EREMOTEIO)
			err = -EPROTO;
	}
	if (err) {
		ctl_client_close(c);
		return err;
	}
	*out = c;
	return 0;
}

int ctl_client_open(unsigned int id, struct ctl_client **out)
{
	char path[PATH_MAX];
	int ret;

	ret = ublk_ctl_path(id, path, sizeof(path));
	if (ret)
		return ret;
	return ctl_client_connect(path, out);
}

void ctl_client_close(struct ctl_client *c)
{
	if (!c)
		return;
	while (c->nr_kept)
		json_object_put(c->kept[--c->nr_kept]);
	close(c->fd);
	free(c->buf);
	free(c);
}
