// SPDX-License-Identifier: GPL-2.0
/*
 * The control channel's server (control.h, docs/control.md).
 *
 * Two halves.  The protocol engine (ctl_session_*, ctl_dispatch) does no
 * I/O: it cuts a client's bytes into lines, parses each with json-c, makes
 * QMP's checks (the request's members, negotiation first, the command's
 * declared arguments) and runs the command.  The server gives each
 * connection a session and runs one thread with one poll loop over the
 * listening socket, an eventfd and every client.
 *
 * Threads: the control thread owns the sockets, the sessions and the
 * handlers.  A client's output buffer is shared with ctl_event(), which
 * any thread may call, so it lives under srv->lock; the lock is held
 * only to copy bytes in or out (send() on a non-blocking socket), never
 * while a handler runs (it may emit an event) nor while waiting.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

/* How long stop keeps sending what is pending (the SHUTDOWN event). */
#define CTL_STOP_FLUSH_MS	200
/* Bytes read from a client at a time; bounds the replies one read can cause. */
#define CTL_READ_CHUNK		4096
/* Bytes sent to a client per hold of the lock. */
#define CTL_SEND_CHUNK		65536
/* User-given names quoted in error messages are cut to this many bytes. */
#define CTL_QUOTE_MAX		64

static const char *const ctl_type_names[] = {
	[CTL_STR] = "string",
	[CTL_INT] = "integer",
	[CTL_BOOL] = "boolean",
	[CTL_NUM] = "number",
	[CTL_OBJ] = "object",
	[CTL_ARRAY] = "array",
};

static const char *const ctl_class_names[] = {
	[CTL_GENERIC_ERROR] = "GenericError",
	[CTL_COMMAND_NOT_FOUND] = "CommandNotFound",
};

const char *ctl_to_string(struct json_object *obj)
{
	return json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
}

/*
 * Copies @s for an error message: at most CTL_QUOTE_MAX bytes, cut at a
 * character boundary (the input is valid UTF-8, and the reply must stay
 * so), "..." marking a cut.
 */
