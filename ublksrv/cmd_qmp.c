// SPDX-License-Identifier: GPL-2.0
/*
 * `imgblk qmp`: talk to a running device's control channel
 * (docs/control.md): run one command and print its result, print the
 * events as they come, or pass raw lines both ways.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "control.h"
#include "state.h"
#include "util.h"

/* A command's reply may take this long (a drain waits for I/O in flight). */
#define QMP_CALL_TIMEOUT_MS	60000

struct qmp_opts {
	char path[PATH_MAX];
	bool have_id;
	bool have_path;
	unsigned int id;
	bool pretty;
	bool events;
	bool raw;
	const char *cmd;
	struct json_object *args;
};

static int qmp_opt(void *ctx, const struct cli_opt *opt, char *arg)
{
	struct qmp_opts *o = ctx;
	uint64_t v;

	switch (opt->key) {
	case 'n':
		if (parse_uint(arg, 0, UINT32_MAX, &v)) {
			img_err("qmp: the device id (-n) must be a number, not '%s'", arg);
			return -EINVAL;
		}
		o->id = v;
		o->have_id = true;
		break;
	case 's':
		snprintf(o->path, sizeof(o->path), "%s", arg);
		o->have_path = true;
		break;
	case CLI_K_PRETTY:
		o->pretty = true;
		break;
	case CLI_K_EVENTS:
		o->events = true;
		break;
	case CLI_K_RAW:
		o->raw = true;
		break;
	}
	return 0;
}

static int qmp_parse(const struct cli_cmd *cmd, int argc, char **argv, struct qmp_opts *o)
{
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, qmp_opt, o, &a);

	if (ret)
		return ret;
	if (o->have_id == o->have_path)
		return cli_usage_err(cmd, "give exactly one of -n ID and -s SOCKET");
	if (o->events + o->raw + (a.argc > 0) != 1)
		return cli_usage_err(cmd, "give exactly one of COMMAND, --events and --raw");
	if (a.argc > 0) {
		o->cmd = a.argv[0];
		if (a.argc > 1) {
			o->args = json_tokener_parse(a.argv[1]);
			if (!json_object_is_type(o->args, json_type_object)) {
				img_err("qmp: the arguments must be a JSON object, not '%s'",
					a.argv[1]);
				json_object_put(o->args);
				return -EINVAL;
			}
		}
	}
	if (o->have_id && ublk_ctl_path(o->id, o->path, sizeof(o->path))) {
		img_err("qmp: the socket path in %s is too long", ublk_state_dir());
		json_object_put(o->args);
		return -EINVAL;
	}
	return 0;
}

/* Says why the socket could not be reached; the device's state helps. */
static void qmp_explain(const struct qmp_opts *o, int err)
{
	struct ublk_state s;

	if (o->have_id && ublk_state_read(o->id, &s))
		img_err("qmp: no imgblk device with id %u", o->id);
	else if (o->have_id && (err == -ECONNREFUSED || err == -ENOENT))
		img_err("qmp: device %u: its server does not answer on %s (DEAD?)", o->id,
			o->path);
	else if (err == -EPROTO)
		img_err("qmp: %s: not an imgblk control socket", o->path);
	else
		img_err("qmp: %s: %s", o->path, strerror(-err));
}

static void qmp_print(const struct qmp_opts *o, struct json_object *obj)
{
	int flags = JSON_C_TO_STRING_NOSLASHESCAPE;

	flags |= o->pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED :
			     JSON_C_TO_STRING_PLAIN;
	puts(json_object_to_json_string_ext(obj, flags));
	fflush(stdout);
}

/* Copies stdin to the socket and the socket to stdout until the server closes. */
static int qmp_raw(const struct qmp_opts *o)
{
	struct pollfd pfd[2];
	char buf[16384];
	bool in_open = true;
	ssize_t n;
	int fd;

	fd = ctl_connect(o->path);
	if (fd < 0) {
		qmp_explain(o, fd);
		return CLI_EXIT_ERR;
	}
	pfd[0].fd = fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = STDIN_FILENO;
	pfd[1].events = POLLIN;
	for (;;) {
		if (poll(pfd, in_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (fwrite(buf, 1, n, stdout) != (size_t)n)
				break;
			fflush(stdout);
		}
		if (in_open && pfd[1].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n <= 0) {
				/* The server answers what it has, then closes. */
				shutdown(fd, SHUT_WR);
				in_open = false;
			} else if (send(fd, buf, n, MSG_NOSIGNAL) != n) {
				break;
			}
		}
	}
	close(fd);
	return CLI_EXIT_OK;
}

int cli_cmd_qmp(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct qmp_opts o = { 0 };
	struct ctl_client *c;
	struct json_object *ret;
	int err, status = CLI_EXIT_ERR;

	err = qmp_parse(cmd, argc, argv, &o);
	if (err)
		return cli_parse_status(cmd, err);
	if (o.raw)
		return qmp_raw(&o);
	err = ctl_client_connect(o.path, &c);
	if (err) {
		qmp_explain(&o, err);
		json_object_put(o.args);
		return CLI_EXIT_ERR;
	}
	if (o.events) {
		/* Until the server goes away (the device is deleted). */
		while ((err = ctl_client_next(c, -1, &ret)) == 0) {
			qmp_print(&o, ret);
			json_object_put(ret);
		}
		status = err == -ECONNRESET ? CLI_EXIT_OK : CLI_EXIT_ERR;
		if (status)
			img_err("qmp: %s: %s", o.path, strerror(-err));
	} else {
		err = ctl_client_call(c, o.cmd, o.args, QMP_CALL_TIMEOUT_MS, &ret);
		if (!err) {
			qmp_print(&o, ret);
			status = CLI_EXIT_OK;
		} else if (err == -EREMOTEIO) {
			struct json_object *cls, *desc;

			json_object_object_get_ex(ret, "class", &cls);
			json_object_object_get_ex(ret, "desc", &desc);
			img_err("qmp: %s: %s: %s", o.cmd, json_object_get_string(cls),
				json_object_get_string(desc));
		} else if (err == -E2BIG) {
			img_err("qmp: %s: the request is longer than %d bytes", o.cmd,
				CTL_LINE_MAX);
		} else {
			img_err("qmp: %s: %s", o.cmd, strerror(-err));
		}
		json_object_put(ret);
	}
	ctl_client_close(c);
	json_object_put(o.args);
	return status;
}