static const char *ctl_quote(char *buf, size_t size, const char *s)
{
	size_t n = strlen(s);

	if (n <= CTL_QUOTE_MAX && n < size) {
		memcpy(buf, s, n + 1);
		return buf;
	}
	n = MIN((size_t)CTL_QUOTE_MAX, size - 4);
	while (n && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	memcpy(buf, s, n);
	memcpy(buf + n, "...", 4);
	return buf;
}

static struct json_object *ctl_error_reply(enum ctl_class cls, const char *desc,
					   bool has_id, struct json_object *id)
{
	struct json_object *reply = json_object_new_object();
	struct json_object *err = json_object_new_object();

	json_object_object_add(err, "class", json_object_new_string(ctl_class_names[cls]));
	json_object_object_add(err, "desc", json_object_new_string(desc));
	json_object_object_add(reply, "error", err);
	if (has_id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

static __printf(4, 5) struct json_object *
ctl_errorf(enum ctl_class cls, bool has_id, struct json_object *id, const char *fmt, ...)
{
	char desc[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	return ctl_error_reply(cls, desc, has_id, id);
}

static int ctl_vfail(struct ctl_call *call, enum ctl_class cls, int err, const char *fmt,
		     va_list ap)
{
	vsnprintf(call->err_desc, sizeof(call->err_desc), fmt, ap);
	call->err_class = cls;
	return err;
}

int ctl_fail_class(struct ctl_call *call, enum ctl_class cls, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = ctl_vfail(call, cls, err, fmt, ap);
	va_end(ap);
	return err;
}

int ctl_fail(struct ctl_call *call, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err = ctl_vfail(call, CTL_GENERIC_ERROR, err, fmt, ap);
	va_end(ap);
	return err;
}

struct json_object *ctl_arg(const struct ctl_call *call, const char *name)
{
	struct json_object *v;

	return json_object_object_get_ex(call->args, name, &v) ? v : NULL;
}

const char *ctl_arg_str(const struct ctl_call *call, const char *name, const char *def)
{
	struct json_object *v = ctl_arg(call, name);

	return v ? json_object_get_string(v) : def;
}

int64_t ctl_arg_int(const struct ctl_call *call, const char *name, int64_t def)
{
	struct json_object *v = ctl_arg(call, name);

	return v ? json_object_get_int64(v) : def;
}

bool ctl_arg_bool(const struct ctl_call *call, const char *name, bool def)
{
	struct json_object *v = ctl_arg(call, name);

	return v ? json_object_get_boolean(v) : def;
}

/*
 * False if a NaN or an infinity hides in @o: json-c parses them (and
 * 1e999) even in strict mode, and would print them, which is not JSON.
 */
static bool ctl_finite(struct json_object *o)
{
	size_t i, n;

	switch (json_object_get_type(o)) {
	case json_type_double:
		return isfinite(json_object_get_double(o));
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			if (!ctl_finite(json_object_array_get_idx(o, i)))
				return false;
		return true;
	case json_type_object: {
		json_object_object_foreach(o, key, val) {
			(void)key;
			if (!ctl_finite(val))
				return false;
		}
		return true;
	}
	default:
		return true;
	}
}

/* A json-c string holding a NUL would be cut short as a C string. */
static bool ctl_has_nul(struct json_object *s)
{
	return strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s);
}

static bool ctl_type_ok(enum ctl_type type, struct json_object *v)
{
	switch (type) {
	case CTL_STR:
		return json_object_is_type(v, json_type_string);
	case CTL_INT:
		return json_object_is_type(v, json_type_int);
	case CTL_BOOL:
		return json_object_is_type(v, json_type_boolean);
	case CTL_NUM:
		return json_object_is_type(v, json_type_int) ||
		       json_object_is_type(v, json_type_double);
	case CTL_OBJ:
		return json_object_is_type(v, json_type_object);
	case CTL_ARRAY:
		return json_object_is_type(v, json_type_array);
	}
	return false;
}

static const struct ctl_arg *ctl_find_arg(const struct ctl_cmd *cmd, const char *name)
{
	const struct ctl_arg *a;

	for (a = cmd->args; a < cmd->args + CTL_MAX_ARGS && a->name; a++)
		if (!strcmp(a->name, name))
			return a;
	return NULL;
}

/*
 * Checks @args against what @cmd declares, as QMP's input visitor does,
 * so that a handler never sees an argument it did not ask for.  Returns
 * 0, or -EINVAL with the reason in @desc.
 */
static int ctl_check_args(const struct ctl_cmd *cmd, struct json_object *args,
			  char *desc, size_t size)
{
	const struct ctl_arg *a;
	char q[CTL_QUOTE_MAX + 4];

	json_object_object_foreach(args, key, val) {
		a = ctl_find_arg(cmd, key);
		if (!a) {
			snprintf(desc, size, "Parameter '%s' is unexpected",
				 ctl_quote(q, sizeof(q), key));
			return -EINVAL;
		}
		if (!ctl_type_ok(a->type, val)) {
			snprintf(desc, size, "Invalid parameter type for '%s', expected: %s",
				 a->name, ctl_type_names[a->type]);
			return -EINVAL;
		}
		if (a->type == CTL_STR && ctl_has_nul(val)) {
			snprintf(desc, size, "Parameter '%s' must not contain a NUL character",
				 a->name);
			return -EINVAL;
		}
	}
	for (a = cmd->args; a < cmd->args + CTL_MAX_ARGS && a->name; a++) {
		if (a->required && !json_object_object_get_ex(args, a->name, NULL)) {
			snprintf(desc, size, "Parameter '%s' is missing", a->name);
			return -EINVAL;
		}
	}
	return 0;
}

/* The built-in commands. */

static int ctl_qmp_capabilities(struct ctl_call *call)
{
	struct json_object *enable = ctl_arg(call, "enable"), *v;
	char q[CTL_QUOTE_MAX + 4];
	size_t i;

	/* The greeting offers no capability, so any asked for is refused. */
	for (i = 0; enable && i < json_object_array_length(enable); i++) {
		v = json_object_array_get_idx(enable, i);
		if (!json_object_is_type(v, json_type_string))
			return ctl_fail(call, -EINVAL,
					"Invalid parameter type for 'enable[%zu]', expected: string",
					i);
		return ctl_fail(call, -EINVAL, "Capability '%s' not available",
				ctl_quote(q, sizeof(q), json_object_get_string(v)));
	}
	*call->negotiated = true;
	return 0;
}

static struct json_object *ctl_version(void)
{
	struct json_object *v = json_object_new_object(), *n = json_object_new_object();
	char pkg[64];

	json_object_object_add(n, "major", json_object_new_int(IMGBLK_VERSION_MAJOR));
	json_object_object_add(n, "minor", json_object_new_int(IMGBLK_VERSION_MINOR));
	json_object_object_add(n, "micro", json_object_new_int(IMGBLK_VERSION_MICRO));
	json_object_object_add(v, "imgblk", n);
	snprintf(pkg, sizeof(pkg), "imgblk %d.%d.%d", IMGBLK_VERSION_MAJOR,
		 IMGBLK_VERSION_MINOR, IMGBLK_VERSION_MICRO);
	json_object_object_add(v, "package", json_object_new_string(pkg));
	return v;
}

static int ctl_query_version(struct ctl_call *call)
{
	call->ret = ctl_version();
	return 0;
}

static int ctl_query_commands(struct ctl_call *call);

static const struct ctl_cmd ctl_builtins[] = {
	{
		.name = "qmp_capabilities",
		.handler = ctl_qmp_capabilities,
		.args = { { "enable", CTL_ARRAY, false } },
		.help = "leave capabilities negotiation (must come first); "
			"no capability is offered",
	},
	{
		.name = "query-version",
		.handler = ctl_query_version,
		.help = "imgblk's version",
	},
	{
		.name = "query-commands",
		.handler = ctl_query_commands,
		.help = "the commands, their arguments and help",
	},
};

static void ctl_describe(struct json_object *list, const struct ctl_cmd *cmd)
{
	struct json_object *c = json_object_new_object(), *args = json_object_new_array();
	const struct ctl_arg *a;

	json_object_object_add(c, "name", json_object_new_string(cmd->name));
	for (a = cmd->args; a < cmd->args + CTL_MAX_ARGS && a->name; a++) {
		struct json_object *d = json_object_new_object();

		json_object_object_add(d, "name", json_object_new_string(a->name));
		json_object_object_add(d, "type", json_object_new_string(ctl_type_names[a->type]));
		json_object_object_add(d, "required", json_object_new_boolean(a->required));
		json_object_array_add(args, d);
	}
	json_object_object_add(c, "arguments", args);
	json_object_object_add(c, "help", json_object_new_string(cmd->help ? cmd->help : ""));
	json_object_array_add(list, c);
}

static int ctl_query_commands(struct ctl_call *call)
{
	struct json_object *list = json_object_new_array();
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ctl_builtins); i++)
		ctl_describe(list, &ctl_builtins[i]);
	for (i = 0; call->table && i < call->table->nr_cmds; i++)
		ctl_describe(list, &call->table->cmds[i]);
	call->ret = list;
	return 0;
}

/* A built-in first: a table cannot redefine the protocol's own commands. */
static const struct ctl_cmd *ctl_find_cmd(const struct ctl_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ctl_builtins); i++)
		if (!strcmp(ctl_builtins[i].name, name))
			return &ctl_builtins[i];
	for (i = 0; t && i < t->nr_cmds; i++)
		if (!strcmp(t->cmds[i].name, name))
			return &t->cmds[i];
	return NULL;
}

/*
 * Parses one line into a JSON value.  Returns it, or NULL with the
 * reason in @desc.
 */
static struct json_object *ctl_parse(const char *line, size_t len, char *desc, size_t size)
{
	struct json_tokener *tok = json_tokener_new_ex(CTL_MAX_DEPTH);
	enum json_tokener_error err;
	struct json_object *obj;
	size_t end;

	if (!tok) {
		snprintf(desc, size, "Out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, len);
	err = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	/* A number (or nothing) up to the end: a NUL says the input ends there. */
	if (!obj && err == json_tokener_continue) {
		obj = json_tokener_parse_ex(tok, "", 1);
		err = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (!obj) {
		snprintf(desc, size, "Invalid JSON syntax: %s",
			 err == json_tokener_success ? "null is not a request" :
			 json_tokener_error_desc(err));
		return NULL;
	}
	while (end < len && line[end] && strchr(" \t\r", line[end]))
		end++;
	if (end < len) {
		json_object_put(obj);
		snprintf(desc, size, "Invalid JSON syntax: text after the JSON value");
		return NULL;
	}
	if (!ctl_finite(obj)) {
		json_object_put(obj);
		snprintf(desc, size, "Invalid JSON syntax: NaN and infinite numbers are not JSON");
		return NULL;
	}
	return obj;
}

static bool ctl_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!strchr(" \t\r", line[i]) || !line[i])
			return false;
	return true;
}

/* Runs @cmd for a request whose members were checked; returns the reply. */
static struct json_object *ctl_run(struct ctl_session *s, const struct ctl_cmd *cmd,
				   struct json_object *args, bool has_id, struct json_object *id)
{
	struct ctl_call call = {
		.cmd = cmd,
		.table = s->table,
		.args = args,
		.ctx = s->table ? s->table->ctx : NULL,
		.negotiated = &s->negotiated,
	};
	struct json_object *reply;
	int ret;

	ret = ctl_check_args(cmd, args, call.err_desc, sizeof(call.err_desc));
	if (ret)
		return ctl_error_reply(CTL_GENERIC_ERROR, call.err_desc, has_id, id);
	ret = cmd->handler(&call);
	if (ret < 0) {
		json_object_put(call.ret);
		if (!call.err_desc[0])
			snprintf(call.err_desc, sizeof(call.err_desc), "%s", strerror(-ret));
		return ctl_error_reply(call.err_class, call.err_desc, has_id, id);
	}
	if (!call.ret)
		call.ret = json_object_new_object();
	if (!ctl_finite(call.ret)) {
		json_object_put(call.ret);
		img_err("control: command %s returned a number that is not finite", cmd->name);
		return ctl_errorf(CTL_GENERIC_ERROR, has_id, id,
				  "Internal error: %s returned a non-finite number", cmd->name);
	}
	reply = json_object_new_object();
	json_object_object_add(reply, "return", call.ret);
	if (has_id)
		json_object_object_add(reply, "id", json_object_get(id));
	return reply;
}

struct json_object *ctl_dispatch(struct ctl_session *s, const char *line, size_t len)
{
	struct json_object *req, *id = NULL, *exec = NULL, *args = NULL, *reply;
	const struct ctl_cmd *cmd = NULL;
	char desc[256], q[CTL_QUOTE_MAX + 4];
	bool has_id = false;
	const char *name;

	if (ctl_blank(line, len))
		return NULL;
	req = ctl_parse(line, len, desc, sizeof(desc));
	if (!req)
		return ctl_error_reply(CTL_GENERIC_ERROR, desc, false, NULL);
	if (!json_object_is_type(req, json_type_object)) {
		json_object_put(req);
		return ctl_error_reply(CTL_GENERIC_ERROR, "QMP input must be a JSON object",
				       false, NULL);
	}
	/* The id comes back with every reply, errors included. */
	has_id = json_object_object_get_ex(req, "id", &id);

	reply = NULL;
	json_object_object_foreach(req, key, val) {
		if (!strcmp(key, "execute")) {
			if (!json_object_is_type(val, json_type_string)) {
				reply = ctl_error_reply(CTL_GENERIC_ERROR,
							"QMP input member 'execute' must be a string",
							has_id, id);
				break;
			}
			exec = val;
		} else if (!strcmp(key, "arguments")) {
			if (!json_object_is_type(val, json_type_object)) {
				reply = ctl_error_reply(CTL_GENERIC_ERROR,
							"QMP input member 'arguments' must be an object",
							has_id, id);
				break;
			}
			args = val;
		} else if (strcmp(key, "id")) {
			reply = ctl_errorf(CTL_GENERIC_ERROR, has_id, id,
					   "QMP input member '%s' is unexpected",
					   ctl_quote(q, sizeof(q), key));
			break;
		}
	}
	if (reply)
		goto out;
	if (!exec) {
		reply = ctl_error_reply(CTL_GENERIC_ERROR, "QMP input lacks member 'execute'",
					has_id, id);
		goto out;
	}

	name = json_object_get_string(exec);
	if (!s->negotiated && strcmp(name, "qmp_capabilities")) {
		reply = ctl_error_reply(CTL_COMMAND_NOT_FOUND,
					"Expecting capabilities negotiation with 'qmp_capabilities'",
					has_id, id);
		goto out;
	}
	if (s->negotiated && !strcmp(name, "qmp_capabilities")) {
		reply = ctl_error_reply(CTL_COMMAND_NOT_FOUND,
					"Capabilities negotiation is already complete, command ignored",
					has_id, id);
		goto out;
	}
	if (!ctl_has_nul(exec))
		cmd = ctl_find_cmd(s->table, name);
	if (!cmd) {
		reply = ctl_errorf(CTL_COMMAND_NOT_FOUND, has_id, id,
				   "The command %s has not been found",
				   ctl_quote(q, sizeof(q), name));
		goto out;
	}
	if (args) {
		reply = ctl_run(s, cmd, args, has_id, id);
	} else {
		args = json_object_new_object();
		reply = ctl_run(s, cmd, args, has_id, id);
		json_object_put(args);
	}
out:
	json_object_put(req);
	return reply;
}

void ctl_session_init(struct ctl_session *s, const struct ctl_table *table)
{
	memset(s, 0, sizeof(*s));
	s->table = table;
}

void ctl_session_free(struct ctl_session *s)
{
	free(s->line);
	s->line = NULL;
	s->len = s->cap = 0;
}

static void ctl_session_run(struct ctl_session *s, const char *line, size_t len,
			    ctl_emit_fn emit, void *arg)
{
	struct json_object *reply;

	if (len && line[len - 1] == '\r')
		len--;
	reply = ctl_dispatch(s, line, len);
	if (reply)
		emit(arg, reply);
}

/* Appends @n bytes to the line being received.  Returns 0 or -ENOMEM. */
static int ctl_session_append(struct ctl_session *s, const char *buf, size_t n)
{
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		char *p;

		while (cap < s->len + n)
			cap *= 2;
		p = realloc(s->line, cap);
		if (!p)
			return -ENOMEM;
		s->line = p;
		s->cap = cap;
	}
	memcpy(s->line + s->len, buf, n);
	s->len += n;
	return 0;
}

int ctl_session_feed(struct ctl_session *s, const char *buf, size_t n,
		     ctl_emit_fn emit, void *arg)
{
	while (n) {
		const char *nl = memchr(buf, '\n', n);
		size_t take = nl ? (size_t)(nl - buf) : n;

		if (s->skipping) {
			/* The rest of a line already refused: up to its newline. */
			s->skipping = !nl;
		} else if (s->len + take > CTL_LINE_MAX) {
			/*
			 * Too long: answer now rather than buffer without bound,
			 * and resynchronise at the next newline.
			 */
			emit(arg, ctl_errorf(CTL_GENERIC_ERROR, false, NULL,
					     "Line longer than %d bytes", CTL_LINE_MAX));
			s->len = 0;
			s->skipping = !nl;
		} else if (!nl) {
			if (ctl_session_append(s, buf, take))
				return -ENOMEM;
		} else if (!s->len) {
			ctl_session_run(s, buf, take, emit, arg);
		} else {
			if (ctl_session_append(s, buf, take))
				return -ENOMEM;
			ctl_session_run(s, s->line, s->len, emit, arg);
			s->len = 0;
		}
		if (!nl)
			break;
		n -= take + 1;
		buf = nl + 1;
	}
	return 0;
}

void ctl_session_eof(struct ctl_session *s, ctl_emit_fn emit, void *arg)
{
	if (!s->skipping && s->len)
		ctl_session_run(s, s->line, s->len, emit, arg);
	s->len = 0;
	s->skipping = false;
}

/* The server. */

struct ctl_conn {
	struct ctl_server *srv;
	int fd;
	struct ctl_session ses;
	bool eof;		/* the client closed its side: flush, then close */
	/* Under srv->lock: */
	bool events;		/* negotiated: events are sent to it */
	bool dropped;		/* unusable (socket error, output overflow): close it */
	char *out;
	size_t out_off, out_len, out_cap;
};

struct ctl_server {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd;
	int wake_fd;		/* eventfd: output was queued, or stop */
	pthread_t thread;
	struct ctl_table table;
	bool stop;		/* __atomic */
	pthread_mutex_t lock;
	struct ctl_conn *conns[CTL_MAX_CLIENTS];	/* changed by the control thread, under lock */
	unsigned int nr_conns;
};

/*
 * Appends @len bytes and a newline to @c's output; drops the client
 * instead when that would pass CTL_OUT_MAX.  Under srv->lock.
 */
static void ctl_conn_queue(struct ctl_conn *c, const char *s, size_t len)
{
	size_t need;

	if (c->dropped)
		return;
	if (c->out_len + len + 1 > CTL_OUT_MAX) {
		c->dropped = true;
		return;
	}
	if (c->out_off && c->out_off + c->out_len + len + 1 > c->out_cap) {
		memmove(c->out, c->out + c->out_off, c->out_len);
		c->out_off = 0;
	}
	need = c->out_off + c->out_len + len + 1;
	if (need > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < need)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			c->dropped = true;
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_off + c->out_len, s, len);
	c->out[c->out_off + c->out_len + len] = '\n';
	c->out_len += len + 1;
}

static void ctl_wake(struct ctl_server *srv)
{
	uint64_t one = 1;

	if (write(srv->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		img_err("control: eventfd: %s", strerror(errno));
}

/* A reply for connection @arg (the session's emit callback). */
static void ctl_conn_emit(void *arg, struct json_object *reply)
{
	struct ctl_conn *c = arg;
	const char *s = ctl_to_string(reply);

	pthread_mutex_lock(&c->srv->lock);
	ctl_conn_queue(c, s, strlen(s));
	/* After the reply of qmp_capabilities, not before: events follow it. */
	c->events = c->ses.negotiated;
	pthread_mutex_unlock(&c->srv->lock);
	json_object_put(reply);
}

void ctl_event(struct ctl_server *srv, const char *name, struct json_object *data)
{
	struct json_object *ev, *ts;
	struct timeval tv;
	const char *s;
	unsigned int i;
	size_t len;

	if (!srv) {
		json_object_put(data);
		return;
	}
	ev = json_object_new_object();
	ts = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string(name));
	json_object_object_add(ev, "data", data ? data : json_object_new_object());
	if (gettimeofday(&tv, NULL)) {
		tv.tv_sec = -1;
		tv.tv_usec = -1;
	}
	json_object_object_add(ts, "seconds", json_object_new_int64(tv.tv_sec));
	json_object_object_add(ts, "microseconds", json_object_new_int64(tv.tv_usec));
	json_object_object_add(ev, "timestamp", ts);
	s = ctl_to_string(ev);
	len = strlen(s);

	pthread_mutex_lock(&srv->lock);
	for (i = 0; i < srv->nr_conns; i++)
		if (srv->conns[i]->events)
			ctl_conn_queue(srv->conns[i], s, len);
	pthread_mutex_unlock(&srv->lock);
	json_object_put(ev);
	ctl_wake(srv);
}

/*
 * Sends what @c has pending, as far as its socket takes it now, a chunk
 * per hold of the lock so that ctl_event() never waits long for it.
 */
static void ctl_conn_flush(struct ctl_conn *c)
{
	ssize_t n;
	int err;

	for (;;) {
		pthread_mutex_lock(&c->srv->lock);
		if (c->dropped || !c->out_len) {
			c->out_off = 0;
			pthread_mutex_unlock(&c->srv->lock);
			return;
		}
		n = send(c->fd, c->out + c->out_off, MIN(c->out_len, (size_t)CTL_SEND_CHUNK),
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		err = n < 0 ? errno : 0;
		if (n > 0) {
			c->out_off += n;
			c->out_len -= n;
		} else if (err != EINTR && err != EAGAIN) {
			c->dropped = true;
		}
		pthread_mutex_unlock(&c->srv->lock);
		if (err == EAGAIN || (err && err != EINTR))
			return;
	}
}

static void ctl_conn_read(struct ctl_conn *c)
{
	char buf[CTL_READ_CHUNK];
	ssize_t n;

	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0) {
		if (ctl_session_feed(&c->ses, buf, n, ctl_conn_emit, c) == 0)
			return;
	} else if (n == 0) {
		c->eof = true;
		ctl_session_eof(&c->ses, ctl_conn_emit, c);
		return;
	} else if (errno == EAGAIN || errno == EINTR) {
		return;
	}
	pthread_mutex_lock(&c->srv->lock);
	c->dropped = true;
	pthread_mutex_unlock(&c->srv->lock);
}

static void ctl_conn_close(struct ctl_server *srv, unsigned int i)
{
	struct ctl_conn *c = srv->conns[i];

	pthread_mutex_lock(&srv->lock);
	srv->conns[i] = srv->conns[--srv->nr_conns];
	pthread_mutex_unlock(&srv->lock);
	close(c->fd);
	ctl_session_free(&c->ses);
	free(c->out);
	free(c);
}

/* Takes one new client.  Returns 0 or -errno (accept4()'s). */
static int ctl_accept(struct ctl_server *srv)
{
	struct json_object *greeting, *qmp, *reply;
	struct ctl_conn *c;
	const char *s;
	int fd;

	fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (srv->nr_conns == CTL_MAX_CLIENTS) {
		reply = ctl_errorf(CTL_GENERIC_ERROR, false, NULL,
				   "Too many clients (%d)", CTL_MAX_CLIENTS);
		s = ctl_to_string(reply);
		if (send(fd, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
			send(fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		json_object_put(reply);
		close(fd);
		return 0;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return 0;
	}
	c->srv = srv;
	c->fd = fd;
	ctl_session_init(&c->ses, &srv->table);

	greeting = json_object_new_object();
	qmp = json_object_new_object();
	json_object_object_add(qmp, "version", ctl_version());
	json_object_object_add(qmp, "capabilities", json_object_new_array());
	json_object_object_add(greeting, "QMP", qmp);
	s = ctl_to_string(greeting);
	pthread_mutex_lock(&srv->lock);
	ctl_conn_queue(c, s, strlen(s));
	srv->conns[srv->nr_conns++] = c;
	pthread_mutex_unlock(&srv->lock);
	json_object_put(greeting);
	return 0;
}

static int64_t ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* At stop: what is pending (the SHUTDOWN event) gets a bounded time to leave. */
static void ctl_flush_all(struct ctl_server *srv)
{
	int64_t deadline = ctl_now_ms() + CTL_STOP_FLUSH_MS;
	struct pollfd pfd[CTL_MAX_CLIENTS];
	unsigned int i, n;
	int64_t left;

	while ((left = deadline - ctl_now_ms()) > 0) {
		n = 0;
		pthread_mutex_lock(&srv->lock);
		for (i = 0; i < srv->nr_conns; i++) {
			struct ctl_conn *c = srv->conns[i];

			pfd[i].fd = c->fd;
			pfd[i].events = !c->dropped && c->out_len ? POLLOUT : 0;
			pfd[i].revents = 0;
			n += pfd[i].events != 0;
		}
		pthread_mutex_unlock(&srv->lock);
		if (!n || poll(pfd, srv->nr_conns, left) <= 0)
			break;
		for (i = 0; i < srv->nr_conns; i++)
			if (pfd[i].revents)
				ctl_conn_flush(srv->conns[i]);
	}
}

static void *ctl_thread(void *arg)
{
	struct ctl_server *srv = arg;
	struct pollfd pfd[2 + CTL_MAX_CLIENTS];
	int64_t accept_pause_until = 0;
	unsigned int i, n;
	uint64_t v;

	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE)) {
		bool accepting = ctl_now_ms() >= accept_pause_until;

		pfd[0].fd = srv->wake_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = accepting ? srv->listen_fd : -1;
		pfd[1].events = POLLIN;
		pthread_mutex_lock(&srv->lock);
		n = srv->nr_conns;
		for (i = 0; i < n; i++) {
			struct ctl_conn *c = srv->conns[i];

			pfd[2 + i].fd = c->fd;
			pfd[2 + i].events = 0;
			/* A client that does not read its replies is not read either. */
			if (!c->eof && c->out_len <= CTL_OUT_MAX / 2)
				pfd[2 + i].events |= POLLIN;
			if (c->out_len)
				pfd[2 + i].events |= POLLOUT;
		}
		pthread_mutex_unlock(&srv->lock);
		if (poll(pfd, 2 + n, accepting ? -1 : 100) < 0) {
			if (errno == EINTR)
				continue;
			img_err("control: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				img_err("control: eventfd: %s", strerror(errno));
		}
		/* Clients before the listener: new ones are appended after @n. */
		for (i = 0; i < n; i++) {
			struct ctl_conn *c = srv->conns[i];
			short re = pfd[2 + i].revents;

			if (!c->eof && (re & (POLLIN | POLLHUP | POLLERR)))
				ctl_conn_read(c);
			ctl_conn_flush(c);
		}
		for (i = n; i-- > 0;) {
			struct ctl_conn *c = srv->conns[i];
			bool done;

			pthread_mutex_lock(&srv->lock);
			done = c->dropped || (c->eof && !c->out_len);
			pthread_mutex_unlock(&srv->lock);
			if (done)
				ctl_conn_close(srv, i);
		}
		if (pfd[1].revents & POLLIN) {
			int ret = ctl_accept(srv);

			/* Out of descriptors: do not spin on a listener that stays readable. */
			if (ret == -EMFILE || ret == -ENFILE)
				accept_pause_until = ctl_now_ms() + 100;
		}
	}
	ctl_flush_all(srv);
	while (srv->nr_conns)
		ctl_conn_close(srv, srv->nr_conns - 1);
	return NULL;
}

/*
 * Makes room for a socket at @path: a socket no server answers on is a
 * leftover of a dead one and is removed.  Returns 0, -EADDRINUSE (a
 * server is there), -EEXIST (not a socket) or -errno.
 */
static int ctl_clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) ? -errno : -EADDRINUSE;
	close(fd);
	if (ret != -ECONNREFUSED)
		return ret;
	return unlink(path) && errno != ENOENT ? -errno : 0;
}

/* Returns the listening socket at @path, mode 0600, or -errno. */
static int ctl_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/*
	 * bind() gives the new inode the socket's own mode minus the umask:
	 * 0600 from its first moment, without touching the process's umask
	 * (other threads create files).
	 */
	if (fchmod(fd, 0600))
		goto fail;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (errno != EADDRINUSE)
			goto fail;
		ret = ctl_clear_stale(path, &sa);
		if (ret) {
			close(fd);
			return ret;
		}
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
			goto fail;
	}
	/* Whatever the kernel did, never serve a socket others may open. */
	if (lstat(path, &st))
		goto fail_unlink;
	if ((st.st_mode & 07777) != 0600 || st.st_uid != geteuid()) {
		errno = EPERM;
		goto fail_unlink;
	}
	if (listen(fd, 64))
		goto fail_unlink;
	return fd;

fail_unlink:
	ret = -errno;
	unlink(path);
	close(fd);
	return ret;
fail:
	ret = -errno;
	close(fd);
	return ret;
}

int ctl_server_start(struct ctl_server **out, const char *path,
		     const struct ctl_table *table)
{
	struct ctl_server *srv;
	sigset_t all, old;
	int ret;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->table = *table;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	pthread_mutex_init(&srv->lock, NULL);
	srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->wake_fd < 0) {
		ret = -errno;
		img_err("control: eventfd: %s", strerror(errno));
		goto out_free;
	}
	srv->listen_fd = ctl_listen(path);
	if (srv->listen_fd < 0) {
		ret = srv->listen_fd;
		if (ret == -EADDRINUSE)
			img_err("control socket %s: another server is listening there", path);
		else if (ret == -EEXIST)
			img_err("control socket %s: something else than a socket is in the way",
				path);
		else
			img_err("control socket %s: %s", path, strerror(-ret));
		goto out_wake;
	}
	/* Signals stay with the thread that waits for them (server.c's signalfd). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = -pthread_create(&srv->thread, NULL, ctl_thread, srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		img_err("control: cannot start its thread: %s", strerror(-ret));
		goto out_listen;
	}
	*out = srv;
	return 0;

out_listen:
	close(srv->listen_fd);
	unlink(srv->path);
out_wake:
	close(srv->wake_fd);
out_free:
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	return ret;
}

void ctl_server_stop(struct ctl_server *srv)
{
	if (!srv)
		return;
	__atomic_store_n(&srv->stop, true, __ATOMIC_RELEASE);
	ctl_wake(srv);
	pthread_join(srv->thread, NULL);
	/* First the name, so no client connects to a socket nobody accepts on. */
	unlink(srv->path);
	close(srv->listen_fd);
	close(srv->wake_fd);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}
